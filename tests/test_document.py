"""One vocabulary for results: summary(), to_frame(), document(), to_html(), to_text() on every result,
every page rendered from the one template over a plain Document."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from d365kit.document import Document, cell
from d365kit.health import HealthResult, load_history
from d365kit.reconcile import ReconcileResult
from d365kit.sync import SyncPlan, SyncRun


def test_a_document_renders_escaped_limited_and_self_contained():
    frame = pd.DataFrame({"name": ["<b>A</b>", "B", "C"], "fields": [("x", "y"), (), ("z",)]})
    doc = Document("Title & more", ["a line"], notes=["a note"]).add("Rows", frame)
    page = doc.to_html(limit=2)
    assert page.startswith("<!doctype html>") and "<script" not in page
    assert "Title &amp; more" in page and "&lt;b&gt;A&lt;/b&gt;" in page and "<b>A</b>" not in page
    assert "x, y" in page and "1 more rows not shown" in page and "a note" in page
    assert "C" not in doc.to_html(limit=2).split("<h2>Rows</h2>")[1].split("more rows")[0]
    assert "C" in doc.to_html(limit=None)
    text = doc.to_text(limit=1)
    assert text.startswith("Title & more") and "Rows (first 1 of 3):" in text
    assert cell({"a": 1}) == "a: 1" and cell(["p", "q"]) == "p, q"


@pytest.mark.parametrize("cls", [ReconcileResult, SyncPlan, SyncRun, HealthResult])
def test_every_result_speaks_the_same_vocabulary(cls):
    for name in ("summary", "to_frame", "document", "to_html", "to_text"):
        assert callable(getattr(cls, name, None)), f"{cls.__name__} lacks {name}()"


def test_plan_run_and_health_pages(ws, tmp_path: Path):
    plan = ws.plan_sync("CURRENCY", progress=False)
    page = plan.to_html()
    assert f"Sync plan: {len(plan)} operation(s)" in page and "Dry run" in page
    assert page.count("<table") == 2
    run = SyncRun(
        "run-1",
        tmp_path / "j.sqlite",
        pd.DataFrame(
            {"mapping": ["CURRENCY"], "kind": ["update"], "state": ["failed"], "coupling_state": ["none"]}
        ),
        pd.DataFrame({"failed": [1]}),
        pd.DataFrame(),
        1.0,
        ["resume the run to retry them"],
    )
    run_page = run.to_html()
    assert "Sync run run-1" in run_page and "Failed" in run_page and "resume the run" in run_page
    hist, errors = load_history(ws.bc, days=7)
    health = HealthResult(hist, errors)
    assert health.summary().set_index("figure").loc["jobs", "value"] == str(len(hist))
    assert "Failures by mapping" in health.to_html() and health.to_frame() is hist
