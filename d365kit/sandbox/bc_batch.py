"""BC JSON ``$batch`` (A.6): up to 100 inner requests, each run through ``BCService.handle``.

``Isolation: snapshot`` runs every inner request in one store transaction. When one fails, everything is
rolled back and (our choice; BC documents only the rollback) the failing request keeps its own error
while every other request answers ``424 Failed Dependency`` with code ``BadRequest_BatchRolledBack``,
so no response claims a write that is not there. Without the header each request stands alone.
Multipart batches (GH-BC-811) are not implemented: 501.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from d365kit.sandbox.bc_wire import BCError, error_response
from d365kit.sandbox.http import Headers, Req, Resp

if TYPE_CHECKING:
    from d365kit.sandbox.bc_api import BCService

MAX_OPERATIONS = 100  # BC-LIMITS
SERVICE_PREFIX = {"bc": "v2.0/", "companion": "d365kit/integration/v1.0/"}
_API_PATH = re.compile(r"^/v2\.0/[^/]+/[^/]+/api/")
_UNSUPPORTED_KEYS = ("atomicityGroup", "dependsOn")


class _RolledBack(Exception):
    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


def _operations(req: Req) -> list[dict[str, Any]]:
    content_type = (req.headers.get("content-type") or "").lower()
    if content_type.startswith("multipart/"):
        raise BCError(
            501,
            "BadRequest_NotImplemented",
            "Multipart $batch is not implemented by the d365kit sandbox; send a JSON batch "
            "(Content-Type: application/json).",
        )
    try:
        body = req.json()
    except ValueError as exc:
        raise BCError(400, "BadRequest", f"Invalid Request Body. {exc}") from None
    ops = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
        raise BCError(
            400, "BadRequest", 'Invalid Request Body. A JSON batch needs {"requests": [ {...}, ... ]}.'
        )
    if len(ops) > MAX_OPERATIONS:
        raise BCError(
            400,
            "BadRequest",
            f"The batch has {len(ops)} operations; the maximum is {MAX_OPERATIONS} per $batch request.",
        )
    for op in ops:
        if not isinstance(op.get("method"), str) or not isinstance(op.get("url"), str):
            raise BCError(
                400, "BadRequest", "Invalid Request Body. Every batch request needs a method and a url."
            )
        unsupported = [k for k in _UNSUPPORTED_KEYS if k in op]
        if unsupported:
            raise BCError(
                501,
                "BadRequest_NotImplemented",
                f"The JSON batch property '{unsupported[0]}' is not implemented by the d365kit sandbox.",
            )
    return ops


def _inner(req: Req, service: str, op: dict[str, Any]) -> Req:
    """The inner request: ``url`` is relative to the batch's API root (``companies(<id>)/customers``),
    host-relative (``/v2.0/<tenant>/<env>/api/...``) or absolute."""
    url = op["url"]
    split = urlsplit(url)
    root, path = req.root, SERVICE_PREFIX[service] + split.path
    if split.scheme or url.startswith("/"):
        m = _API_PATH.match(split.path)
        origin = f"{split.scheme}://{split.netloc}" if split.scheme else req.root.split("/v2.0/")[0]
        root = origin + (m.group(0) if m else "/")
        path = split.path[m.end() :] if m else split.path.lstrip("/")
    headers = Headers((k, str(v)) for k, v in (op.get("headers") or {}).items())
    if "company" not in headers and req.headers.get("company"):
        headers["company"] = req.headers["company"]
    body = op.get("body")
    raw = b"" if body is None else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    return Req(
        method=op["method"].upper(),
        path=path,
        query=parse_qsl(split.query, keep_blank_values=True),
        headers=headers,
        body=raw,
        root=root,
        claims=req.claims,
        in_batch=True,
    )


def _entry(op_id: Any, resp: Resp) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": op_id, "status": resp.status, "headers": dict(resp.headers)}
    if resp.body:
        if "json" in (resp.headers.get("content-type") or ""):
            entry["body"] = json.loads(resp.body)
        else:
            entry["body"] = resp.body.decode()
    return entry


def run_batch(service: BCService, req: Req, api: str) -> Resp:
    ops = _operations(req)
    ids = [op.get("id", str(i + 1)) for i, op in enumerate(ops)]
    snapshot = (req.headers.get("isolation") or "").strip().lower() == "snapshot"
    if not snapshot:
        results = [_entry(ids[i], service.handle(_inner(req, api, op))) for i, op in enumerate(ops)]
        return Resp.json(200, {"responses": results})
    results: list[dict[str, Any]] = []
    try:
        with service.store.transaction():
            for i, op in enumerate(ops):
                resp = service.handle(_inner(req, api, op))
                results.append(_entry(ids[i], resp))
                if resp.status >= 400:
                    raise _RolledBack(i)
    except _RolledBack as rb:
        failed = results[rb.index]
        message = (
            f"The request was rolled back because request '{ids[rb.index]}' of this batch "
            "(Isolation: snapshot) failed."
        )
        results = [
            failed
            if i == rb.index
            else _entry(ids[i], error_response(424, "BadRequest_BatchRolledBack", message))
            for i in range(len(ops))
        ]
    return Resp.json(200, {"responses": results})
