"""Record writes in bulk, one request per chunk, and what each answer means for each operation.

BC: a JSON ``$batch`` of at most 100 operations (POST with the new row's ``id``; PATCH with ``If-Match``).
Dataverse: a multipart ``$batch`` without changeset and with ``odata.continue-on-error`` (POST with the new
row's primary key; PATCH with ``If-Match``), each part asking ``return=representation`` of the key and
``modifiedon`` so the answer carries the new modification time and ETag. Choice: not ``CreateMultiple``
(all-or-nothing per request: one bad row fails all, and which one is not said) nor ``UpdateMultiple``
(UNVERIFIED whether real Dataverse honours a per-row ETag there; the sandbox does not, so it could overwrite
a change made after planning); one failing operation in a ``$batch`` is that operation's error, the rest
go through.

What an answer means:

- 2xx: done (new modification time and ETag from the answer);
- an update answered 409/412 (BC ``Request_EntityChanged``, Dataverse concurrency mismatch): the row
  changed after it was read -> conflict, the row keeps its value;
- a create answered 409/412 (the key exists): ``duplicate`` -> verified: our row (a retry of a create that
  went through) is done, another row with the same natural key is a failure;
- no answer (connection reset, 5xx, 429 after the session's retries): ``unknown`` -> verified;
- 404 on an update: failed (the row was deleted after planning); other 4xx: failed with the service's message.

Verification reads the targets by id: a create whose row exists is done; an update whose row still has the
planned ETag was not applied (send again), one holding the planned values is done, anything else is a
conflict.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from d365kit.errors import ODataError
from d365kit.odata.batch import BatchRequest as Request
from d365kit.odata.batch import BatchResponse
from d365kit.sync.model import Operation
from d365kit.sync.values import same
from d365kit.systems import Systems
from d365kit.timestamps import iso

BC_CHUNK = 100  # BC's $batch limit
DATAVERSE_CHUNK = 500  # of Dataverse's 1,000: fewer operations to redo after a lost answer


@dataclass
class Outcome:
    """What became of one operation: done, conflict, failed, duplicate, unknown or resend."""

    op_id: str
    state: str
    stamp: str | None = None
    etag: str | None = None
    code: str | None = None
    error: str | None = None
    retry_after: float | None = None


def side_of(op: Operation) -> str:
    return "bc" if op.direction == "from_dataverse" else "dataverse"


def chunk_size(side: str, wanted: int | None) -> int:
    limit = BC_CHUNK if side == "bc" else DATAVERSE_CHUNK
    return min(wanted or limit, limit if side == "bc" else 1000)


def _request(systems: Systems, op: Operation) -> Request:
    key = systems.dataverse.metadata().entity(op.target_set).key if side_of(op) == "dataverse" else "id"
    if side_of(op) == "bc":
        if op.write == "create":
            return Request("POST", op.target_set, op.body, id=op.op_id)  # type: ignore[arg-type]
        return Request(
            "PATCH", f"{op.target_set}({op.bc_id})", op.body, {"If-Match": op.etag or ""}, id=op.op_id
        )
    select = f"?$select={key},{op.stamp_field}" if op.stamp_field else ""
    prefer = {"Prefer": "return=representation"} if select else {}
    if op.write == "create":
        return Request("POST", f"{op.target_set}{select}", op.body, prefer, id=op.op_id)
    headers = {"If-Match": op.etag or "", **prefer}
    return Request("PATCH", f"{op.target_set}({op.dataverse_id}){select}", op.body, headers, id=op.op_id)


def _message(error: ODataError | Exception | None, status: int) -> tuple[str, str]:
    if isinstance(error, ODataError):
        return error.code, error.message
    return str(status), str(error or f"HTTP {status}")


def _outcome(op: Operation, result: BatchResponse) -> Outcome:
    status, body = result.status, result.body if isinstance(result.body, dict) else {}
    if result.ok and status:
        etag = body.get("@odata.etag") or result.headers.get("ETag") or result.headers.get("etag")
        return Outcome(op.op_id, "done", body.get(op.stamp_field) if op.stamp_field else None, etag)
    code, text = _message(result.error, status)
    retry = result.error.retry_after if isinstance(result.error, ODataError) else None
    if status == 0 or status == 429 or status >= 500:
        return Outcome(op.op_id, "unknown", code=code, error=text or "not run", retry_after=retry)
    if status in (409, 412):
        if op.write == "create":
            return Outcome(op.op_id, "duplicate", code=code, error=text)
        return Outcome(op.op_id, "conflict", code=code, error=_conflict_text(op, text))
    if status == 404 and op.write == "update":
        return Outcome(op.op_id, "failed", code=code, error=f"the row no longer exists: {text}")
    return Outcome(op.op_id, "failed", code=code, error=text)


def _conflict_text(op: Operation, detail: str = "") -> str:
    where = "Dataverse" if side_of(op) == "dataverse" else "BC"
    return (
        f"update conflict: the {where} row {op.target_id} ({op.mapping} {op.bc_key or ''}) changed after the sync "
        f"plan read it, so it was not overwritten and keeps its new value. {detail}"
    ).strip()


def send(systems: Systems, ops: list[Operation]) -> list[Outcome]:
    """One request for ``ops`` (same side, same entity set); one outcome per operation."""
    requests = [_request(systems, op) for op in ops]
    try:
        if side_of(ops[0]) == "bc":
            results = systems.bc.batch(requests, api=ops[0].target_api or "v2.0")
        else:
            results = systems.dataverse.batch(requests, changeset=False)
    except Exception as exc:  # noqa: BLE001 - every failure of the request leaves its operations unknown
        retry = exc.retry_after if isinstance(exc, ODataError) else None
        code, text = _message(exc, getattr(exc, "status", 0))
        return [
            Outcome(op.op_id, "unknown", code=code, error=f"{type(exc).__name__}: {text}", retry_after=retry)
            for op in ops
        ]
    by_id = {r.operation.id: r for r in results}
    return [
        _outcome(op, by_id[op.op_id])
        if op.op_id in by_id
        else Outcome(op.op_id, "unknown", error="no answer in the batch")
        for op in ops
    ]


def _types(systems: Systems, op: Operation) -> dict[str, str]:
    if side_of(op) == "bc":
        return systems.bc.metadata(op.target_api or "v2.0").entity(op.target_set).properties
    return systems.dataverse.metadata().entity(op.target_set).properties


def verify(systems: Systems, ops: list[Operation], duplicates: set[str]) -> list[Outcome]:
    """Read the targets of ``ops`` (same side and entity set) and say what became of each (``resend`` when
    the write did not happen). ``duplicates``: creates last answered "key exists"."""
    first = ops[0]
    columns = sorted(
        {c for op in ops for c in op.after} | ({first.stamp_field} if first.stamp_field else set())
    )
    ids = [op.target_id for op in ops]
    if side_of(first) == "bc":
        rows = systems.bc.rows_by_id(first.target_set, ids, columns, api=first.target_api or "v2.0")  # type: ignore[arg-type]
    else:
        rows = systems.dataverse.rows_by_id(first.target_set, ids, columns)  # type: ignore[arg-type]
    types = _types(systems, first)
    agree = {op.op_id: True for op in ops}
    for column in columns:
        users = [op for op in ops if column in op.after and op.target_id in rows.index]
        if not users or column not in rows:
            continue
        held = rows[column].reindex([op.target_id for op in users])
        ok = same(
            held, pd.Series([op.after[column] for op in users], dtype=object), types.get(column, "Edm.String")
        )
        for op, good in zip(users, ok, strict=True):
            agree[op.op_id] &= bool(good)
    out = []
    for op in ops:
        if op.target_id not in rows.index:
            if op.write == "update":
                out.append(Outcome(op.op_id, "failed", error="the row no longer exists"))
            elif op.op_id in duplicates:
                out.append(Outcome(op.op_id, "failed", error="another row has the same key"))
            else:
                out.append(Outcome(op.op_id, "resend"))
            continue
        row = rows.loc[op.target_id]
        stamp = row.get(op.stamp_field) if op.stamp_field else None
        stamp_text = iso(stamp)
        etag = None if pd.isna(row.get("_etag")) else str(row.get("_etag"))
        if op.write == "create":
            out.append(Outcome(op.op_id, "done", stamp_text, etag))
        elif etag is not None and etag == op.etag:
            out.append(Outcome(op.op_id, "resend"))
        elif agree[op.op_id]:
            out.append(Outcome(op.op_id, "done", stamp_text, etag))
        else:
            out.append(Outcome(op.op_id, "conflict", code="Verified", error=_conflict_text(op)))
    return out
