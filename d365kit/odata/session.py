"""HTTP for both services: one pooled session, bearer tokens, timeouts, retries and a concurrency cap.

Retries: 429 (any method: the service did not process the request), 503/504 and connection errors
(reads, and writes only when the caller declares them idempotent), honouring ``Retry-After`` and otherwise
waiting a capped exponential backoff with full jitter. A 401 refreshes the token once and retries once.
Each retry is logged (method, URL, status, wait) — never a header, so never a token.

Tokens go only to the service's own origin: every URL (the caller's, and every link a service hands back —
``@odata.nextLink``, ``@odata.deltaLink``, batch locations) is checked against the origin the session was
made for (scheme https, host, port) before a byte is sent; anything else raises ``ForeignOriginError``.
This is the one place that check lives.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from d365kit.errors import ForeignOriginError, TransportError
from d365kit.odata.errors import error_from_response

log = logging.getLogger("d365kit.odata")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRY_STATUSES = frozenset({429, 503, 504})


class PinnedSession(requests.Session):
    """A requests Session whose own ``verify`` always applies.

    requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override ``Session.verify`` (the environment is
    merged per request and wins over the session setting), which breaks a client that must trust exactly
    one CA, such as the sandbox's. Passing ``verify`` on every request keeps the session's choice.
    """

    def __init__(self, verify: bool | str = True, pool_size: int = 64):
        super().__init__()
        self.verify = verify
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if kwargs.get("verify") is None:
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    max_retry_after: float = 300.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return rng.uniform(0, min(self.backoff_cap, self.backoff_base * (2**attempt)))


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _sent_nothing(exc: requests.RequestException) -> bool:
    """True when the request surely never reached the server (safe to retry any method)."""
    return isinstance(exc, requests.exceptions.ConnectTimeout) or "NewConnectionError" in repr(exc)


def origin_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, host lower-cased and the port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    default = {"https": 443, "http": 80}.get(scheme, 0)
    return scheme, (parts.hostname or "").lower(), port or default


def _show(origin: tuple[str, str, int]) -> str:
    scheme, host, port = origin
    return f"{scheme}://{host}:{port}" if host else "(no host)"


class ODataSession:
    """Authenticated requests to one service, with retries and a concurrency limit."""

    def __init__(
        self,
        name: str,
        token: Callable[..., str],
        *,
        origin: str,
        http: PinnedSession,
        max_concurrency: int,
        timeout: tuple[float, float] = (10.0, 180.0),
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.name = name
        self.origin = origin_of(origin)
        if self.origin[0] != "https" or not self.origin[1]:
            raise ForeignOriginError(
                f"{name}: the service URL {origin!r} is not https; tokens are only sent over https. "
                "Fix the profile's URL."
            )
        self._token = token
        self.http = http
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.timeout = timeout
        self.retry = retry
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.stats = {"requests": 0, "retries": 0, "throttled": 0, "refreshed": 0}

    def __repr__(self) -> str:
        return f"ODataSession({self.name!r}, max_concurrency={self.max_concurrency})"

    def check_origin(self, url: str) -> None:
        """Refuse a URL outside the service's own origin, before anything (a token above all) is sent."""
        target = origin_of(url)
        if target != self.origin:
            raise ForeignOriginError(
                f"{self.name}: refused to send a request to {_show(target)}: it is not the service's own "
                f"origin {_show(self.origin)}, so the token stays here. A link the service returned "
                "(nextLink, deltaLink, a batch location) or a URL passed in points elsewhere; nothing was sent."
            )

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        raise_for_status: bool = True,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request; raise a typed ODataError for an error answer (unless told not to)."""
        self.check_origin(url)
        method = method.upper()
        safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        refreshed = False
        attempt = 0
        while True:
            hdrs = {"Accept": "application/json", "OData-Version": "4.0", **(headers or {})}
            hdrs["Authorization"] = f"Bearer {self._token(force_refresh=refreshed and attempt == 0)}"
            wait: float | None = None
            with self._slots:
                self.stats["requests"] += 1
                try:
                    resp = self.http.request(method, url, headers=hdrs, timeout=self.timeout, **kwargs)
                except requests.RequestException as exc:
                    retryable = safe or _sent_nothing(exc)
                    if attempt + 1 >= self.retry.max_attempts or not retryable:
                        raise TransportError(
                            f"{self.name}: {method} {url} failed: {type(exc).__name__}: {exc}. "
                            + (
                                "Retries are spent."
                                if retryable
                                else "It was not retried because the write may have been applied."
                            )
                        ) from None
                    wait = self.retry.backoff(attempt, self._rng)
                    log.warning(
                        "%s: %s %s: %s; retry %d in %.2fs",
                        self.name,
                        method,
                        url,
                        type(exc).__name__,
                        attempt + 1,
                        wait,
                    )
            if wait is None:
                if resp.status_code == 401 and not refreshed:
                    refreshed, attempt = True, 0
                    self.stats["refreshed"] += 1
                    log.info("%s: 401 on %s %s; refreshing the token once", self.name, method, url)
                    continue
                retryable = resp.status_code == 429 or (resp.status_code in RETRY_STATUSES and safe)
                if not retryable or attempt + 1 >= self.retry.max_attempts:
                    if raise_for_status and resp.status_code >= 400:
                        raise error_from_response(resp)
                    return resp
                if resp.status_code == 429:
                    self.stats["throttled"] += 1
                after = _retry_after(resp)
                wait = (
                    min(after, self.retry.max_retry_after)
                    if after is not None
                    else self.retry.backoff(attempt, self._rng)
                )
                log.warning(
                    "%s: %s %s answered %d; retry %d in %.2fs%s",
                    self.name,
                    method,
                    url,
                    resp.status_code,
                    attempt + 1,
                    wait,
                    " (Retry-After)" if after is not None else "",
                )
            self.stats["retries"] += 1
            attempt += 1
            self._sleep(wait)
