"""Test helpers: msal clients, bearer tokens and device-code sign-in for the running sandbox.

msal's own ``verify=`` sets ``Session.verify``, which requests lets ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` override; with such a variable set (as on many machines) msal would not trust the
sandbox CA. So msal gets an ``http_client`` that trusts exactly ``info["ca_bundle"]``. It also asks for
``Connection: close``: an idle kept-alive TLS connection left in a forgotten msal session holds up the
sandbox's shutdown at the end of the session (the server waits for the client's TLS close).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msal
import pytest
import requests

_cache: dict[tuple[int, str], str] = {}
_lock = threading.Lock()


class PinnedSession(requests.Session):
    """A requests session whose ``verify`` the environment cannot override; no kept-alive connections."""

    def __init__(self, ca_bundle: str):
        super().__init__()
        self.verify = ca_bundle
        self.headers["Connection"] = "close"

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[override]
        pinned = self.verify if verify is None or verify is True else verify
        return super().merge_environment_settings(url, proxies, stream, pinned, cert)


def confidential_app(info: dict[str, Any], credential: Any = None) -> msal.ConfidentialClientApplication:
    """The demo app as msal sees it; ``credential`` defaults to the client secret."""
    return msal.ConfidentialClientApplication(
        info["client_id"],
        client_credential=credential if credential is not None else info["client_secret"],
        authority=info["authority"],
        instance_discovery=False,
        http_client=PinnedSession(info["ca_bundle"]),
    )


def public_app(info: dict[str, Any]) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(
        info["client_id"],
        authority=info["authority"],
        instance_discovery=False,
        http_client=PinnedSession(info["ca_bundle"]),
    )


def token(info: dict[str, Any], scope: str) -> str:
    """An app-only access token for ``scope`` (client secret), cached per sandbox port and scope."""
    key = (info["port"], scope)
    with _lock:
        if key not in _cache:
            result = confidential_app(info).acquire_token_for_client(scopes=[scope])
            assert "access_token" in result, result
            _cache[key] = result["access_token"]
        return _cache[key]


def auth(info: dict[str, Any], scope: str) -> dict[str, str]:
    """``Authorization`` header for ``scope``."""
    return {"Authorization": f"Bearer {token(info, scope)}"}


def approve_device_code(info: dict[str, Any], user_code: str) -> requests.Response:
    """Sign the demo user in for ``user_code`` the way a person does: post the code to the verification page.

    The sandbox asks nothing else (no password); until this happens, polling the token endpoint answers
    ``authorization_pending``. Returns the page's answer (200 signed in; 400 unknown or expired code)."""
    return requests.post(
        f"{info['authority']}/oauth2/deviceauth",
        data={"user_code": user_code},
        verify=info["ca_bundle"],
        timeout=10,
        headers={"Connection": "close"},
    )


def sign_in_when_polled(sandbox: Any, user_code: str, timeout_s: float = 20.0) -> threading.Thread:
    """A started thread that waits until the client has polled for ``user_code`` and been told
    ``authorization_pending``, then approves it on the verification page (a user signing in meanwhile).
    ``join()`` it; ``thread.result`` holds the page's status code (None when no poll came in time)."""
    import time

    def run() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if (sandbox.ctx.identity.device_polls(user_code) or 0) >= 1:
                thread.result = approve_device_code(sandbox.info(), user_code).status_code  # type: ignore[attr-defined]
                return
            time.sleep(0.05)

    thread = threading.Thread(target=run, name=f"sign-in {user_code}", daemon=True)
    thread.result = None  # type: ignore[attr-defined]
    thread.start()
    return thread


@contextmanager
def private_sandbox(path: Path) -> Iterator[tuple[Any, Any]]:
    """A private seeded sandbox and a Workspace on it through the built-in ``sandbox`` profile, for tests
    that need the pristine seed or change fault knobs (the shared session sandbox must not see either)."""
    import d365kit
    from d365kit.sandbox.server import Sandbox

    with Sandbox(data_dir=path) as sbx:
        mp = pytest.MonkeyPatch()
        mp.setenv("D365KIT_SANDBOX_DIR", str(sbx.info()["data_dir"]))
        try:
            ws = d365kit.connect("sandbox")
        finally:
            mp.undo()
        yield sbx, ws
