"""``plan_sync``: a reconcile result (or a mapping, reconciled first) -> a ``SyncPlan`` of operations.

What each record becomes is ``decide``'s rule; how its operation is built (rows read again, values, ids,
dependencies) is ``build``'s. Refused before anything is read: a ``direction`` the mapping does not allow,
a field in ``fields`` whose own direction does not allow it (the message names the mapping and the field),
invoice lines planned on their own (they sync with their invoice: planning an invoice brings its lines).
Refused after reading: ``records`` ids that name no record of the selected mappings (``SyncPlanError``
naming them), rather than an empty plan.

A plan records its target (``target.Target``: tenant, BC environment, company, Dataverse org), which apply
checks. Before a plan touches a record, the journal's unfinished work on it is looked at: an operation of
an earlier run whose outcome is unknown is verified by reading (and the journal marked); a record with work
still open in another run (a write not applied yet, a coupling change not written) becomes a skip that
names the run to resume first, so a new plan never races an old run's pending write.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from d365kit import couplings as ledgers
from d365kit.document import Document
from d365kit.errors import D365Error, SyncDirectionError, SyncPlanError
from d365kit.mapping import Catalog, FieldMapping, TableMapping, load_catalog
from d365kit.odata.query import Guid, Q, Query
from d365kit.reading import ID_CHUNK
from d365kit.reconcile import CATEGORIES, ReconcileResult, reconcile
from d365kit.sync import rules, writers
from d365kit.sync.build import MappingPlanner, field_named, link_dependencies
from d365kit.sync.context import PlanContext
from d365kit.sync.decide import decide
from d365kit.sync.journal import Journal, default_path
from d365kit.sync.locks import is_held
from d365kit.sync.model import IN_SYNC, KINDS, OPEN, POLICIES, SYNC_DIRECTIONS, Operation
from d365kit.sync.order import dependency_order
from d365kit.sync.target import Target, target_of
from d365kit.sync.values import allows
from d365kit.systems import Systems
from d365kit.timestamps import iso

# -- the plan ------------------------------------------------------------------------------------------


@dataclass
class SyncPlan:
    """The operations of a selective sync, in the order apply runs them (dependencies first).

    Nothing is written until ``Workspace.apply(plan)``; ``to_frame()`` and ``summary()`` show what would be."""

    operations: list[Operation]
    catalog: Catalog = field(default_factory=load_catalog, repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: iso(datetime.now(UTC)) or "")
    target: Target | None = None  # where it was planned; apply refuses another target

    def __len__(self) -> int:
        return len(self.operations)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self.operations)

    def __add__(self, other: SyncPlan) -> SyncPlan:
        ops = {op.op_id: op for op in [*self.operations, *other.operations]}
        order = dependency_order(self.catalog, dict.fromkeys(op.mapping for op in ops.values()))
        rank = {name: i for i, name in enumerate(order)}
        ordered = sorted(ops.values(), key=lambda op: rank.get(op.mapping, len(rank)))
        if self.target and other.target and self.target.key != other.target.key:
            raise SyncPlanError(f"cannot add plans of two targets: {self.target} and {other.target}")
        return SyncPlan(
            ordered,
            self.catalog,
            {**self.options, **other.options},
            min(self.created, other.created),
            self.target or other.target,
        )

    @property
    def mappings(self) -> list[str]:
        return list(dict.fromkeys(op.mapping for op in self.operations))

    def to_frame(self, long: bool = False) -> pd.DataFrame:
        """One row per operation (``before``/``after`` as dicts), or with ``long=True`` one row per value
        written (``column``, ``before``, ``after``)."""
        cols = [
            "op_id",
            "mapping",
            "kind",
            "direction",
            "category",
            "bc_key",
            "bc_id",
            "dataverse_id",
            "coupling_id",
        ]
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

    def document(self) -> Document:
        """What the plan shows: its options, operations per mapping and kind, and every operation."""
        options = ", ".join(f"{k} {v}" for k, v in self.options.items() if v is not None)
        doc = Document(
            f"Sync plan: {len(self)} operation(s)", [f"Dry run: nothing has been written. {options}"]
        )
        return doc.add("Summary", self.summary()).add("Operations", self.to_frame())

    def to_html(self, limit: int | None = 200) -> str:
        return self.document().to_html(limit)

    def to_text(self, limit: int | None = 20) -> str:
        return self.document().to_text(limit)

    def _repr_html_(self) -> str:
        return f"<p>SyncPlan: {len(self)} operation(s)</p>" + self.summary().to_html(index=False)

    def __repr__(self) -> str:
        kinds = pd.Series([op.kind for op in self.operations]).value_counts().to_dict()
        return f"SyncPlan({len(self)} operations: {kinds})"

    def save(self, path: str | Path) -> Path:
        """The plan as JSON (options and operations), for review or to apply later."""
        path = Path(path)
        data = {
            "created": self.created,
            "target": self.target.to_dict() if self.target else None,
            "options": self.options,
            "operations": [json.loads(op.to_json()) for op in self],
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds customer values
        os.chmod(path, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(data, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path, catalog: Catalog | None = None) -> SyncPlan:
        data = json.loads(Path(path).read_text())
        ops = [Operation.from_json(json.dumps(op)) for op in data["operations"]]
        return cls(
            ops,
            catalog or load_catalog(),
            data.get("options", {}),
            data.get("created", ""),
            Target.from_dict(data.get("target")),
        )


# -- refusing what the mapping forbids -------------------------------------------------------------------


def _named(f: FieldMapping) -> str:
    return f"field {f.caption or f.label} ({f.bc or '-'} -> {f.dv or '-'})"


def check_direction(m: TableMapping, direction: str | None, fields: Iterable[str] | None = None) -> None:
    """Refuse a direction that ``m`` or one of the named ``fields`` does not allow (naming both)."""
    if direction is not None and direction not in SYNC_DIRECTIONS:
        raise SyncPlanError(f"direction must be one of {SYNC_DIRECTIONS} or None, not {direction!r}")
    chosen = [field_named(m, n) for n in fields or ()]
    if direction is None:
        return
    if not allows(m.direction, direction):
        f = next((f for f in chosen or m.compared if not allows(f.direction, direction)), None)
        where = f" ({_named(f)} syncs {f.direction})" if f else ""
        raise SyncDirectionError(
            f"mapping {m.name} syncs {m.direction} only: {direction} is not allowed{where}"
        )
    for f in chosen:
        if not allows(f.direction, direction):
            raise SyncDirectionError(
                f"mapping {m.name}, {_named(f)} syncs {f.direction} only: {direction} is not allowed"
            )


def check_operations(catalog: Catalog, operations: Iterable[Operation]) -> None:
    """Refuse a plan with a write the catalog's mappings or fields do not allow (before anything is sent)."""
    for op in operations:
        if op.write is None:
            continue
        m = catalog[op.mapping]
        if op.direction not in SYNC_DIRECTIONS:
            raise SyncDirectionError(f"mapping {m.name}: operation {op.op_id} writes without a direction")
        check_direction(m, op.direction)
        for name in op.fields:
            side = {"dv": name} if op.direction == "to_dataverse" else {"bc": name}
            f = m.field_of(**side)
            if not allows(f.direction, op.direction):
                raise SyncDirectionError(
                    f"mapping {m.name}, {_named(f)} syncs {f.direction} only: "
                    f"operation {op.op_id} ({op.bc_key or op.bc_id}) writes it {op.direction}"
                )


# -- the entry point -------------------------------------------------------------------------------------


def _select(
    result: ReconcileResult, records: Iterable[str] | None, categories: Iterable[str] | None
) -> pd.DataFrame:
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
    decided = pd.concat(
        [recs.drop(columns=["reason"]), decide(m, recs, result.candidates, direction, conflict)], axis=1
    )
    couples = decided[decided["intent"] == "couple"]
    pairs = np.where(
        couples["category"] == "uncoupled_bc",
        couples["bc_id"].astype(str) + couples["match_id"].astype(str),
        couples["match_id"].astype(str) + couples["dataverse_id"].astype(str),
    )
    decided = decided.drop(couples.index[pd.Series(pairs, index=couples.index).duplicated().to_numpy()])
    planner = MappingPlanner(ctx, m, fields)
    ops = planner.creates(decided[decided["intent"] == "create"])
    ups = decided[decided["intent"].isin(["update", "couple"])].copy()
    for category, column in (("uncoupled_bc", "dataverse_id"), ("uncoupled_dataverse", "bc_id")):
        rows = (ups["intent"] == "couple") & (ups["category"] == category)
        ups.loc[rows, column] = ups.loc[rows, "match_id"]
    ops += planner.updates(ups.reset_index(drop=True))
    ops += planner.simple(decided[decided["intent"].isin(["uncouple", "skip"])])
    link_dependencies(ctx, ops)
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
    parents = [
        op.bc_id
        for op in ops
        if op.bc_id and (op.kind in ("create", "update", "couple") or op.reason == IN_SYNC)
    ]
    if link is None or not parents:
        return []
    child, fk = link
    line_ids: list[str] = []
    for i in range(0, len(parents), ID_CHUNK):
        query = Query(select=("id",), filter=Q.any_of(fk, [Guid(p) for p in parents[i : i + ID_CHUNK]]))
        line_ids += [
            row["id"]
            for page in ctx.systems.bc.pages(child.bc_entity, query, api=child.api_path)
            for row in page
        ]
    if not line_ids:
        return []
    result = reconcile(
        ctx.systems, child, records=line_ids, catalog=ctx.catalog, couplings=ctx.couplings, progress=progress
    )
    wanted = [c for c in CATEGORIES if c != "in_sync"]
    return _plan_mapping(ctx, child, result, line_ids, wanted, direction, conflict, None)


def plan_sync(
    systems: Systems,
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
    truncate: bool = False,
    target: Target | None = None,
    production: bool | None = None,
    journal: str | Path | None = None,
) -> SyncPlan:
    """Plan a selective sync; see the module docstring. ``selection``: reconcile result(s) or mapping
    name(s) (reconciled first, on ``records`` only when given). ``records``: BC ids, Dataverse ids or
    coupling ids (an id that names no record is refused); ``categories``: reconcile categories (default:
    every one but ``in_sync``); ``direction``: ``to_dataverse``/``from_dataverse`` or None (each record's
    natural direction); ``conflict``: ``skip``/``bc_wins``/``dataverse_wins``; ``fields``: write only these
    fields (Dataverse attribute, BC property or caption); ``couplings``: a ledger instead of the companion
    API's; ``truncate``: cut text longer than the target column (recorded in the operation); ``target``: the
    profile's target (default: read from ``systems``, production per ``production``); ``journal``: the journal whose unfinished work on
    these records is verified first (default ``journal.default_path(profile)``)."""
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
            catalog = catalog.with_mapping(m)
        if rules.is_child(m):
            parent = rules.parent_of(catalog, m)
            raise SyncPlanError(
                f"{m.name}: these rows sync with their parent, never alone (BC: CannotSynchOnlyLinesErr); "
                f"plan {parent.name if parent else 'the parent mapping'} and they come along"
            )
        check_direction(m, direction, fields)
        given[m.name] = result
    records = None if records is None else [str(r) for r in records]
    ledger = systems.ledger() if couplings is None else ledgers.normalize(couplings)
    ctx = PlanContext(systems, catalog, ledger, truncate=truncate)
    ops: list[Operation] = []
    found: set[str] = set()
    for name in dependency_order(catalog, given):
        m = catalog[name]
        result = given[name] or reconcile(
            systems, m, records=records, catalog=catalog, couplings=ledger, progress=progress
        )
        for column in ("bc_id", "dataverse_id", "coupling_id"):
            found |= set(result.records[column].dropna().astype(str).str.lower())
        own = _plan_mapping(ctx, m, result, records, categories, direction, conflict, fields)
        ops += own + _children(ctx, m, own, direction, conflict, progress)
    missing = [r for r in dict.fromkeys(records or ()) if r.lower() not in found]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise SyncPlanError(
            f"{len(missing)} record id(s) name no record of {', '.join(given)}: {shown}. Give BC ids, "
            "Dataverse ids or coupling ids of records of the selected mappings; nothing was planned"
        )
    target = target or target_of(systems, production)
    path = Path(journal) if journal else default_path(systems.profile)
    blocked = open_work(systems, target, path, ops)
    for op in ops:
        if op.op_id in blocked:
            MappingPlanner._skip_from(op, blocked[op.op_id])
    options = {
        "direction": direction,
        "conflict": conflict,
        "categories": list(categories) if categories else None,
        "truncate": truncate,
    }
    return SyncPlan(ops, catalog, options, target=target)


def open_work(systems: Systems, target: Target, path: Path, ops: list[Operation]) -> dict[str, str]:
    """The operations of ``ops`` (op id -> the reason) whose record has unfinished work in another run of the journal ``path`` on
    this target, with the reason. Outcomes not known yet (``sent``, ``unknown``) of runs not running now are
    verified by reading first, and the journal marked: a write verified as done, failed or a conflict is
    final; one verified as not applied goes back to ``planned``."""
    writes = [op for op in ops if op.kind != "skip"]
    if not writes or not path.exists():
        return {}
    key = "|".join(target.key)
    with Journal(path) as j:
        rows = j.touching(key, sorted({i for op in writes for i in op.record_ids}))
        if rows.empty:
            return {}
        rows = rows[rows["state"].isin(OPEN) | rows["coupling_state"].isin(["pending", "failed"])]
        live: dict[str, bool] = {}
        for run_id, locks in zip(rows["run_id"], rows["locks"], strict=True):
            if run_id not in live:
                holders = [is_held(target, m) for m in json.loads(locks or "[]")]
                live[run_id] = any(h and h.get("run_id") == run_id for h in holders)
        unclear = rows[rows["state"].isin(["sent", "unknown"]) & ~rows["run_id"].map(live)]
        states = dict(zip(zip(rows["run_id"], rows["op_id"], strict=True), rows["state"], strict=True))
        groups: dict[tuple[str, str | None, str | None, str], list[Operation]] = {}
        for run_id, op in zip(unclear["run_id"], unclear["op"], strict=True):
            groups.setdefault((writers.side_of(op), op.target_set, op.target_api, run_id), []).append(op)
        for (_, _, _, run_id), group in groups.items():
            try:
                outcomes = writers.verify(systems, group, set())
            except D365Error:
                continue  # cannot tell now: the record stays blocked
            marks = []
            for o in outcomes:
                state = "planned" if o.state == "resend" else o.state
                states[(run_id, o.op_id)] = state
                marks.append((o.op_id, state, o.stamp, o.etag, o.code, o.error))
            j.mark(run_id, marks)
    blocked: dict[str, str] = {}
    for run_id, other, cstate in zip(rows["run_id"], rows["op"], rows["coupling_state"], strict=True):
        state = states[(run_id, other.op_id)]
        if live[run_id]:
            why = f"run {run_id} is writing this record now: plan it again when that run has finished"
        elif state in OPEN or cstate in ("pending", "failed"):
            what = f"its write is {state}" if state in OPEN else f"its coupling change is {cstate}"
            why = (
                f"run {run_id} has unfinished work on this record ({what}): resume it first "
                f"(d365kit sync resume {run_id}), then plan again"
            )
        else:
            continue
        for i in other.record_ids - {(other.coupling_id or "").lower()}:
            blocked.setdefault(i, why)
    return {op.op_id: blocked[i] for op in writes for i in sorted(op.record_ids) if i in blocked}
