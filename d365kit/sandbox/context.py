"""Shared facts of one running sandbox: addresses, identities, knobs and the store."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from d365kit.sandbox.store import Store

# Fixed identities of the sandbox tenant (the client secret and certificate are generated per data dir).
TENANT_ID = "5a1d0c3e-7b2f-4e8a-9c6d-1f0e2d3c4b5a"
CLIENT_ID = "8f4e2a6c-3b1d-4c7e-a9f0-6d5b4c3a2e1f"
ENVIRONMENT = "sandbox"
BC_RESOURCE = "https://api.businesscentral.dynamics.com"
DEMO_USER_OID = "0b7c9e1a-2d4f-4a6b-8c3e-5f7a9b1d3e50"
DEMO_USER_UPN = "analyst@sandbox.d365kit.local"

LIMIT_PROFILES = ("unlimited", "realistic")


@dataclass
class Knobs:
    """Service-protection and fault settings, changeable while the sandbox runs.

    ``limits_scale`` shrinks the sliding windows of the realistic profile (request count and window
    length alike), so 0.01 means 60 requests per 3 s instead of 6,000 per 300 s; concurrency caps stay.
    """

    limits: str = "unlimited"
    limits_scale: float = 1.0
    latency_ms: float = 0.0
    error_rate: float = 0.0  # share of API requests answered with an injected 503/500 before handling
    reset_after_commit_rate: float = 0.0  # share of successful writes whose connection is reset after commit
    fault_seed: int | None = None

    def update(self, **changes: Any) -> None:
        for k, v in changes.items():
            if not hasattr(self, k):
                raise ValueError(f"unknown sandbox knob {k!r}; known: {', '.join(asdict(self))}")
            setattr(
                self, k, type(getattr(self, k))(v) if getattr(self, k) is not None and v is not None else v
            )
        if self.limits not in LIMIT_PROFILES:
            raise ValueError(f"limits must be one of {LIMIT_PROFILES}, not {self.limits!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SandboxContext:
    """Everything a service needs to answer a request."""

    store: Store
    origin: str  # https://127.0.0.1:<port>
    client_secret: str
    admin_key: str
    knobs: Knobs = field(default_factory=Knobs)
    identity: Any = None  # identity.Identity, set by the server
    tenant_id: str = TENANT_ID
    client_id: str = CLIENT_ID
    environment: str = ENVIRONMENT
    lock: threading.RLock = field(default_factory=threading.RLock)
    # The gate's time (faults.py): ``clock`` drives the service-protection windows and the execution time,
    # ``sleep`` the latency. In-process callers (tests) may swap both for a fake clock they advance.
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    @property
    def authority(self) -> str:
        return f"{self.origin}/{self.tenant_id}"

    @property
    def bc_root(self) -> str:
        """BC API root (standard APIs), with trailing slash."""
        return f"{self.origin}/v2.0/{self.tenant_id}/{self.environment}/api/v2.0/"

    @property
    def companion_root(self) -> str:
        return f"{self.origin}/v2.0/{self.tenant_id}/{self.environment}/api/d365kit/integration/v1.0/"

    @property
    def dataverse_url(self) -> str:
        """The Dataverse organization URL; also its token audience (resource id), as for a real org."""
        return self.origin

    @property
    def dataverse_root(self) -> str:
        return f"{self.origin}/api/data/v9.2/"
