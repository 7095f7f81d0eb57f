"""The companion extension's AL source (bc-extension/) against the sandbox's companion API.

The sandbox emulates what the extension publishes; the two are written separately, so this test holds them
together: every API page's field list equals its entity type in the sandbox's companion ``$metadata`` (read
over HTTPS with a BC token), and the methods the page allows equal the ones the sandbox answers (a 405 for
a disallowed method). Pure parsing checks cover app.json and the permission set.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import PinnedSession, auth

EXTENSION = Path(__file__).resolve().parents[1] / "bc-extension"
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
WRITE_PERMISSION = {"POST": "I", "PATCH": "M", "DELETE": "D"}


@dataclass(frozen=True)
class ApiPage:
    object_id: int
    name: str
    props: dict[str, str]
    fields: list[tuple[str, str]]  # (API name, source expression)

    @property
    def entity_set(self) -> str:
        return self.props["EntitySetName"].strip("'")

    def allowed(self, prop: str) -> bool:
        """AL defaults: Editable, InsertAllowed, ModifyAllowed, DeleteAllowed are true unless set false."""
        return (
            self.props.get("Editable", "true").lower() != "false"
            and self.props.get(prop, "true").lower() != "false"
        )

    @property
    def methods(self) -> set[str]:
        allowed = {"POST": "InsertAllowed", "PATCH": "ModifyAllowed", "DELETE": "DeleteAllowed"}
        return {"GET"} | {method for method, prop in allowed.items() if self.allowed(prop)}


def _code(path: Path) -> str:
    """AL source without // comments (the sources hold no '//' inside string literals)."""
    return re.sub(r"//[^\n]*", "", path.read_text(encoding="utf-8"))


def _api_pages() -> list[ApiPage]:
    pages = []
    for path in sorted((EXTENSION / "src").glob("*.al")):
        code = _code(path)
        head = re.search(r'\bpage\s+(\d+)\s+"([^"]+)"', code)
        if head is None:
            continue
        header, _, layout = code[head.end() :].partition("layout")
        props = dict(re.findall(r"^\s*(\w+)\s*=\s*([^;]+?)\s*;", header, flags=re.M))
        if props.get("PageType") != "API":
            continue
        fields = re.findall(r'\bfield\(\s*"?(\w+)"?\s*;\s*([^)]+?)\s*\)', layout)
        pages.append(ApiPage(int(head.group(1)), head.group(2), props, fields))
    return pages


PAGES = _api_pages()
BY_SET = {p.entity_set: p for p in PAGES}


# -- the sandbox's side --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def companion(sandbox):
    """(session, headers, companion root, company id) for raw requests to the sandbox's companion API."""
    info = sandbox.info()
    session = PinnedSession(info["ca_bundle"])
    headers = auth(info, info["bc_scope"])
    companies = session.get(f"{info['bc_url']}/companies", headers=headers, timeout=30)
    companies.raise_for_status()
    yield session, headers, info["bc_companion_url"], companies.json()["value"][0]["id"]
    session.close()


@pytest.fixture(scope="module")
def metadata(companion) -> dict[str, tuple[str, str, list[str]]]:
    """Entity set -> (entity type name, key property, property names) from the companion $metadata."""
    session, headers, root, _ = companion
    resp = session.get(f"{root}/$metadata", headers={**headers, "Accept": "application/xml"}, timeout=30)
    assert resp.status_code == 200, resp.text
    schema = ET.fromstring(resp.content).find(f".//{EDM}Schema")
    assert schema is not None
    types = {}
    for et in schema.findall(f"{EDM}EntityType"):
        key = et.find(f"{EDM}Key/{EDM}PropertyRef")
        assert key is not None
        types[et.get("Name")] = (key.get("Name"), [p.get("Name") for p in et.findall(f"{EDM}Property")])
    out = {}
    for es in schema.findall(f"{EDM}EntityContainer/{EDM}EntitySet"):
        type_name = es.get("EntityType", "").rsplit(".", 1)[-1]
        out[es.get("Name")] = (type_name, *types[type_name])
    out.pop("companies")  # the standard API's company, not a page of the extension
    return out


def _sandbox_methods(companion, entity_set: str) -> set[str]:
    """Methods the sandbox accepts, probed without changing anything: a body that is not an object for
    POST, no If-Match for PATCH and DELETE. A disallowed method answers 405, an allowed one 400."""
    session, headers, root, company = companion
    url = f"{root}/companies({company})/{entity_set}"
    first = session.get(url, params={"$top": "1"}, headers=headers, timeout=30)
    assert first.status_code == 200, first.text
    rows = first.json()["value"]
    assert rows, f"the seed has no {entity_set} row to probe PATCH/DELETE on"
    row_url = f"{url}({rows[0]['id']})"
    probes = {
        "POST": session.post(url, json=[], headers=headers, timeout=30),
        "PATCH": session.patch(row_url, json={}, headers=headers, timeout=30),
        "DELETE": session.delete(row_url, headers=headers, timeout=30),
    }
    for method, resp in probes.items():
        assert resp.status_code in (400, 405), f"{method} {entity_set}: {resp.status_code} {resp.text}"
    return {"GET"} | {method for method, resp in probes.items() if resp.status_code != 405}


# -- AL against the sandbox ----------------------------------------------------------------------


def test_the_extension_publishes_exactly_the_sandboxs_entity_sets(metadata):
    assert len(BY_SET) == len(PAGES), "two pages publish the same entity set"
    assert set(BY_SET) == set(metadata)


@pytest.mark.parametrize("entity_set", sorted(BY_SET))
def test_page_fields_equal_the_companion_metadata(metadata, entity_set):
    page = BY_SET[entity_set]
    type_name, key, properties = metadata[entity_set]
    names = [name for name, _ in page.fields]
    assert len(names) == len(set(names)), f"{page.name}: a field is published twice"
    assert set(names) == set(properties), (
        f"{page.name}: only in AL {sorted(set(names) - set(properties))}, "
        f"only in the sandbox {sorted(set(properties) - set(names))}"
    )
    assert page.props["EntityName"].strip("'") == type_name
    key_source = f"Rec.{page.props['ODataKeyFields']}"
    assert [name for name, source in page.fields if source == key_source] == [key]


@pytest.mark.parametrize("entity_set", sorted(BY_SET))
def test_page_methods_equal_what_the_sandbox_allows(companion, entity_set):
    assert BY_SET[entity_set].methods == _sandbox_methods(companion, entity_set)


def test_pages_use_the_companion_route(sandbox):
    route = urlsplit(sandbox.info()["bc_companion_url"]).path.rstrip("/").split("/api/", 1)[1]
    assert route == "d365kit/integration/v1.0"
    for page in PAGES:
        publisher, group, version = (
            page.props[p].strip("'") for p in ("APIPublisher", "APIGroup", "APIVersion")
        )
        assert f"{publisher}/{group}/{version}" == route, page.name
        assert page.props["DelayedInsert"] == "true", page.name


# -- app.json and the permission set -------------------------------------------------------------


def test_app_json():
    app = json.loads((EXTENSION / "app.json").read_text(encoding="utf-8"))
    assert app["publisher"] == "d365kit" and app["name"] == "d365kit Integration API"
    assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", app["id"])
    base = [d for d in app["dependencies"] if d["name"] == "Base Application"]
    assert base and base[0]["publisher"] == "Microsoft"
    ranges = app["idRanges"]
    objects = re.findall(r"^\s*(?:page|codeunit|permissionset)\s+(\d+)\b", _all_code(), flags=re.M)
    assert objects and all(any(r["from"] <= int(n) <= r["to"] for r in ranges) for n in objects)


def _all_code() -> str:
    return "\n".join(_code(p) for p in sorted((EXTENSION / "src").glob("*.al")))


def test_permission_set_grants_what_each_page_needs():
    code = _all_code()
    block = re.search(r"\bpermissionset\s+\d+\s+\"[^\"]+\".*?Permissions\s*=(.*?);", code, flags=re.S)
    assert block is not None
    grants = dict(re.findall(r'tabledata\s+("[^"]+"|\w+)\s*=\s*(\w+)', block.group(1)))
    executable = set(re.findall(r'page\s+"([^"]+)"\s*=\s*X', block.group(1)))
    for page in PAGES:
        table = page.props["SourceTable"]
        needed = {"R"} | {WRITE_PERMISSION[m] for m in page.methods - {"GET"}}
        assert set(grants.get(table, "")) == needed, f"{page.name} on {table}"
        assert page.name in executable
