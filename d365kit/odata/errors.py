"""Typed errors parsed from both services' error bodies (the classes live in ``d365kit.errors``).

BC: ``{"error":{"code":"Request_EntityChanged","message":"...  CorrelationId:  <guid>."}}``.
Dataverse: ``{"error":{"code":"0x80060882","message":"..."}}`` (the correlation id comes in the
``REQ_ID``/``x-ms-service-request-id`` header). Messages never carry a token: only the service's own text.
"""

from __future__ import annotations

import re
from typing import Any

import requests

from d365kit.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    NotImplementedByServiceError,
    ODataError,
    ThrottledError,
)

_CORRELATION = re.compile(r"\s*CorrelationId:\s*([0-9a-fA-F-]{36})\.?\s*$")
_CORRELATION_HEADERS = (
    "request-id",
    "ms-correlation-x",
    "x-ms-service-request-id",
    "req_id",
    "x-ms-correlation-id",
)


def _class_for(status: int, code: str) -> type[ODataError]:
    if status == 404:
        return NotFoundError
    if status == 412 or (status == 409 and code == "Request_EntityChanged"):
        return ConflictError
    if status == 429:
        return ThrottledError
    if status in (401, 403):
        return AuthenticationError
    if status == 501:
        return NotImplementedByServiceError
    if status == 400:
        return BadRequestError
    return ODataError


def parse_error(
    status: int, body: Any, headers: Any = None, *, method: str | None = None, url: str | None = None
) -> ODataError:
    """Build the typed error for one error answer (``body`` already decoded JSON, or text)."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    code, message = "", ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or "")
        message = str(body["error"].get("message") or "")
    elif isinstance(body, dict) and "error_description" in body:  # Entra
        code, message = str(body.get("error", "")), str(body["error_description"])
    elif body:
        message = str(body)[:500]
    correlation = None
    match = _CORRELATION.search(message)
    if match:
        correlation = match.group(1)
        message = message[: match.start()].rstrip()
    if correlation is None:
        correlation = next((headers[h] for h in _CORRELATION_HEADERS if h in headers), None)
    retry_after = None
    if "retry-after" in headers:
        try:
            retry_after = float(headers["retry-after"])
        except ValueError:
            retry_after = None
    cls = _class_for(status, code)
    return cls(
        status,
        code or "Unknown",
        message or "(no message)",
        correlation,
        method=method,
        url=url,
        retry_after=retry_after,
    )


def error_from_response(resp: requests.Response) -> ODataError:
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    return parse_error(
        resp.status_code, body, resp.headers, method=resp.request.method, url=_safe_url(resp.url)
    )


def _safe_url(url: str) -> str:
    """URLs carry no secrets here, but skip tokens an OData link may hold to keep messages short."""
    return url if len(url) <= 300 else url[:297] + "..."
