"""``connect(profile) -> Workspace``: the entry point, holding both authenticated clients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from d365kit.auth import TokenProvider
from d365kit.bc import BCClient
from d365kit.config import Profile, get_profile
from d365kit.dataverse import DataverseClient
from d365kit.odata.session import ODataSession, PinnedSession

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from d365kit.mapping import TableMapping
    from d365kit.reconcile import ReconcileResult
    from d365kit.sync import SyncPlan, SyncRun

# The services' own concurrency caps (api-contracts.md, Part D): the default per-service limit.
BC_CONCURRENCY = 5
DATAVERSE_CONCURRENCY = 52


@dataclass
class Workspace:
    """Both systems of one tenant, reached with one profile's identity."""

    profile: Profile
    tokens: TokenProvider
    bc: BCClient
    dataverse: DataverseClient

    def __repr__(self) -> str:
        return f"Workspace(profile={self.profile.name!r}, bc={self.bc!r}, dataverse={self.dataverse!r})"

    def reconcile(
        self,
        mapping: str | TableMapping,
        since: datetime | None = None,
        records: Iterable[str] | None = None,
        **options: Any,
    ) -> ReconcileResult:
        """Compare one mapping across BC and Dataverse (see ``d365kit.reconcile.reconcile``)."""
        from d365kit.reconcile import reconcile  # imported on use: it brings pandas-heavy matching along

        return reconcile(self, mapping, since, records, **options)

    def plan_sync(
        self,
        result_or_mapping: ReconcileResult | str | TableMapping | Iterable[ReconcileResult | str | TableMapping],
        records: Iterable[str] | None = None,
        categories: Iterable[str] | None = None,
        direction: str | None = None,
        conflict: str = "skip",
        **options: Any,
    ) -> SyncPlan:
        """A dry run: what a selective sync would write (see ``d365kit.sync.plan``). Nothing is written."""
        from d365kit.sync import plan_sync

        return plan_sync(self, result_or_mapping, records, categories, direction, conflict, **options)

    def apply(self, plan: SyncPlan, *, journal: str | Path | None = None, **options: Any) -> SyncRun:
        """Write a plan, journaled (see ``d365kit.sync.apply``); ``journal`` defaults to
        ``$D365KIT_JOURNAL``, else a per-user file for this profile."""
        from d365kit.sync import apply

        return apply(self, plan, journal=journal, **options)

    def resume(self, run_id: str, *, journal: str | Path | None = None, **options: Any) -> SyncRun:
        """Finish an interrupted run from its journal."""
        from d365kit.sync import resume

        return resume(self, run_id, journal=journal, **options)


def connect(
    profile: str | Profile = "sandbox",
    *,
    bc_concurrency: int = BC_CONCURRENCY,
    dataverse_concurrency: int = DATAVERSE_CONCURRENCY,
) -> Workspace:
    """Resolve the profile, set up msal and one pooled session per service. Nothing is sent yet."""
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    http = PinnedSession(verify=prof.ca_bundle or True)
    tokens = TokenProvider(prof, http_client=http)
    bc_session = ODataSession(
        "Business Central",
        lambda force_refresh=False: tokens.token(prof.bc_scope, force_refresh=force_refresh),
        origin=prof.bc_api_url,
        http=http,
        max_concurrency=bc_concurrency,
    )
    bc = BCClient(bc_session, f"{prof.bc_api_url.rstrip('/')}/{prof.tenant_id}/{prof.bc_environment}/api", prof.bc_company)
    dataverse = None
    if prof.dataverse_url:
        dv_session = ODataSession(
            "Dataverse",
            lambda force_refresh=False: tokens.token(prof.dataverse_scope, force_refresh=force_refresh),
            origin=prof.dataverse_url,
            http=http,
            max_concurrency=dataverse_concurrency,
        )
        dataverse = DataverseClient(dv_session, prof.dataverse_url)
    return Workspace(prof, tokens, bc, dataverse)  # type: ignore[arg-type]
