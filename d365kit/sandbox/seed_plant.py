"""Planting the problems of ``seed.py``'s category contract, one mapping (kit) at a time.

Each planted record is a fresh record made by the mapping's kit (so it looks like every other record),
then bent into exactly one category. Counts: at least one record per applicable (mapping, category) —
two where a category has two variants (pending on both sides of a bidirectional mapping, duplicate by BC
id and by Dataverse id, uncoupled with and without a match) — and ``PLANT_RATE`` of the mapping's healthy
records at larger scales.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from d365kit.sandbox.seed import (
    BIDI,
    CATEGORIES,
    MINUTE,
    PLANT_RATE,
    START,
    Rec,
    Seeder,
    altered,
    gid,
    ts,
)
from d365kit.sandbox.seed_catalog import FROM, TO

_SOURCE_DIRECTIONS = {"bc": (TO, BIDI), "dataverse": (FROM, BIDI), "both": (BIDI,)}


class Planter:
    def __init__(self, s: Seeder):
        self.s = s
        self.applicable: dict[str, tuple[str, ...]] = {}
        self._numbers: Counter[tuple[str, str]] = Counter()

    # -- helpers -------------------------------------------------------------------------------------

    def categories(self, kit: Any) -> tuple[str, ...]:
        skip = set()
        if kit.m.direction != BIDI:
            skip.add("conflict")
        if not kit.out_of_scope():
            skip.add("out_of_scope")
        return tuple(c for c in CATEGORIES if c not in skip)

    def problem(self, kit: Any, category: str, rec: Rec | None = None, **kw: Any) -> None:
        m = kit.m
        self._numbers[(m.name, category)] += 1
        bc_id = kw.get("bc_id", rec.bc["id"] if rec and rec.bc else None)
        dv_id = kw.get("dataverse_id", rec.dv[m.dv_key] if rec and rec.dv else None)
        self.s.problems.append(
            {
                "id": f"{m.name}/{category}/{self._numbers[(m.name, category)]}",
                "mapping": m.name,
                "category": category,
                "bc_id": bc_id,
                "dataverse_id": dv_id,
                "coupling_ids": kw.get("coupling_ids", [c["id"] for c in rec.couplings] if rec else []),
                "fields": [{"bc": b, "dataverse": d} for b, d in kw.get("fields", ())],
                "changed_side": kw.get("changed_side"),
                "match": kw.get("match"),
                "note": kw.get("note", ""),
            }
        )

    def coupled(
        self, kit: Any, lo: int | None = None, hi: int | None = None, source: str | None = None
    ) -> Rec:
        rec = kit.fresh()
        self.s.couple(kit, rec, self.s.sync_time(kit.m, lo, hi), source or kit.healthy_source())
        return rec

    def field_for(self, kit: Any, j: int, side: str | None = None) -> tuple[str, str]:
        fields = kit.drift
        if side is not None:
            allowed = _SOURCE_DIRECTIONS[side]
            fields = tuple(f for f in fields if kit.direction_of(f) in allowed) or fields
        return fields[j % len(fields)]

    def change(self, kit: Any, rec: Rec, side: str, fld: tuple[str, str], salt: int) -> None:
        bc_prop, dv_attr = fld
        if side == "bc":
            rec.bc[bc_prop] = kit.alter_bc(rec.bc, bc_prop, salt)  # type: ignore[index]
        elif dv_attr == "ownerid":
            others = [u for _, u in self.s.pools["salespeople"] if u != rec.dv["_ownerid_value"]]  # type: ignore[index]
            rec.dv["_ownerid_value"] = others[salt % len(others)]  # type: ignore[index]
        else:
            prop = kit.es_dv.prop(dv_attr)
            rec.dv[dv_attr] = altered(rec.dv.get(dv_attr), salt, prop.max_length if prop else None)  # type: ignore[union-attr]

    def touch(self, kit: Any, rec: Rec, side: str, t: int) -> None:
        if side == "bc":
            if kit.bc_modified:
                rec.bc[kit.bc_modified] = ts(t)  # type: ignore[index]
        else:
            rec.dv["modifiedon"] = ts(t)  # type: ignore[index]
            rec.dv["_modifiedby_value"] = self.s.person()  # type: ignore[index]

    # -- categories ----------------------------------------------------------------------------------

    def plant(self, kit: Any) -> None:
        cats = self.categories(kit)
        self.applicable[kit.m.name] = cats
        k = max(1, round(kit.size() * PLANT_RATE))
        for cat in cats:
            getattr(self, f"_{cat}")(kit, k)

    def _drift(self, kit: Any, k: int) -> None:
        for j in range(k):
            rec = self.coupled(kit)
            fld = self.field_for(kit, j)
            self.change(kit, rec, ("dataverse", "bc")[j % 2], fld, 0)
            kit.emit(rec)
            self.problem(kit, "drift", rec, fields=[fld], note="mapped field differs, neither side modified")

    def _conflict(self, kit: Any, k: int) -> None:
        m = kit.m
        for j in range(k):
            rec = self.coupled(kit)
            fld = self.field_for(kit, j, "both")
            self.change(kit, rec, "bc", fld, 0)
            self.change(kit, rec, "dataverse", fld, 1)
            self.touch(kit, rec, "bc", self.s.after_last_run(m))
            self.touch(kit, rec, "dataverse", self.s.after_last_run(m))
            kit.emit(rec)
            self.problem(
                kit,
                "conflict",
                rec,
                fields=[fld],
                changed_side="both",
                note="both sides changed since the last synchronization",
            )

    def _pending(self, kit: Any, k: int) -> None:
        sides = kit.pending_sides()
        for j in range(max(len(sides), k)):
            side = sides[j % len(sides)]
            rec = self.coupled(kit)
            fld = self.field_for(kit, j, side)
            self.change(kit, rec, side, fld, 0)
            self.touch(kit, rec, side, self.s.after_last_run(kit.m))
            kit.emit(rec)
            self.problem(
                kit,
                "pending",
                rec,
                fields=[fld],
                changed_side=side,
                note=f"{side} changed after the last run",
            )

    def _coupled_missing_bc(self, kit: Any, k: int) -> None:
        for _ in range(k):
            rec = self.coupled(kit)
            kit.emit(rec, bc=False)
            self.problem(kit, "coupled_missing_bc", rec, note="the coupled BC row was deleted")

    def _coupled_missing_dataverse(self, kit: Any, k: int) -> None:
        for _ in range(k):
            rec = self.coupled(kit)
            kit.emit(rec, dv=False)
            self.problem(kit, "coupled_missing_dataverse", rec, note="the coupled Dataverse row was deleted")

    def _duplicate_coupling(self, kit: Any, k: int) -> None:
        m = kit.m
        for j in range(max(2, k)):
            rec = self.coupled(kit)
            first = rec.couplings[0]
            if j % 2 == 0 and not kit.unique_dv:
                dv2 = kit.image(rec.bc, gid(m.name, "dv", rec.bc["id"], 2))  # type: ignore[index]
                for name in ("modifiedon", "createdon", "_modifiedby_value", "_createdby_value"):
                    dv2[name] = rec.dv[name]  # type: ignore[index]
                second = dict(
                    first,
                    id=gid("coupling", m.name, first["integrationId"], dv2[m.dv_key]),
                    crmId=dv2[m.dv_key],
                )
                kit.emit(rec)
                kit.emit_dv(dv2)
                note = "one BC row coupled to two Dataverse rows"
                ids: dict[str, Any] = {"dataverse_id": None}
            else:
                other = kit.fresh().bc
                if kit.bc_modified:
                    other[kit.bc_modified] = rec.bc[kit.bc_modified]  # type: ignore[index]
                second = dict(
                    first, id=gid("coupling", m.name, other["id"], first["crmId"]), integrationId=other["id"]
                )
                kit.emit(rec)
                self.s.emit_bc(m, other)
                note = "two BC rows coupled to one Dataverse row"
                ids = {"bc_id": None}
            self.s.emit("companion", "crmIntegrationRecords", second)
            self.problem(
                kit, "duplicate_coupling", rec, coupling_ids=[first["id"], second["id"]], note=note, **ids
            )

    def _uncoupled_bc(self, kit: Any, k: int) -> None:
        m = kit.m
        for j in range(max(2, k)):
            rec = kit.fresh()
            t = self.s.sync_time(m)
            if kit.bc_modified:
                rec.bc[kit.bc_modified] = ts(t)  # type: ignore[index]
            if j % 2 == 0:
                self.s.stamp_dv(rec.dv, t + self.s.rng.randint(MINUTE, 60 * MINUTE), self.s.person())  # type: ignore[arg-type]
                kit.emit(rec)
                dv_id = rec.dv[m.dv_key]  # type: ignore[index]
                self.problem(
                    kit,
                    "uncoupled_bc",
                    rec,
                    dataverse_id=None,
                    match={"dataverse_id": dv_id},
                    note="uncoupled; an uncoupled Dataverse row has equal mapped fields",
                )
                self.problem(
                    kit,
                    "uncoupled_dataverse",
                    rec,
                    bc_id=None,
                    match={"bc_id": rec.bc["id"]},  # type: ignore[index]
                    note="uncoupled; an uncoupled BC row has equal mapped fields",
                )
            else:
                kit.emit(rec, dv=False)
                self.problem(kit, "uncoupled_bc", rec, dataverse_id=None, note="uncoupled, no match")

    def _uncoupled_dataverse(self, kit: Any, k: int) -> None:
        for _ in range(k):
            rec = kit.fresh()
            kit.dataverse_born(rec.dv)
            self.s.stamp_dv(rec.dv, self.s.sync_time(kit.m), self.s.person())  # type: ignore[arg-type]
            rec.dv["_createdby_value"] = rec.dv["_modifiedby_value"]  # type: ignore[index]
            kit.emit(rec, bc=False)
            self.problem(kit, "uncoupled_dataverse", rec, bc_id=None, note="created in Dataverse, no match")

    def _out_of_scope(self, kit: Any, k: int) -> None:
        variants = kit.out_of_scope()
        for j in range(max(len(variants), k)):
            note, bend = variants[j % len(variants)]
            rec = self.coupled(kit)
            bend(rec)
            kit.emit(rec)
            self.problem(kit, "out_of_scope", rec, note=note)

    def _skipped(self, kit: Any, k: int) -> None:
        m = kit.m
        mid = (START + self.s.last_run(m)) // 2
        for j in range(k):
            side = m.source_sides[j % len(m.source_sides)]
            rec = self.coupled(kit, hi=mid - MINUTE, source=side)
            t = self.s.rng.randint(mid, self.s.last_run(m) - 3 * self.s.every(m))
            run = self.s.run_of(m, t)
            fld = self._failing_change(kit, rec, side, j, t)
            self._fail(kit, rec, side, fld, [run, run + 1], skipped=True)
            self.problem(
                kit,
                "skipped",
                rec,
                fields=[fld],
                changed_side=side,
                note="failed twice with the same error; skipped",
            )

    def _failed(self, kit: Any, k: int) -> None:
        m = kit.m
        last = self.s.last_run(m)
        for j in range(k):
            side = m.source_sides[j % len(m.source_sides)]
            rec = self.coupled(kit, hi=last - 2 * self.s.every(m), source=side)
            t = self.s.rng.randint(last - self.s.every(m) + MINUTE, last - MINUTE)
            fld = self._failing_change(kit, rec, side, j, t)
            self._fail(kit, rec, side, fld, [self.s.run_of(m, t)], skipped=False)
            self.problem(
                kit, "failed", rec, fields=[fld], changed_side=side, note="last synchronization failed"
            )

    def _failing_change(self, kit: Any, rec: Rec, side: str, j: int, t: int) -> tuple[str, str]:
        fld = kit.failing_field(side) or self.field_for(kit, j, side)
        value = kit.failing_value(rec.bc) if side == "bc" else None
        if value is None:
            self.change(kit, rec, side, fld, 0)
        else:
            rec.bc[fld[0]] = value  # type: ignore[index]
        self.touch(kit, rec, side, t)
        return fld

    def _fail(
        self, kit: Any, rec: Rec, side: str, fld: tuple[str, str], runs: list[int], skipped: bool
    ) -> None:
        m = kit.m
        direction = "to" if side == "bc" else "from"
        c = rec.couplings[0]
        c["lastSynchCrmResult" if direction == "to" else "lastSynchResult"] = "Failure"
        c["lastSynchCrmJobId" if direction == "to" else "lastSynchJobId"] = self.s.job_id(
            m, runs[-1], direction
        )
        c["skipped"] = skipped
        message = kit.error(rec, fld)
        src, dst = kit.bc_ref(rec.bc), kit.dv_ref(rec.dv)
        for run in runs:
            self.s.failures.append(
                {
                    "mapping": m.name,
                    "run": run,
                    "direction": direction,
                    "source": src if direction == "to" else dst,
                    "destination": dst if direction == "to" else src,
                    "message": message,
                    "at": self.s.run_time(m, run) + self.s.rng.randint(1_000, 60_000),
                }
            )
        kit.emit(rec)
