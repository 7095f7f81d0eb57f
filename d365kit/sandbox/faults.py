"""The gate in front of BC and Dataverse: auth (401), service protection (429), latency and faults.

``Gate`` is pure ASGI middleware around the whole app. Only service paths go through it:
``/v2.0/...`` (BC API, incl. the companion API) and ``/api/data/...`` (Dataverse); identity routes and
``/_sandbox/...`` pass straight through. For a service request, in this order:

1. auth: the Bearer token must verify for that service's audience, else 401 + ``WWW-Authenticate``;
   then the service must grant its principal access (``authorize``): BC wants an app on its "Microsoft
   Entra Applications" page with the ``API.ReadWrite.All`` role (a user token: a BC delegated permission in
   ``scp``), else 401 ``Authentication_InvalidCredentials`` "...could not be authenticated or authorized";
   Dataverse wants an enabled ``systemusers`` row for the principal (``applicationid`` = the app id, or
   ``azureactivedirectoryobjectid`` = the user's ``oid``), else 403 ``0x80072560`` "The user is not a
   member of the organization."; the claims go to ``scope["state"]["claims"]``;
2. service protection (``knobs.limits == "realistic"``), per principal (``oid``, else ``appid``) and
   service: a sliding request window, a concurrency cap (BC also a wait queue), and for Dataverse the
   combined execution time; a breach answers 429 + ``Retry-After``;
3. latency: ``knobs.latency_ms`` of ``ctx.sleep`` (asyncio sleep), inside the concurrency slot (it models
   server time, so it counts as execution time and makes the concurrency caps bite in benchmarks);
4. faults: ``knobs.error_rate`` answers a 503 before the service runs; ``knobs.reset_after_commit_rate``
   drops the connection of a write (POST/PATCH/PUT/DELETE, a ``$batch`` as a whole) after the service
   answered < 300, i.e. after the write committed, so the client sees a connection error.

Knobs are read per request. ``GET /_sandbox/stats`` (admin key) answers ``Gate.stats``. Time comes from the
context: ``ctx.clock`` (default ``time.monotonic``) for the windows and execution times, ``ctx.sleep``
(default ``asyncio.sleep``) for latency; tests swap in a fake clock to drive the windows deterministically.

Choices on UNVERIFIED wire facts (docs/sandbox.md#choices-on-unverified-wire-facts):
- BC 401 ``WWW-Authenticate``: ``Bearer authorization_uri="<authority>/oauth2/authorize",
  resource_id="https://api.businesscentral.dynamics.com"`` (quoted; Dataverse's shape is documented,
  BC's is not).
- Dataverse 401 body: code ``0x0`` (Dataverse codes are "often empty or 0x0") and a message starting with
  a 401 error name of DV-COMPOSE: ``RequestIsNotAuthenticated`` (no bearer token), ``ExpiredAuthTicket``
  or ``InvalidAuthTicket`` (token refused), then the identity's reason.
- Access the service does not grant: BC answers 401 ``Authentication_InvalidCredentials`` with "Web service
  call failed because user could not be authenticated or authorized." (the answer reported for a token
  without ``roles``; BC has no 403 for it), Dataverse 403 ``0x80072560`` "The user is not a member of the
  organization." (as Microsoft's troubleshooting pages quote it). Which BC roles suffice (only
  ``API.ReadWrite.All`` here) is a choice.
- BC 429 body: code ``Application_TooManyRequests`` with a message naming the breached limit; BC 429s
  carry ``Retry-After`` like Dataverse's (only 502/503 are documented with it).
- Injected 503: BC code ``Unknown`` (BC's catch-all), Dataverse ``0x80040216`` (unexpected error); both
  with ``Retry-After: 1``.
- Not modelled: BC's 503 for requests queued > 8 minutes; Dataverse's per-web-server split.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from d365kit.sandbox.context import BC_RESOURCE, Knobs, SandboxContext
from d365kit.sandbox.http import Headers, Resp, correlation_id
from d365kit.sandbox.identity import BC_DELEGATED, TokenError
from d365kit.sandbox.store import q

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
STATS_PATH = "/_sandbox/stats"


@dataclass(frozen=True)
class Limits:
    """One service's per-principal limits (docs/sandbox.md#service-protection-and-faults); ``scaled`` shrinks the windows."""

    requests: int  # per window
    window_s: float
    concurrent: int
    queue: int  # requests that may wait for a slot; beyond that 429 at once
    execution_ms: float | None = None  # combined execution time per window (Dataverse)

    def scaled(self, scale: float) -> Limits:
        return replace(
            self,
            requests=max(1, round(self.requests * scale)),
            window_s=self.window_s * scale,
            execution_ms=None if self.execution_ms is None else self.execution_ms * scale,
        )


BC_LIMITS = Limits(requests=6000, window_s=300, concurrent=5, queue=95)
DATAVERSE_LIMITS = Limits(requests=6000, window_s=300, concurrent=52, queue=0, execution_ms=1_200_000)


@dataclass
class GateStats:
    """Counters for tests and benchmarks (service requests only)."""

    requests: int = 0
    unauthorized: int = 0
    forbidden: int = 0
    throttled: int = 0
    injected_errors: int = 0
    resets: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Throttled(Exception):
    """A request refused by service protection; ``kind`` is requests, concurrency or execution."""

    def __init__(self, kind: str, retry_after: float, limits: Limits):
        super().__init__(kind)
        self.kind, self.limits = kind, limits
        self.retry_after = max(1, math.ceil(retry_after))


# -- service protection --------------------------------------------------------------------------


class _Bucket:
    """One principal's use of one service: request times, execution times, running and queued requests."""

    def __init__(self) -> None:
        self.hits: deque[float] = deque()
        self.executions: deque[tuple[float, float]] = deque()  # (finished at, ms)
        self.running = 0
        self.waiting: deque[asyncio.Future[None]] = deque()

    def admit(self, limits: Limits, now: float) -> None:
        """Count the request in the window or raise ``Throttled`` (concurrency is checked first)."""
        horizon = now - limits.window_s
        while self.hits and self.hits[0] <= horizon:
            self.hits.popleft()
        while self.executions and self.executions[0][0] <= horizon:
            self.executions.popleft()
        if self.running + len(self.waiting) >= limits.concurrent + limits.queue:
            raise Throttled("concurrency", 1, limits)
        if len(self.hits) >= limits.requests:
            raise Throttled("requests", self.hits[0] - horizon, limits)
        if limits.execution_ms is not None and sum(ms for _, ms in self.executions) >= limits.execution_ms:
            raise Throttled("execution", self.executions[0][0] - horizon, limits)
        self.hits.append(now)

    async def enter(self, limits: Limits) -> None:
        """Take a processing slot, waiting in FIFO order when all are busy."""
        if self.running < limits.concurrent and not self.waiting:
            self.running += 1
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            await turn  # the leaving request hands its slot over
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.leave()
            else:
                self.waiting.remove(turn)
            raise

    def leave(self) -> None:
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.running -= 1


class ServiceProtection:
    """The buckets of one limits profile; the gate starts a fresh one when the profile, scale or clock changes.

    ``clock`` (seconds, monotonic) times the sliding windows and the execution of each request.
    """

    def __init__(self, profile: tuple[str, float], clock: Callable[[], float] = time.monotonic):
        self.profile = profile
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    async def acquire(self, service: str, principal: str, limits: Limits) -> Callable[[], None]:
        """Admit a request (or raise ``Throttled``) and take a slot; returns the release callback."""
        bucket = self._buckets.setdefault((service, principal), _Bucket())
        bucket.admit(limits, self.clock())
        await bucket.enter(limits)
        started = self.clock()

        def release() -> None:
            finished = self.clock()
            bucket.leave()
            if limits.execution_ms is not None:
                bucket.executions.append((finished, (finished - started) * 1000))

        return release


# -- the two services' answers -------------------------------------------------------------------


class _BC:
    name = "bc"
    limits = BC_LIMITS

    @staticmethod
    def audience(ctx: SandboxContext) -> str:
        return BC_RESOURCE

    @staticmethod
    def _error(status: int, code: str, text: str, headers: Any = ()) -> Resp:
        message = f"{text}  CorrelationId:  {correlation_id()}."
        return Resp.json(status, {"error": {"code": code, "message": message}}, headers)

    @staticmethod
    def _challenge(ctx: SandboxContext) -> dict[str, str]:
        return {
            "WWW-Authenticate": f'Bearer authorization_uri="{ctx.authority}/oauth2/authorize", '
            f'resource_id="{BC_RESOURCE}"'
        }

    def unauthorized(self, ctx: SandboxContext, refusal: TokenError | None) -> Resp:
        return self._error(
            401,
            "Authentication_InvalidCredentials",
            "The server has rejected the client credentials.",
            self._challenge(ctx),
        )

    def authorize(self, ctx: SandboxContext, claims: dict[str, Any]) -> Resp | None:
        """None when BC lets this principal in: an app on BC's Entra Applications page with the
        ``API.ReadWrite.All`` role, or a user token with a BC delegated permission."""
        if claims.get("idtyp") == "user" or "scp" in claims:
            granted = set(str(claims.get("scp", "")).split()) & set(BC_DELEGATED)
        else:
            app = ctx.identity.application(claims.get("appid"))
            granted = app is not None and app.bc_entra_app and "API.ReadWrite.All" in claims.get("roles", ())
        if granted:
            return None
        return self._error(
            401,
            "Authentication_InvalidCredentials",
            "Web service call failed because user could not be authenticated or authorized.",
            self._challenge(ctx),
        )

    def throttled(self, exc: Throttled) -> Resp:
        lim = exc.limits
        if exc.kind == "concurrency":
            text = (
                f"Too many concurrent requests: {lim.concurrent} may run and {lim.queue} may wait per user; "
                "retry later."
            )
        else:
            text = f"Too many requests: the limit is {lim.requests} requests per {lim.window_s:g} seconds per user."
        return self._error(429, "Application_TooManyRequests", text, {"Retry-After": str(exc.retry_after)})

    def unavailable(self) -> Resp:
        text = "The service is temporarily unavailable (sandbox fault injection). Please retry."
        return self._error(503, "Unknown", text, {"Retry-After": "1"})


class _Dataverse:
    name = "dataverse"
    limits = DATAVERSE_LIMITS

    @staticmethod
    def audience(ctx: SandboxContext) -> str:
        return ctx.dataverse_url

    @staticmethod
    def _error(status: int, code: str, message: str, headers: Any = ()) -> Resp:
        return Resp.json(status, {"error": {"code": code, "message": message}}, headers)

    def unauthorized(self, ctx: SandboxContext, refusal: TokenError | None) -> Resp:
        challenge = (
            f"Bearer authorization_uri={ctx.authority}/oauth2/authorize, resource_id={ctx.dataverse_url}/"
        )
        if refusal is None:
            message = "RequestIsNotAuthenticated: the request carries no Bearer access token."
        else:
            name = "ExpiredAuthTicket" if refusal.kind == "expired" else "InvalidAuthTicket"
            message = f"{name}: {refusal}"
        return self._error(401, "0x0", message, {"WWW-Authenticate": challenge})

    def authorize(self, ctx: SandboxContext, claims: dict[str, Any]) -> Resp | None:
        """None when the organization has an enabled user for the principal: the application user of the
        app (``applicationid``) or the signed-in user (``azureactivedirectoryobjectid`` = ``oid``)."""
        if claims.get("idtyp") == "user" or "scp" in claims:
            column, value = "azureactivedirectoryobjectid", claims.get("oid")
        else:
            column, value = "applicationid", claims.get("appid")
        users = ctx.store.entity("dataverse", "systemusers")
        where = f"lower({q(column)}) = ? AND NOT coalesce({q('isdisabled')}, 0)"
        if value and ctx.store.count(users, where=where, params=[str(value).lower()]):
            return None
        return self._error(403, "0x80072560", "The user is not a member of the organization.")

    def throttled(self, exc: Throttled) -> Resp:
        lim = exc.limits
        code, message = {
            "requests": (
                "0x80072322",
                f"Number of requests exceeded the limit of {lim.requests} over time window of "
                f"{lim.window_s:g} seconds.",
            ),
            "execution": (
                "0x80072321",
                f"Combined execution time of incoming requests exceeded limit of {lim.execution_ms:,.0f} "
                f"milliseconds over time window of {lim.window_s:g} seconds. Decrease number of concurrent "
                "requests or reduce the duration of requests and try again later.",
            ),
            "concurrency": (
                "0x80072326",
                f"Number of concurrent requests exceeded the limit of {lim.concurrent}.",
            ),
        }[exc.kind]
        return self._error(429, code, message, {"Retry-After": str(exc.retry_after)})

    def unavailable(self) -> Resp:
        message = "The service is temporarily unavailable (sandbox fault injection). Please retry."
        return self._error(503, "0x80040216", message, {"Retry-After": "1"})


_SERVICES: tuple[tuple[str, _BC | _Dataverse], ...] = (("/v2.0/", _BC()), ("/api/data/", _Dataverse()))


def _service_of(path: str) -> _BC | _Dataverse | None:
    return next((svc for prefix, svc in _SERVICES if path.startswith(prefix)), None)


async def _answer(send: Send, resp: Resp) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
    headers.append((b"content-length", str(len(resp.body)).encode()))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body})


def _header(scope: Scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), None)


# -- connection reset ----------------------------------------------------------------------------


async def _abort_connection(receive: Receive) -> None:
    """Drop the client's TCP connection with a RST.

    uvicorn (0.54, h11 and httptools alike) passes ``RequestResponseCycle.receive`` as ``receive``; the
    cycle holds the asyncio transport. SO_LINGER 0 turns the close into a RST, ``abort()`` skips the TLS
    close_notify (over TLS, Python clients see the connection end without a response: requests raises
    ``ConnectionError``). Then wait for uvicorn to notice the lost connection (``receive`` answers
    ``http.disconnect``), so it does not try to answer the unfinished request with a 500. Without such a
    transport (another server), raise: the client then gets a 500, at least not a 2xx.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("sandbox fault injection: reset after commit (no transport to abort)")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            while (await receive())["type"] != "http.disconnect":
                pass


# -- the gate ------------------------------------------------------------------------------------


class Gate:
    """ASGI middleware: auth, service protection, latency and fault injection for the service paths."""

    def __init__(self, app: Callable[..., Awaitable[None]], ctx: SandboxContext):
        self.app, self.ctx = app, ctx
        self.stats = GateStats()
        self._protection = ServiceProtection(("unlimited", 1.0))
        self._rng = random.Random()
        self._seed: int | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = _service_of(scope["path"]) if scope["type"] == "http" else None
        if service is None:
            if scope["type"] == "http" and scope["path"] == STATS_PATH:
                await self._answer_stats(scope, send)
            else:
                await self.app(scope, receive, send)
            return
        self.stats.requests += 1
        knobs = self.ctx.knobs

        claims, refusal = self._authenticate(scope, service)
        if claims is None:
            self.stats.unauthorized += 1
            await _answer(send, service.unauthorized(self.ctx, refusal))
            return
        denied = service.authorize(self.ctx, claims)
        if denied is not None:
            if denied.status == 401:
                self.stats.unauthorized += 1
            else:
                self.stats.forbidden += 1
            await _answer(send, denied)
            return
        scope.setdefault("state", {})["claims"] = claims

        release: Callable[[], None] | None = None
        if knobs.limits == "realistic":
            principal = str(claims.get("oid") or claims.get("appid") or claims.get("azp") or "")
            try:
                release = await self._protection_for(knobs).acquire(
                    service.name, principal, service.limits.scaled(knobs.limits_scale)
                )
            except Throttled as exc:
                self.stats.throttled += 1
                await _answer(send, service.throttled(exc))
                return
        try:
            await self._handle(scope, receive, send, service, knobs)
        finally:
            if release is not None:
                release()

    def _authenticate(
        self, scope: Scope, service: _BC | _Dataverse
    ) -> tuple[dict[str, Any] | None, TokenError | None]:
        """(claims, None) when the token verifies, else (None, the refusal; None when no Bearer token)."""
        scheme, _, token = (_header(scope, b"authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None, None
        try:
            return self.ctx.identity.verify(token.strip(), service.audience(self.ctx)), None
        except TokenError as exc:
            return None, exc

    def _protection_for(self, knobs: Knobs) -> ServiceProtection:
        profile = (knobs.limits, knobs.limits_scale)
        if self._protection.profile != profile or self._protection.clock is not self.ctx.clock:
            # times taken on another clock mean nothing on this one: start with empty windows
            self._protection = ServiceProtection(profile, self.ctx.clock)
        return self._protection

    def _random(self, knobs: Knobs) -> random.Random:
        """The fault dice; re-seeded whenever ``knobs.fault_seed`` changes, so runs are reproducible."""
        if knobs.fault_seed != self._seed:
            self._seed = knobs.fault_seed
            self._rng = random.Random(knobs.fault_seed)
        return self._rng

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, service: _BC | _Dataverse, knobs: Knobs
    ) -> None:
        if knobs.latency_ms > 0:
            await self.ctx.sleep(knobs.latency_ms / 1000)
        dice = self._random(knobs)
        if knobs.error_rate > 0 and dice.random() < knobs.error_rate:
            self.stats.injected_errors += 1
            await _answer(send, service.unavailable())
            return
        if scope["method"] not in WRITE_METHODS or knobs.reset_after_commit_rate <= 0:
            await self.app(scope, receive, send)
            return
        body, receive = await _buffered(receive) if scope["path"].endswith("$batch") else (b"", receive)
        writes = not scope["path"].endswith("$batch") or _batch_writes(
            body
        )  # a batch of GETs commits nothing
        reset = writes and dice.random() < knobs.reset_after_commit_rate
        await self.app(scope, receive, self._resetting(send, receive) if reset else send)

    def _resetting(self, send: Send, receive: Receive) -> Send:
        """A ``send`` that drops the connection instead of starting a successful (< 300) response."""
        dropped = False

        async def send_or_drop(message: dict[str, Any]) -> None:
            nonlocal dropped
            if message["type"] == "http.response.start" and message["status"] < 300:
                dropped = True
                self.stats.resets += 1
                await _abort_connection(receive)
            elif not dropped:
                await send(message)

        return send_or_drop

    async def _answer_stats(self, scope: Scope, send: Send) -> None:
        if _header(scope, b"x-sandbox-admin-key") != self.ctx.admin_key:
            status, body = 403, {"error": "missing or wrong X-Sandbox-Admin-Key"}
        else:
            status, body = 200, self.stats.as_dict()
        await _answer(
            send, Resp(status, Headers({"content-type": "application/json"}), json.dumps(body).encode())
        )


_BATCH_WRITE = (b'"method":"post"', b'"method":"patch"', b'"method":"put"', b'"method":"delete"')


def _batch_writes(body: bytes) -> bool:
    """Whether a ``$batch`` body (BC JSON or Dataverse multipart) holds a request other than GET."""
    text = body.lower()
    if b"http/1.1" in text:  # multipart: one request line per part
        return any(f"\n{m} ".encode() in text for m in ("post", "patch", "put", "delete"))
    return any(w in text.replace(b" ", b"") for w in _BATCH_WRITE)


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The whole request body, and a ``receive`` that hands it to the app as if unread."""
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body, sent = b"".join(chunks), False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
