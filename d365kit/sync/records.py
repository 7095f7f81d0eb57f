"""The records a run leaves: its couplings (BC table 5331) and its job and error rows (tables 5338/5339),
written through the companion API and kept in the journal.

Couplings, as BC's sync keeps them (docs/sync.md#records-of-a-run): after a write to Dataverse the
coupling's "Last Synch. CRM Result" is Success with this run's job id, after a write to BC "Last Synch.
Result"; both last-sync timestamps move to the rows' modification times (the source's as planned, the
target's as the write answered) and only ever forward; Skipped is cleared (BC's Retry). A failed write
marks its direction's result Failure with the job id, as BC does. Choice: a conflict leaves the coupling
as it is: the row was not touched, and the next reconcile shows the record in its true category. A couple
without a write takes both rows' times as planned.

Job rows: one per mapping and direction (``synchDirection`` ToIntegrationTable / FromIntegrationTable;
an uncouple or a skip goes with its mapping's job), ``type`` Synchronization; ``inserted`` = creates done,
``modified`` = updates done, ``unchanged`` = records found already in sync, ``skipped`` = skips,
``failed`` = failures and conflicts (BC counts an update conflict as failed), ``coupled`` / ``uncoupled``
= couplings added / removed; a replayed operation (``already_applied``) counts as unchanged, a ``stale``
one as skipped; an operation whose outcome is not verified yet is not counted (apply writes job rows only
once every outcome is verified). One error row per failure and conflict. Ids are derived from the run (uuid5),
so writing them again after a resume finds them there (409) instead of duplicating them.
"""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd

from d365kit.sync.model import BC_DIRECTION, IN_SYNC, Operation

_NAMESPACE = uuid.UUID("6f1c2b7e-5d3a-4e8f-9a10-d365c0ffee05")
BLANK_RESULT = " "  # BC's blank option value of Last Synch. (CRM) Result


def job_id(run_id: str, mapping: str, direction: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{run_id}:{mapping}:{direction}"))


def job_direction(op: Operation, by_mapping: dict[str, list[str]]) -> str:
    """The job an operation is counted in: its direction's, else its mapping's first."""
    if op.direction:
        return BC_DIRECTION[op.direction]
    return (by_mapping.get(op.mapping) or ["Bidirectional"])[0]


def directions_by_mapping(ops: list[Operation]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for op in ops:
        if op.direction and BC_DIRECTION[op.direction] not in out.setdefault(op.mapping, []):
            out[op.mapping].append(BC_DIRECTION[op.direction])
    return out


def _later(old: str | None, new: str | None) -> str | None:
    if not old or not new:
        return new or old
    return max(old, new, key=lambda s: pd.Timestamp(s))


def coupling_change(
    op: Operation, state: str, result_stamp: str | None, job: str, at: str
) -> tuple[str, dict[str, Any]] | None:
    """``(method, companion values)`` for an operation's coupling, or None when it stays as it is.

    ``at``: the time of the write, used for a side without modification time (invoice lines: BC's row has
    one, API v2.0 does not show it), as BC's own sync stamps the coupling then."""
    if op.coupling_action == "remove":
        return ("DELETE", {}) if state == "done" else None
    if state == "failed" and op.coupling_action == "update":
        result = "lastSynchCrmResult" if op.direction == "to_dataverse" else "lastSynchResult"
        job_field = "lastSynchCrmJobId" if op.direction == "to_dataverse" else "lastSynchJobId"
        return "PATCH", {result: "Failure", job_field: job}
    if state != "done" or op.coupling_action is None:
        return None
    if op.direction == "from_dataverse":
        bc_stamp, dv_stamp = result_stamp, op.source_stamp
    elif op.direction == "to_dataverse":
        bc_stamp, dv_stamp = op.source_stamp, result_stamp
    else:
        bc_stamp, dv_stamp = op.source_stamp, op.target_stamp
    values: dict[str, Any] = {
        "lastSynchModifiedOn": _later(op.synced.get("bc"), bc_stamp) or at,
        "lastSynchCrmModifiedOn": _later(op.synced.get("dataverse"), dv_stamp) or at,
        "skipped": False,
    }
    if op.direction == "to_dataverse":
        values.update(lastSynchCrmResult="Success", lastSynchCrmJobId=job)
    elif op.direction == "from_dataverse":
        values.update(lastSynchResult="Success", lastSynchJobId=job)
    if op.coupling_action == "add":
        base = {
            "id": op.coupling_id,
            "crmId": op.dataverse_id,
            "integrationId": op.bc_id,
            "tableId": op.table_id,
        }
        results = {"lastSynchResult": BLANK_RESULT, "lastSynchCrmResult": BLANK_RESULT}
        return "POST", {**base, **results, **{k: v for k, v in values.items() if v is not None}}
    return "PATCH", {k: v for k, v in values.items() if v is not None}


def ledger_row(op: Operation, method: str, values: dict[str, Any], at: str) -> dict[str, Any]:
    """The journal's ``couplings`` row after a coupling change (``couplings.JOURNAL_DDL``)."""

    def result(name: str, old: str | None) -> str:
        value = values.get(name, old or "")
        return "" if value == BLANK_RESULT else str(value)

    return {
        "coupling_id": op.coupling_id,
        "bc_id": op.bc_id,
        "dataverse_id": op.dataverse_id,
        "table_id": op.table_id,
        "last_synch_modified_on": values.get("lastSynchModifiedOn", op.synced.get("bc")),
        "last_synch_crm_modified_on": values.get("lastSynchCrmModifiedOn", op.synced.get("dataverse")),
        "last_synch_result": result("lastSynchResult", op.synced.get("result")),
        "last_synch_crm_result": result("lastSynchCrmResult", op.synced.get("crm_result")),
        "last_synch_job_id": values.get("lastSynchJobId"),
        "last_synch_crm_job_id": values.get("lastSynchCrmJobId"),
        "skipped": 0 if values.get("skipped") is False else int(bool(op.synced.get("skipped"))),
        "removed_at": at if method == "DELETE" else None,
    }


def job_rows(
    run_id: str, started: str, finished: str, ops: pd.DataFrame, tables: dict[str, str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Job rows and error rows (companion field names) of a run's operations (``Journal.operations``).

    ``tables``: BC table caption per mapping, for the error rows' record ids ("Customer: C00010")."""
    all_ops: list[Operation] = list(ops["op"])
    by_mapping = directions_by_mapping(all_ops)
    jobs: dict[tuple[str, str], dict[str, Any]] = {}
    errors: list[dict[str, Any]] = []
    for op, state, error in zip(all_ops, ops["state"], ops["error"], strict=True):
        direction = job_direction(op, by_mapping)
        key = (op.mapping, direction)
        if key not in jobs:
            jobs[key] = {
                "id": job_id(run_id, op.mapping, direction),
                "run_id": run_id,
                "integrationTableMappingName": op.mapping,
                "synchDirection": direction,
                "type": "Synchronization",
                "startDateTime": started,
                "finishDateTime": finished,
                "message": f"d365kit selective sync, run {run_id}",
                **dict.fromkeys(
                    (
                        "inserted",
                        "modified",
                        "deleted",
                        "unchanged",
                        "skipped",
                        "failed",
                        "coupled",
                        "uncoupled",
                    ),
                    0,
                ),
            }
        job = jobs[key]
        if state == "done":
            job["inserted"] += op.kind == "create"
            job["modified"] += op.write == "update"
            job["coupled"] += op.coupling_action == "add"
            job["uncoupled"] += op.kind == "uncouple"
        elif state == "skipped":
            job["unchanged" if op.reason == IN_SYNC else "skipped"] += 1
        elif state == "already_applied":  # a replay: an earlier run wrote it
            job["unchanged"] += 1
        elif state == "stale":  # not written: the source changed after planning
            job["skipped"] += 1
        elif state in ("failed", "conflict"):
            job["failed"] += 1
            errors.append(_error_row(job["id"], op, str(error or state), finished, tables))
    return list(jobs.values()), errors


def _error_row(job: str, op: Operation, text: str, at: str, tables: dict[str, str]) -> dict[str, Any]:
    bc = f"{tables.get(op.mapping, op.mapping)}: {op.bc_key or op.bc_id or ''}"
    dv = f"CRM {op.target_set or op.mapping}: {{{(op.dataverse_id or '').upper()}}}"
    source, destination = (dv, bc) if op.direction == "from_dataverse" else (bc, dv)
    message = f"{text} {op.mapping} {op.bc_key or ''}".strip()
    return {
        "id": str(uuid.uuid5(uuid.UUID(job), op.op_id)),
        "integrationSynchJobId": job,
        "sourceRecordId": source[:250],
        "destinationRecordId": destination[:250],
        "message": message[:250],
        "errorMessage": message[:2048],
        "dateTime": at,
    }
