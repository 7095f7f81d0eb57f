"""Profiles by name: the built-in ``sandbox`` (attach to a running sandbox, or start one for this process)
or a profile of the user's file (``d365kit.config``).

This is the one client-side module that starts the emulator, so it sits in the facade layer: the
setup layer (``config``, ``auth``) never imports ``d365kit.sandbox``."""

from __future__ import annotations

import atexit
import threading
from pathlib import Path

from d365kit.config import SANDBOX, Profile, load_profile

_lock = threading.Lock()
_started: list = []  # the in-process sandbox this module started, kept alive until exit


def sandbox_profile() -> Profile:
    """A profile for the sandbox on ``$D365KIT_SANDBOX_DIR`` (or the per-user default data dir)."""
    from d365kit.sandbox.server import Sandbox, default_data_dir, read_running

    data_dir = default_data_dir()
    with _lock:
        facts = read_running(data_dir)
        if facts is None:
            sbx = Sandbox(data_dir).start()
            _started.append(sbx)
            atexit.register(sbx.stop)
            facts = sbx.info()
    origin = f"https://{facts['host']}:{facts['port']}"
    return Profile(
        name="sandbox",
        tenant_id=facts["tenant_id"],
        client_id=facts["client_id"],
        auth_mode="client_secret",
        bc_environment=facts["environment"],
        bc_company="CRONUS USA, Inc.",
        dataverse_url=facts["dataverse_url"],
        authority_host=origin,
        bc_api_url=f"{origin}/v2.0",
        bc_scope=facts["bc_scope"],
        ca_bundle=facts["ca_bundle"],
        token_cache=str(data_dir / "tokens.json"),
        sandbox_dir=facts["data_dir"],
        production=False,
    )


def get_profile(name: str = SANDBOX, path: Path | None = None) -> Profile:
    """The profile called ``name``: the built-in sandbox, else the file's table with its environment overrides."""
    return sandbox_profile() if name == SANDBOX else load_profile(name, path)
