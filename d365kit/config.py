"""Profiles: where a tenant is and how to authenticate to it — never the secret itself.

A profile file is TOML (path from ``$D365KIT_CONFIG``, else ``$XDG_CONFIG_HOME/d365kit/config.toml``)::

    [profiles.prod]
    tenant_id = "contoso.onmicrosoft.com"
    client_id = "00000000-0000-0000-0000-000000000000"
    auth_mode = "client_secret"            # or "certificate", "device_code"
    secret_env = "D365KIT_PROD_SECRET"     # the variable that holds the client secret
    bc_environment = "Production"
    production = true                      # writes need confirm=True / --yes (see below)
    bc_company = "CRONUS USA, Inc."        # name or id
    dataverse_url = "https://contoso.crm.dynamics.com"

Every field can be overridden from the environment as ``D365KIT_<PROFILE>_<FIELD>`` (upper case), e.g.
``D365KIT_PROD_BC_COMPANY``. Secrets come only from the variable named by ``secret_env`` or from the OS
keyring (``keyring = true``, service ``d365kit``, user ``<profile>``); a ``client_secret`` key in the file
is refused. The built-in ``sandbox`` profile attaches to a running sandbox or starts one.

``production``: ``true`` marks the profile's target as production, ``false`` as not; when it is not set,
the BC environment decides (``is_production``): an environment whose name is ``sandbox`` or starts or ends
with it (``Sandbox``, ``sandbox-uat``, ``DevSandbox``; any case) counts as sandbox-type, every other name
(the default ``Production`` too) as production. A selective sync writes to a production target only with
an explicit confirmation (docs/sync.md#production-targets). The built-in sandbox profile is not production.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from d365kit.errors import ConfigError

AuthMode = Literal["client_secret", "certificate", "device_code"]
AUTH_MODES: tuple[str, ...] = ("client_secret", "certificate", "device_code")
SANDBOX = "sandbox"


@dataclass(frozen=True)
class Profile:
    name: str
    tenant_id: str
    client_id: str
    auth_mode: AuthMode = "client_secret"
    bc_environment: str = "Production"
    bc_company: str | None = None
    dataverse_url: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    bc_api_url: str = "https://api.businesscentral.dynamics.com/v2.0"
    bc_scope: str = "https://api.businesscentral.dynamics.com/.default"
    secret_env: str | None = None
    keyring: bool = False
    certificate_path: str | None = None  # PEM with the private key (and the certificate)
    certificate_thumbprint: str | None = None
    ca_bundle: str | None = None  # trust exactly this CA (the sandbox's); None = system trust store
    token_cache: str | None = None  # default: <user cache dir>/d365kit/<profile>.tokens.json
    sandbox_dir: str | None = None  # built-in sandbox profile: the data dir holding its demo credentials
    production: bool | None = None  # None: the BC environment's name decides (``is_production``)

    @property
    def is_production(self) -> bool:
        """Writes need an explicit confirmation: ``production`` when set, else ``is_production(env)``."""
        return is_production(self.bc_environment) if self.production is None else self.production

    @property
    def authority(self) -> str:
        return f"{self.authority_host.rstrip('/')}/{self.tenant_id}"

    @property
    def dataverse_scope(self) -> str:
        if not self.dataverse_url:
            raise ConfigError(f"profile {self.name!r} has no dataverse_url; add it to the profile.")
        return f"{self.dataverse_url.rstrip('/')}/.default"

    def secret(self) -> str:
        """The client secret, from the named environment variable or the OS keyring.

        The built-in sandbox profile reads the sandbox's own demo secret from its private data dir.
        """
        if self.sandbox_dir:
            import json

            return json.loads((Path(self.sandbox_dir) / "credentials.json").read_text())["client_secret"]
        if self.secret_env:
            value = os.environ.get(self.secret_env)
            if value:
                return value
            raise ConfigError(
                f"profile {self.name!r} reads its client secret from ${self.secret_env}, which is not set. "
                f"Set it in the environment (export {self.secret_env}=...), or use keyring = true."
            )
        if self.keyring:
            try:
                import keyring  # optional: only for users who keep secrets there
            except ImportError:
                raise ConfigError(
                    f"profile {self.name!r} uses the OS keyring, but the 'keyring' package is not installed: "
                    "pip install keyring"
                ) from None
            value = keyring.get_password("d365kit", self.name)
            if value:
                return value
            raise ConfigError(
                f"no secret for profile {self.name!r} in the OS keyring; store one with "
                f"`keyring set d365kit {self.name}`."
            )
        raise ConfigError(
            f"profile {self.name!r} needs a client secret: name the environment variable holding it "
            '(secret_env = "...") or set keyring = true.'
        )


def is_production(bc_environment: str | None) -> bool:
    """Does a BC environment of this name count as production? Sandbox-type environments are recognized by
    name, as the API URL carries no environment type: ``sandbox``, or a name starting or ending with it
    (any case, separators allowed: ``Sandbox``, ``sandbox-uat``, ``UAT_Sandbox``). Everything else counts
    as production unless the profile says ``production = false``."""
    name = (bc_environment or "").strip().lower()
    return not (name.startswith("sandbox") or name.endswith("sandbox"))


def config_path() -> Path:
    env = os.environ.get("D365KIT_CONFIG")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "d365kit" / "config.toml"


_FIELDS = {f.name: f for f in fields(Profile) if f.name not in ("name", "extra", "sandbox_dir")}


def _coerce(profile: str, key: str, value: Any) -> Any:
    if key in ("keyring", "production"):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes"):
            return True
        if str(value).lower() in ("0", "false", "no", ""):
            return False
        raise ConfigError(f"profile {profile!r}: {key} must be true or false, not {value!r}")
    if not isinstance(value, str):
        raise ConfigError(f"profile {profile!r}: {key} must be a string, not {type(value).__name__}")
    return value


def load_profiles(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Raw profile tables from the TOML file ({} when there is no file)."""
    path = path or config_path()
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        raise ConfigError(f"{path}: [profiles] must be a table of [profiles.<name>] tables")
    return profiles


def load_profile(name: str, path: Path | None = None) -> Profile:
    """A profile of the file: its table, then ``D365KIT_<NAME>_<FIELD>`` overrides, validated. (The built-in
    ``sandbox`` profile is resolved by ``d365kit.profiles.get_profile``.)"""
    profiles = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigError(
            f"unknown profile {name!r} (profiles in {path or config_path()}: {known}; built in: sandbox). "
            f"Add a [profiles.{name}] table to that file, or pick one of those."
        )
    raw = dict(profiles[name])
    if "client_secret" in raw:
        raise ConfigError(
            f"profile {name!r} holds a client_secret in the file; secrets never go there. Remove it and set "
            'secret_env = "<VARIABLE>" (or keyring = true).'
        )
    prefix = f"D365KIT_{name.upper().replace('-', '_')}_"
    for key in _FIELDS:
        env_value = os.environ.get(prefix + key.upper())
        if env_value is not None:
            raw[key] = env_value
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"profile {name!r}: unknown field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}"
        )
    missing = [k for k in ("tenant_id", "client_id") if not raw.get(k)]
    if missing:
        raise ConfigError(f"profile {name!r} lacks {', '.join(missing)}; add them to the profile.")
    values = {k: _coerce(name, k, v) for k, v in raw.items()}
    profile = Profile(name=name, **values)
    return validate(profile)


def validate(profile: Profile) -> Profile:
    if profile.auth_mode not in AUTH_MODES:
        raise ConfigError(
            f"profile {profile.name!r}: auth_mode {profile.auth_mode!r} is not one of {', '.join(AUTH_MODES)}"
        )
    if profile.auth_mode == "certificate" and not (
        profile.certificate_path and profile.certificate_thumbprint
    ):
        raise ConfigError(
            f"profile {profile.name!r} uses a certificate: set certificate_path (PEM private key) and "
            "certificate_thumbprint (SHA-1 hex)."
        )
    return profile


__all__ = [
    "AUTH_MODES",
    "Profile",
    "config_path",
    "is_production",
    "load_profile",
    "load_profiles",
    "replace",
]
