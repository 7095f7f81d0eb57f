"""One token provider on msal for both resources (BC and Dataverse).

Confidential client (secret or certificate) or public client (device code). Tokens are cached by msal in a
``SerializableTokenCache`` persisted to a private file (0600); msal hands back a cached token until it is
close to expiry and refreshes it before it runs out. ``token(scope, force_refresh=True)`` drops the cached
token first — the OData session does that once after a 401. Nothing here logs or returns a secret, and
``repr()`` shows none.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msal

from d365kit.config import Profile
from d365kit.errors import AuthError, ConfigError
from d365kit.odata.session import PinnedSession

log = logging.getLogger(__name__)

# Hosts msal knows as Entra instances; anything else (the sandbox) skips instance discovery.
_ENTRA_HOSTS = (
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.chinacloudapi.cn",
    "login.microsoft.com",
)


def _default_cache_path(profile: Profile) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "d365kit" / f"{profile.name}.tokens.json"


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def default_prompt(flow: dict[str, Any]) -> None:
    """Show the device-code instructions in a notebook (as Markdown) or on the console."""
    message = (
        flow.get("message") or f"Open {flow['verification_uri']} and enter the code {flow['user_code']}."
    )
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(f"**Sign in to continue:** {message}"))
            return
    except ImportError:
        pass
    print(message, flush=True)


class TokenProvider:
    """Access tokens for a profile's resources, from msal and a persistent private cache."""

    def __init__(
        self,
        profile: Profile,
        *,
        http_client: PinnedSession | None = None,
        cache_path: Path | str | None = None,
        prompt: Callable[[dict[str, Any]], None] = default_prompt,
    ):
        self.profile = profile
        self.http = http_client or PinnedSession(verify=profile.ca_bundle or True)
        self.cache_path = Path(cache_path or profile.token_cache or _default_cache_path(profile))
        self.prompt = prompt
        self._lock = threading.Lock()
        self._cache = msal.SerializableTokenCache()
        if self.cache_path.exists():
            self._cache.deserialize(self.cache_path.read_text())
        self._app = self._build_app()

    def __repr__(self) -> str:
        return f"TokenProvider(profile={self.profile.name!r}, mode={self.profile.auth_mode!r}, cache={str(self.cache_path)!r})"

    def _build_app(self) -> msal.ClientApplication:
        p = self.profile
        discovery = urlsplit(p.authority_host).hostname in _ENTRA_HOSTS
        common = dict(
            authority=p.authority,
            http_client=self.http,
            token_cache=self._cache,
            instance_discovery=discovery,
        )
        try:
            if p.auth_mode == "device_code":
                return msal.PublicClientApplication(p.client_id, **common)
            if p.auth_mode == "certificate":
                key = Path(p.certificate_path or "").expanduser()
                if not key.exists():
                    raise ConfigError(f"profile {p.name!r}: certificate_path {str(key)!r} does not exist.")
                credential: Any = {"private_key": key.read_text(), "thumbprint": p.certificate_thumbprint}
            else:
                credential = p.secret()
            return msal.ConfidentialClientApplication(p.client_id, client_credential=credential, **common)
        except ValueError as exc:  # msal: authority discovery failed (wrong tenant, unreachable host)
            if isinstance(exc, ConfigError):
                raise
            raise AuthError(
                f"profile {p.name!r}: cannot use authority {p.authority}: {exc}. Check tenant_id and authority_host."
            ) from None

    def _persist(self) -> None:
        if self._cache.has_state_changed:
            _write_private(self.cache_path, self._cache.serialize())
            self._cache.has_state_changed = False

    def token(self, scope: str, *, force_refresh: bool = False) -> str:
        """A bearer token for ``scope`` (``<resource>/.default``)."""
        with self._lock:
            result = self._acquire(scope, force_refresh)
            self._persist()
        if "access_token" not in result:
            raise AuthError(
                f"profile {self.profile.name!r}: no token for {scope}: {result.get('error')}: "
                f"{(result.get('error_description') or '').splitlines()[0] if result.get('error_description') else ''}"
            )
        return result["access_token"]

    def _acquire(self, scope: str, force_refresh: bool) -> dict[str, Any]:
        app = self._app
        if isinstance(app, msal.ConfidentialClientApplication):
            if force_refresh:
                app.remove_tokens_for_client()
            return app.acquire_token_for_client(scopes=[scope])
        accounts = app.get_accounts()
        if accounts:
            result = app.acquire_token_silent([scope], account=accounts[0], force_refresh=force_refresh)
            if result and "access_token" in result:
                return result
        flow = app.initiate_device_flow(scopes=[scope])
        if "user_code" not in flow:
            return flow
        self.prompt(flow)
        log.info("waiting for device-code sign-in for profile %s", self.profile.name)
        return app.acquire_token_by_device_flow(flow)
