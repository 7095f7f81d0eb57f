"""Reconcile one mapping: where BC and Dataverse disagree, record by record, field by field, and why.

``reconcile(systems, mapping)`` reads both sides in scope (the mapping's filters, ``$select`` of the mapped
fields, keys and modification times only), aligns the rows through the coupling ledger, transforms BC
values into Dataverse terms (``d365kit.mapping.transforms``), compares column-wise and puts every
coupling and every uncoupled in-scope row in exactly one category, taken in this order:

1. ``coupled_missing_bc`` / ``coupled_missing_dataverse``: the coupled BC (else Dataverse) row does not exist;
2. ``duplicate_coupling``: couplings sharing a BC id (one row, ``dataverse_id`` empty), then couplings
   sharing a Dataverse id (``bc_id`` empty), ``coupling_ids`` listing them;
3. ``out_of_scope``: a coupled row outside its side's filter (another company's ``bcbi_companyid``,
   inactive, blocked, ...);
4. ``skipped``: the coupling is marked Skipped; 5. ``failed``: its last result (either direction) is Failure;
6. ``conflict``: bidirectional mapping, both sides modified since the coupling's last synchronization,
   and a bidirectional field differs;
7. ``pending``: a side was modified and a mapped field differs (``changed_side``; "both" when both
   sides changed but no bidirectional field differs);
8. ``drift``: neither side modified, yet a mapped field differs; 9. ``in_sync``: everything else coupled.

Uncoupled: ``uncoupled_bc`` / ``uncoupled_dataverse`` are in-scope rows no coupling of the mapping's BC
table refers to; each carries its best match candidate (``d365kit.matching``). A side is *modified* when
its modification time is later than the coupling's timestamp for that side (BC ``lastModifiedDateTime``
vs Last Synch. Modified On, Dataverse ``modifiedon`` vs Last Synch. CRM Modified On); a BC entity
without a modification time (invoice lines) is never modified.

Incremental: ``since`` reads only rows modified after it on either side (plus their coupled partners);
``records`` only the given BC ids, Dataverse ids or coupling ids. Both see a deleted row only through a
change on its partner: BC API v2.0 has no delta links, so a full run is the way to find deletions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from d365kit import couplings as ledgers
from d365kit import matching
from d365kit.compare import field_differs
from d365kit.dataverse import DataverseClient
from d365kit.document import Document, cell
from d365kit.errors import D365Error, UnknownNameError, UsageError
from d365kit.explain import explain
from d365kit.mapping import STATIC, Catalog, FieldMapping, TableMapping, check, dv_column
from d365kit.mapping.transforms import (
    LookupTransform,
    OptionTransform,
    Transform,
    bc_enum_decode,
    kind_of,
    normalize,
)
from d365kit.odata.query import Filter, Guid, Q, Query
from d365kit.reading import ByIds, collect, indexed, is_guid
from d365kit.systems import Systems

CATEGORIES = (
    "in_sync",
    "drift",
    "conflict",
    "pending",
    "coupled_missing_bc",
    "coupled_missing_dataverse",
    "duplicate_coupling",
    "uncoupled_bc",
    "uncoupled_dataverse",
    "out_of_scope",
    "skipped",
    "failed",
)
# categories whose differing fields are listed (and counted per field)
COMPARED = ("conflict", "pending", "drift", "skipped", "failed")
PAGE = 5_000  # rows per page on both sides (Dataverse's maximum): bounds the JSON held at once
TEXT_KINDS = ("text", "email", "phone", "url")
RECORD_COLUMNS = (
    "category",
    "coupling_id",
    "coupling_ids",
    "bc_id",
    "dataverse_id",
    "bc_key",
    "changed_side",
    "fields",
    "bc_fields",
    "reason",
    "next_sync",
    "action",
    "last_synch_result",
    "last_synch_crm_result",
    "bc_modified_on",
    "dataverse_modified_on",
    "last_synch_modified_on",
    "last_synch_crm_modified_on",
    "match_id",
    "match_score",
    "match_rule",
)


# -- reading -----------------------------------------------------------------------------------------


@dataclass
class _Side:
    """One side of a mapping: its key, the columns read and its scope filter; reads typed frames by page."""

    label: str
    key: str
    select: tuple[str, ...]
    scope: Filter | None
    frames: Callable[[Query], Iterator[pd.DataFrame]]
    spec: Callable[[tuple[str, ...], Filter | None], ByIds]  # a by-id read of these ids, in this scope
    read_many: Callable[[list[ByIds]], list[pd.DataFrame]]  # the client's batched by-id reads
    shape: Callable[[pd.DataFrame], pd.DataFrame]  # a by-id frame as the side's columns
    empty: pd.DataFrame
    progress: bool
    systems: Systems
    table: tuple[str, ...]  # the whole-table key of Systems.whole_table
    complete: bool = False  # every row of the table has been read (no filter at all)

    def _flagged(self, frame: pd.DataFrame, scoped: bool) -> pd.DataFrame:
        frame = frame.copy()
        frame["in_scope"] = np.full(len(frame), scoped, dtype=bool)
        return frame

    def blank(self) -> pd.DataFrame:
        return self._flagged(indexed(self.empty, self.key), True)

    def read(self, extra: Filter | None = None) -> pd.DataFrame:
        """The rows in scope (and matching ``extra``)."""
        f = self.scope
        if extra is not None:
            f = extra if f is None else f & extra
        if f is None:  # the whole table: shared with lookups and other mappings of the run
            rows = self.systems.whole_table(self.table, self.select, lambda: self._collect(None))
            self.complete = True
        else:
            rows = self._collect(f)
        return self._flagged(indexed(rows, self.key), True)

    def _collect(self, f: Filter | None) -> pd.DataFrame:
        return collect(
            self.frames(Query(select=self.select, filter=f)), self.empty, self.label, self.progress
        )

    def wants(self, ids: Iterable[str], *, scoped: bool) -> ByIds | None:
        """The by-id read that finds ``ids`` (in scope, or regardless of the filters), None when nothing
        needs asking: after a read of the whole table an id not found does not exist."""
        ids = tuple(sorted({str(i).lower() for i in ids if is_guid(i)}))
        if not ids or self.complete:
            return None
        return self.spec(ids, self.scope if scoped else None)

    def answered(self, frame: pd.DataFrame | None, *, scoped: bool) -> pd.DataFrame:
        return self.blank() if frame is None else self._flagged(self.shape(frame), scoped)

    def read_ids(self, ids: Iterable[str], *, scoped: bool) -> pd.DataFrame:
        """Rows by id, in scope (``scoped``) or regardless of the filters."""
        want = self.wants(ids, scoped=scoped)
        return self.answered(None if want is None else self.read_many([want])[0], scoped=scoped)


class _Aligned:
    """The rows of ``frame`` in the order of ``keys`` (NA where a key is missing), one column at a time,
    so aligning both sides to the couplings never copies whole frames."""

    def __init__(self, frame: pd.DataFrame, keys: pd.Series):
        self.frame = frame
        self.pos = frame.index.get_indexer(pd.Index(keys.to_numpy(dtype=object)))

    def __getitem__(self, column: str) -> pd.Series:
        return pd.Series(self.frame[column].array.take(self.pos, allow_fill=True), name=column)

    def flag(self, column: str) -> np.ndarray:
        values = self.frame[column].to_numpy(dtype=bool)
        return np.where(self.pos >= 0, values[self.pos], False)


def _isin(values: pd.Series | pd.Index, pool: Iterable[Any]) -> np.ndarray:
    """``values.isin(pool)`` through an object hash table (pyarrow strings' own isin is slow for big pools)."""
    pool = pd.Series(list(pool) if isinstance(pool, set) else pool, dtype=object)
    return pd.Series(values, dtype=object).isin(pool).to_numpy(dtype=bool)


def _concat(*frames: pd.DataFrame) -> pd.DataFrame:
    out = pd.concat([f for f in frames if len(f)] or [frames[0]])
    return out[~out.index.duplicated()]


def _bc_select(m: TableMapping) -> tuple[str, ...]:
    return tuple(
        dict.fromkeys(["id", *(p for p in (m.bc_key, m.bc_modified) if p), *(f.bc for f in m.compared)])
    )


def _bc_side(systems: Systems, m: TableMapping, progress: bool) -> _Side:
    bc = systems.bc
    select = _bc_select(m)
    empty = bc.empty_frame(m.bc_entity, list(select), m.api_path)
    return _Side(
        "BC " + m.bc_entity,
        "id",
        select,
        Filter(m.bc_scope) if m.bc_scope else None,
        lambda q: bc.frames(m.bc_entity, q, page_size=PAGE, api=m.api_path),
        lambda ids, scope: ByIds(m.bc_entity, ids, select, scope, api=m.api_path),
        bc.rows_by_id_many,
        lambda frame: frame[list(select[1:])],
        empty,
        progress,
        systems,
        ("bc", m.api_path, m.bc_entity),
    )


def _type_column(attribute: str) -> str:
    return f"{attribute}type"  # Dataverse's own name for a polymorphic lookup's target (parentcustomeridtype)


def _dv_select(dataverse: DataverseClient, m: TableMapping) -> tuple[str, ...]:
    et = dataverse.metadata().entity(m.dv_entity)
    columns_read = [et.key, m.dv_modified, *(dv_column(et, a) for a in m.dv_lookup_types)]
    columns_read += [dv_column(et, f.dv) for f in m.compared]
    return tuple(dict.fromkeys(columns_read))  # type: ignore[arg-type]


def _dv_side(systems: Systems, m: TableMapping, company: str | None, progress: bool) -> _Side:
    dataverse = systems.dataverse
    et = dataverse.metadata().entity(m.dv_entity)
    lookups = tuple(m.dv_lookup_types)
    select = _dv_select(dataverse, m)
    empty = dataverse.empty_frame(m.dv_entity, list(select), lookups)
    columns = list(empty.columns)
    scope = Filter(m.dv_filter) if m.dv_filter else None
    if m.dv_company_field:
        col = f"_{m.dv_company_field}_value"
        own = Q.eq(col, Guid(company)) | Q.eq(col, None)  # type: ignore[arg-type]
        scope = own if scope is None else scope & own

    def frames(query: Query) -> Iterator[pd.DataFrame]:
        for frame in dataverse.frames(m.dv_entity, query, page_size=PAGE, lookup_types=lookups):
            yield frame.reindex(columns=columns)

    def spec(ids: tuple[str, ...], scope: Filter | None) -> ByIds:
        return ByIds(m.dv_entity, ids, select, scope, lookup_types=lookups)

    def shape(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[[c for c in columns if c != et.key]]

    label = "Dataverse " + m.dv_entity
    table = ("dataverse", m.dv_entity) if not lookups else ("dataverse", m.dv_entity, *lookups)
    return _Side(
        label,
        et.key,
        select,
        scope,
        frames,
        spec,
        dataverse.rows_by_id_many,
        shape,
        empty,
        progress,
        systems,  # type: ignore[arg-type]
        table,
    )


# -- transforms --------------------------------------------------------------------------------------


@dataclass
class _Context:
    """Everything a reconcile run shares: the systems, catalog, ledger, and transforms built once."""

    systems: Systems
    catalog: Catalog
    ledger: pd.DataFrame
    cache: dict[str, Transform] = field(default_factory=dict)

    def transform(self, m: TableMapping, f: FieldMapping) -> Transform | None:
        if not f.transform:
            return None
        if f.transform not in self.cache:
            kind, _, name = f.transform.partition(":")
            if kind == "lookup":
                self.cache[f.transform] = self._lookup(name)
            else:
                self.cache[f.transform] = self._option(m, f, name)
        return self.cache[f.transform]

    def _lookup(self, name: str) -> LookupTransform:
        ref = self.catalog[name]
        key = ref.bc_key or "id"
        # a lookup table without filters is read with its own mapping's columns, so that mapping's side
        # (earlier or later in the run) and this lookup share one read
        columns = _bc_select(ref) if not ref.bc_scope else ("id", key)
        bc_rows = self.systems.bc_frame(ref.bc_entity, columns, api=ref.api_path)
        fallback = None
        if ref.lookup_fallback:
            dv_key = self.systems.dataverse.metadata().entity(ref.dv_entity).key
            whole = not (ref.dv_filter or ref.dv_company_field or ref.dv_lookup_types)
            dv_columns = _dv_select(self.systems.dataverse, ref) if whole else (dv_key, ref.lookup_fallback)
            dv_rows = self.systems.dataverse_frame(ref.dv_entity, dv_columns)
            dv_rows = dv_rows.dropna(subset=[ref.lookup_fallback]).drop_duplicates(ref.lookup_fallback)
            fallback = pd.Series(dv_rows[dv_key].to_numpy(), index=dv_rows[ref.lookup_fallback].to_numpy())
        couplings = ledgers.for_table(self.ledger, ref.bc_table_id)
        return LookupTransform.from_frames(name, bc_rows, key, couplings, fallback)

    def _option(self, m: TableMapping, f: FieldMapping, name: str) -> OptionTransform:
        option = self.catalog.options[name]
        props = self.systems.bc.metadata(m.api_path).entity(m.bc_entity).properties
        ids = None
        if option.bc_entity and props.get(f.bc) == "Edm.Guid":  # type: ignore[arg-type]
            rows = self.systems.bc_frame(option.bc_entity, ("id", "code"))
            ids = pd.Series(rows["code"].to_numpy(), index=rows["id"].astype("string").str.lower().to_numpy())
        return OptionTransform(name, option.values, ids)

    def bc_values(self, m: TableMapping, f: FieldMapping, values: pd.Series) -> pd.Series:
        """BC values as text means them: enum values in API spelling (``In_x0020_Progress``) decoded."""
        edm = self.systems.bc.metadata(m.api_path).entity(m.bc_entity).properties.get(f.bc, "Edm.")
        return values if edm.startswith("Edm.") else bc_enum_decode(values)

    def kind(self, m: TableMapping, f: FieldMapping) -> str:
        if f.compare:
            return f.compare
        if f.transform:
            return "guid" if f.transform.startswith("lookup:") else "integer"
        et = self.systems.dataverse.metadata().entity(m.dv_entity)
        return kind_of(et.properties.get(dv_column(et, f.dv)))  # type: ignore[arg-type]


# -- comparing and categorizing ----------------------------------------------------------------------

# The sync planner (d365kit.sync) compares rows it reads itself by the same rules, with the same transforms.
TransformContext = _Context


def field_differences(
    ctx: _Context, m: TableMapping, bc: pd.DataFrame, dv: pd.DataFrame, bc_ids: pd.Series, dv_ids: pd.Series
) -> pd.DataFrame:
    """Boolean frame (one row per ``bc_ids``/``dv_ids`` pair, by position x compared Dataverse attribute):
    the field differs, as reconcile judges it. ``bc``/``dv`` are rows indexed by id (lower-case text) with
    the compared columns (BC properties; Dataverse columns as ``dv_column`` names them)."""
    b, d = _Aligned(bc, bc_ids.reset_index(drop=True)), _Aligned(dv, dv_ids.reset_index(drop=True))
    return _differences(ctx, m, b, d)


def _differences(ctx: _Context, m: TableMapping, b: _Aligned, d: _Aligned) -> pd.DataFrame:
    """Boolean frame (rows of ``b``/``d`` aligned by position x Dataverse attribute): the field differs."""
    et = ctx.systems.dataverse.metadata().entity(m.dv_entity)
    out = {}
    for f in m.compared:
        t, kind = ctx.transform(m, f), ctx.kind(m, f)
        raw = ctx.bc_values(m, f, b[f.bc])
        left, right = t.to_dataverse(raw) if t else raw, d[dv_column(et, f.dv)]  # type: ignore[arg-type]
        differs = field_differs(left, right, kind, f.case_sensitive, f.tolerance)
        if f.not_null:
            differs &= normalize(raw, "text").notna().to_numpy(dtype=bool)
        out[f.dv] = differs
    return pd.DataFrame(out, index=range(len(b.pos)), dtype=bool)


def _after(stamp: pd.Series, synced: pd.Series) -> np.ndarray:
    stamp = pd.to_datetime(stamp, utc=True).reset_index(drop=True)
    synced = pd.to_datetime(synced, utc=True).reset_index(drop=True)
    return ((stamp > synced) | (synced.isna() & stamp.notna())).fillna(False).to_numpy(dtype=bool)


def _field_lists(diff: pd.DataFrame, rows: np.ndarray, names: dict[str, str]) -> tuple[pd.Series, pd.Series]:
    """Per row (position): the tuple of differing Dataverse attributes and of their BC properties."""
    empty = pd.Series([()] * len(diff), dtype=object)
    sub = diff[rows]
    if sub.empty or not sub.to_numpy().any():
        return empty, empty.copy()
    long = sub.stack()
    long = long[long]
    dv = long.reset_index().groupby("level_0")["level_1"].agg(list)  # differing rows only
    dv_fields = empty.copy()
    dv_fields.loc[dv.index] = pd.Series([tuple(v) for v in dv], index=dv.index, dtype=object)
    bc_fields = dv_fields.map(lambda t: tuple(names[a] for a in t))
    return dv_fields, bc_fields


def _side_by_side(
    ctx: _Context,
    m: TableMapping,
    pairs: pd.DataFrame,
    b: _Aligned,
    d: _Aligned,
    diff: pd.DataFrame,
    rows: np.ndarray,
) -> pd.DataFrame:
    """Long frame of the differing values: BC value and Dataverse value (in BC terms when transformed)."""
    et = ctx.systems.dataverse.metadata().entity(m.dv_entity)
    parts = []
    for f in m.compared:
        hit = np.flatnonzero(diff[f.dv].to_numpy() & rows)
        if not len(hit):
            continue
        t = ctx.transform(m, f)
        bc_raw = ctx.bc_values(m, f, b[f.bc].iloc[hit])
        dv_raw = d[dv_column(et, f.dv)].iloc[hit]  # type: ignore[arg-type]
        bc_value = t.bc_label(bc_raw) if t else bc_raw
        dv_value = (
            t.bc_label(t.from_dataverse(dv_raw))
            .astype(object)
            .where(lambda s: s.notna(), dv_raw.astype(object))
            if t
            else dv_raw
        )
        parts.append(
            pd.DataFrame(
                {
                    "category": pairs["category"].iloc[hit].to_numpy(),
                    "coupling_id": pairs["coupling_id"].iloc[hit].to_numpy(),
                    "bc_id": pairs["bc_id"].iloc[hit].to_numpy(),
                    "dataverse_id": pairs["dataverse_id"].iloc[hit].to_numpy(),
                    "bc_key": pairs["bc_key"].iloc[hit].to_numpy(),
                    "bc_field": f.bc,
                    "dataverse_field": f.dv,
                    "bc_value": bc_value.astype(object).to_numpy(),
                    "dataverse_value": pd.Series(dv_value).astype(object).to_numpy(),
                }
            )
        )
    columns = [
        "category",
        "coupling_id",
        "bc_id",
        "dataverse_id",
        "bc_key",
        "bc_field",
        "dataverse_field",
        "bc_value",
        "dataverse_value",
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


ORDER = (  # precedence of the coupled categories (the module docstring); in_sync is the default
    "coupled_missing_bc",
    "coupled_missing_dataverse",
    "duplicate_coupling",
    "out_of_scope",
    "skipped",
    "failed",
    "conflict",
    "pending",
    "drift",
)
_SIDES = ("both", "bc", "dataverse")


def _masks(
    m: TableMapping, pairs: pd.DataFrame, b: _Aligned, d: _Aligned, diff: pd.DataFrame, in_group: np.ndarray
) -> dict[str, np.ndarray]:
    """Per coupling: the raw condition of each category (before precedence) and the side facts."""
    none = np.zeros(len(pairs), dtype=bool)
    bidi = [f.dv for f in m.compared if f.direction == "bidirectional"]
    any_diff = diff.any(axis=1).to_numpy(dtype=bool)
    bc_mod = _after(b[m.bc_modified], pairs["last_synch_modified_on"]) if m.bc_modified else none
    dv_mod = _after(d[m.dv_modified], pairs["last_synch_crm_modified_on"])
    bc_in, dv_in = b.flag("in_scope"), d.flag("in_scope")
    to_failed = (pairs["last_synch_crm_result"] == "Failure").to_numpy(dtype=bool)
    from_failed = (pairs["last_synch_result"] == "Failure").to_numpy(dtype=bool)
    return {
        "coupled_missing_bc": b.pos < 0,
        "coupled_missing_dataverse": d.pos < 0,
        "duplicate_coupling": in_group,
        "out_of_scope": ~(bc_in & dv_in),
        "skipped": pairs["skipped"].fillna(False).to_numpy(dtype=bool),
        "failed": to_failed | from_failed,
        "conflict": (m.direction == "bidirectional")
        & bc_mod
        & dv_mod
        & (diff[bidi].any(axis=1).to_numpy(dtype=bool) if bidi else none),
        "pending": (bc_mod | dv_mod) & any_diff,
        "drift": any_diff,
        "bc_mod": bc_mod,
        "dv_mod": dv_mod,
        "bc_in": bc_in,
        "dv_in": dv_in,
        "to_failed": to_failed,
        "from_failed": from_failed,
    }


def _changed_side(category: pd.Series, k: dict[str, np.ndarray]) -> np.ndarray:
    """The side(s) changed since the last synchronization; for a failed record, the failed direction's source."""
    modified = np.select([k["bc_mod"] & k["dv_mod"], k["bc_mod"], k["dv_mod"]], _SIDES, default=None)
    failing = np.select(
        [k["to_failed"] & k["from_failed"], k["to_failed"], k["from_failed"]], _SIDES, default=None
    )
    return np.where(category.isin(["skipped", "failed"]).to_numpy(dtype=bool), failing, modified)


def _reason(category: pd.Series, k: dict[str, np.ndarray]) -> np.ndarray:
    bc_out, dv_out = ~k["bc_in"], ~k["dv_in"]
    why = np.select(
        [bc_out & dv_out, bc_out, dv_out],
        [
            "both rows outside the filters",
            "BC row outside the table filter",
            "Dataverse row outside the integration table filter",
        ],
        default="",
    )
    return np.where(category.eq("out_of_scope").to_numpy(dtype=bool), why, "")


def _classify(
    ctx: _Context, m: TableMapping, relevant: pd.DataFrame, bc: pd.DataFrame, dv: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Categorize the couplings: records (one per coupling, duplicates grouped per shared id), the
    differing values side by side, and the difference matrix of the compared categories."""
    pairs = relevant.reset_index(drop=True)
    b, d = _Aligned(bc, pairs["bc_id"]), _Aligned(dv, pairs["dataverse_id"])
    groups = ledgers.duplicates(pairs[(b.pos >= 0) & (d.pos >= 0)])
    in_group = _isin(pairs["coupling_id"], [c for ids in groups["coupling_ids"] for c in ids])
    diff = _differences(ctx, m, b, d)
    k = _masks(m, pairs, b, d, diff, in_group)
    pairs["category"] = np.select([k[c] for c in ORDER], ORDER, default="in_sync")
    pairs["changed_side"] = _changed_side(pairs["category"], k)
    pairs["reason"] = _reason(pairs["category"], k)
    pairs["bc_key"] = b[m.bc_key].to_numpy() if m.bc_key else pd.NA
    pairs["bc_modified_on"] = b[m.bc_modified].to_numpy() if m.bc_modified else pd.NaT
    pairs["dataverse_modified_on"] = d[m.dv_modified].to_numpy()
    compared = pairs["category"].isin(COMPARED).to_numpy(dtype=bool)
    pairs["fields"], pairs["bc_fields"] = _field_lists(diff, compared, {f.dv: f.bc for f in m.compared})  # type: ignore[arg-type]
    pairs["coupling_ids"] = pairs["coupling_id"].map(lambda c: (c,))
    values = _side_by_side(ctx, m, pairs, b, d, diff, compared)
    records = pd.concat(
        [pairs[pairs["category"] != "duplicate_coupling"], _groups(pairs, groups)], ignore_index=True
    )
    return records, values, diff[compared].assign(category=pairs["category"][compared].to_numpy())


def _groups(pairs: pd.DataFrame, groups: pd.DataFrame) -> pd.DataFrame:
    """One ``duplicate_coupling`` row per shared id."""
    if groups.empty:
        return pd.DataFrame()
    first = groups["coupling_ids"].map(lambda ids: ids[0])
    by_bc = (groups["side"] == "bc").to_numpy()
    keys = pairs.set_index("coupling_id")["bc_key"]
    return pd.DataFrame(
        {
            "category": "duplicate_coupling",
            "coupling_id": first.to_numpy(),
            "coupling_ids": groups["coupling_ids"].to_numpy(),
            "bc_id": groups["id"].where(by_bc).to_numpy(),
            "dataverse_id": groups["id"].where(~by_bc).to_numpy(),
            "bc_key": first.map(keys).where(by_bc).to_numpy(),
            "fields": [()] * len(groups),
            "bc_fields": [()] * len(groups),
            "reason": groups["count"].astype(str)
            + np.where(by_bc, " couplings share this BC id", " couplings share this Dataverse id"),
        }
    )


def _uncoupled(side: str, rows: pd.DataFrame, key_col: str | None, stamp: str | None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "category": f"uncoupled_{side}",
            "bc_id": rows.index.to_numpy() if side == "bc" else pd.NA,
            "dataverse_id": rows.index.to_numpy() if side == "dataverse" else pd.NA,
            "bc_key": rows[key_col].to_numpy() if key_col else pd.NA,
            "coupling_ids": [()] * len(rows),
            "fields": [()] * len(rows),
            "bc_fields": [()] * len(rows),
            "reason": "no coupling refers to this in-scope row",
            f"{'bc' if side == 'bc' else 'dataverse'}_modified_on": rows[stamp].to_numpy()
            if stamp
            else pd.NaT,
        },
        index=range(len(rows)),
    )


def _match_frames(
    ctx: _Context, m: TableMapping, bc: pd.DataFrame, dv: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, list[Any], list[Any]]:
    """Uncoupled rows as the matcher wants them: comparable values (BC transformed into Dataverse terms).

    Exact rules: BC's match-based coupling fields where the mapping flags any, else every compared field
    (all mapped fields equal); fuzzy rules: the text-like compared fields."""
    et = ctx.systems.dataverse.metadata().entity(m.dv_entity)
    left, right = {"bc_id": bc.index.to_numpy()}, {"dataverse_id": dv.index.to_numpy()}
    flagged = any(f.match_priority is not None for f in m.compared)
    rules, fuzzy = [], []
    for f in m.compared:
        t, kind = ctx.transform(m, f), ctx.kind(m, f)
        column = f.bc if f.bc not in left else f"{f.bc}:{f.dv}"  # one BC property may feed two attributes
        raw = ctx.bc_values(m, f, bc[f.bc])
        left[column] = normalize(t.to_dataverse(raw) if t else raw, kind, True).astype("string").to_numpy()
        right[f.dv] = normalize(dv[dv_column(et, f.dv)], kind, True).astype("string").to_numpy()  # type: ignore[arg-type]
        rule = matching.MatchRule(column, f.dv, f.match_priority or 0, f.case_sensitive)
        if f.match_priority is not None or not flagged:
            rules.append(rule)
        if kind in TEXT_KINDS:
            fuzzy.append(rule)
    return pd.DataFrame(left), pd.DataFrame(right), rules, fuzzy


def _candidates(
    ctx: _Context, m: TableMapping, bc: pd.DataFrame, dv: pd.DataFrame, threshold: float
) -> pd.DataFrame:
    if bc.empty or dv.empty:
        return pd.DataFrame(columns=["bc_id", "dataverse_id", "score", "rule", "fields", "ambiguous"])
    left, right, rules, fuzzy = _match_frames(ctx, m, bc, dv)
    return matching.candidates(
        left, right, rules, bc_key="bc_id", dv_key="dataverse_id", threshold=threshold, fuzzy_rules=fuzzy
    )


def _attach_matches(records: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """Best candidate of each uncoupled row (first listed = best, for either side)."""
    if candidates.empty:
        return records
    for side, own, other in (("bc", "bc_id", "dataverse_id"), ("dataverse", "dataverse_id", "bc_id")):
        best = (
            candidates.sort_values("score", ascending=False, kind="stable")
            .drop_duplicates(own)
            .set_index(own)
        )
        rows = records["category"] == f"uncoupled_{side}"
        ids = records.loc[rows, own]
        records.loc[rows, "match_id"] = ids.map(best[other]).to_numpy()
        records.loc[rows, "match_score"] = ids.map(best["score"]).to_numpy()
        records.loc[rows, "match_rule"] = ids.map(best["rule"]).to_numpy()
    return records


# -- the result ----------------------------------------------------------------------------------------


@dataclass
class ReconcileResult:
    """What one reconcile found. ``records``: one row per coupling (duplicates: per shared id) and per
    uncoupled in-scope row, with its ``category``; ``values``: the differing values side by side;
    ``candidates``: match candidates of the uncoupled rows; ``diff``: the per-field difference matrix of
    the compared categories."""

    mapping: TableMapping
    records: pd.DataFrame
    values: pd.DataFrame
    candidates: pd.DataFrame
    diff: pd.DataFrame
    scope: str
    read: dict[str, int]
    seconds: float
    setup: str = STATIC  # where the mapping came from: the tenant's own setup or the built-in fallback

    def summary(self) -> pd.DataFrame:
        """Records per category (every category, zeros included), in the contract's order."""
        counts = self.records["category"].value_counts()
        return pd.DataFrame({"category": CATEGORIES, "records": [int(counts.get(c, 0)) for c in CATEGORIES]})

    def to_frame(self, category: str | None = None) -> pd.DataFrame:
        """The records (one row per record), or those of one ``category``."""
        if category is None:
            return self.records.copy()
        if category not in CATEGORIES:
            raise UnknownNameError(f"{category!r} is not a category: {', '.join(CATEGORIES)}")
        return self.records[self.records["category"] == category].reset_index(drop=True)

    @property
    def field_drift(self) -> pd.DataFrame:
        """Per mapped field: how many records differ on it, by category, most-drifted first."""
        fields = list(self.mapping.compared)
        counts = self.diff.groupby("category")[[f.dv for f in fields]].sum().T if len(self.diff) else None
        out = pd.DataFrame(
            {
                "bc_field": [f.bc for f in fields],
                "dataverse_field": [f.dv for f in fields],
                "direction": [f.direction for f in fields],
            }
        )
        for c in COMPARED:
            out[c] = counts[c].to_numpy(dtype=int) if counts is not None and c in counts else 0
        out["total"] = out[list(COMPARED)].sum(axis=1)
        return out.sort_values("total", ascending=False, kind="stable").reset_index(drop=True)

    def document(self) -> Document:
        """What the result shows: summary, the fields that differ, differing values, each category's
        records (empty columns left out), and the fields no API exposes."""
        m = self.mapping
        doc = Document(
            f"Reconcile {m.name}",
            [
                f"BC {m.bc_table or m.bc_entity} ({m.bc_entity}) <-> Dataverse {m.dv_table or m.dv_entity} "
                f"({m.dv_entity}), {m.direction}; {self.scope}; read {self.read} in {self.seconds:.1f} s.",
                f"Compared by {self.setup}.",
            ],
        )
        doc.add("Summary", self.summary()).add(
            "Fields that differ", self.field_drift[lambda f: f["total"] > 0]
        )
        if len(self.values):
            doc.add("Differing values", self.values)
        for c in CATEGORIES[1:]:
            frame = self.to_frame(c)
            if len(frame):
                shown = frame.map(cell).astype("string").fillna("")
                doc.add(
                    f"{c} ({len(frame)})", frame[[col for col in frame.columns if shown[col].ne("").any()]]
                )
        doc.notes += [f"Filter not translated: {problem}" for problem in m.filter_problems]
        if m.unreachable:
            names = ", ".join(f"{f.caption} -> {f.dv}" for f in m.unreachable)
            doc.notes.append(f"Not compared (no API exposes the BC field; companion only): {names}")
        return doc

    def to_html(self, limit: int | None = 200) -> str:
        """A self-contained HTML page (inline CSS, no scripts) of ``document()``."""
        return self.document().to_html(limit)

    def to_text(self, limit: int | None = 20) -> str:
        return self.document().to_text(limit)

    def _repr_html_(self) -> str:
        return self.summary().to_html(index=False)

    def __repr__(self) -> str:
        counts = {
            c: n for c, n in zip(self.summary()["category"], self.summary()["records"], strict=True) if n
        }
        return f"ReconcileResult({self.mapping.name}, {counts})"


def _read(
    m: TableMapping,
    bc_side: _Side,
    dv_side: _Side,
    own: pd.DataFrame,
    since: datetime | None,
    records: Iterable[str] | None,
) -> Generator[Wants, list[pd.DataFrame | None], tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]]:
    """Both sides' rows to look at, the couplings to categorize, and a description of the scope.

    Full run: every in-scope row and every coupling. Incremental: the rows changed since ``since`` and/or
    named in ``records``, the couplings touching them, and their coupled partners. Either way, coupled
    rows the scope filters left out are then read by id, so that out of scope and missing differ: the
    generator yields those reads (``Wants``) and takes their frames back, so a run over several mappings
    can send them together (``reconcile_many``)."""
    if since is None and records is None:
        bc, dv, relevant, scope = bc_side.read(), dv_side.read(), own, "full"
    else:
        wanted = {str(r).lower() for r in records or ()}
        named = [r for r in wanted if not is_guid(r)]  # only coupling ids of a file ledger are not GUIDs
        strange = sorted(set(named) - set(own["coupling_id"][_isin(own["coupling_id"], named)]))
        if strange:
            raise UsageError(
                f"records= takes BC ids, Dataverse ids or coupling ids, not: {', '.join(strange[:5])}"
            )
        bc_parts, dv_parts = [bc_side.blank()], [dv_side.blank()]
        if since is not None:
            # an entity without a modification time (invoice lines) cannot be read incrementally
            bc_parts.append(bc_side.read(Q.gt(m.bc_modified, since)) if m.bc_modified else bc_side.read())
            dv_parts.append(dv_side.read(Q.gt(m.dv_modified, since)))
        if wanted:
            bc_parts.append(bc_side.read_ids(wanted, scoped=True))
            dv_parts.append(dv_side.read_ids(wanted, scoped=True))
        bc, dv = _concat(*bc_parts), _concat(*dv_parts)
        touched = _isin(own["bc_id"], bc.index) | _isin(own["dataverse_id"], dv.index)
        for column in ("bc_id", "dataverse_id", "coupling_id"):
            touched |= _isin(own[column], wanted)
        relevant = own[touched]
        bc = _concat(bc, bc_side.read_ids(set(relevant["bc_id"].dropna()) - set(bc.index), scoped=True))
        dv = _concat(
            dv, dv_side.read_ids(set(relevant["dataverse_id"].dropna()) - set(dv.index), scoped=True)
        )
        parts = (
            f"since {since.isoformat()}" if since else "",
            f"{len(wanted)} record id(s)" if wanted else "",
        )
        scope = ", ".join(p for p in parts if p)
    # coupled rows the scope left out: read by id, for this mapping alone or batched with the mappings of a run
    missing = (
        set(relevant["bc_id"].dropna()) - set(bc.index),
        set(relevant["dataverse_id"].dropna()) - set(dv.index),
    )
    wants = [
        (bc_side, bc_side.wants(missing[0], scoped=False)),
        (dv_side, dv_side.wants(missing[1], scoped=False)),
    ]
    got = yield wants
    bc = _concat(bc, bc_side.answered(got[0], scoped=False))
    dv = _concat(dv, dv_side.answered(got[1], scoped=False))
    for attribute, target in m.dv_lookup_types.items():
        dv["in_scope"] &= dv[_type_column(attribute)].fillna("").eq(target).to_numpy(dtype=bool)
    return bc, dv, relevant, scope


# -- the entry point -----------------------------------------------------------------------------------


Wants = list[tuple[_Side, ByIds | None]]


def _steps(
    systems: Systems,
    mapping: str | TableMapping,
    since: datetime | None,
    records: Iterable[str] | None,
    catalog: Catalog | None,
    couplings: pd.DataFrame | None,
    company: str | None,
    threshold: float,
    progress: bool,
) -> Generator[Wants, list[pd.DataFrame | None], ReconcileResult]:
    """One mapping's reconcile, pausing once to have its remaining by-id reads answered (see ``_read``)."""
    started = time.perf_counter()
    catalog = catalog or systems.catalog()
    m = mapping if isinstance(mapping, TableMapping) else catalog[mapping]
    if m.name not in catalog or catalog[m.name] is not m:
        catalog = catalog.with_mapping(m)
    refs = [catalog[f.transform[7:]] for f in m.compared if f.transform and f.transform.startswith("lookup:")]
    check(catalog, systems.bc, systems.dataverse, [m.name, *dict.fromkeys(r.name for r in refs)])
    ledger = systems.ledger() if couplings is None else ledgers.normalize(couplings)
    own = ledgers.for_table(ledger, m.bc_table_id)
    company = company or (systems.own_company() if m.dv_company_field else None)
    ctx = _Context(systems, catalog, ledger)
    bc_side = _bc_side(systems, m, progress)
    dv_side = _dv_side(systems, m, company, progress)
    bc, dv, relevant, scope = yield from _read(m, bc_side, dv_side, own, since, records)
    coupled, values, diff = _classify(ctx, m, relevant, bc, dv)
    lonely_bc = bc[bc["in_scope"].to_numpy(dtype=bool) & ~_isin(bc.index, own["bc_id"])]
    lonely_dv = dv[dv["in_scope"].to_numpy(dtype=bool) & ~_isin(dv.index, own["dataverse_id"])]
    candidates = _candidates(ctx, m, lonely_bc, lonely_dv, threshold)
    parts = [
        coupled,
        _uncoupled("bc", lonely_bc, m.bc_key, m.bc_modified),
        _uncoupled("dataverse", lonely_dv, None, m.dv_modified),
    ]
    out = (
        pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else coupled
    )
    for col in RECORD_COLUMNS:
        if col not in out.columns:
            out[col] = pd.NA
    out = explain(_attach_matches(out[list(RECORD_COLUMNS)], candidates), m)
    read = {"bc": len(bc), "dataverse": len(dv), "couplings": len(relevant)}
    seconds = time.perf_counter() - started
    return ReconcileResult(m, out, values, candidates, diff, scope, read, seconds, catalog.source)


def _answer(wants: Wants) -> list[pd.DataFrame | None]:
    """The by-id reads of ``wants`` (from one or many mappings), batched per client: one ``$batch`` per
    service (and BC API) instead of a request per side."""
    answers: list[pd.DataFrame | None] = [None] * len(wants)
    groups: dict[int, list[int]] = {}
    for i, (side, want) in enumerate(wants):
        if want is not None:
            groups.setdefault(id(side.read_many.__self__), []).append(i)  # type: ignore[attr-defined]
    for members in groups.values():
        frames = wants[members[0]][0].read_many([wants[i][1] for i in members])  # type: ignore[misc]
        for i, frame in zip(members, frames, strict=True):
            answers[i] = frame
    return answers


def _finish(
    steps: Generator[Wants, list[pd.DataFrame | None], ReconcileResult], got: list[pd.DataFrame | None]
) -> ReconcileResult:
    try:
        steps.send(got)
    except StopIteration as done:
        return done.value
    steps.close()
    raise D365Error("reconcile asked twice for its by-id reads (a d365kit bug: please report it)")


def reconcile(
    systems: Systems,
    mapping: str | TableMapping,
    since: datetime | None = None,
    records: Iterable[str] | None = None,
    *,
    catalog: Catalog | None = None,
    couplings: pd.DataFrame | None = None,
    company: str | None = None,
    threshold: float = 85.0,
    progress: bool = True,
) -> ReconcileResult:
    """Compare one mapping across BC and Dataverse; see the module docstring for the categories.

    ``couplings``: a ledger (``d365kit.couplings``) to use instead of reading the companion API;
    ``company``: the own ``bcbi_companyid`` (default: looked up); ``threshold``: match candidate score.
    Reads shared with other mappings of the same run (ledger, company, lookup tables) come from ``systems``."""
    steps = _steps(systems, mapping, since, records, catalog, couplings, company, threshold, progress)
    wants = next(steps)
    return _finish(steps, _answer(wants))


def reconcile_many(
    systems: Systems,
    mappings: Iterable[str | TableMapping],
    since: datetime | None = None,
    *,
    catalog: Catalog | None = None,
    couplings: pd.DataFrame | None = None,
    progress: bool = True,
) -> dict[str, ReconcileResult]:
    """``reconcile`` for several mappings in one run: shared reads once (``Systems``), and every mapping's
    by-id reads of coupled rows outside its scope sent together, one ``$batch`` per service."""
    chosen = list(mappings)
    catalog = catalog or systems.catalog()
    started = []
    for m in tqdm(chosen, desc="reconcile", unit=" mapping", disable=not progress, delay=2):
        steps = _steps(systems, m, since, None, catalog, couplings, None, 85.0, False)
        started.append((steps, next(steps)))
    every = [want for _, wants in started for want in wants]
    answers = iter(_answer(every))
    results = {}
    for steps, wants in started:
        result = _finish(steps, [next(answers) for _ in wants])
        results[result.mapping.name] = result
    return results
