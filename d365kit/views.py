"""Reconcile results as notebook views: several mappings at once, filtered tables, plotly figures, key figures.

Notebooks 01 (compare records) and 02 (coupling mismatches) and the panels of ``d365kit.widgets`` all call
these, so a notebook cell stays a line or two and a headless run shows what the panels show. Everything
here is a pure function of ``{mapping name: ReconcileResult}`` except ``reconcile_all``, which reads.

Coupling mismatch kinds (``MISMATCHES``) group reconcile's categories the way an analyst asks about them:
``orphan`` (coupled to a row that no longer exists on one side), ``duplicate``, ``uncoupled`` (with the best
match candidate and its score), ``out_of_scope``, ``skipped`` and ``failed``.

Coverage per mapping: ``coupled`` counts the couplings between two existing, in-scope rows (categories
``HEALTHY_COUPLED``: in sync, drift, conflict, pending, skipped, failed); the mapping's in-scope BC rows are
those plus ``uncoupled_bc``. A BC row with duplicate couplings is counted in neither (reconcile lists it as
a duplicate), so coverage is a lower bound there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from d365kit import charts, health
from d365kit.errors import UnknownNameError
from d365kit.reconcile import CATEGORIES, COMPARED, RECORD_COLUMNS

if TYPE_CHECKING:
    from d365kit.reconcile import ReconcileResult
    from d365kit.workspace import Workspace

Results = Mapping[str, "ReconcileResult"]

MISMATCHES: dict[str, tuple[str, ...]] = {
    "orphan": ("coupled_missing_bc", "coupled_missing_dataverse"),
    "duplicate": ("duplicate_coupling",),
    "uncoupled": ("uncoupled_bc", "uncoupled_dataverse"),
    "out_of_scope": ("out_of_scope",),
    "skipped": ("skipped",),
    "failed": ("failed",),
}
HEALTHY_COUPLED = ("in_sync", "drift", "conflict", "pending", "skipped", "failed")
# Columns shown per mismatch kind (those empty in every row are dropped when shown).
_SYNCH_RESULT_COLUMNS = (
    "mapping",
    "bc_key",
    "bc_id",
    "dataverse_id",
    "changed_side",
    "bc_fields",
    "last_synch_result",
    "last_synch_crm_result",
)
_MISMATCH_COLUMNS = {
    "orphan": ("mapping", "category", "bc_key", "bc_id", "dataverse_id", "coupling_id"),
    "duplicate": ("mapping", "bc_key", "bc_id", "dataverse_id", "coupling_ids", "reason"),
    "uncoupled": (
        "mapping",
        "category",
        "bc_key",
        "bc_id",
        "dataverse_id",
        "match_id",
        "match_score",
        "match_rule",
    ),
    "out_of_scope": ("mapping", "bc_key", "bc_id", "dataverse_id", "coupling_id", "reason"),
    "skipped": _SYNCH_RESULT_COLUMNS,
    "failed": _SYNCH_RESULT_COLUMNS,
}
CATEGORY_COLORS = {
    "in_sync": charts.COLORS["ok"],
    "drift": "#f4a261",
    "conflict": "#e76f51",
    "pending": "#e9c46a",
    "coupled_missing_bc": "#6d597a",
    "coupled_missing_dataverse": "#b5838d",
    "duplicate_coupling": "#8d99ae",
    "uncoupled_bc": "#264653",
    "uncoupled_dataverse": "#457b9d",
    "out_of_scope": charts.COLORS["muted"],
    "skipped": "#ffb703",
    "failed": "#c1121f",
}


# -- reading ------------------------------------------------------------------------------------------


def parse_since(since: str | datetime | None) -> datetime | None:
    """A notebook's ``since`` parameter (ISO date or date-time text; UTC when no offset) as a datetime."""
    if since is None or since == "":
        return None
    stamp = pd.Timestamp(since)
    return (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).to_pydatetime()


def mapping_names(mappings: Iterable[str] | str | None = None) -> list[str]:
    """The chosen mapping names (one name, a list, or None for every mapping of the default catalog)."""
    from d365kit.mapping import load_catalog

    if isinstance(mappings, str):
        return [mappings]
    return list(mappings) if mappings else load_catalog().names


def reconcile_all(
    ws: Workspace,
    mappings: Iterable[str] | str | None = None,
    since: str | datetime | None = None,
    *,
    progress: bool = True,
) -> dict[str, ReconcileResult]:
    """``ws.reconcile_all`` for the chosen mappings (all by default), in catalog order, in one run."""
    return ws.reconcile_all(mapping_names(mappings), since=parse_since(since), progress=progress)


# -- tables -------------------------------------------------------------------------------------------


def summary(results: Results) -> pd.DataFrame:
    """Records per category (columns, contract order) per mapping (rows), plus ``records`` and ``problems``."""
    rows = {name: r.summary().set_index("category")["records"] for name, r in results.items()}
    out = pd.DataFrame(rows, index=list(CATEGORIES)).T.fillna(0).astype("int64")
    out.index.name = "mapping"
    out["records"] = out[list(CATEGORIES)].sum(axis=1)
    out["problems"] = out["records"] - out["in_sync"]
    return out


def field_drift(results: Results) -> pd.DataFrame:
    """Fields that differ, per mapping, counted by category; most-drifted first (fields that never differ left out)."""
    parts = [r.field_drift.assign(mapping=name) for name, r in results.items()]
    cols = ["mapping", "bc_field", "dataverse_field", "direction", *COMPARED, "total"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)[cols]
    out = out[out["total"] > 0]
    return out.sort_values(["total", "mapping"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


def differing_values(
    results: Results,
    categories: Iterable[str] | None = None,
    fields: Iterable[str] | None = None,
    search: str | None = None,
) -> pd.DataFrame:
    """The differing values side by side (BC value, Dataverse value in BC terms), filtered.

    ``categories``: keep these categories; ``fields``: keep rows whose BC or Dataverse field is listed;
    ``search``: case-insensitive text in the key, either field name or either value."""
    cols = ["mapping", "category", "bc_key", "bc_field", "dataverse_field", "bc_value", "dataverse_value"]
    parts = [r.values.assign(mapping=name) for name, r in results.items() if len(r.values)]
    if not parts:
        return pd.DataFrame(columns=[*cols, "bc_id", "dataverse_id", "coupling_id"])
    out = pd.concat(parts, ignore_index=True)
    out = out[[*cols, *(c for c in out.columns if c not in cols)]]
    keep = pd.Series(True, index=out.index)
    if categories:
        keep &= out["category"].isin(list(categories))
    if fields:
        wanted = list(fields)
        keep &= out["bc_field"].isin(wanted) | out["dataverse_field"].isin(wanted)
    if search:
        hay = out[["bc_key", "bc_field", "dataverse_field", "bc_value", "dataverse_value"]].astype("string")
        hit = pd.Series(False, index=out.index)
        for column in hay.columns:
            hit |= hay[column].str.contains(search, case=False, regex=False).fillna(False).astype(bool)
        keep &= hit
    return out[keep.to_numpy(dtype=bool)].reset_index(drop=True)


def records(results: Results, categories: Iterable[str]) -> pd.DataFrame:
    """The records of the given categories across mappings, with a leading ``mapping`` column."""
    wanted = list(categories)
    parts = [
        r.records[r.records["category"].isin(wanted)].assign(mapping=name) for name, r in results.items()
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=["mapping", *RECORD_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    return out[["mapping", *(c for c in out.columns if c != "mapping")]]


def mismatches(results: Results, kind: str) -> pd.DataFrame:
    """One coupling mismatch kind (``MISMATCHES``) across mappings, with the columns that explain it."""
    if kind not in MISMATCHES:
        raise UnknownNameError(f"{kind!r} is not a mismatch kind: {', '.join(MISMATCHES)}")
    out = records(results, MISMATCHES[kind])
    cols = [c for c in _MISMATCH_COLUMNS[kind] if c in out.columns]
    return out[cols].reset_index(drop=True)


def candidates(results: Results) -> pd.DataFrame:
    """Every match candidate of the uncoupled rows, with the BC key, best score first."""
    parts = []
    for name, r in results.items():
        if not len(r.candidates):
            continue
        keys = r.records.dropna(subset=["bc_id"]).drop_duplicates("bc_id").set_index("bc_id")["bc_key"]
        parts.append(r.candidates.assign(mapping=name, bc_key=r.candidates["bc_id"].map(keys)))
    cols = ["mapping", "bc_key", "bc_id", "dataverse_id", "score", "rule", "fields", "ambiguous"]
    if not parts:
        return pd.DataFrame(columns=cols)
    out = pd.concat(parts, ignore_index=True)[cols]
    return out.sort_values(["score", "mapping"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


def mapping_coverage(results: Results) -> pd.DataFrame:
    """Per mapping: healthy couplings vs in-scope BC rows (``health.coverage`` columns), lowest first."""
    table = summary(results)
    counts = pd.DataFrame(
        {
            "mapping": table.index,
            "coupled": table[list(HEALTHY_COUPLED)].sum(axis=1).to_numpy(),
            "total": (table[list(HEALTHY_COUPLED)].sum(axis=1) + table["uncoupled_bc"]).to_numpy(),
            "uncoupled_dataverse": table["uncoupled_dataverse"].to_numpy(),
        }
    )
    return health.coverage(counts)


def display_frame(frame: pd.DataFrame, limit: int | None = 200) -> pd.DataFrame:
    """A frame ready to show: tuples as text, columns empty in every row dropped, at most ``limit`` rows."""
    shown = frame if limit is None else frame.head(limit)
    shown = shown.map(lambda v: ", ".join(map(str, v)) if isinstance(v, tuple) else v)
    filled = [c for c in shown.columns if shown[c].astype("string").fillna("").ne("").any()]
    return shown[filled] if len(shown) else shown


# -- figures ------------------------------------------------------------------------------------------


def _figure(title: str, **layout: Any) -> go.Figure:
    return go.Figure(layout={"template": charts.TEMPLATE, "title": {"text": title}, **layout})


def fig_categories(table: pd.DataFrame, *, include_in_sync: bool = False) -> go.Figure:
    """Records per category, stacked per mapping (``summary`` output); in-sync records left out by default."""
    shown = [c for c in CATEGORIES if include_in_sync or c != "in_sync"]
    t = table.iloc[::-1]
    fig = _figure("Records by category and mapping", barmode="stack", xaxis_title="records")
    for category in shown:
        if t[category].sum() == 0:
            continue
        fig.add_bar(
            y=t.index,
            x=t[category],
            name=category,
            orientation="h",
            marker_color=CATEGORY_COLORS[category],
        )
    return fig


def fig_field_drift(drift: pd.DataFrame, top: int = 20) -> go.Figure:
    """The most-drifted fields (``field_drift`` output), stacked by category."""
    d = drift.head(top).iloc[::-1]
    labels = d["mapping"] + " · " + d["bc_field"] + " → " + d["dataverse_field"]
    fig = _figure("Fields that differ", barmode="stack", xaxis_title="records")
    for category in COMPARED:
        if d[category].sum() == 0:
            continue
        fig.add_bar(
            y=labels, x=d[category], name=category, orientation="h", marker_color=CATEGORY_COLORS[category]
        )
    return fig


def fig_mismatches(results: Results) -> go.Figure:
    """Coupling mismatches per kind, stacked per mapping."""
    table = summary(results)
    fig = _figure("Coupling mismatches by kind", barmode="stack", yaxis_title="records")
    kinds = list(MISMATCHES)
    for name in table.index:
        counts = [int(table.loc[name, list(MISMATCHES[k])].sum()) for k in kinds]
        if sum(counts):
            fig.add_bar(x=kinds, y=counts, name=str(name))
    return fig


def fig_match_scores(cands: pd.DataFrame) -> go.Figure:
    """Match candidate scores (``candidates`` output): how sure each suggestion is."""
    fig = _figure("Match candidates by score", xaxis_title="score", yaxis_title="candidates", bargap=0.1)
    fig.add_histogram(
        x=cands["score"], xbins={"start": 0, "end": 100.001, "size": 5}, marker_color=charts.COLORS["neutral"]
    )
    return fig


# -- key figures --------------------------------------------------------------------------------------


def compare_figures(results: Results) -> dict[str, Any]:
    """Key figures of notebook 01, plain JSON: mappings, records, problems per category, differing fields/values."""
    table = summary(results)
    out: dict[str, Any] = {
        "mappings": len(table),
        "records": int(table["records"].sum()),
        "in_sync": int(table["in_sync"].sum()),
        "problems": int(table["problems"].sum()),
    }
    out.update({c: int(table[c].sum()) for c in CATEGORIES if c != "in_sync"})
    drift = field_drift(results)
    out["differing_fields"] = len(drift)
    out["differing_values"] = int(sum(len(r.values) for r in results.values()))
    return out


def mismatch_figures(results: Results) -> dict[str, Any]:
    """Key figures of notebook 02, plain JSON: one count per mismatch kind, candidates and coverage."""
    table = summary(results)
    out: dict[str, Any] = {"mappings": len(table)}
    out.update({kind: int(table[list(cats)].sum().sum()) for kind, cats in MISMATCHES.items()})
    uncoupled = records(results, MISMATCHES["uncoupled"])
    out["uncoupled_with_candidate"] = int(uncoupled["match_id"].notna().sum()) if len(uncoupled) else 0
    cov = mapping_coverage(results)
    total, coupled = int(cov["total"].sum()), int((cov["total"] - cov["uncoupled"]).sum())
    out["coverage_pct"] = round(100 * coupled / total, 1) if total else None
    worst = cov.dropna(subset=["coverage"])
    out["lowest_coverage_mapping"] = str(worst["mapping"].iloc[0]) if len(worst) else None
    return out


# -- selective sync (notebook 03) ---------------------------------------------------------------------


def fig_plan(operations: pd.DataFrame) -> go.Figure:
    """A sync plan's operations (``SyncPlan.to_frame()``) per kind, stacked by reconcile category."""
    fig = _figure("Planned operations by kind", barmode="stack", yaxis_title="records")
    for category, rows in operations.groupby("category", sort=True):
        counts = rows["kind"].value_counts()
        fig.add_bar(
            x=list(counts.index),
            y=counts.to_numpy(),
            name=str(category),
            marker_color=CATEGORY_COLORS.get(str(category), charts.COLORS["neutral"]),
        )
    return fig


def sync_figures(mapping: str, operations: pd.DataFrame, run: Any = None) -> dict[str, Any]:
    """Key figures of notebook 03, plain JSON: the plan's operations per kind and whether it was applied."""
    out: dict[str, Any] = {"mapping": mapping, "operations": len(operations)}
    out.update({f"plan_{k}": int(n) for k, n in operations["kind"].value_counts().sort_index().items()})
    out["applied"] = run is not None
    return out
