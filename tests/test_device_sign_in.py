"""Issue #13 (7d): device-code sign-in asks for a sign-in step. Polling the token endpoint answers
``authorization_pending`` until the user code is approved on the verification page (``approve_device_code``
in tests/helpers.py, or ``identity.approve_user_code``); ``expired_token`` after the code's lifetime.
d365kit's device-code mode (``d365kit.auth``) prints the message and polls while the user signs in."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from helpers import approve_device_code, public_app, sign_in_when_polled

from d365kit.auth import TokenProvider
from d365kit.errors import AuthError


@pytest.fixture()
def quick_polls(sandbox, monkeypatch):
    """Poll every second (msal waits the flow's ``interval`` between polls; Entra says 5)."""
    monkeypatch.setattr(sandbox.ctx.identity, "device_poll_interval_s", 1)


def _entra_error(result: dict) -> tuple[str, list[int]]:
    return result.get("error"), result.get("error_codes")


def _poll(app, flow: dict) -> dict:
    """One poll of the token endpoint, now (the flow dict is ours to steer, as msal documents)."""
    flow["latest_attempt_at"] = 0
    return app.acquire_token_by_device_flow(flow, exit_condition=lambda f: True)


def test_polling_stays_pending_until_the_user_signs_in(sandbox, quick_polls):
    info = sandbox.info()
    app = public_app(info)
    flow = app.initiate_device_flow(scopes=[info["bc_scope"]])
    assert flow["interval"] == 1
    for _ in range(2):  # no sign-in, no token: however often the client asks
        pending = _poll(app, flow)
        assert _entra_error(pending) == ("authorization_pending", [70016])
    assert sandbox.ctx.identity.device_polls(flow["user_code"]) == 2

    assert approve_device_code(info, "WRONGCODE").status_code == 400  # a wrong code signs nobody in
    pending = _poll(app, flow)
    assert _entra_error(pending) == ("authorization_pending", [70016])

    assert approve_device_code(info, flow["user_code"]).status_code == 200
    assert "access_token" in _poll(app, flow)


def test_an_unapproved_code_expires(sandbox, monkeypatch):
    monkeypatch.setattr(sandbox.ctx.identity, "device_code_lifetime_s", 1)
    info = sandbox.info()
    app = public_app(info)
    flow = app.initiate_device_flow(scopes=[info["dataverse_scope"]])
    pending = _poll(app, flow)
    assert _entra_error(pending) == ("authorization_pending", [70016])
    time.sleep(1.2)
    expired = _poll(app, flow)
    assert _entra_error(expired) == ("expired_token", [70020])
    assert approve_device_code(info, flow["user_code"]).status_code == 400  # too late to sign in


def test_device_code_mode_waits_for_the_user_signing_in_from_elsewhere(ws, sandbox, quick_polls, tmp_path):
    shown: list[dict] = []
    signers = []

    def prompt(flow: dict) -> None:  # d365kit shows the message; the user signs in meanwhile, elsewhere
        shown.append(flow)
        signers.append(sign_in_when_polled(sandbox, flow["user_code"]))

    prof = replace(ws.profile, name="dev-device", auth_mode="device_code", sandbox_dir=None)
    provider = TokenProvider(prof, cache_path=tmp_path / "device.json", prompt=prompt)
    bearer = provider.token(prof.dataverse_scope)
    (signer,) = signers
    signer.join(10)
    assert signer.result == 200  # it signed in only after the client had been told to wait
    claims = sandbox.ctx.identity.verify(bearer, sandbox.info()["dataverse_url"])
    assert claims["idtyp"] == "user" and claims["appid"] == prof.client_id
    assert shown[0]["user_code"] in shown[0]["message"]


def test_device_code_mode_without_a_sign_in_fails_with_entras_reason(ws, sandbox, monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox.ctx.identity, "device_code_lifetime_s", 1)
    monkeypatch.setattr(sandbox.ctx.identity, "device_poll_interval_s", 1)
    prof = replace(ws.profile, name="dev-nobody", auth_mode="device_code", sandbox_dir=None)
    provider = TokenProvider(prof, cache_path=tmp_path / "nobody.json", prompt=lambda flow: None)
    with pytest.raises(AuthError, match="expired_token"):
        provider.token(prof.bc_scope)
