"""ODataSession's retry, backoff, token-refresh and error paths through an in-process fake transport.

No server and no sleeping: every test injects ``sleep=waits.append`` (the waits are recorded, not slept) and,
where jitter matters, a seeded ``rng``. The fake transport records every request that reached the "wire".
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator

import pytest
import requests
from fake_transport import session_with
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, NewConnectionError

from d365kit import AuthenticationError, ODataError, ThrottledError, TransportError
from d365kit.odata.session import ODataSession, RetryPolicy

ORIGIN = "https://svc.test"
URL = ORIGIN + "/api/data/v9.2/accounts"
TOKEN = "tok-3f9c1e7a-not-for-logs"
FRESH = "tok-fresh-8b2d44c0-not-for-logs"
OK = (200, {}, {"value": []})


def _error(status: int, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict]:
    return status, headers or {}, {"error": {"code": str(status), "message": f"answered {status}"}}


def script(*answers) -> Callable[[requests.PreparedRequest], tuple]:
    """A handler that gives ``answers`` in order (an exception instance is raised); the last one repeats."""
    items: Iterator = iter(answers)
    last: list = []

    def handler(request: requests.PreparedRequest):
        try:
            answer = next(items)
            last[:] = [answer]
        except StopIteration:
            answer = last[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return handler


def make(handler, *, retry: RetryPolicy | None = None, rng: random.Random | None = None, token=None):
    """An ODataSession on the fake transport; returns (session, transport, waits)."""
    http, transport = session_with(handler)
    waits: list[float] = []
    session = ODataSession(
        "Svc",
        token or (lambda force_refresh=False: TOKEN),
        origin=ORIGIN,
        http=http,
        max_concurrency=2,
        retry=retry or RetryPolicy(),
        sleep=waits.append,
        rng=rng or random.Random(0),
    )
    return session, transport, waits


def refused() -> requests.exceptions.ConnectionError:
    """What requests raises when the TCP connection could not be made: the request never left."""
    pool = HTTPSConnectionPool("svc.test", 443)
    reason = NewConnectionError(pool, "Failed to establish a new connection: [Errno 111] Connection refused")
    return requests.exceptions.ConnectionError(MaxRetryError(pool, "/api/data/v9.2/accounts", reason))


# -- 429 -------------------------------------------------------------------------------------------


def test_429_with_retry_after_waits_exactly_that():
    session, transport, waits = make(
        script(_error(429, {"Retry-After": "7"}), _error(429, {"Retry-After": "0.25"}), OK)
    )
    assert session.request("GET", URL).json() == {"value": []}
    assert waits == [7.0, 0.25]
    assert len(transport.sent) == 3
    assert session.stats == {"requests": 3, "retries": 2, "throttled": 2, "refreshed": 0}


def test_429_retry_after_is_capped_by_max_retry_after():
    session, _, waits = make(
        script(_error(429, {"Retry-After": "3600"}), OK), retry=RetryPolicy(max_retry_after=42.0)
    )
    session.request("GET", URL)
    assert waits == [42.0]


def test_429_is_retried_for_a_plain_post_too():
    """A 429 means the service did not process the request, so even a non-idempotent write is retried."""
    session, transport, waits = make(script(_error(429, {"Retry-After": "1"}), (201, {}, {"id": "x"})))
    assert session.request("POST", URL, json={"name": "a"}).status_code == 201
    assert waits == [1.0] and [r.method for r in transport.sent] == ["POST", "POST"]


def test_429_without_retry_after_waits_a_full_jitter_backoff():
    policy = RetryPolicy(max_attempts=6, backoff_base=1.0, backoff_cap=5.0)
    handler = script(_error(429), _error(429), _error(429), _error(429), OK)
    session, transport, waits = make(handler, retry=policy, rng=random.Random(1234))
    session.request("GET", URL)
    assert len(waits) == 4 and len(transport.sent) == 5
    ceilings = [min(policy.backoff_cap, policy.backoff_base * 2**attempt) for attempt in range(4)]
    assert ceilings == [1.0, 2.0, 4.0, 5.0]  # the cap bites at the last one
    assert all(0 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    same_state = random.Random(1234)
    assert waits == [policy.backoff(attempt, same_state) for attempt in range(4)]
    assert len(set(waits)) == 4  # jittered, not a fixed schedule


def test_backoff_draws_from_the_injected_rng():
    """Two sessions with differently seeded rngs wait differently: the rng is really the one used."""
    waits = []
    for seed in (1, 2):
        session, _, w = make(script(_error(429), _error(429), OK), rng=random.Random(seed))
        session.request("GET", URL)
        waits.append(w)
    assert waits[0] != waits[1]


def test_429_until_the_retries_are_spent_raises_throttled_error():
    session, transport, waits = make(
        script(_error(429, {"Retry-After": "2"})), retry=RetryPolicy(max_attempts=3)
    )
    with pytest.raises(ThrottledError) as exc:
        session.request("GET", URL)
    assert exc.value.status == 429 and exc.value.retry_after == 2.0
    assert len(transport.sent) == 3 and waits == [2.0, 2.0]
    assert session.stats == {"requests": 3, "retries": 2, "throttled": 2, "refreshed": 0}


# -- 503 / 504 -------------------------------------------------------------------------------------


def test_503_and_504_are_retried_for_a_get():
    session, transport, waits = make(script(_error(503), _error(504), OK))
    assert session.request("GET", URL).status_code == 200
    assert len(transport.sent) == 3 and len(waits) == 2
    assert session.stats == {"requests": 3, "retries": 2, "throttled": 0, "refreshed": 0}


@pytest.mark.parametrize("status", [503, 504])
def test_503_and_504_are_not_retried_for_a_plain_post(status):
    session, transport, waits = make(script(_error(status), (201, {}, {})))
    with pytest.raises(ODataError) as exc:
        session.request("POST", URL, json={"name": "a"})
    assert exc.value.status == status
    assert len(transport.sent) == 1 and waits == [] and session.stats["retries"] == 0


@pytest.mark.parametrize("status", [503, 504])
def test_503_and_504_are_retried_for_a_post_declared_idempotent(status):
    session, transport, waits = make(script(_error(status), (201, {}, {})))
    assert session.request("POST", URL, json={"id": "k"}, idempotent=True).status_code == 201
    assert len(transport.sent) == 2 and len(waits) == 1


def test_503_until_the_retries_are_spent_raises_the_typed_error():
    session, transport, waits = make(script(_error(503)), retry=RetryPolicy(max_attempts=4))
    with pytest.raises(ODataError) as exc:
        session.request("GET", URL)
    assert exc.value.status == 503 and not isinstance(exc.value, ThrottledError)
    assert len(transport.sent) == 4 and len(waits) == 3


# -- connection errors -----------------------------------------------------------------------------


def test_connection_error_is_retried_for_a_read():
    session, transport, waits = make(
        script(requests.exceptions.ConnectionError("connection reset by peer"), OK), rng=random.Random(5)
    )
    assert session.request("GET", URL).status_code == 200
    assert len(transport.sent) == 2
    assert waits == [RetryPolicy().backoff(0, random.Random(5))]
    assert session.stats == {"requests": 2, "retries": 1, "throttled": 0, "refreshed": 0}


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("connection reset by peer"),
        requests.exceptions.ReadTimeout("read timed out"),
    ],
    ids=["connection-reset", "read-timeout"],
)
def test_a_plain_post_that_may_have_left_is_not_retried(exc):
    session, transport, waits = make(script(exc, (201, {}, {})))
    with pytest.raises(TransportError, match="not retried because the write may have been applied") as err:
        session.request("POST", URL, json={"name": "a"})
    assert type(exc).__name__ in str(err.value)
    assert len(transport.sent) == 1 and waits == [] and session.stats["retries"] == 0


@pytest.mark.parametrize(
    "exc",
    [lambda: requests.exceptions.ConnectTimeout("connect timed out"), refused],
    ids=["connect-timeout", "new-connection-error"],
)
def test_a_post_that_surely_never_left_is_retried(exc):
    session, transport, waits = make(script(exc(), (201, {}, {})))
    assert session.request("POST", URL, json={"name": "a"}).status_code == 201
    assert len(transport.sent) == 2 and len(waits) == 1


def test_a_post_declared_idempotent_is_retried_after_a_connection_error():
    session, transport, _ = make(script(requests.exceptions.ConnectionError("reset"), (201, {}, {})))
    assert session.request("POST", URL, json={"id": "k"}, idempotent=True).status_code == 201
    assert len(transport.sent) == 2


def test_connection_errors_until_the_retries_are_spent_raise_transport_error():
    session, transport, waits = make(script(refused()), retry=RetryPolicy(max_attempts=3))
    with pytest.raises(TransportError, match="Retries are spent"):
        session.request("GET", URL)
    assert len(transport.sent) == 3 and len(waits) == 2
    assert session.stats == {"requests": 3, "retries": 2, "throttled": 0, "refreshed": 0}


# -- 401 -------------------------------------------------------------------------------------------


class Tokens:
    """A token callable that records its ``force_refresh`` arguments: stale until forced, then fresh."""

    def __init__(self):
        self.calls: list[bool] = []

    def __call__(self, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        return FRESH if force_refresh or True in self.calls[:-1] else TOKEN


def test_401_refreshes_the_token_exactly_once_and_retries():
    tokens = Tokens()

    def handler(request):
        return OK if request.headers["Authorization"] == f"Bearer {FRESH}" else _error(401)

    session, transport, waits = make(handler, token=tokens)
    assert session.request("GET", URL).status_code == 200
    assert tokens.calls == [False, True]
    assert [r.headers["Authorization"] for r in transport.sent] == [f"Bearer {TOKEN}", f"Bearer {FRESH}"]
    assert waits == []  # a refresh is not a backoff
    assert session.stats == {"requests": 2, "retries": 0, "throttled": 0, "refreshed": 1}


def test_a_second_401_raises_authentication_error():
    tokens = Tokens()
    session, transport, waits = make(script(_error(401)), token=tokens)
    with pytest.raises(AuthenticationError) as exc:
        session.request("GET", URL)
    assert exc.value.status == 401
    assert tokens.calls == [False, True] and len(transport.sent) == 2 and waits == []
    assert session.stats["refreshed"] == 1


# -- stats and secrets -----------------------------------------------------------------------------


def test_stats_count_requests_retries_throttles_and_refreshes():
    session, transport, waits = make(
        script(_error(401), _error(429, {"Retry-After": "1"}), _error(503), OK), token=Tokens()
    )
    session.request("GET", URL)
    assert session.stats == {"requests": 4, "retries": 2, "throttled": 1, "refreshed": 1}
    assert len(transport.sent) == 4 and waits[0] == 1.0 and len(waits) == 2
    session.request("GET", URL)  # the counters accumulate over the session's life
    assert session.stats == {"requests": 5, "retries": 2, "throttled": 1, "refreshed": 1}


def test_no_log_record_or_exception_text_carries_the_token(caplog):
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    scenarios = [
        (script(_error(429, {"Retry-After": "1"}), _error(503), refused(), OK), "GET", None),
        (script(_error(401)), "GET", AuthenticationError),
        (script(_error(429)), "GET", ThrottledError),
        (script(requests.exceptions.ConnectionError("reset")), "POST", TransportError),
        (script(requests.exceptions.ConnectionError("reset")), "GET", TransportError),
    ]
    for handler, method, error in scenarios:
        session, transport, _ = make(handler, token=Tokens(), retry=RetryPolicy(max_attempts=5))
        if error is None:
            session.request(method, URL)
        else:
            with pytest.raises(error) as exc:
                session.request(method, URL)
            texts += [str(exc.value), repr(exc.value), str(exc.value.__cause__), str(exc.value.__context__)]
        # the token did go on the wire, so its absence below means something
        assert any(TOKEN in r.headers["Authorization"] for r in transport.sent)
    messages = [r.getMessage() for r in caplog.records]
    assert any("answered 429" in m for m in messages) and any("refreshing the token" in m for m in messages)
    assert any("ConnectionError" in m for m in messages)
    for text in [caplog.text, *messages, *texts]:
        assert TOKEN not in text and FRESH not in text and "Bearer" not in text
