"""The target of a sync: which tenant, BC environment, company and Dataverse organization a plan was made on
and a run writes to. Plans and journaled runs record it; ``apply`` and ``resume`` refuse a profile whose
target differs (``SyncTargetError``, naming both), and a production target needs an explicit confirmation
(``ConfirmationRequired``, stating the counts and the target).

Identity: the tenant (as the profile spells it: use one spelling, the tenant's GUID, in every profile), the
BC environment name (any case), the BC company's id (a GUID, whatever name or id the profile gives) and the
Dataverse organization's origin (``https://host[:port]``). Production: the profile's ``production`` flag,
else the environment's name (``d365kit.config.is_production``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from d365kit.config import is_production
from d365kit.errors import ConfirmationRequired, SyncTargetError
from d365kit.sync.model import Operation
from d365kit.systems import Systems

IDENTITY = ("tenant_id", "bc_environment", "company_id", "dataverse_org")


@dataclass(frozen=True)
class Target:
    tenant_id: str
    bc_environment: str
    company_id: str
    dataverse_org: str
    company: str | None = None  # the company's name, for messages
    production: bool = True

    @property
    def key(self) -> tuple[str, ...]:
        """What must match: tenant, environment, company id and Dataverse org (case-insensitively)."""
        return tuple(str(getattr(self, k) or "").lower() for k in IDENTITY)

    def __str__(self) -> str:
        company = f"{self.company} ({self.company_id})" if self.company else self.company_id
        kind = "production" if self.production else "non-production"
        return (
            f"tenant {self.tenant_id}, BC environment {self.bc_environment!r}, company {company}, "
            f"Dataverse {self.dataverse_org} [{kind}]"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Target | None:
        if not data:
            return None
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data})  # type: ignore[arg-type]


def target_of(systems: Systems, production: bool | None = None) -> Target:
    """The target ``systems`` reaches (one request: the company list, when not read yet). ``production``:
    the profile's flag; None lets the environment's name decide."""
    parts = systems.bc.api_url.rstrip("/").split("/")  # .../v2.0/<tenant>/<environment>/api
    tenant, environment = parts[-3], parts[-2]
    company_id = systems.bc.company_id
    name = next((c.get("name") for c in systems.bc.companies() if c["id"] == company_id), None)
    url = urlsplit(systems.dataverse.url) if systems.dataverse is not None else None
    org = f"{url.scheme}://{url.netloc}".lower() if url else ""
    return Target(
        tenant,
        environment,
        company_id.lower(),
        org,
        name,
        is_production(environment) if production is None else production,
    )


def check_same(recorded: Target | None, current: Target, what: str) -> None:
    """Refuse ``current`` when ``recorded`` (a plan's or a run's target) names another target."""
    if recorded is None:
        raise SyncTargetError(
            f"{what} records no target (made by an older d365kit), so it cannot be checked against this "
            f"profile's ({current}); plan again with this profile"
        )
    if recorded.key != current.key:
        differ = [k for k, a, b in zip(IDENTITY, recorded.key, current.key, strict=True) if a != b]
        raise SyncTargetError(
            f"{what} was made for {recorded}, but this profile writes to {current} (they differ in "
            f"{', '.join(differ)}); nothing was written. Use the profile of that target, or plan again with "
            "this one"
        )


def counts(operations: Iterable[Operation]) -> str:
    """ "12 create(s), 3 update(s), 15 coupling change(s)" for a confirmation message."""
    ops = list(operations)
    kinds = Counter(op.kind for op in ops if op.kind != "skip")
    couplings = sum(op.coupling_action is not None for op in ops)
    parts = [f"{n} {kind}(s)" for kind, n in kinds.items()] or ["no writes"]
    return ", ".join([*parts, f"{couplings} coupling change(s)"])


def confirm_production(target: Target, operations: Iterable[Operation], confirm: bool, what: str) -> None:
    """Refuse a write to a production target unless ``confirm``; the message states counts and target."""
    if target.production and not confirm:
        raise ConfirmationRequired(
            f"{what} writes to a production target: {target}: {counts(operations)}. Confirm to write: "
            "confirm=True in Python, --yes on the command line, or type the environment's name in the "
            "selective-sync panel"
        )
