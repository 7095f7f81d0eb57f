"""The built-in ``sandbox`` profile: attach to a running sandbox, or start one for this process."""

from __future__ import annotations

import atexit
import threading

from d365kit.config import Profile

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
    )
