"""The coupling ledger (BC table 5331 "CRM Integration Record") as one DataFrame shape, from any source.

Columns (``LEDGER_COLUMNS``), one row per coupling, named after BC's fields:

==============================  ====================  =================================================
column                          dtype                 BC field (5331)
==============================  ====================  =================================================
coupling_id                     string                SystemId (files without it: ``<bc_id>:<dataverse_id>``)
bc_id                           string (lower GUID)   Integration ID (the BC record's SystemId)
dataverse_id                    string (lower GUID)   CRM ID (the Dataverse row id)
table_id                        Int64                 Table ID (BC table number)
last_synch_modified_on          datetime64 UTC        Last Synch. Modified On (BC side)
last_synch_crm_modified_on      datetime64 UTC        Last Synch. CRM Modified On (Dataverse side)
last_synch_result               string                Last Synch. Result ("", Success, Failure): Dataverse -> BC
last_synch_crm_result           string                Last Synch. CRM Result: BC -> Dataverse
last_synch_job_id               string                Last Synch. Job ID
last_synch_crm_job_id           string                Last Synch. CRM Job ID
skipped                         boolean               Skipped
==============================  ====================  =================================================

Sources: ``from_companion(bc)`` (the companion API's ``crmIntegrationRecords``), ``from_file(path)`` (a CSV
export of the coupling records with BC's captions as headers: "CRM ID", "Integration ID", "Table ID",
"Last Synch. Modified On", "Last Synch. CRM Modified On", "Last Synch. Result", "Last Synch. CRM Result",
"Last Synch. Job ID", "Last Synch. CRM Job ID", "Skipped"; the first three are required; GUIDs may
carry braces; "Yes"/"No" booleans; times without an offset are read in ``tz``, default UTC — what
timezone BC's export writes is UNVERIFIED), and ``from_journal(path)`` (d365kit's SQLite journal,
table ``couplings`` as ``JOURNAL_DDL`` defines it). Excel files need ``openpyxl``, which d365kit does not
install: save the page as CSV, or install it.

A last-sync time that pandas cannot hold (outside 1677-09-21 .. 2262-04-11, e.g. ``9999-12-31T23:59:59Z``)
or that does not parse reads as NaT with a ``d365kit.frames.DataWarning`` naming the source, the column
and the coupling; it never sinks the ledger (or a reconcile that reads it).
"""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd

from d365kit.bc import COMPANION, COUPLINGS
from d365kit.errors import ConfigError, LedgerError
from d365kit.frames import in_range, rows_to_frame, warn_lost
from d365kit.odata.query import Q, Query

COUPLING_SET = COUPLINGS
PAGE = 5_000

LEDGER_COLUMNS = {
    "coupling_id": "string",
    "bc_id": "string",
    "dataverse_id": "string",
    "table_id": "Int64",
    "last_synch_modified_on": "datetime64[ns, UTC]",
    "last_synch_crm_modified_on": "datetime64[ns, UTC]",
    "last_synch_result": "string",
    "last_synch_crm_result": "string",
    "last_synch_job_id": "string",
    "last_synch_crm_job_id": "string",
    "skipped": "boolean",
}
_GUIDS = ("coupling_id", "bc_id", "dataverse_id", "last_synch_job_id", "last_synch_crm_job_id")
_TIMES = ("last_synch_modified_on", "last_synch_crm_modified_on")
COMPANION_COLUMNS = {
    "id": "coupling_id",
    "integrationId": "bc_id",
    "crmId": "dataverse_id",
    "tableId": "table_id",
    "lastSynchModifiedOn": "last_synch_modified_on",
    "lastSynchCrmModifiedOn": "last_synch_crm_modified_on",
    "lastSynchResult": "last_synch_result",
    "lastSynchCrmResult": "last_synch_crm_result",
    "lastSynchJobId": "last_synch_job_id",
    "lastSynchCrmJobId": "last_synch_crm_job_id",
    "skipped": "skipped",
}
PAGE_COLUMNS = {  # captions of BC's coupling record fields, as an export of the page shows them
    "SystemId": "coupling_id",
    "Integration ID": "bc_id",
    "CRM ID": "dataverse_id",
    "Table ID": "table_id",
    "Last Synch. Modified On": "last_synch_modified_on",
    "Last Synch. CRM Modified On": "last_synch_crm_modified_on",
    "Last Synch. Result": "last_synch_result",
    "Last Synch. CRM Result": "last_synch_crm_result",
    "Last Synch. Job ID": "last_synch_job_id",
    "Last Synch. CRM Job ID": "last_synch_crm_job_id",
    "Skipped": "skipped",
}
REQUIRED_PAGE_COLUMNS = ("CRM ID", "Integration ID", "Table ID")
JOURNAL_DDL = """
CREATE TABLE IF NOT EXISTS couplings (
    coupling_id TEXT PRIMARY KEY,
    bc_id TEXT NOT NULL,                -- BC SystemId, lower-case GUID
    dataverse_id TEXT NOT NULL,         -- Dataverse row id, lower-case GUID
    table_id INTEGER NOT NULL,          -- BC table number (18 Customer, ...)
    last_synch_modified_on TEXT,        -- ISO 8601 UTC, e.g. 2026-11-20T11:30:00.000Z
    last_synch_crm_modified_on TEXT,
    last_synch_result TEXT NOT NULL DEFAULT '',      -- '', 'Success', 'Failure' (Dataverse -> BC)
    last_synch_crm_result TEXT NOT NULL DEFAULT '',  -- same, BC -> Dataverse
    last_synch_job_id TEXT,
    last_synch_crm_job_id TEXT,
    skipped INTEGER NOT NULL DEFAULT 0,
    removed_at TEXT                     -- set when d365kit uncoupled it; such rows are history, not couplings
)
"""
_TRUE = {"true", "yes", "1", "y"}
_OFFSET = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|UTC|[+-]\d{2}(?::?\d{2})?)$"  # a time with its offset


def empty_ledger() -> pd.DataFrame:
    return normalize(pd.DataFrame({c: pd.Series(dtype="object") for c in LEDGER_COLUMNS}))


def normalize(frame: pd.DataFrame, *, tz: str = "UTC", source: str | None = None) -> pd.DataFrame:
    """Coerce ``frame`` (ledger column names) to the ledger dtypes; missing optional columns become NA.

    ``source`` names where the rows came from in a ``DataWarning`` about a time read as NaT."""
    out: dict[str, pd.Series] = {}
    n = len(frame)
    for col, dtype in LEDGER_COLUMNS.items():
        s = frame[col] if col in frame else pd.Series([None] * n, index=frame.index, dtype="object")
        if col in _GUIDS:
            s = s.astype("string").str.strip().str.strip("{}").str.lower()
            s = s.mask(s == "")
        elif col in _TIMES:
            s = _times(s, tz, column=col, source=source, keys=_keys(out))
        elif col == "table_id":
            s = pd.to_numeric(s, errors="coerce").astype("Int64")
        elif col == "skipped":
            s = (
                s.astype("string").str.strip().str.lower().isin(_TRUE).astype("boolean")
                if s.dtype != "boolean"
                else s
            )
            s = s.fillna(False)
        else:
            s = s.astype("string").str.strip().fillna("")
        out[col] = s.astype(dtype) if col not in _TIMES else s
    ledger = pd.DataFrame(out, index=frame.index).reset_index(drop=True)
    missing_id = ledger["coupling_id"].isna()
    ledger.loc[missing_id, "coupling_id"] = (
        ledger["bc_id"][missing_id] + ":" + ledger["dataverse_id"][missing_id]
    )
    return ledger


def _keys(out: dict[str, pd.Series]) -> pd.Series:
    """The coupling each row is, for a warning: its id, else ``<bc_id>:<dataverse_id>``."""
    pair = out["bc_id"].fillna("?") + ":" + out["dataverse_id"].fillna("?")
    return out["coupling_id"].fillna(pair).rename("coupling")


def _times(
    s: pd.Series,
    tz: str,
    *,
    column: str = "time",
    source: str | None = None,
    keys: pd.Series | None = None,
) -> pd.Series:
    """UTC timestamps; BC's blank date (``0001-01-01``, "never synchronized") and anything before 1900 -> NaT.

    A value pandas cannot hold (after 2262-04-11) or that does not parse -> NaT with a ``DataWarning``."""
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        parsed = s.dt.tz_convert("UTC")
        unread = pd.Series(False, index=s.index)
    else:
        text = s.astype("string").str.strip().replace("", pd.NA)
        aware = text.str.contains(_OFFSET, regex=True).fillna(False).astype(bool)
        naive = text.notna() & ~aware
        parts = []  # values with an offset and values without one may share a file: parse each kind apart
        if aware.any():
            parts.append(pd.to_datetime(text[aware], errors="coerce", format="mixed", utc=True))
        if naive.any():
            local = pd.to_datetime(text[naive], errors="coerce", format="mixed")
            parts.append(local.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC"))
        parsed = (pd.concat(parts) if parts else pd.Series(dtype="datetime64[ns, UTC]")).reindex(s.index)
        unread = text.notna() & parsed.isna()
    ok = in_range(parsed)
    early = (parsed.dt.year < 1900).fillna(False).astype(bool)  # BC's blank: NaT without a word
    warn_lost((~ok & ~early) | unread, s, column, source=source, keys=keys)
    parsed = parsed.where(ok & ~early)
    return parsed.astype("datetime64[ns, UTC]")


def from_companion(bc: Any, table_ids: list[int] | tuple[int, ...] | None = None) -> pd.DataFrame:
    """Couplings from the companion API (``bc`` is a ``BCClient``), optionally only of some BC tables."""
    query = Query(select=tuple(COMPANION_COLUMNS))
    if table_ids:
        query = query.where(Q.any_of("tableId", sorted(set(table_ids))))
    types = bc.metadata(COMPANION).entity(COUPLING_SET).properties
    pages = [  # typed page by page, so only one page of JSON is held at a time
        normalize(
            rows_to_frame(rows, types, list(COMPANION_COLUMNS), source=COUPLING_SET).rename(
                columns=COMPANION_COLUMNS
            ),
            source=COUPLING_SET,
        )
        for rows in bc.pages(COUPLING_SET, query, page_size=PAGE, api=COMPANION)
    ]
    ledger = pd.concat(pages, ignore_index=True) if pages else empty_ledger()
    ledger.attrs["source"] = "companion API"
    return ledger


def from_file(path: str | Path, *, tz: str = "UTC") -> pd.DataFrame:
    """Couplings from a CSV (or, with openpyxl installed, Excel) export of BC's coupling records."""
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
        if importlib.util.find_spec("openpyxl") is None:
            raise ConfigError(
                f"reading {path.name} needs the 'openpyxl' package, which d365kit does not install: "
                "`pip install openpyxl`, or save the page as CSV and pass that file"
            )
        raw = pd.read_excel(path, dtype=str)
    else:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    raw = raw.rename(columns=lambda c: str(c).strip())
    missing = [c for c in REQUIRED_PAGE_COLUMNS if c not in raw.columns]
    if missing:
        raise LedgerError(
            f"{path.name}: no column(s) {', '.join(map(repr, missing))}; expected BC's captions "
            f"({', '.join(map(repr, PAGE_COLUMNS))}); found {', '.join(map(repr, raw.columns))}"
        )
    ledger = normalize(raw.rename(columns=PAGE_COLUMNS), tz=tz, source=path.name)
    ledger.attrs["source"] = str(path)
    return ledger


def from_journal(path: str | Path) -> pd.DataFrame:
    """Couplings recorded in d365kit's SQLite journal (table ``couplings``, see ``JOURNAL_DDL``)."""
    uri = f"file:{Path(path)}?mode=ro"
    try:
        with sqlite3.connect(uri, uri=True) as conn:
            raw = pd.read_sql_query(
                f"SELECT {', '.join(LEDGER_COLUMNS)} FROM couplings WHERE removed_at IS NULL", conn
            )
    except sqlite3.OperationalError as exc:
        raise LedgerError(f"{path}: not a d365kit journal with a 'couplings' table ({exc})") from None
    ledger = normalize(raw, source=str(path))
    ledger.attrs["source"] = str(path)
    return ledger


def for_table(ledger: pd.DataFrame, table_id: int | None) -> pd.DataFrame:
    """The couplings of one BC table (all of them when ``table_id`` is None)."""
    if table_id is None:
        return ledger
    return ledger[ledger["table_id"] == table_id].reset_index(drop=True)


def duplicates(ledger: pd.DataFrame) -> pd.DataFrame:
    """Ids coupled more than once: one row per (side, id) with the coupling ids, BC id groups first.

    A coupling that belongs to a BC-id group is not counted again in a Dataverse-id group."""
    by_bc = ledger[ledger["bc_id"].duplicated(keep=False)]
    rest = ledger[~ledger["coupling_id"].isin(by_bc["coupling_id"])]
    by_dv = rest[rest["dataverse_id"].duplicated(keep=False)]
    parts = []
    for side, col, rows in (("bc", "bc_id", by_bc), ("dataverse", "dataverse_id", by_dv)):
        if len(rows):
            g = rows.sort_values("coupling_id").groupby(col, sort=True)["coupling_id"].agg(list)
            ids = pd.Series([tuple(v) for v in g], dtype=object)  # a few groups: plain tuples read best
            parts.append(pd.DataFrame({"side": side, "id": g.index.to_numpy(), "coupling_ids": ids}))
    if not parts:
        return pd.DataFrame(
            {
                "side": pd.Series(dtype="string"),
                "id": pd.Series(dtype="string"),
                "coupling_ids": pd.Series(dtype="object"),
            }
        )
    out = pd.concat(parts, ignore_index=True)
    out["count"] = out["coupling_ids"].map(len)
    return out
