"""Companion tables 5335/5336 (table and field mappings) and 5338/5339 (30 days of job log) of the seed.

Every scheduled mapping runs every 30 minutes (two job rows per run for bidirectional mappings, one per
direction). A job's ``modified``/``inserted`` counts include the records the seed synchronized in that run;
``failed`` equals its error rows: the planted skipped/failed records' errors plus a few historical errors of
records that later synchronized fine. Invoice lines have no job: their errors belong to the header job.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from d365kit.sandbox.seed import DAY, HISTORY_DAYS, Seeder, gid, ts
from d365kit.sandbox.seed_catalog import BIDI, FROM, JOB_OF, MAPPINGS, TO

_DIRECTIONS = {TO: ("to",), FROM: ("from",), BIDI: ("to", "from")}
_ENUM = {"to": TO, "from": FROM}
_HISTORY_FAILURE_RATE = 0.004


def write(s: Seeder) -> None:
    _mappings(s)
    _jobs(s)


def _mappings(s: Seeder) -> None:
    no = 0
    for m in MAPPINGS:
        watermark = ts(s.last_run(m))
        s.emit(
            "companion",
            "integrationTableMappings",
            {
                "id": gid("integrationTableMapping", m.name),
                "name": m.name,
                "tableId": m.table_id,
                "integrationTableId": m.int_table_id,
                "tableName": m.table_name,
                "integrationTableName": m.dv_logical,
                "direction": m.direction,
                "tableFilter": m.table_filter,
                "integrationTableFilter": m.int_table_filter.replace("{own}", "{" + s.own_company + "}"),
                "synchOnlyCoupledRecords": m.only_coupled,
                "dependencyFilter": m.dependency,
                "deletionConflictResolution": "None",
                "updateConflictResolution": "None",
                "createNewInCaseOfNoMatch": m.create_new,
                "synchAfterBulkCoupling": m.after_bulk_coupling,
                "synchModifiedOnFilter": watermark,
                "synchIntTblModOnFltr": watermark,
                "integrationTableUidFieldName": m.dv_key,
                "intTblModifiedOnFieldName": "modifiedon",
            },
        )
        for f in m.fields:
            no += 1
            # Choice: BC field numbers (fieldNo / integrationTableFieldNo) are not reproduced (0); the names
            # (caption, Dataverse logical name) identify the field.
            s.emit(
                "companion",
                "integrationFieldMappings",
                {
                    "id": gid("integrationFieldMapping", m.name, no),
                    "no": no,
                    "integrationTableMappingName": m.name,
                    "fieldName": f.caption,
                    "integrationFieldName": f.dv,
                    "direction": f.direction,
                    "constantValue": f.const,
                    "validateField": f.validate,
                    "clearValueOnFailedSync": f.clear_on_fail,
                    "status": "Enabled",
                    "notNull": f.not_null,
                    "useForMatchBasedCoupling": f.match,
                },
            )


def _history_errors(s: Seeder, m: Any, direction: str, at: int) -> list[dict[str, Any]]:
    """Errors of records that failed once in the past and synchronized fine later."""
    kit = s.kits[m.name]
    recs = s.healthy[m.name]
    if not recs or s.rng.random() >= _HISTORY_FAILURE_RATE:
        return []
    out = []
    for _ in range(s.rng.randint(1, 2)):
        rec = s.rng.choice(recs)
        messages = [
            f"The {m.table_name} record cannot be updated because it is coupled to a deleted record.",
            "The remote service returned an error: (429) Too Many Requests. Try again later.",
            kit.error(rec, kit.drift[0]),
        ]
        if m.direction == BIDI:
            messages.append(
                f"Cannot update the {m.table_name} record because the mapping {m.name} is bi-directional, and "
                "one or both values have changed since the last synchronization."
            )
        src, dst = kit.bc_ref(rec.bc), kit.dv_ref(rec.dv)
        out.append(
            {
                "source": src if direction == "to" else dst,
                "destination": dst if direction == "to" else src,
                "message": s.rng.choice(messages),
                "at": at + s.rng.randint(1_000, 60_000),
            }
        )
    return out


def _jobs(s: Seeder) -> None:
    planted: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for f in s.failures:
        planted[(JOB_OF.get(f["mapping"], f["mapping"]), f["run"], f["direction"])].append(f)
    jobs: list[dict[str, Any]] = []
    errors: list[tuple[str, dict[str, Any]]] = []
    for m in MAPPINGS:
        if not m.job_every_min:
            continue
        runs = HISTORY_DAYS * DAY // s.every(m)
        for k in range(runs):
            at = s.run_time(m, k)
            for direction in _DIRECTIONS[m.direction]:
                job_id = s.job_id(m, k, direction)
                errs = planted.get((m.name, k, direction), []) + _history_errors(s, m, direction, at)
                synced = s.synced[(m.name, k, direction)]
                inserted = sum(1 for _ in range(synced) if s.rng.random() < 0.1)
                start = at + s.rng.randint(0, 900)
                finish = max([start + 800 + 40 * (synced + len(errs))] + [e["at"] + 500 for e in errs])
                jobs.append(
                    {
                        "id": job_id,
                        "startDateTime": ts(start),
                        "finishDateTime": ts(finish),
                        "message": "",
                        "integrationTableMappingName": m.name,
                        "inserted": inserted,
                        "modified": synced - inserted,
                        "deleted": 0,
                        "unchanged": s.rng.randint(0, 3) if synced else 0,
                        "skipped": s.rng.choice((0, 0, 0, 1)) if m.only_coupled else 0,
                        "failed": len(errs),
                        "uncoupled": 0,
                        "coupled": 0,
                        "synchDirection": _ENUM[direction],
                        "type": "Synchronization",
                    }
                )
                errors.extend((job_id, e) for e in errs)
    jobs.sort(key=lambda j: (j["startDateTime"], j["id"]))
    for n, job in enumerate(jobs, start=1):
        job["jobQueueLogEntryNo"] = n
        s.emit("companion", "integrationSynchJobs", job)
    errors.sort(key=lambda e: (e[1]["at"], e[0]))
    for n, (job_id, e) in enumerate(errors, start=1):
        s.emit(
            "companion",
            "integrationSynchJobErrors",
            {
                "id": gid("integrationSynchJobError", n),
                "no": n,
                "integrationSynchJobId": job_id,
                "sourceRecordId": e["source"][:250],
                "destinationRecordId": e["destination"][:250],
                "message": e["message"][:250],
                "dateTime": ts(e["at"]),
                "errorMessage": e["message"],
                "exceptionDetail": "",
            },
        )
