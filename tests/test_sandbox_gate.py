"""The gate in front of BC and Dataverse: 401s, 429s under realistic limits, latency and injected faults."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import msal
import pytest
import requests
import uvicorn

from d365kit.sandbox.faults import Gate


def _token(info: dict, scope: str) -> str:
    app = msal.ConfidentialClientApplication(
        info["client_id"],
        client_credential=info["client_secret"],
        authority=info["authority"],
        instance_discovery=False,
        verify=info["ca_bundle"],
    )
    result = app.acquire_token_for_client(scopes=[scope])
    assert "access_token" in result, result
    return result["access_token"]


@pytest.fixture(scope="module")
def api(sandbox):
    """Cheap endpoints of both services and a bearer token for each (the gate answers before the service)."""
    info = sandbox.info()
    return {
        "bc": (f"{info['bc_url']}/companies", _token(info, info["bc_scope"])),
        "dataverse": (f"{info['dataverse_api_url']}/", _token(info, info["dataverse_scope"])),
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
    expired = sandbox.ctx.identity.mint(audience=_audience(sandbox, service), lifetime=-60)
    _assert_challenge(_get(sandbox, api[service][0], expired), service, sandbox.info())


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
def test_realistic_limits_throttle_the_request_window_with_retry_after(sandbox, api, knobs, service):
    url, token = api[service]
    knobs.update(limits="realistic", limits_scale=0.005)  # 30 requests per 1.5 s
    with requests.Session() as session:
        statuses = [_get(sandbox, url, token, session).status_code for _ in range(30)]
        assert 429 not in statuses
        throttled = _get(sandbox, url, token, session)
        assert throttled.status_code == 429
        retry_after = int(throttled.headers["Retry-After"])
        assert 1 <= retry_after <= 2
        error = throttled.json()["error"]
        if service == "bc":
            assert error["code"] == "Application_TooManyRequests" and "CorrelationId:" in error["message"]
        else:
            assert error == {
                "code": "0x80072322",
                "message": "Number of requests exceeded the limit of 30 over time window of 1.5 seconds.",
            }
        time.sleep(retry_after)
        assert _get(sandbox, url, token, session).status_code != 429


def test_unlimited_profile_never_throttles(sandbox, api, knobs):
    url, token = api["dataverse"]
    knobs.update(limits="unlimited", limits_scale=0.005)
    with requests.Session() as session:
        assert all(_get(sandbox, url, token, session).status_code != 429 for _ in range(40))


def test_dataverse_refuses_the_53rd_concurrent_request_at_once(sandbox, api, knobs):
    url, token = api["dataverse"]
    knobs.update(limits="realistic", latency_ms=1500)
    with ThreadPoolExecutor(60) as pool:
        responses = list(pool.map(lambda _: _get(sandbox, url, token), range(60)))
    throttled = [r for r in responses if r.status_code == 429]
    assert len(throttled) == 8
    assert throttled[0].json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 52.",
    }
    assert int(throttled[0].headers["Retry-After"]) >= 1


def test_bc_queues_requests_beyond_five_concurrent(sandbox, api, knobs):
    url, token = api["bc"]
    knobs.update(limits="realistic", latency_ms=400)
    started = time.monotonic()
    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(lambda _: _get(sandbox, url, token).status_code, range(10)))
    assert 429 not in statuses and 401 not in statuses
    assert time.monotonic() - started >= 0.8  # two rounds of five


# -- latency and faults ------------------------------------------------------------------------------


def test_latency_delays_each_request(sandbox, api, knobs):
    url, token = api["bc"]
    knobs.update(latency_ms=400)
    started = time.monotonic()
    _get(sandbox, url, token)
    assert time.monotonic() - started >= 0.4


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


@pytest.fixture(scope="module")
def recording_service(sandbox, tmp_path_factory):
    """The real gate (the sandbox's identity and knobs) over a tiny service that records committed writes,
    served by uvicorn over TLS like the sandbox."""
    writes: list[dict] = []

    async def service(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["method"] != "GET":
            writes.append(json.loads(body))
        status = 201 if scope["method"] == "POST" else 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    cert = tmp_path_factory.mktemp("recording") / "server.pem"
    sandbox.material.ca().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        Gate(service, sandbox.ctx), ssl_certfile=str(cert), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"https://127.0.0.1:{sock.getsockname()[1]}/api/data/v9.2/accounts", writes
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_reset_after_commit_drops_the_connection_but_keeps_the_write(sandbox, api, knobs, recording_service):
    url, writes = recording_service
    headers = {"Authorization": f"Bearer {api['dataverse'][1]}"}
    ca = sandbox.info()["ca_bundle"]
    knobs.update(reset_after_commit_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json={"name": "committed"}, headers=headers, verify=ca, timeout=30)
    assert writes[-1] == {"name": "committed"}
    # reads are never reset, and the gate keeps serving after a reset
    assert requests.get(url, headers=headers, verify=ca, timeout=30).status_code == 200
