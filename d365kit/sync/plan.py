"""``plan_sync``: a reconcile result (or a mapping, reconciled first) -> a ``SyncPlan`` of operations.

What each record becomes is ``decide``'s rule; how its operation is built (rows read again, values, ids,
dependencies) is ``build``'s. Refused before anything is read: a ``direction`` the mapping does not allow,
a field in ``fields`` whose own direction does not allow it (the message names the mapping and the field),
invoice lines planned on their own (they sync with their invoice: planning an invoice brings its lines).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from d365kit import couplings as ledgers
from d365kit.document import Document
from d365kit.errors import SyncDirectionError, SyncPlanError
from d365kit.mapping import Catalog, FieldMapping, TableMapping, load_catalog
from d365kit.odata.query import Guid, Q, Query
from d365kit.reading import ID_CHUNK
from d365kit.reconcile import CATEGORIES, ReconcileResult, reconcile
from d365kit.sync import rules
from d365kit.sync.build import MappingPlanner, field_named, link_dependencies
from d365kit.sync.context import PlanContext
from d365kit.sync.decide import decide
from d365kit.sync.model import IN_SYNC, KINDS, POLICIES, SYNC_DIRECTIONS, Operation
from d365kit.sync.order import dependency_order
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
            "options": self.options,
            "operations": [json.loads(op.to_json()) for op in self],
        }
        path.write_text(json.dumps(data, indent=1, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path, catalog: Catalog | None = None) -> SyncPlan:
        data = json.loads(Path(path).read_text())
        ops = [Operation.from_json(json.dumps(op)) for op in data["operations"]]
        return cls(ops, catalog or load_catalog(), data.get("options", {}), data.get("created", ""))


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
    ledger = systems.ledger() if couplings is None else ledgers.normalize(couplings)
    ctx = PlanContext(systems, catalog, ledger)
    ops: list[Operation] = []
    for name in dependency_order(catalog, given):
        m = catalog[name]
        result = given[name] or reconcile(
            systems, m, records=records, catalog=catalog, couplings=ledger, progress=progress
        )
        own = _plan_mapping(ctx, m, result, records, categories, direction, conflict, fields)
        ops += own + _children(ctx, m, own, direction, conflict, progress)
    options = {
        "direction": direction,
        "conflict": conflict,
        "categories": list(categories) if categories else None,
    }
    return SyncPlan(ops, catalog, options)
