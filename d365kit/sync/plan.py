"""``plan_sync``: a reconcile result (or a mapping, reconciled first) -> a ``SyncPlan`` of operations.

Per selected record (``categories``, ``records``), by category:

- ``drift``, ``pending``, ``failed``, ``skipped`` -> update, in ``direction`` if given, else from the side
  that changed (``changed_side``), else the mapping's own direction when it has one, else the one direction
  all differing fields share; otherwise a skip that asks for a direction. A skipped coupling selected here
  is BC's Retry.
- ``conflict`` -> the ``conflict`` policy, as BC's Resolve Update Conflicts: ``skip`` (None: left as it is),
  ``bc_wins`` (Send Update to Integration), ``dataverse_wins`` (Get Update from Integration).
- ``uncoupled_bc`` / ``uncoupled_dataverse`` -> couple when reconcile found an exact, unambiguous match
  (score 100), else create on the other side (+ couple).
- ``coupled_missing_bc`` / ``coupled_missing_dataverse`` -> uncouple (BC's "Remove Coupling").
- ``duplicate_coupling``, ``out_of_scope``, ``in_sync`` -> skip, with the reason.

An update writes only the mapped fields that differ and that sync in its direction (both the mapping's and
the field's direction allow it); the others are named in the reason. The rows are read again when planning
(by id): ``before`` are the target's values then, and the target's ETag then is what apply sends as
``If-Match``, so a change after planning is a conflict, never overwritten.

Refused before anything is read: a ``direction`` the mapping does not allow, a field in ``fields`` whose
own direction does not allow it (the message names the mapping and the field), invoice lines planned on
their own (they sync with their invoice: planning an invoice brings its lines along).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from d365kit import couplings as ledgers
from d365kit.mapping import Catalog, FieldMapping, TableMapping, dv_column, load_catalog
from d365kit.odata.query import Guid, Q, Query
from d365kit.reconcile import CATEGORIES, ReconcileResult, field_differences
from d365kit.sync import read, rules
from d365kit.sync.context import PlanContext
from d365kit.sync.model import (
    DIRECTIONS,
    IN_SYNC,
    KINDS,
    POLICIES,
    POLICY_DIRECTION,
    Operation,
    SyncDirectionError,
    SyncPlanError,
)
from d365kit.sync.order import dependency_order
from d365kit.sync.values import Column, allows, columns, convert, to_json, wire

UPDATES = ("drift", "pending", "failed", "skipped")
_BASE_REASON = {
    "drift": "values differ though neither side changed since the last synchronization",
    "pending": "changed in {side} since the last synchronization",
    "failed": "retry of the failed synchronization",
    "skipped": "retry of a skipped coupling (BC's Retry)",
    "conflict": "update conflict (both sides changed) resolved by conflict={policy!r}",
    "uncoupled_bc": "coupled to its exact match",
    "uncoupled_dataverse": "coupled to its exact match",
}
_SIDE_NAME = {"bc": "BC", "dataverse": "Dataverse", "both": "both systems"}


def _iso(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, tuple | list) and pd.isna(value)) else str(value)


def _new_id() -> str:
    return str(uuid.uuid4())


# -- the plan ------------------------------------------------------------------------------------------


@dataclass
class SyncPlan:
    """The operations of a selective sync, in the order apply runs them (dependencies first).

    Nothing is written until ``Workspace.apply(plan)``; ``to_frame()`` and ``summary()`` show what would be."""

    operations: list[Operation]
    catalog: Catalog = field(default_factory=load_catalog, repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _iso(datetime.now(UTC)) or "")

    def __len__(self) -> int:
        return len(self.operations)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __add__(self, other: SyncPlan) -> SyncPlan:
        ops = {op.op_id: op for op in [*self.operations, *other.operations]}
        order = dependency_order(self.catalog, dict.fromkeys(op.mapping for op in ops.values()))
        rank = {name: i for i, name in enumerate(order)}
        ordered = sorted(ops.values(), key=lambda op: rank.get(op.mapping, len(rank)))
        return SyncPlan(ordered, self.catalog, {**self.options, **other.options})

    @property
    def mappings(self) -> list[str]:
        return list(dict.fromkeys(op.mapping for op in self.operations))

    def to_frame(self, long: bool = False) -> pd.DataFrame:
        """One row per operation (``before``/``after`` as dicts), or with ``long=True`` one row per value
        written (``column``, ``before``, ``after``)."""
        cols = ["op_id", "mapping", "kind", "direction", "category", "bc_key", "bc_id", "dataverse_id", "coupling_id"]
        if not long:
            rows = [
                {
                    **{c: getattr(op, c) for c in cols},
                    "fields": op.fields,
                    "before": op.before,
                    "after": op.after,
                    "reason": op.reason,
                    "depends_on": op.depends_on,
                }
                for op in self.operations
            ]
            return pd.DataFrame(rows, columns=[*cols, "fields", "before", "after", "reason", "depends_on"])
        rows = []
        for op in self.operations:
            base = {c: getattr(op, c) for c in cols}
            for column in op.after or [None]:
                rows.append(
                    {
                        **base,
                        "column": column,
                        "before": op.before.get(column) if column else None,
                        "after": op.after.get(column) if column else None,
                        "reason": op.reason,
                    }
                )
        return pd.DataFrame(rows, columns=[*cols, "column", "before", "after", "reason"])

    def summary(self) -> pd.DataFrame:
        """Operations per mapping, kind and direction (kinds in the order create, update, couple, ...)."""
        frame = pd.DataFrame(
            [(op.mapping, op.kind, op.direction or "") for op in self.operations],
            columns=["mapping", "kind", "direction"],
        )
        if frame.empty:
            return pd.DataFrame(columns=["mapping", "kind", "direction", "operations"])
        out = frame.value_counts(sort=False).rename("operations").reset_index()
        rank = {name: i for i, name in enumerate(self.mappings)}
        out["_m"], out["_k"] = out["mapping"].map(rank), out["kind"].map({k: i for i, k in enumerate(KINDS)})
        return out.sort_values(["_m", "_k", "direction"]).drop(columns=["_m", "_k"]).reset_index(drop=True)

    def _repr_html_(self) -> str:
        return f"<p>SyncPlan: {len(self)} operation(s)</p>" + self.summary().to_html(index=False)

    def __repr__(self) -> str:
        kinds = pd.Series([op.kind for op in self.operations]).value_counts().to_dict()
        return f"SyncPlan({len(self)} operations: {kinds})"

    def save(self, path: str | Path) -> Path:
        """The plan as JSON (options and operations), for review or to apply later."""
        path = Path(path)
        data = {"created": self.created, "options": self.options, "operations": [json.loads(op.to_json()) for op in self]}
        path.write_text(json.dumps(data, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path, catalog: Catalog | None = None) -> SyncPlan:
        data = json.loads(Path(path).read_text())
        ops = [Operation.from_json(json.dumps(op)) for op in data["operations"]]
        return cls(ops, catalog or load_catalog(), data.get("options", {}), data.get("created", ""))


# -- refusing what the mapping forbids -------------------------------------------------------------------


def _field_named(m: TableMapping, name: str) -> FieldMapping:
    hit = next((f for f in m.fields if name in (f.dv, f.bc, f.caption)), None)
    if hit is None:
        raise SyncPlanError(f"mapping {m.name} has no field {name!r}")
    return hit


def check_direction(m: TableMapping, direction: str | None, fields: Iterable[str] | None = None) -> None:
    """Refuse a direction that ``m`` or one of the named ``fields`` does not allow (naming both)."""
    if direction is not None and direction not in DIRECTIONS:
        raise SyncPlanError(f"direction must be one of {DIRECTIONS} or None, not {direction!r}")
    chosen = [_field_named(m, n) for n in fields or ()]
    if direction is None:
        return
    if not allows(m.direction, direction):
        f = next((f for f in chosen or m.compared if not allows(f.direction, direction)), None)
        where = f" (field {f.label}: {f.bc} -> {f.dv} syncs {f.direction})" if f else ""
        raise SyncDirectionError(f"mapping {m.name} syncs {m.direction} only: {direction} is not allowed{where}")
    for f in chosen:
        if not allows(f.direction, direction):
            raise SyncDirectionError(
                f"mapping {m.name}, field {f.label} ({f.bc} -> {f.dv}) syncs {f.direction} only: {direction} is not allowed"
            )


def check_operations(catalog: Catalog, operations: Iterable[Operation]) -> None:
    """Refuse a plan with a write the catalog's mappings or fields do not allow (before anything is sent)."""
    for op in operations:
        if op.write is None:
            continue
        m = catalog[op.mapping]
        if op.direction not in DIRECTIONS:
            raise SyncDirectionError(f"mapping {m.name}: operation {op.op_id} writes without a direction")
        check_direction(m, op.direction)
        for name in op.fields:
            side = {"dv": name} if op.direction == "to_dataverse" else {"bc": name}
            f = m.field_of(**side)
            if not allows(f.direction, op.direction):
                raise SyncDirectionError(
                    f"mapping {m.name}, field {f.label} ({f.bc} -> {f.dv}) syncs {f.direction} only: "
                    f"operation {op.op_id} ({op.bc_key or op.bc_id}) writes it {op.direction}"
                )


# -- deciding what each record needs ---------------------------------------------------------------------


def _shared_direction(m: TableMapping, differing: pd.Series) -> np.ndarray:
    """Per record: the one direction all its differing fields sync in (bidirectional ones excluded), else ""."""
    by_dv = {f.dv: f.direction for f in m.compared}

    def one(names: Any) -> str:
        found = {by_dv.get(n) for n in (names if isinstance(names, tuple | list) else ())} - {"bidirectional", None}
        return found.pop() if len(found) == 1 else ""

    return differing.map(one).to_numpy(dtype=object)


def _exact_pairs(candidates: pd.DataFrame) -> set[tuple[str, str]]:
    if candidates is None or candidates.empty:
        return set()
    exact = candidates[pd.to_numeric(candidates["score"], errors="coerce") >= 100]
    if "ambiguous" in exact:
        exact = exact[~exact["ambiguous"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    exact = exact[~exact["bc_id"].duplicated(keep=False) & ~exact["dataverse_id"].duplicated(keep=False)]
    return set(zip(exact["bc_id"].astype(str), exact["dataverse_id"].astype(str), strict=True))


def decide(m: TableMapping, recs: pd.DataFrame, candidates: pd.DataFrame, direction: str | None, conflict: str) -> pd.DataFrame:
    """Per record: ``intent`` (create, update, couple, uncouple, skip), ``direction`` and ``reason``."""
    cat = recs["category"].to_numpy(dtype=object)
    side = recs["changed_side"].astype("string").fillna("").to_numpy(dtype=object)
    by_side = np.select([side == "bc", side == "dataverse"], ["to_dataverse", "from_dataverse"], default="")
    shared = _shared_direction(m, recs["fields"]) if len(recs) else np.array([], dtype=object)
    own = m.direction if m.direction != "bidirectional" else ""
    natural = np.where(by_side != "", by_side, own or shared)
    chosen = np.full(len(recs), direction or "", dtype=object) if direction else natural
    exact = _exact_pairs(candidates)
    pair = list(zip(recs["bc_id"].astype(str), recs["match_id"].astype(str), strict=True))
    rpair = list(zip(recs["match_id"].astype(str), recs["dataverse_id"].astype(str), strict=True))
    matched = np.array(
        [(c == "uncoupled_bc" and p in exact) or (c == "uncoupled_dataverse" and r in exact) for c, p, r in zip(cat, pair, rpair, strict=True)],
        dtype=bool,
    )
    intents, directions, reasons = [], [], []
    for i, c in enumerate(cat):
        reason = str(recs["reason"].iloc[i]) if _text(recs["reason"].iloc[i]) else ""
        if c == "in_sync":
            out = ("skip", None, IN_SYNC)
        elif c in UPDATES or c == "conflict":
            d = POLICY_DIRECTION.get(conflict, "") if c == "conflict" else chosen[i]
            base = _BASE_REASON[c].format(side=_SIDE_NAME.get(side[i], side[i]), policy=conflict)
            if c == "conflict" and not d:
                out = ("skip", None, "update conflict: both sides changed since the last synchronization "
                       "(conflict='skip'; bc_wins or dataverse_wins picks the side that wins)")
            elif not d:
                out = ("skip", None, f"{base}; pass direction= to choose the side that wins")
            elif not allows(m.direction, d):
                out = ("skip", None, f"{base}; mapping {m.name} syncs {m.direction} only")
            else:
                if direction and by_side[i] and by_side[i] != d and c != "conflict":
                    base += f" (direction={d} overrides it)"
                out = ("update", d, base)
        elif c in ("uncoupled_bc", "uncoupled_dataverse"):
            d = "to_dataverse" if c == "uncoupled_bc" else "from_dataverse"
            other = "Dataverse" if c == "uncoupled_bc" else "BC"
            if matched[i]:
                follow = direction or own or None
                out = ("couple", follow, _BASE_REASON[c])
            elif direction and direction != d:
                out = ("skip", None, f"uncoupled: creating it in {other} needs direction {d}")
            elif not allows(m.direction, d):
                out = ("skip", None, f"uncoupled: mapping {m.name} syncs {m.direction} only, so it is not created in {other}")
            else:
                score = recs["match_score"].iloc[i]
                note = "" if pd.isna(score) else f" (best candidate scored {float(score):.0f} < 100: not coupled)"
                out = ("create", d, f"no coupling: created in {other} and coupled{note}")
        elif c in ("coupled_missing_bc", "coupled_missing_dataverse"):
            gone = "BC" if c == "coupled_missing_bc" else "Dataverse"
            out = ("uncouple", None, f"the coupled {gone} row no longer exists: the coupling is removed (BC's Remove Coupling)")
        elif c == "duplicate_coupling":
            out = ("skip", None, f"{reason}: choose which coupling to remove")
        else:
            out = ("skip", None, reason or c.replace("_", " "))
        intents.append(out[0])
        directions.append(out[1])
        reasons.append(out[2])
    return pd.DataFrame({"intent": intents, "direction": directions, "reason": reasons}, index=recs.index)


# -- building operations ---------------------------------------------------------------------------------


class _MappingPlanner:
    """Operations for the selected records of one mapping."""

    def __init__(self, ctx: PlanContext, m: TableMapping, fields: Iterable[str] | None):
        self.ctx, self.m, self.ws = ctx, m, ctx.ws
        self.tctx = ctx.transforms()
        self.only = {_field_named(m, n) for n in fields} if fields else None
        self.et = self.ws.dataverse.metadata().entity(m.dv_entity)

    def _columns(self, direction: str, purpose: str) -> list[Column]:
        """The columns written in ``direction``: restricted to ``fields=`` and, in Dataverse, to the
        attributes valid for ``purpose`` (create/update; ``productpricelevel.productnumber`` is neither)."""
        cols = columns(self.tctx, self.m, direction)
        valid = self.ctx.writable(self.m.dv_entity, purpose) if direction == "to_dataverse" else None
        return [
            c for c in cols if (self.only is None or c.field in self.only) and (valid is None or c.name in valid)
        ]

    def _base(self, r: Any, kind: str, direction: str | None, reason: str) -> Operation:
        m = self.m
        target = {"to_dataverse": (m.dv_entity, None, m.dv_modified), "from_dataverse": (m.bc_entity, m.api_path, m.bc_modified)}
        target_set, api, stamp = target.get(direction or "", (None, None, None))
        return Operation(
            op_id=_new_id(),
            mapping=m.name,
            kind=kind,
            direction=direction,
            category=str(r.category),
            reason=reason,
            bc_id=_text(r.bc_id),
            dataverse_id=_text(r.dataverse_id),
            coupling_id=_text(r.coupling_id),
            bc_key=_text(r.bc_key),
            table_id=m.bc_table_id,
            target_set=target_set,
            target_api=api,
            stamp_field=stamp,
            synced={
                "bc": _iso(r.last_synch_modified_on),
                "dataverse": _iso(r.last_synch_crm_modified_on),
                "result": _text(r.last_synch_result),
                "crm_result": _text(r.last_synch_crm_result),
                "skipped": r.category == "skipped",
            },
        )

    def _read(self, bc_ids: Iterable[str], dv_ids: Iterable[str], directions: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
        m = self.m
        extra = [c for d in directions for c in rules.source_columns(m, d)]
        bc_cols = [*(f.bc for f in m.compared), *([m.bc_modified] if m.bc_modified else []), *extra]
        dv_cols = [*(dv_column(self.et, f.dv) for f in m.compared), m.dv_modified, *(f"_{a}_value" for a in m.dv_lookup_types)]
        bc = read.bc_rows(self.ws, m.bc_entity, m.api_path, bc_ids, bc_cols)
        dv = read.dv_rows(self.ws, m.dv_entity, dv_ids, dv_cols, m.dv_lookup_types)
        return bc, dv

    def _stamp(self, frame: pd.DataFrame, side: str, ids: list[str]) -> list[str | None]:
        column = self.m.bc_modified if side == "bc" else self.m.dv_modified
        if not column or column not in frame:
            return [None] * len(ids)
        return [_iso(v) for v in frame[column].reindex(ids)]

    # updates and couplings to exact matches --------------------------------------------------------

    def updates(self, recs: pd.DataFrame) -> list[Operation]:
        """``recs``: records with the pair in ``bc_id``/``dataverse_id``, ``intent``, ``direction``, ``reason``."""
        if recs.empty:
            return []
        bc_ids, dv_ids = list(recs["bc_id"].astype(str)), list(recs["dataverse_id"].astype(str))
        wanted = [d if isinstance(d, str) else None for d in recs["direction"]]
        bc, dv = self._read(bc_ids, dv_ids, {d for d in wanted if d})
        diff = field_differences(self.tctx, self.m, bc, dv, pd.Series(bc_ids), pd.Series(dv_ids))
        rows = _Rows(bc, dv, bc_ids, dv_ids, diff, {"bc": self._stamp(bc, "bc", bc_ids), "dataverse": self._stamp(dv, "dataverse", dv_ids)})
        groups: dict[str | None, list[int]] = {}
        for i, d in enumerate(wanted):
            groups.setdefault(d, []).append(i)
        return [op for d, positions in groups.items() for op in self._update_group(recs, positions, d, rows)]

    def _update_group(self, recs: pd.DataFrame, positions: list[int], d: str | None, rows: _Rows) -> list[Operation]:
        m = self.m
        sub = recs.iloc[positions]
        cols = self._columns(d, "update") if d else []
        src, tgt = ("dataverse", "bc") if d == "from_dataverse" else ("bc", "dataverse")
        src_ids, tgt_ids = [rows.ids[src][p] for p in positions], [rows.ids[tgt][p] for p in positions]
        conv = convert(self.tctx, m, d, cols, rows.frames[src].reindex(src_ids)) if d else None
        current = {c.target: to_json(rows.frames[tgt][c.target].reindex(tgt_ids), c.edm, tgt).to_numpy() for c in cols}
        etags = rows.frames[tgt]["_etag"].reindex(tgt_ids).to_numpy(dtype=object)
        by_target = {c.target: c for c in cols}
        ops = []
        for j, (pos, r) in enumerate(zip(positions, sub.itertuples(index=False), strict=True)):
            op = self._base(r, r.intent, d, r.reason)
            if op.kind == "couple":
                op.coupling_id, op.synced = _new_id(), {}
            gone = [label for label, side in (("BC", "bc"), ("Dataverse", "dataverse")) if not rows.present(side, pos)]
            if gone:
                ops.append(self._skip_from(op, f"the {gone[0]} row no longer exists (read again when planning)"))
                continue
            differs = rows.diff.iloc[pos]
            written = [c for c in cols if bool(differs[c.field.dv]) and bool(conv.transfer[c.target].iloc[j])]  # type: ignore[union-attr]
            names = {c.field.dv for c in written}
            left = [f.dv for f in m.compared if bool(differs[f.dv]) and f.dv not in names]
            note = f"; not written ({'does not sync ' + d if d else 'no direction chosen'}): {', '.join(left)}" if left else ""
            op.source_stamp, op.target_stamp = rows.stamps[src][pos], rows.stamps[tgt][pos]
            op.etag = _text(etags[j])
            problem = conv.first_note(j, [c.target for c in written]) if conv is not None else None
            if problem:
                ops.append(self._skip_from(op, f"cannot write {problem}"))
                continue
            if not written and op.kind != "couple":
                ops.append(self._skip_from(op, f"{op.reason}{note}" if left else IN_SYNC))
                continue
            if not written:
                op.direction = op.target_set = op.target_api = op.stamp_field = None
            op.fields = tuple(c.name for c in written)
            op.after = {c.target: conv.values[c.target].iloc[j] for c in written}  # type: ignore[union-attr]
            op.before = {c.target: current[c.target][j] for c in written}
            op.body = wire(by_target, op.after, {})
            op.reason += note
            ops.append(op)
        return ops

    @staticmethod
    def _skip_from(op: Operation, reason: str) -> Operation:
        op.kind, op.direction, op.reason = "skip", None, reason
        op.target_set = op.target_api = op.stamp_field = None
        if op.category in ("uncoupled_bc", "uncoupled_dataverse"):
            op.coupling_id = None
        return op

    # creates ---------------------------------------------------------------------------------------

    def creates(self, recs: pd.DataFrame) -> list[Operation]:
        return [op for d, sub in recs.groupby("direction", sort=False) for op in self._create_group(sub, str(d))]

    def _create_group(self, sub: pd.DataFrame, d: str) -> list[Operation]:
        m = self.m
        to_dv = d == "to_dataverse"
        ids = list(sub["bc_id" if to_dv else "dataverse_id"].astype(str))
        bc, dv = self._read(ids if to_dv else [], [] if to_dv else ids, {d})
        read_rows = bc if to_dv else dv
        present = set(read_rows.index)
        src = read_rows.reindex(ids)
        cols = self._columns(d, "create")
        conv = convert(self.tctx, m, d, cols, src)
        extras = rules.create_extras(self.ctx, m, d, src)
        extra_values = extras.frame()
        stamps = self._stamp(read_rows, "bc" if to_dv else "dataverse", ids)
        by_target = {c.target: c for c in cols}
        key = self.et.key if to_dv else "id"
        ops = []
        for j, r in enumerate(sub.itertuples(index=False)):
            op = self._base(r, "create", d, r.reason)
            if ids[j] not in present:
                ops.append(self._skip_from(op, "the row no longer exists (read again when planning)"))
                continue
            sent = [c for c in cols if conv.transfer[c.target].iloc[j] and conv.values[c.target].iloc[j] is not None]
            problem = conv.first_note(j, [c.target for c in sent])
            if problem is None and extras.problems is not None and not pd.isna(extras.problems.iloc[j]):
                problem = str(extras.problems.iloc[j])
            if problem:
                ops.append(self._skip_from(op, f"not created: {problem}"))
                continue
            after = {c.target: conv.values[c.target].iloc[j] for c in sent}
            after.update({k: v for k, v in extra_values.iloc[j].items() if v is not None})
            new_id, op.coupling_id, op.synced = _new_id(), _new_id(), {}
            if to_dv:
                op.dataverse_id = new_id
            else:
                op.bc_id = new_id
            op.fields = tuple(c.name for c in sent)
            op.after = after
            op.body = {key: new_id, **wire(by_target, after, extras.binds)}
            op.source_stamp = stamps[j]
            self.ctx.add_coupling(m.bc_table_id, op.bc_id, op.dataverse_id, op.coupling_id)  # type: ignore[arg-type]
            self.ctx.planned[new_id] = op.op_id
            ops.append(op)
        return ops

    def simple(self, recs: pd.DataFrame) -> list[Operation]:
        """Uncouple and skip operations (nothing to read)."""
        return [self._base(r, r.intent, None, r.reason) for r in recs.itertuples(index=False)]


@dataclass
class _Rows:
    """Both sides' rows of the pairs being planned, the difference matrix and the modification times."""

    bc: pd.DataFrame
    dv: pd.DataFrame
    bc_ids: list[str]
    dv_ids: list[str]
    diff: pd.DataFrame
    stamps: dict[str, list[str | None]]

    @property
    def frames(self) -> dict[str, pd.DataFrame]:
        return {"bc": self.bc, "dataverse": self.dv}

    @property
    def ids(self) -> dict[str, list[str]]:
        return {"bc": self.bc_ids, "dataverse": self.dv_ids}

    def present(self, side: str, position: int) -> bool:
        return self.ids[side][position] in self.frames[side].index


def _depends(ctx: PlanContext, ops: list[Operation]) -> None:
    """Link each operation to the creates whose new rows its values name (a lookup, an invoice line's invoice)."""
    for op in ops:
        named = {str(v).lower() for v in op.after.values() if isinstance(v, str) and len(v) == 36}
        op.depends_on = tuple(ctx.planned[i] for i in sorted(named) if i in ctx.planned and ctx.planned[i] != op.op_id)


# -- the entry point -------------------------------------------------------------------------------------


def _select(result: ReconcileResult, records: Iterable[str] | None, categories: Iterable[str] | None) -> pd.DataFrame:
    recs = result.records
    if records is not None:
        wanted = {str(r).lower() for r in records}
        hit = np.zeros(len(recs), dtype=bool)
        for column in ("bc_id", "dataverse_id", "coupling_id"):
            hit |= recs[column].astype("string").str.lower().isin(wanted).fillna(False).to_numpy(dtype=bool)
        recs = recs[hit]
    if categories is not None:
        recs = recs[recs["category"].isin(list(categories))]
    elif records is None:
        recs = recs[recs["category"] != "in_sync"]
    return recs.reset_index(drop=True)


def _plan_mapping(
    ctx: PlanContext,
    m: TableMapping,
    result: ReconcileResult,
    records: Iterable[str] | None,
    categories: Iterable[str] | None,
    direction: str | None,
    conflict: str,
    fields: Iterable[str] | None,
) -> list[Operation]:
    recs = _select(result, records, categories)
    if recs.empty:
        return []
    decided = pd.concat([recs.drop(columns=["reason"]), decide(m, recs, result.candidates, direction, conflict)], axis=1)
    couples = decided[decided["intent"] == "couple"]
    pairs = np.where(couples["category"] == "uncoupled_bc", couples["bc_id"].astype(str) + couples["match_id"].astype(str),
                     couples["match_id"].astype(str) + couples["dataverse_id"].astype(str))
    decided = decided.drop(couples.index[pd.Series(pairs, index=couples.index).duplicated().to_numpy()])
    planner = _MappingPlanner(ctx, m, fields)
    ops = planner.creates(decided[decided["intent"] == "create"])
    ups = decided[decided["intent"].isin(["update", "couple"])].copy()
    for category, column in (("uncoupled_bc", "dataverse_id"), ("uncoupled_dataverse", "bc_id")):
        rows = (ups["intent"] == "couple") & (ups["category"] == category)
        ups.loc[rows, column] = ups.loc[rows, "match_id"]
    ops += planner.updates(ups.reset_index(drop=True))
    ops += planner.simple(decided[decided["intent"].isin(["uncouple", "skip"])])
    _depends(ctx, ops)
    return ops


def _children(
    ctx: PlanContext,
    m: TableMapping,
    ops: list[Operation],
    direction: str | None,
    conflict: str,
    progress: bool,
) -> list[Operation]:
    """The child rows (invoice lines) of the parent rows ``ops`` sync: reconciled and planned with them."""
    link = rules.child_of(ctx, m)
    parents = [op.bc_id for op in ops if op.bc_id and (op.kind in ("create", "update", "couple") or op.reason == IN_SYNC)]
    if link is None or not parents:
        return []
    child, fk = link
    line_ids: list[str] = []
    for i in range(0, len(parents), read.ID_CHUNK):
        query = Query(select=("id",), filter=Q.any_of(fk, [Guid(p) for p in parents[i : i + read.ID_CHUNK]]))
        line_ids += [row["id"] for page in ctx.ws.bc.pages(child.bc_entity, query, api=child.api_path) for row in page]
    if not line_ids:
        return []
    result = ctx.ws.reconcile(child, records=line_ids, catalog=ctx.catalog, couplings=ctx.couplings, progress=progress)
    wanted = [c for c in CATEGORIES if c != "in_sync"]
    return _plan_mapping(ctx, child, result, line_ids, wanted, direction, conflict, None)


def plan_sync(
    ws: Any,
    selection: ReconcileResult | str | TableMapping | Iterable[ReconcileResult | str | TableMapping],
    records: Iterable[str] | None = None,
    categories: Iterable[str] | None = None,
    direction: str | None = None,
    conflict: str = "skip",
    *,
    fields: Iterable[str] | None = None,
    catalog: Catalog | None = None,
    couplings: pd.DataFrame | None = None,
    progress: bool = True,
) -> SyncPlan:
    """Plan a selective sync; see the module docstring. ``selection``: reconcile result(s) or mapping
    name(s) (reconciled first, on ``records`` only when given). ``records``: BC ids, Dataverse ids or
    coupling ids; ``categories``: reconcile categories (default: every one but ``in_sync``);
    ``direction``: ``to_dataverse``/``from_dataverse`` or None (each record's natural direction);
    ``conflict``: ``skip``/``bc_wins``/``dataverse_wins``; ``fields``: write only these fields (Dataverse
    attribute, BC property or caption); ``couplings``: a ledger instead of the companion API's."""
    if conflict not in POLICIES:
        raise SyncPlanError(f"conflict must be one of {POLICIES}, not {conflict!r}")
    unknown = sorted(set(categories or ()) - set(CATEGORIES))
    if unknown:
        raise SyncPlanError(f"unknown categories {unknown}; categories are {', '.join(CATEGORIES)}")
    catalog = catalog or load_catalog()
    items = list(selection) if isinstance(selection, list | tuple) else [selection]
    given: dict[str, ReconcileResult | None] = {}
    for item in items:
        if isinstance(item, ReconcileResult):
            m, result = item.mapping, item
        else:
            m, result = (item if isinstance(item, TableMapping) else catalog[item]), None
        if m.name not in catalog or catalog[m.name] is not m:
            catalog = Catalog({**catalog.mappings, m.name: m}, catalog.options, catalog.warnings)
        if rules.is_child(m):
            parent = rules.parent_of(catalog, m)
            raise SyncPlanError(
                f"{m.name}: these rows sync with their parent, never alone (BC: CannotSynchOnlyLinesErr); "
                f"plan {parent.name if parent else 'the parent mapping'} and they come along"
            )
        check_direction(m, direction, fields)
        given[m.name] = result
    ledger = ledgers.from_companion(ws.bc) if couplings is None else ledgers.normalize(couplings)
    ctx = PlanContext(ws, catalog, ledger)
    ops: list[Operation] = []
    for name in dependency_order(catalog, given):
        m = catalog[name]
        result = given[name] or ws.reconcile(m, records=records, catalog=catalog, couplings=ledger, progress=progress)
        own = _plan_mapping(ctx, m, result, records, categories, direction, conflict, fields)
        ops += own + _children(ctx, m, own, direction, conflict, progress)
    options = {"direction": direction, "conflict": conflict, "categories": list(categories) if categories else None}
    return SyncPlan(ops, catalog, options)
