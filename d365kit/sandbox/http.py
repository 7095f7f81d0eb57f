"""Transport-neutral request/response used inside the sandbox.

The services (``bc_api``, ``dataverse_api``) handle a ``Req`` and return a ``Resp`` without knowing about
Starlette, so ``$batch`` can run inner requests through exactly the same code, in the same thread and
SQLite transaction as the outer one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any


class Headers(dict):
    """Case-insensitive header mapping (keys stored lower-case)."""

    def __init__(self, items: Any = ()):
        super().__init__()
        pairs = items.items() if hasattr(items, "items") else items
        for k, v in pairs:
            self[k] = v

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key.lower(), value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass
class Req:
    """One request to a service, relative to that service's API root.

    ``path`` is what follows the root without a leading slash, e.g. for BC ``v2.0/companies(<id>)/customers``
    (root ``https://host/v2.0/<tenant>/<env>/api/``) and for Dataverse ``accounts(<id>)``
    (root ``https://host/api/data/v9.2/``). ``query`` keeps every pair as sent, in order, decoded.
    ``root`` is the absolute URL of the API root, with a trailing slash, for @odata.context/nextLink.
    """

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Headers
    body: bytes
    root: str
    claims: dict[str, Any] = field(default_factory=dict)
    in_batch: bool = False

    def json(self) -> Any:
        """The body as JSON; raises ValueError with a readable message when it is not."""
        if not self.body:
            raise ValueError("The request body is empty; a JSON object was expected.")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"The request body is not valid JSON: {exc}") from None


@dataclass
class Resp:
    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, obj: Any, headers: Any = ()) -> Resp:
        h = Headers(headers)
        h.setdefault("content-type", "application/json; odata.metadata=minimal; odata.streaming=true")
        h.setdefault("odata-version", "4.0")
        return cls(status, h, json.dumps(obj, separators=(",", ":"), default=str).encode())

    @classmethod
    def empty(cls, status: int = 204, headers: Any = ()) -> Resp:
        h = Headers(headers)
        h.setdefault("odata-version", "4.0")
        return cls(status, h, b"")


def correlation_id() -> str:
    return str(uuid.uuid4())
