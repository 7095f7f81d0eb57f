"""The widget panels, driven headlessly: set widget values, click buttons, read what the panel shows
(its ``Output``'s outputs) and what it keeps (results, table, plan, run). Against a private sandbox."""

from __future__ import annotations

import pandas as pd
import plotly.io as pio
import pytest
from helpers import private_sandbox

from d365kit import views, widgets

PLOTLY_MIME = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def private_ws(tmp_path_factory):
    with private_sandbox(tmp_path_factory.mktemp("widgets")) as (_, ws):
        yield ws


@pytest.fixture(autouse=True)
def plotly_mimetype(monkeypatch):
    """Outside a kernel plotly has no notebook renderer; setup_notebook() sets one in the notebooks."""
    monkeypatch.setattr(pio.renderers, "default", "plotly_mimetype")


@pytest.fixture(scope="module")
def customer(private_ws):
    return views.reconcile_all(private_ws, ["CUSTOMER"], progress=False)


def shown(panel: widgets.Panel) -> list[dict]:
    return [o["data"] for o in panel.out.outputs]


def html_of(panel: widgets.Panel) -> str:
    return "\n".join(d.get("text/html", "") for d in shown(panel))


def test_compare_panel_compares_on_click_and_filters_the_values(private_ws):
    panel = widgets.ComparePanel(private_ws)
    assert "click <b>Compare</b>" in html_of(panel) and panel.results == {}
    panel.mappings.value = ("CURRENCY",)
    panel.compare.click()
    assert list(panel.results) == ["CURRENCY"], panel.status.value
    assert "Compared 1 mapping(s)" in panel.status.value
    data = shown(panel)
    assert PLOTLY_MIME in data[0]  # the category chart
    assert ">CURRENCY</th>" in data[1]["text/html"]  # the summary table
    everything = len(panel.table)
    assert everything == len(panel.results["CURRENCY"].values) > 0

    panel.categories.value = ("drift",)  # filtering re-renders without reading again
    assert set(panel.table["category"]) == {"drift"} and len(panel.table) < everything
    assert f"Differing values: {len(panel.table)} shown" in html_of(panel)
    panel.categories.value = ()
    field = panel.table["bc_field"].iloc[0]
    assert field in panel.field.options
    panel.field.value = field
    assert set(panel.table["bc_field"]) == {field}
    panel.field.value = widgets.ALL
    key = panel.table["bc_key"].iloc[0]
    panel.search.value = key.lower()
    assert len(panel.table) >= 1 and set(panel.table["bc_key"]) == {key}


def test_compare_panel_shows_an_error_instead_of_raising(private_ws):
    panel = widgets.ComparePanel(private_ws)
    panel.mappings.value = ("CURRENCY",)
    panel.since.value = "not a date"
    panel.compare.click()
    assert "Compare failed" in panel.status.value and "#a23b22" in panel.status.value
    assert panel.results == {}


def test_coupling_panel_switches_between_mismatch_kinds(private_ws, customer):
    panel = widgets.CouplingPanel(private_ws, customer)
    assert panel.kind.value == "orphan"
    assert set(panel.table["category"]) == {"coupled_missing_bc", "coupled_missing_dataverse"}
    panel.kind.value = "uncoupled"
    assert set(panel.table["category"]) == {"uncoupled_bc", "uncoupled_dataverse"}
    assert "Match candidates: 1" in html_of(panel)  # CUSTOMER's planted matched pair
    assert panel.table["match_score"].max() == 100
    panel.kind.value = "coverage"
    assert list(panel.table["mapping"]) == ["CUSTOMER"] and 0 < panel.table["coverage"].iloc[0] < 1
    assert PLOTLY_MIME in shown(panel)[0]

    panel.mappings.value = ("CURRENCY", "CUSTOMER")
    panel.analyse.click()
    assert sorted(panel.results) == ["CURRENCY", "CUSTOMER"], panel.status.value
    assert sorted(panel.table["mapping"]) == ["CURRENCY", "CUSTOMER"]  # still on coverage, now both


def test_record_choices_label_every_record_not_in_sync(customer):
    result = customer["CUSTOMER"]
    choices = widgets.record_choices(result)
    problems = result.records[result.records["category"] != "in_sync"]
    assert len(choices) == len(problems)
    ids = {i for _, i in choices}
    coupled = problems.dropna(subset=["coupling_id"])
    assert set(coupled["coupling_id"]) <= ids
    lonely = problems[problems["coupling_id"].isna()]
    assert set(lonely["bc_id"].dropna()) | set(lonely["dataverse_id"].dropna()) <= ids
    assert any(label.startswith("drift · C0") for label, _ in choices)


def test_sync_panel_plans_on_click_and_applies_only_on_apply(private_ws, customer, tmp_path, monkeypatch):
    monkeypatch.setenv("D365KIT_JOURNAL", str(tmp_path / "journal.db"))
    result = customer["CUSTOMER"]
    panel = widgets.SyncPanel(private_ws, result)
    assert panel.apply_button.disabled and panel.plan is None
    drift = result.to_frame("drift")
    panel.records.value = (drift["coupling_id"].iloc[0],)
    panel.direction.value = "to_dataverse"
    panel.plan_button.click()
    assert panel.plan is not None, panel.status.value
    assert not panel.apply_button.disabled and panel.run is None
    assert "Plan (dry run: nothing written): 1 operation(s)" in html_of(panel)
    assert PLOTLY_MIME in shown(panel)[1]
    assert list(panel.plan.to_frame()["kind"]) == ["update"]
    before = private_ws.reconcile("CUSTOMER", progress=False).summary()

    panel.conflict.value = "bc_wins"  # a changed choice invalidates the shown plan
    assert panel.plan is None and panel.apply_button.disabled
    pd.testing.assert_frame_equal(private_ws.reconcile("CUSTOMER", progress=False).summary(), before)

    panel.plan_button.click()
    panel.apply_button.click()
    assert panel.run is not None, panel.status.value
    assert "Applied: modified 1" in panel.status.value and panel.apply_button.disabled
    assert "<h4>Run</h4>" in html_of(panel) and list(panel.run.to_frame()["state"]) == ["done"]
    after = private_ws.reconcile("CUSTOMER", progress=False).summary().set_index("category")["records"]
    assert after["drift"] == before.set_index("category")["records"]["drift"] - 1


def test_health_panel_loads_the_window_and_switches_views(private_ws):
    panel = widgets.HealthPanel(private_ws)
    assert "click <b>Load</b>" in html_of(panel) and panel.hist is None
    panel.load.click()
    everything = panel.hist
    assert everything is not None and len(everything) > 0, panel.status.value
    assert f"Loaded {len(everything):,} jobs" in panel.status.value
    assert everything["mapping"].nunique() > 1

    panel.days.value, panel.mappings.value = 7, ("CUSTOMER",)
    panel.load.click()
    assert set(panel.hist["mapping"]) == {"CUSTOMER"}, panel.status.value
    span = panel.hist["start"].max() - panel.hist["start"].min()
    assert span <= pd.Timedelta(days=7) and len(panel.hist) < len(everything)
    assert PLOTLY_MIME in shown(panel)[1] and "jobs" in panel.table.columns  # runs per day

    panel.view.value = "failures"  # switching views re-renders without reading again
    assert list(panel.table["mapping"]) == ["CUSTOMER"] and "failure_rate" in panel.table.columns
    panel.view.value = "error categories"
    assert set(panel.table["mapping"]) <= {"CUSTOMER"} and {"category", "errors"} <= set(panel.table.columns)
    panel.view.value = "slowest"
    assert list(panel.table["mapping"]) == ["CUSTOMER"] and "p95_s" in panel.table.columns
    assert PLOTLY_MIME in shown(panel)[1]
