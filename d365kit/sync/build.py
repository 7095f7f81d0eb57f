"""Operations for the selected records of one mapping: the rows read again by id (with their ETags), the
values converted (``values``), the rules' links added to creates (``rules``), ids chosen for new rows and
couplings, and each operation linked to the creates whose new rows its values name.

An update writes only the mapped fields that differ and that sync in its direction (both the mapping's and
the field's direction allow it, and Dataverse says the attribute is valid for update); the others are named
in the reason. ``before`` are the target's values as read now, and the target's ETag now is what apply sends
as ``If-Match``, so a change after planning is a conflict, never overwritten.

Text longer than the target column's ``MaxLength`` (``$metadata``) is named in the reason (the service will
refuse it); with ``truncate=True`` it is cut to that length, and the operation records it (``truncated``:
column -> original length, and the reason). Each operation also names its source row's entity set and
modification time property, so apply can tell a source changed after planning (``refresh`` rewrites the
values from the source as it is now, for ``stale="current"``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from d365kit.errors import SyncPlanError
from d365kit.mapping import FieldMapping, TableMapping, dv_column
from d365kit.reconcile import field_differences
from d365kit.sync import rules
from d365kit.sync.context import PlanContext
from d365kit.sync.model import IN_SYNC, Operation
from d365kit.sync.values import Column, columns, convert, to_json, wire
from d365kit.timestamps import iso


def text(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, tuple | list) and pd.isna(value)) else str(value)


def new_id() -> str:
    return str(uuid.uuid4())


def field_named(m: TableMapping, name: str) -> FieldMapping:
    hit = next((f for f in m.fields if name in (f.dv, f.bc, f.caption)), None)
    if hit is None:
        raise SyncPlanError(f"mapping {m.name} has no field {name!r}")
    return hit


class MappingPlanner:
    """Operations for the selected records of one mapping."""

    def __init__(
        self, ctx: PlanContext, m: TableMapping, fields: Iterable[str] | None, *, truncate: bool = False
    ):
        self.ctx, self.m, self.systems = ctx, m, ctx.systems
        self.tctx = ctx.transforms()
        self.only = {field_named(m, n) for n in fields} if fields else None
        self.et = self.systems.dataverse.metadata().entity(m.dv_entity)
        self.truncate = truncate or ctx.truncate

    def _max_lengths(self, direction: str) -> dict[str, int]:
        """The target's text columns with a ``MaxLength`` in ``$metadata``."""
        if direction == "to_dataverse":
            return self.et.max_length
        return self.systems.bc.metadata(self.m.api_path).entity(self.m.bc_entity).max_length

    def _fit(self, op: Operation) -> str | None:
        """Text longer than the target column: cut to its length when ``truncate`` (recorded in
        ``op.truncated`` and the reason), else None (the service refuses it at apply, naming the field)."""
        limits = self._max_lengths(op.direction or "")
        long = {
            c: len(v)
            for c, v in op.after.items()
            if isinstance(v, str) and c in limits and len(v) > limits[c]
        }
        if not long:
            return None
        if not self.truncate:
            return (
                "; too long for the target (the service will refuse it; truncate=True cuts it): "
                + ", ".join(f"{c} has {n} characters, at most {limits[c]}" for c, n in long.items())
            )
        for column, length in long.items():
            cut = op.after[column][: limits[column]]
            op.after[column] = cut
            if column in op.body:
                op.body[column] = cut
            op.truncated[column] = length
        return "; truncated (truncate=True): " + ", ".join(
            f"{c} from {n} to {limits[c]} characters" for c, n in long.items()
        )

    def _columns(self, direction: str, purpose: str) -> list[Column]:
        """The columns written in ``direction``: restricted to ``fields=`` and, in Dataverse, to the
        attributes valid for ``purpose`` (create/update; ``productpricelevel.productnumber`` is neither)."""
        cols = columns(self.tctx, self.m, direction)
        valid = self.ctx.writable(self.m.dv_entity, purpose) if direction == "to_dataverse" else None
        return [
            c
            for c in cols
            if (self.only is None or c.field in self.only) and (valid is None or c.name in valid)
        ]

    def _base(self, r: Any, kind: str, direction: str | None, reason: str) -> Operation:
        m = self.m
        target = {
            "to_dataverse": (m.dv_entity, None, m.dv_modified),
            "from_dataverse": (m.bc_entity, m.api_path, m.bc_modified),
        }
        target_set, api, stamp = target.get(direction or "", (None, None, None))
        source = {
            "to_dataverse": (m.bc_entity, m.api_path, m.bc_modified),
            "from_dataverse": (m.dv_entity, None, m.dv_modified),
        }
        source_set, source_api, source_stamp = source.get(direction or "", (None, None, None))
        return Operation(
            source_set=source_set,
            source_api=source_api,
            source_stamp_field=source_stamp,
            op_id=new_id(),
            mapping=m.name,
            kind=kind,
            direction=direction,
            category=str(r.category),
            reason=reason,
            bc_id=text(r.bc_id),
            dataverse_id=text(r.dataverse_id),
            coupling_id=text(r.coupling_id),
            bc_key=text(r.bc_key),
            table_id=m.bc_table_id,
            target_set=target_set,
            target_api=api,
            stamp_field=stamp,
            synced={
                "bc": iso(r.last_synch_modified_on),
                "dataverse": iso(r.last_synch_crm_modified_on),
                "result": text(r.last_synch_result),
                "crm_result": text(r.last_synch_crm_result),
                "skipped": r.category == "skipped",
            },
        )

    def _read(
        self, bc_ids: Iterable[str], dv_ids: Iterable[str], directions: set[str]
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        m = self.m
        extra = [c for d in directions for c in rules.source_columns(m, d)]
        bc_cols = [*(f.bc for f in m.compared), *([m.bc_modified] if m.bc_modified else []), *extra]
        dv_cols = [
            *(dv_column(self.et, f.dv) for f in m.compared),
            m.dv_modified,
            *(f"_{a}_value" for a in m.dv_lookup_types),
        ]
        bc = self.systems.bc.rows_by_id(m.bc_entity, bc_ids, bc_cols, api=m.api_path)
        dv = self.systems.dataverse.rows_by_id(m.dv_entity, dv_ids, dv_cols, lookup_types=m.dv_lookup_types)
        return bc, dv

    def _stamp(self, frame: pd.DataFrame, side: str, ids: list[str]) -> list[str | None]:
        column = self.m.bc_modified if side == "bc" else self.m.dv_modified
        if not column or column not in frame:
            return [None] * len(ids)
        return [iso(v) for v in frame[column].reindex(ids)]

    # updates and couplings to exact matches --------------------------------------------------------

    def updates(self, recs: pd.DataFrame) -> list[Operation]:
        """``recs``: records with the pair in ``bc_id``/``dataverse_id``, ``intent``, ``direction``, ``reason``."""
        if recs.empty:
            return []
        bc_ids, dv_ids = list(recs["bc_id"].astype(str)), list(recs["dataverse_id"].astype(str))
        wanted = [d if isinstance(d, str) else None for d in recs["direction"]]
        bc, dv = self._read(bc_ids, dv_ids, {d for d in wanted if d})
        diff = field_differences(self.tctx, self.m, bc, dv, pd.Series(bc_ids), pd.Series(dv_ids))
        rows = _Rows(
            bc,
            dv,
            bc_ids,
            dv_ids,
            diff,
            {"bc": self._stamp(bc, "bc", bc_ids), "dataverse": self._stamp(dv, "dataverse", dv_ids)},
        )
        groups: dict[str | None, list[int]] = {}
        for i, d in enumerate(wanted):
            groups.setdefault(d, []).append(i)
        return [op for d, positions in groups.items() for op in self._update_group(recs, positions, d, rows)]

    def _update_group(
        self, recs: pd.DataFrame, positions: list[int], d: str | None, rows: _Rows
    ) -> list[Operation]:
        m = self.m
        sub = recs.iloc[positions]
        cols = self._columns(d, "update") if d else []
        src, tgt = ("dataverse", "bc") if d == "from_dataverse" else ("bc", "dataverse")
        src_ids, tgt_ids = [rows.ids[src][p] for p in positions], [rows.ids[tgt][p] for p in positions]
        targets = [c.target for c in cols]
        dvs = [f.dv for f in m.compared]
        differs = rows.diff[dvs].to_numpy(dtype=bool)[positions]  # records x compared fields
        if d:
            conv = convert(self.tctx, m, d, cols, rows.frames[src].reindex(src_ids))
            values, notes = (
                conv.values[targets].to_numpy(dtype=object),
                conv.notes[targets].to_numpy(dtype=object),
            )
            written = differs[:, [dvs.index(c.field.dv) for c in cols]] & conv.transfer[targets].to_numpy(
                dtype=bool
            )
        else:
            values = notes = np.empty((len(positions), 0), dtype=object)
            written = np.zeros((len(positions), 0), dtype=bool)
        current = (
            np.column_stack(
                [
                    to_json(rows.frames[tgt][t].reindex(tgt_ids), c.edm, tgt).to_numpy(dtype=object)
                    for t, c in zip(targets, cols, strict=True)
                ]
            )
            if cols
            else values
        )
        etags = rows.frames[tgt]["_etag"].reindex(tgt_ids).to_numpy(dtype=object)
        have = {"BC": set(rows.bc.index), "Dataverse": set(rows.dv.index)}
        by_target = {c.target: c for c in cols}
        why = f"does not sync {d}" if d else "no direction chosen"
        ops = []
        for j, (pos, r) in enumerate(zip(positions, sub.itertuples(index=False), strict=True)):
            op = self._base(r, r.intent, d, r.reason)
            if op.kind == "couple":
                op.coupling_id, op.synced = new_id(), {}
            gone = [
                label
                for label, i in (("BC", rows.bc_ids[pos]), ("Dataverse", rows.dv_ids[pos]))
                if i not in have[label]
            ]
            if gone:
                ops.append(
                    self._skip_from(op, f"the {gone[0]} row no longer exists (read again when planning)")
                )
                continue
            chosen = np.flatnonzero(written[j])
            names = {cols[k].field.dv for k in chosen}
            left = [dvs[k] for k in np.flatnonzero(differs[j]) if dvs[k] not in names]
            note = f"; not written ({why}): {', '.join(left)}" if left else ""
            op.source_stamp, op.target_stamp = rows.stamps[src][pos], rows.stamps[tgt][pos]
            op.etag = text(etags[j])
            problem = next((str(notes[j, k]) for k in chosen if not pd.isna(notes[j, k])), None)
            if problem:
                ops.append(self._skip_from(op, f"cannot write {problem}"))
                continue
            if not len(chosen) and op.kind != "couple":
                ops.append(self._skip_from(op, f"{op.reason}{note}" if left else IN_SYNC))
                continue
            if not len(chosen):
                op.direction = op.target_set = op.target_api = op.stamp_field = None
            op.fields = tuple(cols[k].name for k in chosen)
            op.after = {targets[k]: values[j, k] for k in chosen}
            op.before = {targets[k]: current[j, k] for k in chosen}
            op.body = wire(by_target, op.after, {})
            op.reason += note + (self._fit(op) or "")
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
        return [
            op for d, sub in recs.groupby("direction", sort=False) for op in self._create_group(sub, str(d))
        ]

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
        targets = [c.target for c in cols]
        values = conv.values[targets].to_numpy(dtype=object)
        sent = conv.transfer[targets].to_numpy(dtype=bool) & pd.notna(values)
        notes = conv.notes[targets].to_numpy(dtype=object)
        extra_cols = list(extra_values.columns)
        extra = extra_values.to_numpy(dtype=object)
        extra_problem = (
            extras.problems.to_numpy(dtype=object) if extras.problems is not None else np.full(len(ids), None)
        )
        ops = []
        for j, r in enumerate(sub.itertuples(index=False)):
            op = self._base(r, "create", d, r.reason)
            if ids[j] not in present:
                ops.append(self._skip_from(op, "the row no longer exists (read again when planning)"))
                continue
            chosen = np.flatnonzero(sent[j])
            problem = next((str(notes[j, k]) for k in chosen if not pd.isna(notes[j, k])), None)
            if problem is None and not pd.isna(extra_problem[j]):
                problem = str(extra_problem[j])
            if problem:
                ops.append(self._skip_from(op, f"not created: {problem}"))
                continue
            after = {targets[k]: values[j, k] for k in chosen}
            after.update({name: v for name, v in zip(extra_cols, extra[j], strict=True) if v is not None})
            row_id, op.coupling_id, op.synced = new_id(), new_id(), {}
            if to_dv:
                op.dataverse_id = row_id
            else:
                op.bc_id = row_id
            op.fields = tuple(cols[k].name for k in chosen)
            op.after = after
            op.body = {key: row_id, **wire(by_target, after, extras.binds)}
            op.reason += self._fit(op) or ""
            op.source_stamp = stamps[j]
            self.ctx.add_coupling(m.bc_table_id, op.bc_id, op.dataverse_id, op.coupling_id)  # type: ignore[arg-type]
            self.ctx.planned[row_id] = op.op_id
            ops.append(op)
        return ops

    def refresh(self, ops: list[Operation]) -> dict[str, str]:
        """``stale="current"``: give ``ops`` (one direction, sources changed since planning) the values of
        their planned columns as the source holds them now, and the source's modification time now.
        Returns op id -> a problem for those that cannot be written (source gone, a value without
        counterpart)."""
        d = ops[0].direction or ""
        to_dv = d == "to_dataverse"
        ids = [op.source_id or "" for op in ops]
        bc, dv = self._read(ids if to_dv else [], [] if to_dv else ids, {d})
        src = (bc if to_dv else dv).reindex([i.lower() for i in ids])
        cols = [c for c in columns(self.tctx, self.m, d) if any(c.target in op.after for op in ops)]
        conv = convert(self.tctx, self.m, d, cols, src)
        stamps = self._stamp(bc if to_dv else dv, "bc" if to_dv else "dataverse", [i.lower() for i in ids])
        problems: dict[str, str] = {}
        for j, op in enumerate(ops):
            if ids[j].lower() not in (bc if to_dv else dv).index:
                problems[op.op_id] = "the source row no longer exists"
                continue
            for c in cols:
                if c.target not in op.after:
                    continue
                note = conv.notes[c.target].iloc[j]
                if not pd.isna(note):
                    problems[op.op_id] = f"cannot write {note}"
                    break
                value = conv.values[c.target].iloc[j]
                op.after[c.target] = value
                for key in [
                    k for k in op.body if k == c.target or (c.bind and k == f"{c.bind[0]}@odata.bind")
                ]:
                    op.body.pop(key)
                op.body.update(wire({c.target: c}, {c.target: value}, {}))
            else:
                op.source_stamp = stamps[j]
                op.reason += "; written with the source's current values (it changed after planning)"
                op.reason += self._fit(op) or ""
        return problems

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


def link_dependencies(ctx: PlanContext, ops: list[Operation]) -> None:
    """Link each operation to the creates whose new rows its values name (a lookup, an invoice line's invoice)."""
    for op in ops:
        named = {str(v).lower() for v in op.after.values() if isinstance(v, str) and len(v) == 36}
        op.depends_on = tuple(
            ctx.planned[i] for i in sorted(named) if i in ctx.planned and ctx.planned[i] != op.op_id
        )
