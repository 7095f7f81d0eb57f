"""ipywidgets panels for the notebooks: pick, click, look. Thin: every number comes from ``d365kit.views``,
the Workspace or the sync API; a panel only wires controls to those calls and shows what they return.

Each panel is a ``VBox`` of controls, a status line and an ``Output`` (``panel.out``) whose outputs are
replaced on every action (``Output.append_display_data``, so the same code works in JupyterLab and in a
test that sets widget values and calls ``button.click()`` without a kernel). What a panel last computed
stays on it (``results``, ``table``, ``plan``, ``run``) for the next cell. An action that fails shows the
error in the status line instead of vanishing into the kernel log.

Headless runs (papermill) need none of this: the notebooks compute their report from the parameters and
show the panel in a last cell tagged ``interactive``, which the HTML export leaves out.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import pandas as pd
import plotly.graph_objects as go
from IPython.display import HTML

from d365kit import charts, health, views
from d365kit.errors import UsageError
from d365kit.reconcile import COMPARED
from d365kit.sync.target import counts as write_counts

if TYPE_CHECKING:
    from d365kit.reconcile import ReconcileResult
    from d365kit.sync import SyncPlan, SyncRun
    from d365kit.workspace import Workspace

ALL = "(all)"
DIRECTION_CHOICES = (
    ("each record's natural direction", None),
    ("BC → Dataverse", "to_dataverse"),
    ("Dataverse → BC", "from_dataverse"),
)
CONFLICT_POLICIES = ("skip", "bc_wins", "dataverse_wins")
_WIDE = {"width": "32em"}  # a layout per widget (a shared Layout widget would be made at import)


class Panel:
    """Controls + a status line + an output area, shown as one box."""

    def __init__(self, controls: Iterable[W.Widget]):
        self.status = W.HTML()
        self.out = W.Output()
        self.box = W.VBox([*controls, self.status, self.out])

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = self.box._repr_mimebundle_(**kwargs)
        bundle["text/plain"] = (
            f"{type(self).__name__}: an interactive panel (open the notebook in JupyterLab)"
        )
        return bundle

    def show(self, *objects: Any) -> None:
        """Replace what the panel shows with ``objects`` (frames, figures, HTML, text)."""
        self.out.outputs = ()
        for obj in objects:
            # a plotly figure displays itself, which the Output's formatter skips: ask for its bundle
            if isinstance(obj, go.Figure):
                bundle = obj._repr_mimebundle_()
                self.out.outputs += ({"output_type": "display_data", "data": bundle, "metadata": {}},)
            else:
                self.out.append_display_data(obj)

    def say(self, text: str, *, error: bool = False) -> None:
        color = "#a23b22" if error else "#5b6b73"
        self.status.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    def act(self, what: str, action: Callable[[], str]) -> None:
        """Run one button's action; its message (or its error) goes to the status line."""
        self.say(f"{what} ...")
        started = time.monotonic()
        try:
            message = action()
        except Exception as exc:  # shown to the analyst, not lost in the kernel log
            self.say(f"{what} failed: {type(exc).__name__}: {exc}", error=True)
            return
        self.say(f"{message} ({time.monotonic() - started:.1f} s)")


def _heading(text: str) -> W.HTML:
    return W.HTML(f"<h4>{html.escape(text)}</h4>")


def _select_mappings(chosen: Iterable[str] | None) -> W.SelectMultiple:
    names = views.mapping_names()
    value = [n for n in (chosen or names) if n in names]
    return W.SelectMultiple(
        options=names, value=value, rows=min(12, len(names)), description="Mappings", layout=_WIDE
    )


# -- 01 compare records -------------------------------------------------------------------------------


class ComparePanel(Panel):
    """Compare records: choose mappings (and a since date), then filter the differing values by category,
    field and text. ``results`` holds the last reconcile per mapping, ``table`` the values shown."""

    def __init__(self, ws: Workspace, results: dict[str, ReconcileResult] | None = None, *, limit: int = 200):
        self.ws, self.results, self.limit = ws, dict(results or {}), limit
        self.table = pd.DataFrame()
        self.mappings = _select_mappings(self.results or None)
        self.since = W.Text(description="Since", placeholder="ISO date, empty = everything")
        self.compare = W.Button(description="Compare", button_style="primary", icon="columns")
        self.categories = W.SelectMultiple(options=COMPARED, description="Categories", rows=len(COMPARED))
        self.field = W.Dropdown(options=[ALL], value=ALL, description="Field")
        self.search = W.Text(description="Search", placeholder="key or value contains ...")
        super().__init__(
            [
                W.HBox([self.mappings, W.VBox([self.since, self.compare])]),
                _heading("Filter the differing values"),
                W.HBox([self.categories, W.VBox([self.field, self.search])]),
            ]
        )
        self.compare.on_click(lambda _: self.act("Compare", self._compare))
        for control in (self.categories, self.field, self.search):
            control.observe(lambda _: self.render(), names="value")
        if self.results:
            self._fields()
        self.render()

    def _compare(self) -> str:
        self.results = views.reconcile_all(
            self.ws, self.mappings.value, self.since.value or None, progress=False
        )
        self._fields()
        self.render()
        return f"Compared {len(self.results)} mapping(s)"

    def _fields(self) -> None:
        drift = views.field_drift(self.results)
        self.field.options = [ALL, *sorted(set(drift["bc_field"]))]

    def filtered(self) -> pd.DataFrame:
        """The differing values under the current filters."""
        return views.differing_values(
            self.results,
            categories=self.categories.value or None,
            fields=None if self.field.value == ALL else [self.field.value],
            search=self.search.value.strip() or None,
        )

    def render(self) -> None:
        if not self.results:
            self.show(HTML("<p>Choose mappings and click <b>Compare</b>.</p>"))
            return
        table = views.summary(self.results)
        self.table = self.filtered()
        self.show(
            views.fig_categories(table),
            table,
            HTML(f"<h4>Differing values: {len(self.table)} shown under the filters</h4>"),
            views.display_frame(self.table, self.limit),
        )


# -- 02 coupling mismatches ---------------------------------------------------------------------------


class CouplingPanel(Panel):
    """Coupling mismatches: choose mappings, then one kind (orphan, duplicate, uncoupled with candidates,
    out of scope, skipped, failed) or the coverage per mapping. ``table`` holds the rows shown."""

    KINDS = (*views.MISMATCHES, "coverage")

    def __init__(self, ws: Workspace, results: dict[str, ReconcileResult] | None = None, *, limit: int = 200):
        self.ws, self.results, self.limit = ws, dict(results or {}), limit
        self.table = pd.DataFrame()
        self.mappings = _select_mappings(self.results or None)
        self.analyse = W.Button(description="Analyse", button_style="primary", icon="link")
        self.kind = W.ToggleButtons(options=self.KINDS, value="orphan", description="Show")
        super().__init__([W.HBox([self.mappings, self.analyse]), self.kind])
        self.analyse.on_click(lambda _: self.act("Analyse", self._analyse))
        self.kind.observe(lambda _: self.render(), names="value")
        self.render()

    def _analyse(self) -> str:
        self.results = views.reconcile_all(self.ws, self.mappings.value, progress=False)
        self.render()
        return f"Analysed {len(self.results)} mapping(s)"

    def render(self) -> None:
        if not self.results:
            self.show(HTML("<p>Choose mappings and click <b>Analyse</b>.</p>"))
            return
        if self.kind.value == "coverage":
            self.table = views.mapping_coverage(self.results)
            self.show(charts.fig_coverage(self.table), self.table)
            return
        self.table = views.mismatches(self.results, self.kind.value)
        shown: list[Any] = [
            HTML(f"<h4>{html.escape(self.kind.value)}: {len(self.table)} record(s)</h4>"),
            views.display_frame(self.table, self.limit),
        ]
        if self.kind.value == "uncoupled":
            cands = views.candidates(self.results)
            shown += [
                HTML(f"<h4>Match candidates: {len(cands)}</h4>"),
                views.display_frame(cands, self.limit),
            ]
        self.show(*shown)


# -- 03 selective sync --------------------------------------------------------------------------------


def record_choices(result: ReconcileResult) -> list[tuple[str, str]]:
    """``(label, id)`` for every record of a reconcile result that is not in sync, for a selection list.

    A record is selected by its coupling id, else (uncoupled) by its BC or Dataverse row id."""
    rows = result.records[result.records["category"] != "in_sync"]
    ids = rows["coupling_id"].fillna(rows["bc_id"]).fillna(rows["dataverse_id"]).astype("string")
    keys = rows["bc_key"].astype("string").fillna(ids.str[:8])
    labels = rows["category"].astype("string") + " · " + keys
    return list(zip(labels.tolist(), ids.tolist(), strict=True))


class SyncPanel(Panel):
    """Selective sync of one reconcile result: choose records (or whole categories), a direction and a
    conflict policy; **Plan** shows the plan (nothing is written); **Apply** runs that plan and is enabled
    only while the plan matches the current choices. ``plan`` and ``run`` hold the last of each.

    On a production target (``Profile.is_production``) the plan states the counts and the target, and
    **Apply** writes only once the BC environment's name is typed into ``confirm`` (a typed confirmation)."""

    def __init__(self, ws: Workspace, result: ReconcileResult):
        self.ws, self.result = ws, result
        self.plan: SyncPlan | None = None
        self.run: SyncRun | None = None
        present = sorted(set(result.records["category"]) - {"in_sync"})
        self.records = W.SelectMultiple(
            options=record_choices(result), rows=10, description="Records", layout=_WIDE
        )
        self.categories = W.SelectMultiple(
            options=present, rows=min(8, max(1, len(present))), description="or all of"
        )
        self.direction = W.Dropdown(options=DIRECTION_CHOICES, value=None, description="Direction")
        self.conflict = W.Dropdown(options=CONFLICT_POLICIES, value="skip", description="Conflicts")
        self.plan_button = W.Button(description="Plan", button_style="info", icon="list")
        self.apply_button = W.Button(description="Apply", button_style="danger", icon="play", disabled=True)
        self.confirm = W.Text(description="Confirm", placeholder="production: type the environment's name")
        self.confirm.layout.display = "none"
        super().__init__(
            [
                _heading(f"Selective sync · {result.mapping.name}"),
                W.HBox([self.records, self.categories]),
                W.HBox([self.direction, self.conflict]),
                W.HBox([self.plan_button, self.apply_button, self.confirm]),
            ]
        )
        self.plan_button.on_click(lambda _: self.act("Plan", self._plan))
        self.apply_button.on_click(lambda _: self.act("Apply", self._apply))
        for control in (self.records, self.categories, self.direction, self.conflict):
            control.observe(self._invalidate, names="value")
        self.show(
            HTML("<p>Choose records, then click <b>Plan</b>. Nothing is written until <b>Apply</b>.</p>")
        )

    def _invalidate(self, _change: Any = None) -> None:
        """A choice changed: the shown plan no longer matches it, so it cannot be applied."""
        if self.plan is not None:
            self.plan = None
            self.apply_button.disabled = True
            self.say("The choices changed: click Plan again before applying.")

    def _plan(self) -> str:
        self.plan = self.ws.plan_sync(
            self.result,
            records=list(self.records.value) or None,
            categories=list(self.categories.value) or None,
            direction=self.direction.value,
            conflict=self.conflict.value,
            progress=False,
        )
        operations = self.plan.to_frame()
        target = self.plan.target
        production = target is not None and target.production
        warning = (
            [
                HTML(
                    f"<p><b>Production target</b>: {html.escape(str(target))}. This plan writes "
                    f"{html.escape(write_counts(self.plan.operations))}. Type the BC environment's name "
                    f"(<code>{html.escape(target.bc_environment)}</code>) into Confirm, then click Apply.</p>"
                )
            ]
            if production
            else []
        )
        self.show(
            HTML(f"<h4>Plan (dry run: nothing written): {len(operations)} operation(s)</h4>"),
            *warning,
            views.fig_plan(operations),
            self.plan.summary(),
            views.display_frame(operations),
        )
        self.confirm.value = ""
        self.confirm.layout.display = None if production else "none"
        self.apply_button.disabled = False
        if production:
            return "Planned for a production target: type the environment's name into Confirm, then Apply"
        return "Planned; click Apply to run this plan"

    def _apply(self) -> str:
        if self.plan is None:
            raise UsageError("no current plan: click Plan first")
        target = self.plan.target
        confirm = False
        if target is not None and target.production:
            if self.confirm.value.strip() != target.bc_environment:
                raise UsageError(
                    f"this plan writes to a production target ({target}): "
                    f"{write_counts(self.plan.operations)}. Type {target.bc_environment!r} into Confirm to write"
                )
            confirm = True
        plan, self.plan = self.plan, None
        self.apply_button.disabled = True
        self.confirm.value = ""
        self.run = self.ws.apply(plan, confirm=confirm)
        self.show(HTML("<h4>Run</h4>"), self.run, views.display_frame(self.run.to_frame()))
        return f"Applied: {', '.join(f'{k} {n}' for k, n in self.run.counts.items() if n)}"


# -- 04 sync health -----------------------------------------------------------------------------------


class HealthPanel(Panel):
    """Sync health: choose a window and mappings, **Load** reads that part of the job log; the view
    toggle switches between runs over time, failures, error categories and slowest mappings without
    reading again. ``hist`` and ``errors`` hold the loaded log, ``table`` the rows shown."""

    VIEWS = ("runs over time", "failures", "error categories", "slowest")

    def __init__(
        self,
        ws: Workspace,
        hist: pd.DataFrame | None = None,
        errors: pd.DataFrame | None = None,
        *,
        days: int = 30,
        mappings: Iterable[str] | None = None,
    ):
        self.ws, self.hist, self.errors = ws, hist, errors
        self.table = pd.DataFrame()
        self.days = W.IntSlider(value=days, min=1, max=365, description="Days", continuous_update=False)
        self.mappings = _select_mappings(mappings)
        self.load = W.Button(description="Load", button_style="primary", icon="refresh")
        self.view = W.ToggleButtons(options=self.VIEWS, value=self.VIEWS[0], description="Show")
        super().__init__([W.HBox([self.mappings, W.VBox([self.days, self.load])]), self.view])
        self.load.on_click(lambda _: self.act("Load", self._load))
        self.view.observe(lambda _: self.render(), names="value")
        self.render()

    def _load(self) -> str:
        chosen = list(self.mappings.value)
        everything = set(chosen) == set(views.mapping_names())
        self.hist, self.errors = health.load_history(
            self.ws.bc, days=self.days.value, mappings=None if everything else chosen
        )
        self.render()
        return f"Loaded {len(self.hist):,} jobs and {len(self.errors):,} errors"

    def render(self) -> None:
        if self.hist is None or self.errors is None:
            self.show(HTML("<p>Choose a window and mappings, then click <b>Load</b>.</p>"))
            return
        view = self.view.value
        if view == "runs over time":
            self.table = health.runs_per_day(self.hist)
            figure = charts.fig_runs_over_time(self.table)
        elif view == "failures":
            self.table = health.failures_by_mapping(self.hist)
            figure = charts.fig_failures_by_mapping(self.table)
        elif view == "error categories":
            self.table = health.error_categories(self.errors)
            figure = charts.fig_error_categories(self.table)
        else:
            self.table = health.slowest_mappings(self.hist)
            figure = charts.fig_slowest_mappings(self.table)
        self.show(
            HTML(f"<h4>{html.escape(view)}: {len(self.hist):,} jobs, {len(self.errors):,} errors</h4>"),
            figure,
            views.display_frame(self.table.reset_index() if view == "runs over time" else self.table),
        )
