"""Dataverse ``$batch`` (multipart/mixed, OData 4.0) for the sandbox (contract B.7, DV-BATCH).

- Parts are ``application/http`` requests or ``multipart/mixed`` changesets. Each inner request runs
  through ``DataverseService.handle`` with ``Req(in_batch=True)``, in request order.
- A changeset is atomic: one ``store.transaction()``; the first failing request rolls back the whole
  changeset, whose response is then that failure alone. GET inside a changeset -> 400. ``Content-ID: n``
  makes ``$n`` usable at the start of later URLs and as an ``@odata.bind`` value in the same changeset.
- Without ``Prefer: odata.continue-on-error`` the batch stops at the first failure and the batch response
  takes that failure's status (with the responses so far, the failing one last); with it the batch is 200
  and every part is answered.
- At most 1,000 requests; no nested batches. A JSON batch (OData 4.01) -> 501 (Dataverse serves OData 4.0;
  JSON batch support is UNVERIFIED and treated as unsupported).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit

from d365kit.sandbox.dataverse_wire import DVError, bad_request, new_boundary, not_implemented, parse_prefer
from d365kit.sandbox.http import Headers, Req, Resp

if TYPE_CHECKING:
    from d365kit.sandbox.dataverse_api import DataverseService

MAX_REQUESTS = 1000
API_PREFIX = "/api/data/v9.2"
_HEADER_CASE = {
    "odata-version": "OData-Version",
    "odata-entityid": "OData-EntityId",
    "etag": "ETag",
    "content-type": "Content-Type",
    "preference-applied": "Preference-Applied",
    "location": "Location",
}


@dataclass
class _Part:
    method: str
    target: str
    headers: Headers
    body: bytes
    content_id: str | None = None


@dataclass
class _Changeset:
    parts: list[_Part] = field(default_factory=list)


class _Rollback(Exception):
    def __init__(self, resp: Resp, content_id: str | None):
        super().__init__("changeset failed")
        self.resp, self.content_id = resp, content_id


def _boundary(content_type: str) -> str | None:
    m = re.search(r'boundary\s*=\s*"?([^";]+)"?', content_type or "", re.I)
    return m.group(1).strip() if m else None


def _split_head(blob: bytes) -> tuple[list[str], bytes]:
    m = re.search(rb"\r?\n\r?\n", blob)
    if not m:
        return blob.decode("utf-8", "replace").splitlines(), b""
    return blob[: m.start()].decode("utf-8", "replace").splitlines(), blob[m.end() :]


def _headers(lines: list[str]) -> Headers:
    h = Headers()
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise bad_request(f"Malformed header line in $batch: '{line}'.")
        h[name.strip()] = value.strip()
    return h


def _multipart(body: bytes, boundary: str) -> list[bytes]:
    delim = b"--" + boundary.encode()
    chunks = body.split(delim)
    if len(chunks) < 2 or not any(c.startswith(b"--") for c in chunks[1:]):
        raise bad_request(
            f"The $batch body is not multipart/mixed with the boundary '{boundary}' and its terminator."
        )
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        parts.append(re.sub(rb"^\r?\n", b"", chunk))
    return parts


def _http_part(headers: Headers, content: bytes) -> _Part:
    if "application/http" not in (headers.get("Content-Type") or "").lower():
        raise bad_request("Each $batch part must have Content-Type application/http or multipart/mixed.")
    lines, body = _split_head(content)
    if not lines:
        raise bad_request("A $batch part holds no request line.")
    words = lines[0].split()
    if len(words) < 2:
        raise bad_request(f"Malformed request line in $batch: '{lines[0]}'.")
    # Tolerate unencoded spaces in the URL: the protocol version is the last word when present.
    target = " ".join(words[1:-1] if len(words) > 2 and words[-1].upper().startswith("HTTP/") else words[1:])
    inner = _headers(lines[1:])
    body = re.sub(rb"\r?\n$", b"", body)
    cid = headers.get("Content-ID") or inner.get("Content-ID")
    return _Part(words[0].upper(), target, inner, body, cid)


def parse_batch(body: bytes, boundary: str) -> list[_Part | _Changeset]:
    items: list[_Part | _Changeset] = []
    for raw in _multipart(body, boundary):
        head, content = _split_head(raw)
        headers = _headers(head)
        inner_boundary = _boundary(headers.get("Content-Type") or "")
        if "multipart/mixed" in (headers.get("Content-Type") or "").lower() and inner_boundary:
            cs = _Changeset()
            for inner_raw in _multipart(content, inner_boundary):
                ihead, icontent = _split_head(inner_raw)
                cs.parts.append(_http_part(_headers(ihead), icontent))
            items.append(cs)
        else:
            items.append(_http_part(headers, content))
    return items


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _render_http(resp: Resp, content_id: str | None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {resp.status} {_reason(resp.status)}"]
    lines += [f"{_HEADER_CASE.get(k, k.title())}: {v}" for k, v in resp.headers.items()]
    lines += ["", resp.body.decode("utf-8", "replace")]
    return "\r\n".join(lines)


def _render_changeset(results: list[tuple[Resp, str | None]]) -> str:
    boundary = new_boundary("changesetresponse")
    out = [f"Content-Type: multipart/mixed; boundary={boundary}", ""]
    for resp, cid in results:
        out += [f"--{boundary}", _render_http(resp, cid)]
    out.append(f"--{boundary}--")
    return "\r\n".join(out)


class _Runner:
    def __init__(self, service: DataverseService, outer: Req):
        self.service, self.outer = service, outer

    def _req(self, part: _Part, refs: dict[str, str]) -> Req:
        target = part.target
        if target.startswith("$"):
            m = re.match(r"\$(\w+)(.*)", target, re.S)
            ref = m.group(1) if m else ""
            if ref not in refs:
                raise bad_request(f"Content-ID Reference: '${ref}' does not exist in the batch context.")
            target = refs[ref] + (m.group(2) if m else "")
        split = urlsplit(target)
        path = split.path
        if API_PREFIX in path:
            path = path.split(API_PREFIX, 1)[1]
        path = path.lstrip("/")
        body = part.body
        if refs and body:
            body = _resolve_binds(body, refs)
        return Req(
            method=part.method,
            path=path,
            query=parse_qsl(split.query, keep_blank_values=True),
            headers=part.headers,
            body=body,
            root=self.outer.root,
            claims=self.outer.claims,
            in_batch=True,
        )

    def request(self, part: _Part, refs: dict[str, str]) -> Resp:
        try:
            req = self._req(part, refs)
        except DVError as exc:
            return exc.resp()
        return self.service.handle(req)

    def changeset(
        self, cs: _Changeset
    ) -> tuple[list[tuple[Resp, str | None]], tuple[Resp, str | None] | None]:
        refs: dict[str, str] = {}
        results: list[tuple[Resp, str | None]] = []
        try:
            with self.service.store.transaction():
                for part in cs.parts:
                    if part.method == "GET":
                        raise _Rollback(
                            bad_request("GET requests are not allowed inside a changeset.").resp(),
                            part.content_id,
                        )
                    resp = self.request(part, refs)
                    if resp.status >= 400:
                        raise _Rollback(resp, part.content_id)
                    if part.content_id:
                        url = _entity_url(resp, part, self.outer.root)
                        if url:
                            refs[part.content_id] = url
                    results.append((resp, part.content_id))
        except _Rollback as rb:
            return [], (rb.resp, rb.content_id)
        return results, None


def _entity_url(resp: Resp, part: _Part, root: str) -> str | None:
    url = resp.headers.get("OData-EntityId")
    if url:
        return url.split(root, 1)[-1]
    try:
        body = json.loads(resp.body)
        context = body["@odata.context"]
    except (ValueError, KeyError, TypeError):
        return None
    m = re.search(r"#(\w+)", context)
    if not m:
        return None
    from d365kit.sandbox.schema import DATAVERSE

    es = DATAVERSE.get(m.group(1))
    return f"{es.name}({body[es.key]})" if es and es.key in body else None


def _resolve_binds(body: bytes, refs: dict[str, str]) -> bytes:
    """``"<nav>@odata.bind": "$n"`` -> the entity URL created under Content-ID n."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict):
        return body
    for k, v in data.items():
        if k.endswith("@odata.bind") and isinstance(v, str) and v.startswith("$"):
            if v[1:] not in refs:
                raise bad_request(f"Content-ID Reference: '{v}' does not exist in the batch context.")
            data[k] = "/" + refs[v[1:]]
    return json.dumps(data).encode()


def run_batch(service: DataverseService, req: Req) -> Resp:
    content_type = req.headers.get("Content-Type") or ""
    if "application/json" in content_type.lower():
        raise not_implemented("JSON $batch (OData 4.01); send multipart/mixed")
    boundary = _boundary(content_type)
    if "multipart/mixed" not in content_type.lower() or not boundary:
        raise bad_request("A $batch request needs Content-Type: multipart/mixed; boundary=<boundary>.")
    items = parse_batch(req.body, boundary)
    total = sum(len(i.parts) if isinstance(i, _Changeset) else 1 for i in items)
    if total > MAX_REQUESTS:
        raise bad_request(
            f"The number of requests in the batch ({total}) exceeds the limit of {MAX_REQUESTS}."
        )
    prefs = parse_prefer(req.headers.get("Prefer"))
    runner = _Runner(service, req)
    out: list[str] = []
    status = 200
    for item in items:
        if isinstance(item, _Changeset):
            results, failure = runner.changeset(item)
            out.append(_render_http(*failure) if failure else _render_changeset(results))
            failed = failure[0].status if failure else None
        else:
            resp = runner.request(item, {})
            out.append(_render_http(resp, item.content_id))
            failed = resp.status if resp.status >= 400 else None
        if failed and not prefs.continue_on_error:
            status = failed
            break
    boundary_out = new_boundary("batchresponse")
    body = "".join(f"--{boundary_out}\r\n{part}\r\n" for part in out) + f"--{boundary_out}--\r\n"
    headers = Headers({"Content-Type": f"multipart/mixed; boundary={boundary_out}", "OData-Version": "4.0"})
    if prefs.continue_on_error:
        headers["Preference-Applied"] = "odata.continue-on-error"
    return Resp(status, headers, body.encode())
