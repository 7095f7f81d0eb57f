"""An in-process transport for requests, as httpx's MockTransport: unit tests of the OData layer's retry,
backoff and error paths without a server. Mount it on a session; each request goes to ``handler``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

Answer = tuple[int, dict[str, str], Any]  # status, headers, body (bytes, str or JSON-able)


class FakeTransport(BaseAdapter):
    """Answers each request with ``handler(request)``; a raised ``requests.RequestException`` is passed on.

    ``sent`` keeps every request (method, url, headers) in order, so a test can say what reached the wire.
    """

    def __init__(self, handler: Callable[[requests.PreparedRequest], Answer]):
        super().__init__()
        self.handler = handler
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        status, headers, body = self.handler(request)
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
            headers = {"Content-Type": "application/json", **headers}
        resp = requests.Response()
        resp.status_code = status
        resp.headers = CaseInsensitiveDict(headers)
        resp._content = body.encode() if isinstance(body, str) else body
        resp.url = request.url or ""
        resp.request = request
        resp.encoding = "utf-8"
        return resp

    def close(self) -> None:
        pass


def session_with(handler: Callable[[requests.PreparedRequest], Answer]) -> tuple[Any, FakeTransport]:
    """A d365kit PinnedSession whose https requests all go to a FakeTransport."""
    from d365kit.odata.session import PinnedSession

    http = PinnedSession()
    transport = FakeTransport(handler)
    http.mount("https://", transport)
    return http, transport
