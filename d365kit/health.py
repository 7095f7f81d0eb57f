"""Sync health: the sync job log -> metrics (the charts of them are ``d365kit.charts``).

Inputs
------
- BC's log, read through the companion API (docs/architecture.md#couplings-and-the-sync-log): ``bc.sync_jobs()`` (table
  5338: ``id, startDateTime, finishDateTime, integrationTableMappingName, inserted, modified, deleted,
  unchanged, skipped, failed, coupled, uncoupled, synchDirection, type, message``) and
  ``bc.sync_job_errors()`` (table 5339: ``integrationSynchJobId, message, errorMessage, dateTime,
  sourceRecordId, destinationRecordId``).
- d365kit's own runs (the sync journal's ``runs`` table): a frame in the **same shape** as the job
  log, by the companion field names. Required: ``startDateTime`` and ``integrationTableMappingName``;
  missing optional columns default to ``id`` <NA>, ``finishDateTime`` NaT, ``synchDirection``/``message``
  "", ``type`` "Synchronization" and every count 0. Their errors use the job-error field names, with
  ``integrationSynchJobId`` pointing at the run's ``id``; concatenate them to BC's errors.
- Coverage counts (``mapping, coupled, total``) and stored reconcile summaries (``at, mapping, category,
  count``): frames, see ``coverage`` and ``drift_trend``.

``history()`` normalizes jobs (+ runs) into one frame with ``HISTORY_COLUMNS``; the metric functions are
pure functions of such frames. ``load_history`` and ``coverage_counts`` are the only functions that read a
service (BC, through its client).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from d365kit.bc import BCClient
from d365kit.document import Document
from d365kit.errors import UsageError
from d365kit.mapping import Catalog, load_catalog
from d365kit.odata.query import Q, Query

COUNTS = ("inserted", "modified", "deleted", "unchanged", "skipped", "failed", "coupled", "uncoupled")
HISTORY_COLUMNS = (
    "job_id",
    "source",
    "mapping",
    "direction",
    "type",
    "start",
    "finish",
    "duration_s",
    *COUNTS,
    "message",
)
ERROR_COLUMNS = (
    "job_id",
    "mapping",
    "direction",
    "at",
    "source_record",
    "destination_record",
    "message",
    "category",
)

# Error categories, first match wins (case-insensitive regex on the full error message). The patterns
# follow the messages BC's integration raises (docs/reconcile.md#conflicts-deleted-rows-and-skipped-records) and the service errors
# (docs/sandbox.md); "validation/length" also covers missing setup that BC's field validation reports.
ERROR_PATTERNS: tuple[tuple[str, str], ...] = (
    (
        "conflict (bi-directional)",
        r"bi-?directional.*changed since the last synchroni[sz]ation|update conflict",
    ),
    ("coupled to deleted record", r"coupled to a deleted record"),
    ("not coupled", r"\bis not coupled\b|\bnot coupled to\b"),
    ("permission", r"permission|privilege|not authori[sz]ed|access (?:is )?denied|forbidden|\((?:401|403)\)"),
    (
        "throttling/transient",
        r"\((?:429|500|502|503|504)\)|too many requests|timed? ?out|temporarily unavailable|service unavailable",
    ),
    (
        "validation/length",
        r"length of the string|must be less than or equal|is not valid|must contain|must have a value"
        r"|cannot be found|does not exist|is not within|validation",
    ),
)
OTHER = "other"
ERROR_CATEGORIES = (*(name for name, _ in ERROR_PATTERNS), OTHER)
_COMPILED = tuple((name, re.compile(rx, re.IGNORECASE)) for name, rx in ERROR_PATTERNS)

# Reconcile categories that are not drift (docs/reconcile.md#categories): everything else is out of sync.
NOT_DRIFT = frozenset({"in_sync", "out_of_scope"})

# -- history ---------------------------------------------------------------------------------------


def _column(frame: pd.DataFrame, name: str, default: Any) -> pd.Series:
    return frame[name] if name in frame.columns else pd.Series(default, index=frame.index)


def _normalize_jobs(jobs: pd.DataFrame, source: str) -> pd.DataFrame:
    missing = {"startDateTime", "integrationTableMappingName"} - set(jobs.columns)
    if missing:
        raise UsageError(f"{source} job frame lacks {sorted(missing)} (see d365kit.health for the shape)")
    start = pd.to_datetime(jobs["startDateTime"], utc=True, format="ISO8601")
    finish = pd.to_datetime(_column(jobs, "finishDateTime", pd.NaT), utc=True, format="ISO8601")
    out = pd.DataFrame(
        {
            "job_id": _column(jobs, "id", pd.NA).astype("string").str.lower(),
            "source": source,
            "mapping": jobs["integrationTableMappingName"].astype("string"),
            "direction": _column(jobs, "synchDirection", "").astype("string").fillna(""),
            "type": _column(jobs, "type", "Synchronization").astype("string").fillna("Synchronization"),
            "start": start,
            "finish": finish,
            "duration_s": (finish - start).dt.total_seconds(),
        },
        index=jobs.index,
    )
    for c in COUNTS:
        out[c] = pd.to_numeric(_column(jobs, c, 0), errors="coerce").fillna(0).astype("int64")
    out["message"] = _column(jobs, "message", "").astype("string").fillna("")
    return out


def history(jobs: pd.DataFrame, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """BC's job log plus d365kit's own runs, normalized to ``HISTORY_COLUMNS`` and sorted by start."""
    parts = [_normalize_jobs(jobs, "bc")]
    if runs is not None and len(runs):
        parts.append(_normalize_jobs(runs, "d365kit"))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(["start", "mapping"], kind="stable").reset_index(drop=True)


def recent(hist: pd.DataFrame, days: float = 30, mappings: list[str] | None = None) -> pd.DataFrame:
    """The last ``days`` of the history, counted back from its newest job, not from the wall clock.

    A log that stopped (or a seeded one) still shows its last ``days``; ``headline`` reports the period.
    """
    if mappings:
        hist = hist[hist["mapping"].isin(mappings)]
    if hist.empty:
        return hist
    return hist[hist["start"] >= hist["start"].max() - timedelta(days=days)].reset_index(drop=True)


def error_log(errors: pd.DataFrame, hist: pd.DataFrame) -> pd.DataFrame:
    """Job errors with their job's mapping and direction and a category (``ERROR_COLUMNS``).

    Errors of jobs outside ``hist`` (another period or mapping) are left out.
    """
    message = _column(errors, "errorMessage", pd.NA).astype("string")
    message = message.where(message.fillna("").str.len() > 0, _column(errors, "message", "").astype("string"))
    out = pd.DataFrame(
        {
            "job_id": _column(errors, "integrationSynchJobId", pd.NA).astype("string").str.lower(),
            "at": pd.to_datetime(_column(errors, "dateTime", pd.NaT), utc=True, format="ISO8601"),
            "source_record": _column(errors, "sourceRecordId", "").astype("string"),
            "destination_record": _column(errors, "destinationRecordId", "").astype("string"),
            "message": message.fillna(""),
        }
    )
    jobs = hist[["job_id", "mapping", "direction"]].dropna(subset=["job_id"])
    out = out.merge(jobs, on="job_id", how="inner")
    out["category"] = classify_errors(out["message"])
    return out[list(ERROR_COLUMNS)].sort_values("at", kind="stable").reset_index(drop=True)


def classify_errors(messages: pd.Series) -> pd.Series:
    """The category of each error message (``ERROR_PATTERNS``, first match wins; else "other")."""
    text = messages.astype("string").fillna("")
    conditions = [text.str.contains(rx, regex=True).fillna(False).to_numpy(bool) for _, rx in _COMPILED]
    labels = np.select(conditions, [name for name, _ in _COMPILED], default=OTHER)
    return pd.Series(
        pd.Categorical(labels, categories=ERROR_CATEGORIES), index=messages.index, name="category"
    )


# -- metrics ---------------------------------------------------------------------------------------


def runs_per_day(hist: pd.DataFrame) -> pd.DataFrame:
    """Per UTC day (no gaps): jobs, jobs with failures, records synced (inserted+modified+deleted), failed, skipped."""
    columns = ["jobs", "failed_jobs", "synced", "failed", "skipped"]
    if hist.empty:
        return pd.DataFrame(columns=columns, index=pd.DatetimeIndex([], tz="UTC", name="day"), dtype="int64")
    frame = hist.assign(
        day=hist["start"].dt.floor("D"),
        failed_job=hist["failed"].gt(0).astype("int64"),
        synced=hist["inserted"] + hist["modified"] + hist["deleted"],
    )
    out = frame.groupby("day").agg(
        jobs=("mapping", "size"),
        failed_jobs=("failed_job", "sum"),
        synced=("synced", "sum"),
        failed=("failed", "sum"),
        skipped=("skipped", "sum"),
    )
    return out.asfreq("D", fill_value=0).astype("int64")


def failures_by_mapping(hist: pd.DataFrame) -> pd.DataFrame:
    """Per mapping: jobs, jobs with failures, failed and skipped records, failure rate; worst first."""
    frame = hist.assign(failed_job=hist["failed"].gt(0).astype("int64"))
    out = frame.groupby("mapping", as_index=False).agg(
        jobs=("start", "size"),
        failed_jobs=("failed_job", "sum"),
        failed=("failed", "sum"),
        skipped=("skipped", "sum"),
    )
    out["failure_rate"] = out["failed_jobs"] / out["jobs"]
    return out.sort_values(["failed", "failed_jobs", "mapping"], ascending=[False, False, True]).reset_index(
        drop=True
    )


def error_categories(errors: pd.DataFrame) -> pd.DataFrame:
    """Error counts per (category, mapping) of an ``error_log`` frame, with one example message; biggest first."""
    if errors.empty:
        return pd.DataFrame(columns=["category", "mapping", "errors", "example"])
    out = errors.groupby(["category", "mapping"], observed=True, as_index=False).agg(
        errors=("message", "size"), example=("message", "first")
    )
    totals = out.groupby("category", observed=True)["errors"].transform("sum")
    out = out.assign(_total=totals).sort_values(
        ["_total", "category", "errors"], ascending=[False, True, False]
    )
    return out.drop(columns="_total").reset_index(drop=True)


def slowest_mappings(hist: pd.DataFrame) -> pd.DataFrame:
    """Job duration statistics (seconds) per mapping, slowest 95th percentile first."""
    timed = hist.dropna(subset=["duration_s"])
    g = timed.groupby("mapping")["duration_s"]
    out = pd.DataFrame(
        {
            "jobs": g.size(),
            "mean_s": g.mean(),
            "median_s": g.median(),
            "p95_s": g.quantile(0.95),
            "max_s": g.max(),
            "total_s": g.sum(),
        }
    ).reset_index()
    return out.sort_values(["p95_s", "mapping"], ascending=[False, True]).reset_index(drop=True)


def coupled_per_mapping(couplings: pd.DataFrame, table_mappings: pd.DataFrame) -> pd.DataFrame:
    """Couplings (table 5331) counted per mapping through the mapping's BC table id.

    ``mapping, table_id, coupled, skipped, failed`` (failed: either direction's last result is Failure).
    Mappings sharing a BC table each get that table's couplings.
    """
    c = couplings.assign(
        failed_=(
            couplings["lastSynchResult"].eq("Failure").fillna(False)
            | couplings["lastSynchCrmResult"].eq("Failure").fillna(False)
        ).astype("int64"),
        skipped_=couplings["skipped"].fillna(False).astype("int64"),
    )
    per_table = c.groupby("tableId").agg(
        coupled=("id", "size"), skipped=("skipped_", "sum"), failed=("failed_", "sum")
    )
    out = table_mappings[["name", "tableId"]].rename(columns={"name": "mapping", "tableId": "table_id"})
    out = out.merge(per_table, left_on="table_id", right_index=True, how="left")
    out[["coupled", "skipped", "failed"]] = out[["coupled", "skipped", "failed"]].fillna(0).astype("int64")
    return out.sort_values("mapping").reset_index(drop=True)


def coverage(counts: pd.DataFrame) -> pd.DataFrame:
    """Coupled vs total records per mapping: ``counts`` has ``mapping, coupled, total``.

    Adds ``uncoupled`` and ``coverage`` (0..1; couplings beyond the total, e.g. to deleted records, are
    capped — reconcile tells them apart). Lowest coverage first.
    """
    out = counts.copy()
    total = out["total"].astype("Float64")
    coupled = out["coupled"].astype("Float64").clip(upper=total)
    out["total"] = total.round().astype("Int64")
    out["uncoupled"] = (total - coupled).clip(lower=0).round().astype("Int64")
    out["coverage"] = (coupled / total.where(total > 0)).astype("float64")
    return out.sort_values(["coverage", "mapping"], na_position="last").reset_index(drop=True)


def drift_trend(summaries: pd.DataFrame) -> pd.DataFrame:
    """Drift over time from stored reconcile summaries (long: ``at, mapping, category, count``).

    Per (at, mapping): records, out_of_sync (every category but ``NOT_DRIFT``), drift_rate.
    """
    frame = summaries.assign(out_=summaries["count"].where(~summaries["category"].isin(NOT_DRIFT), 0))
    out = frame.groupby(["at", "mapping"], as_index=False).agg(
        records=("count", "sum"), out_of_sync=("out_", "sum")
    )
    out["drift_rate"] = out["out_of_sync"] / out["records"].where(out["records"] > 0)
    return out.sort_values(["at", "mapping"]).reset_index(drop=True)


def headline(hist: pd.DataFrame, errors: pd.DataFrame, cov: pd.DataFrame | None = None) -> dict[str, Any]:
    """The key figures of a period, as plain JSON values (recorded by the notebook, shown in the report index)."""
    fails = failures_by_mapping(hist) if len(hist) else None
    slow = slowest_mappings(hist) if len(hist) else None
    out: dict[str, Any] = {
        "period_start": hist["start"].min().strftime("%Y-%m-%d") if len(hist) else None,
        "period_end": hist["start"].max().strftime("%Y-%m-%d") if len(hist) else None,
        "jobs": int(len(hist)),
        "failed_jobs": int(hist["failed"].gt(0).sum()),
        "failed_records": int(hist["failed"].sum()),
        "errors": int(len(errors)),
        "top_error_category": str(errors["category"].value_counts().idxmax()) if len(errors) else None,
        "worst_mapping": str(fails["mapping"].iloc[0])
        if fails is not None and fails["failed"].iloc[0] > 0
        else None,
        "slowest_mapping": str(slow["mapping"].iloc[0]) if slow is not None and len(slow) else None,
    }
    if cov is not None and len(cov):
        total = int(cov["total"].sum())
        covered = total - int(cov["uncoupled"].sum())
        out["coverage_pct"] = round(100 * covered / total, 1) if total else None
    return out


@dataclass
class HealthResult:
    """A period of sync health: the job history, its error log and (optionally) coverage per mapping."""

    history: pd.DataFrame
    errors: pd.DataFrame
    coverage: pd.DataFrame | None = None

    def summary(self) -> pd.DataFrame:
        """The key figures (``headline``) as a two-column frame."""
        figures = headline(self.history, self.errors, self.coverage)
        return pd.DataFrame({"figure": list(figures), "value": [str(v) for v in figures.values()]})

    def to_frame(self) -> pd.DataFrame:
        return self.history

    def document(self) -> Document:
        doc = Document("Sync health").add("Key figures", self.summary())
        doc.add("Failures by mapping", failures_by_mapping(self.history))
        doc.add("Error categories", error_categories(self.errors))
        if self.coverage is not None:
            doc.add("Coverage", self.coverage)
        return doc

    def to_html(self, limit: int | None = 200) -> str:
        return self.document().to_html(limit)

    def to_text(self, limit: int | None = 20) -> str:
        return self.document().to_text(limit)


# -- reading from a workspace ----------------------------------------------------------------------


def load_history(
    bc: BCClient,
    days: float = 30,
    mappings: list[str] | None = None,
    runs: pd.DataFrame | None = None,
    run_errors: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(history, error_log)`` of the last ``days`` (back from the newest job) through the companion API.

    Only that window is read: the newest job's start first, then jobs and errors filtered on the server.
    """
    newest = bc.sync_jobs(Query(select=("startDateTime",), orderby=("startDateTime desc",), top=1))
    starts = [newest["startDateTime"]] + (
        [pd.to_datetime(runs["startDateTime"], utc=True)] if runs is not None else []
    )
    latest = pd.concat(starts).max()
    if pd.isna(latest):
        empty = history(pd.DataFrame(columns=["startDateTime", "integrationTableMappingName"]))
        return empty, error_log(pd.DataFrame(columns=["integrationSynchJobId"]), empty)
    since = (latest - timedelta(days=days)).to_pydatetime()
    jq = Query().where(Q.ge("startDateTime", since))
    if mappings:
        jq = jq.where(Q.any_of("integrationTableMappingName", mappings))
    hist = recent(history(bc.sync_jobs(jq), runs), days, mappings)
    errors = bc.sync_job_errors(Query().where(Q.ge("dateTime", since)))
    if run_errors is not None and len(run_errors):
        errors = pd.concat([errors, run_errors], ignore_index=True)
    return hist, error_log(errors, hist)


def coverage_counts(
    bc: BCClient, mappings: list[str] | None = None, catalog: Catalog | None = None
) -> pd.DataFrame:
    """``mapping, coupled, total`` for ``coverage``: couplings per mapping vs the BC table's row count.

    The BC table of each mapping comes from the catalog (all rows of the table, not the mapping's table
    filter); tables no catalog mapping reads get no total (NaN coverage).
    """
    tables = {m.bc_table_id: (m.api_path, m.bc_entity) for m in (catalog or load_catalog()).mappings.values()}
    counts = coupled_per_mapping(bc.couplings(), bc.table_mappings())
    if mappings:
        counts = counts[counts["mapping"].isin(mappings)]
    totals = {}
    for table_id in counts["table_id"].dropna().unique():
        if int(table_id) in tables:
            api, entity_set = tables[int(table_id)]
            totals[table_id] = len(bc.to_frame(entity_set, Query(select=("id",)), api=api))
    counts = counts.assign(total=counts["table_id"].map(totals).astype("float64"))
    return counts.reset_index(drop=True)
