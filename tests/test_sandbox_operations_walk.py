"""Every documented Dataverse function, action and entity set is served or answers 501 naming itself.

The list is ``d365kit/sandbox/dataverse_catalog.py`` (built from the Web API Function, Action and
EntityType references). A 404 "Resource not found for the segment" would tell a client the operation does
not exist, so none may answer it. The README's "Dataverse operations" table is generated from the same
list and checked here; ``D365KIT_UPDATE_README=1 pytest tests/test_sandbox_operations_walk.py`` rewrites it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_sandbox_dataverse import DV

from d365kit.sandbox import dataverse_catalog

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- dataverse-operations:begin -->", "<!-- dataverse-operations:end -->"


@pytest.fixture(scope="module")
def dv(sandbox):
    client = DV(sandbox)
    yield client
    client.http.close()


def test_the_walk_covers_the_names_clients_met_as_404(dv):
    names = {e.name for e in dataverse_catalog.entries()}
    assert {"BulkDelete", "RetrieveAvailableLanguages", "sdkmessagefilters", "EntityDefinitions"} <= names
    assert len(names) > 250


def test_every_documented_name_is_served_or_501(dv):
    wrong = []
    for e in dataverse_catalog.entries():
        if e.method == "GET":
            r = dv.get(
                e.path, {"$top": "1"} if e.kind == "entityset" and e.served and e.name in dv_sets() else None
            )
        else:
            r = dv.send(e.method, e.path, {})
        message = r.json().get("error", {}).get("message", "") if r.content and r.status_code >= 400 else ""
        if e.served and r.status_code in (404, 501):
            wrong.append((e.name, r.status_code, message))
        if not e.served and (r.status_code != 501 or e.name not in message):
            wrong.append((e.name, r.status_code, message))
    assert not wrong, wrong


def dv_sets() -> set[str]:
    from d365kit.sandbox.schema import DATAVERSE

    return set(DATAVERSE)


def test_readme_table_is_generated_from_the_walked_list():
    text = README.read_text(encoding="utf-8")
    block = f"{BEGIN}\n{dataverse_catalog.fidelity_markdown()}\n{END}"
    current = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.S)
    if os.environ.get("D365KIT_UPDATE_README") == "1":
        text = text.replace(current.group(0), block) if current else text
        README.write_text(text, encoding="utf-8")
        current = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), text, re.S)
    assert current is not None, f"README.md lacks the {BEGIN} ... {END} block"
    assert current.group(0) == block, (
        "README's Dataverse operations table is stale: D365KIT_UPDATE_README=1 pytest tests/test_sandbox_operations_walk.py"
    )
