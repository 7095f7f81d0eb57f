"""The gate in front of BC and Dataverse: 401s, 429s under realistic limits, latency and injected faults."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import token


@pytest.fixture(scope="module")
def api(sandbox):
    """Cheap endpoints of both services and a bearer token for each (the gate answers before the service)."""
    info = sandbox.info()
    return {
        "bc": (f"{info['bc_url']}/companies", token(info, info["bc_scope"])),
        "dataverse": (f"{info['dataverse_api_url']}/", token(info, info["dataverse_scope"])),
    }


def _get(
    sandbox, url: str, token: str | None = None, session: requests.Session | None = None
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return (session or requests).get(url, headers=headers, verify=sandbox.info()["ca_bundle"], timeout=30)


def _assert_challenge(resp: requests.Response, service: str, info: dict) -> None:
    assert resp.status_code == 401
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert f"authorization_uri={info['authority']}/oauth2/authorize" in challenge.replace('"', "")
    error = resp.json()["error"]
    if service == "bc":
        assert "resource_id=https://api.businesscentral.dynamics.com" in challenge.replace('"', "")
        assert error["code"] == "Authentication_InvalidCredentials"
        assert error["message"].startswith(
            "The server has rejected the client credentials.  CorrelationId:  "
        )
    else:
        assert f"resource_id={info['dataverse_url']}/" in challenge
        assert error["code"] == "0x0" and error["message"]


SERVICES = ["bc", "dataverse"]


class FakeClock:
    """The gate's time for one test (``ctx.clock`` and ``ctx.sleep``): it moves only when the test advances it.

    A latency sleep started at ``now`` ends once the clock reaches ``now + seconds``; until then the request
    is held inside its concurrency slot, so a test can see which requests run and which wait.
    """

    def __init__(self, start: float = 1000.0):
        self.now = start
        self.sleeps: list[tuple[float, float]] = []  # (started at, seconds), in start order
        self.sleeping = 0
        self.max_sleeping = 0
        self._closed = False

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        deadline = self.now + seconds
        self.sleeps.append((self.now, seconds))
        self.sleeping += 1
        self.max_sleeping = max(self.max_sleeping, self.sleeping)
        try:
            while self.now < deadline - 1e-9 and not self._closed:
                await asyncio.sleep(0.001)  # real time, only to let the event loop serve others
        finally:
            self.sleeping -= 1

    def close(self) -> None:
        """Wake every sleeper (test teardown)."""
        self._closed = True


@pytest.fixture()
def clock(sandbox):
    """A ``FakeClock`` driving the gate's windows and latency, the real one restored after the test."""
    fake, ctx = FakeClock(), sandbox.ctx
    saved = ctx.clock, ctx.sleep
    ctx.clock, ctx.sleep = fake, fake.sleep
    yield fake
    fake.close()
    ctx.clock, ctx.sleep = saved


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    """Wait for an event (the bound only turns a hang into a failure; passing never depends on it)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _gate_requests(sandbox) -> int:
    """Service requests the gate has taken in so far. Answered on the event loop between requests, so
    every request counted has already been admitted into a slot, queued, or refused."""
    info = sandbox.info()
    stats = requests.get(
        f"https://127.0.0.1:{info['port']}/_sandbox/stats",
        headers={"X-Sandbox-Admin-Key": info["admin_key"]},
        verify=info["ca_bundle"],
        timeout=30,
    )
    return stats.json()["requests"]


# -- auth --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("authorization", [None, "Basic dXNlcjpwdw==", "Bearer", "Bearer not.a.jwt"])
def test_missing_or_malformed_token_is_refused_with_a_challenge(sandbox, api, service, authorization):
    url, _ = api[service]
    headers = {"Authorization": authorization} if authorization else {}
    resp = requests.get(url, headers=headers, verify=sandbox.info()["ca_bundle"], timeout=30)
    _assert_challenge(resp, service, sandbox.info())


@pytest.mark.parametrize(("service", "other"), [("bc", "dataverse"), ("dataverse", "bc")])
def test_a_token_for_the_other_service_is_refused(sandbox, api, service, other):
    resp = _get(sandbox, api[service][0], api[other][1])
    _assert_challenge(resp, service, sandbox.info())


@pytest.mark.parametrize("service", SERVICES)
def test_an_expired_token_is_refused(sandbox, api, service):
    expired = sandbox.ctx.identity.issue(_audience(sandbox, service), lifetime_s=-3600)
    resp = _get(sandbox, api[service][0], expired)
    _assert_challenge(resp, service, sandbox.info())
    if service == "dataverse":
        assert resp.json()["error"]["message"].startswith("ExpiredAuthTicket: ")


def _audience(sandbox, service: str) -> str:
    return "https://api.businesscentral.dynamics.com" if service == "bc" else sandbox.info()["dataverse_url"]


@pytest.mark.parametrize("service", SERVICES)
def test_a_valid_token_passes_the_gate(sandbox, api, service):
    url, token = api[service]
    assert _get(sandbox, url, token).status_code not in (401, 429, 503)


def test_identity_and_control_routes_need_no_token(sandbox):
    info = sandbox.info()
    ok = requests.get(
        f"https://127.0.0.1:{info['port']}/_sandbox/health", verify=info["ca_bundle"], timeout=30
    )
    assert ok.status_code == 200


# -- service protection ------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_realistic_limits_throttle_the_request_window_with_retry_after(sandbox, api, knobs, clock, service):
    url, token = api[service]
    knobs.update(limits="realistic", limits_scale=0.002)  # 12 requests per 0.6 s
    with requests.Session() as session:
        statuses = [_get(sandbox, url, token, session).status_code for _ in range(12)]
        assert 429 not in statuses
        throttled = _get(sandbox, url, token, session)
        assert throttled.status_code == 429
        retry_after = int(throttled.headers["Retry-After"])
        assert retry_after == 1
        error = throttled.json()["error"]
        if service == "bc":
            assert error["code"] == "Application_TooManyRequests" and "CorrelationId:" in error["message"]
        else:
            assert error == {
                "code": "0x80072322",
                "message": "Number of requests exceeded the limit of 12 over time window of 0.6 seconds.",
            }
        clock.advance(0.5)  # the twelve are still inside the 0.6 s window
        assert _get(sandbox, url, token, session).status_code == 429
        clock.advance(retry_after - 0.5)  # waited Retry-After since the refusal: the window has slid
        assert _get(sandbox, url, token, session).status_code != 429


def test_unlimited_profile_never_throttles(sandbox, api, knobs):
    url, token = api["dataverse"]
    knobs.update(limits="unlimited", limits_scale=0.002)
    with requests.Session() as session:
        assert all(_get(sandbox, url, token, session).status_code != 429 for _ in range(20))


def test_dataverse_refuses_the_53rd_concurrent_request_at_once(sandbox, api, knobs, clock):
    url, token = api["dataverse"]
    knobs.update(limits="realistic", latency_ms=1000)
    before = _gate_requests(sandbox)
    with ThreadPoolExecutor(60) as pool:
        futures = [pool.submit(_get, sandbox, url, token) for _ in range(60)]
        _until(lambda: _gate_requests(sandbox) - before == 60, "all 60 requests at the gate")
        assert clock.sleeping == 52  # 52 run (held in their latency until the clock moves) ...
        _until(lambda: sum(f.done() for f in futures) == 8, "the refused requests' answers")
        refused = [f.result() for f in futures if f.done()]
        assert [r.status_code for r in refused] == [429] * 8  # ... and the other 8 are refused at once
        clock.advance(1.0)
        responses = [f.result() for f in futures]
    throttled = [r for r in responses if r.status_code == 429]
    assert len(throttled) == 8
    assert not {r.status_code for r in responses if r.status_code != 429} & {401, 503}
    assert throttled[0].json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 52.",
    }
    assert throttled[0].headers["Retry-After"] == "1"


def test_dataverse_throttles_combined_execution_time(sandbox, api, knobs, clock):
    url, token = api["dataverse"]
    knobs.update(limits="realistic", limits_scale=0.002, latency_ms=1000)  # 2,400 ms per 0.6 s
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(_get, sandbox, url, token) for _ in range(3)]
        _until(lambda: clock.sleeping == 3, "three requests running")
        clock.advance(1.0)  # each ran 1,000 ms: 3,000 ms finished inside the window
        assert 429 not in [f.result().status_code for f in futures]
    throttled = _get(sandbox, url, token)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    error = throttled.json()["error"]
    assert error["code"] == "0x80072321"
    assert error["message"].startswith(
        "Combined execution time of incoming requests exceeded limit of 2,400 milliseconds over time window of 0.6 seconds."
    )
    knobs.update(latency_ms=0)
    clock.advance(0.5)  # the executions finished 0.5 s ago: still inside the window
    assert _get(sandbox, url, token).status_code == 429
    clock.advance(0.5)  # now outside it
    assert _get(sandbox, url, token).status_code != 429


def test_bc_queues_requests_beyond_five_concurrent(sandbox, api, knobs, clock):
    url, token = api["bc"]
    knobs.update(limits="realistic", latency_ms=400)
    start, before = clock.now, _gate_requests(sandbox)
    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(_get, sandbox, url, token) for _ in range(10)]
        _until(lambda: _gate_requests(sandbox) - before == 10, "all ten requests at the gate")
        assert clock.sleeping == 5 and not any(f.done() for f in futures)  # five run, five wait
        clock.advance(0.4)  # the first five finish and hand their slots to the waiting five
        _until(lambda: len(clock.sleeps) == 10 and clock.sleeping == 5, "the second round running")
        clock.advance(0.4)
        statuses = [f.result().status_code for f in futures]
    assert 429 not in statuses and 401 not in statuses
    assert [at for at, _ in clock.sleeps] == [start] * 5 + [pytest.approx(start + 0.4)] * 5  # two rounds
    assert clock.max_sleeping == 5


# -- latency and faults ------------------------------------------------------------------------------


def test_latency_delays_each_request(sandbox, api, knobs, clock):
    url, token = api["bc"]
    knobs.update(latency_ms=400)
    start = clock.now
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(_get, sandbox, url, token)
        _until(lambda: clock.sleeping == 1, "the request in its latency")
        assert clock.sleeps == [(start, 0.4)]
        clock.advance(0.3)
        assert not future.done()  # held until the latency has passed on the gate's clock
        clock.advance(0.1)
        assert future.result().status_code == 200
    with requests.Session() as session:  # each request, not just the first on a connection
        for _ in range(2):
            with ThreadPoolExecutor(1) as pool:
                future = pool.submit(_get, sandbox, url, token, session)
                _until(lambda: clock.sleeping == 1, "the request in its latency")
                clock.advance(0.4)
                assert future.result().status_code == 200
    assert [seconds for _, seconds in clock.sleeps] == [0.4] * 3


@pytest.mark.parametrize("service", SERVICES)
def test_error_rate_one_answers_service_shaped_503(sandbox, api, knobs, service):
    url, token = api[service]
    knobs.update(error_rate=1.0)
    resp = _get(sandbox, url, token)
    assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["error"]["code"] == ("Unknown" if service == "bc" else "0x80040216")


def test_seeded_faults_repeat(sandbox, api, knobs):
    url, token = api["dataverse"]

    def pattern(seed: int) -> list[int]:
        knobs.update(error_rate=0.5, fault_seed=seed)  # the gate re-seeds when the seed changes
        with requests.Session() as session:
            return [_get(sandbox, url, token, session).status_code for _ in range(16)]

    first = pattern(7)
    assert 503 in first and any(s != 503 for s in first)
    assert pattern(8) != first
    assert pattern(7) == first


def test_stats_count_requests_and_faults(sandbox, api, knobs):
    info = sandbox.info()
    stats_url = f"https://127.0.0.1:{info['port']}/_sandbox/stats"
    admin = {"X-Sandbox-Admin-Key": info["admin_key"]}
    before = requests.get(stats_url, headers=admin, verify=info["ca_bundle"], timeout=30).json()
    knobs.update(error_rate=1.0)
    _get(sandbox, *api["bc"])
    _get(sandbox, api["bc"][0])
    after = requests.get(stats_url, headers=admin, verify=info["ca_bundle"], timeout=30).json()
    assert after["requests"] - before["requests"] == 2
    assert after["injected_errors"] - before["injected_errors"] == 1
    assert after["unauthorized"] - before["unauthorized"] == 1
    assert requests.get(stats_url, verify=info["ca_bundle"], timeout=30).status_code == 403


# -- reset after commit ------------------------------------------------------------------------------


def test_reset_after_commit_drops_the_connection_but_keeps_the_write(sandbox, knobs):
    info = sandbox.info()
    accounts, ca = f"{info['dataverse_api_url']}/accounts", info["ca_bundle"]
    headers = {"Authorization": f"Bearer {token(info, info['dataverse_scope'])}"}
    name = f"Gate reset probe {uuid.uuid4()}"
    knobs.update(reset_after_commit_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        requests.post(accounts, json={"name": name}, headers=headers, verify=ca, timeout=30)
    # reads are never reset, and the gate keeps serving after a reset; the write is in the store
    found = requests.get(
        accounts,
        params={"$filter": f"name eq '{name}'", "$select": "name"},
        headers=headers,
        verify=ca,
        timeout=30,
    )
    assert found.status_code == 200
    assert [row["name"] for row in found.json()["value"]] == [name]
