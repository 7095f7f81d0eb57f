"""``connect(profile) -> Workspace``: the entry point, a thin facade over the domain functions.

The Workspace holds a profile's two authenticated clients and passes them, as a ``Systems``, to
``reconcile``, ``plan_sync``, ``apply`` and ``resume``; every option is an explicit parameter here with the
same meaning as there. Use it as a context manager (or call ``close()``) to close the pooled connections.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import pandas as pd

from d365kit.auth import TokenProvider
from d365kit.bc import BCClient
from d365kit.config import Profile
from d365kit.dataverse import DataverseClient
from d365kit.mapping import Catalog, TableMapping
from d365kit.odata.session import ODataSession, PinnedSession
from d365kit.profiles import get_profile
from d365kit.reconcile import ReconcileResult, reconcile, reconcile_many
from d365kit.sync import SyncPlan, SyncRun, apply, plan_sync, resume
from d365kit.systems import Systems

# The services' own concurrency caps (docs/architecture.md#limits): the default per-service limit.
BC_CONCURRENCY = 5
DATAVERSE_CONCURRENCY = 52

Selection = ReconcileResult | str | TableMapping


@dataclass
class Workspace:
    """Both systems of one tenant, reached with one profile's identity."""

    profile: Profile
    tokens: TokenProvider
    bc: BCClient
    dataverse: DataverseClient

    def __repr__(self) -> str:
        return f"Workspace(profile={self.profile.name!r}, bc={self.bc!r}, dataverse={self.dataverse!r})"

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled HTTPS connections (both services share one pool)."""
        self.bc.session.http.close()

    def systems(self) -> Systems:
        """The two clients for one run of the domain, with a fresh cache of shared reads."""
        return Systems(self.bc, self.dataverse, self.profile.name)

    def reconcile(
        self,
        mapping: str | TableMapping,
        since: datetime | None = None,
        records: Iterable[str] | None = None,
        *,
        catalog: Catalog | None = None,
        couplings: pd.DataFrame | None = None,
        company: str | None = None,
        threshold: float = 85.0,
        progress: bool = True,
    ) -> ReconcileResult:
        """Compare one mapping across BC and Dataverse (``d365kit.reconcile.reconcile``)."""
        return reconcile(
            self.systems(),
            mapping,
            since,
            records,
            catalog=catalog,
            couplings=couplings,
            company=company,
            threshold=threshold,
            progress=progress,
        )

    def reconcile_all(
        self,
        mappings: Iterable[str | TableMapping] | None = None,
        since: datetime | None = None,
        *,
        catalog: Catalog | None = None,
        couplings: pd.DataFrame | None = None,
        progress: bool = True,
    ) -> dict[str, ReconcileResult]:
        """Reconcile several mappings (every mapping of the catalog by default) in one run: the coupling
        ledger, the own company and the lookup tables are read once for all of them, and the by-id reads
        of coupled rows outside each mapping's scope go together (``d365kit.reconcile.reconcile_many``)."""
        systems = self.systems()
        catalog = catalog or systems.catalog()
        chosen = list(mappings) if mappings is not None else list(catalog.names)
        return reconcile_many(systems, chosen, since, catalog=catalog, couplings=couplings, progress=progress)

    def plan_sync(
        self,
        selection: Selection | Iterable[Selection],
        records: Iterable[str] | None = None,
        categories: Iterable[str] | None = None,
        direction: str | None = None,
        conflict: str = "skip",
        *,
        fields: Iterable[str] | None = None,
        catalog: Catalog | None = None,
        couplings: pd.DataFrame | None = None,
        progress: bool = True,
        truncate: bool = False,
        journal: str | Path | None = None,
    ) -> SyncPlan:
        """A dry run: what a selective sync would write (``d365kit.sync.plan_sync``). Nothing is written to
        the services; unfinished work of earlier runs on these records (``journal``) is verified first.
        The plan records this profile's target (production per ``Profile.is_production``)."""
        return plan_sync(
            self.systems(),
            selection,
            records,
            categories,
            direction,
            conflict,
            fields=fields,
            catalog=catalog,
            couplings=couplings,
            progress=progress,
            truncate=truncate,
            production=self.profile.is_production,
            journal=journal,
        )

    def apply(
        self,
        plan: SyncPlan,
        *,
        journal: str | Path | None = None,
        progress: bool = True,
        batch_size: int | None = None,
        run_id: str | None = None,
        confirm: bool = False,
        wait: float = 0.0,
        stale: str = "stop",
    ) -> SyncRun:
        """Write a plan, journaled (``d365kit.sync.apply``); ``journal`` defaults to ``$D365KIT_JOURNAL``,
        else a per-user file for this profile. Refused when the plan was made on another target; on a
        production profile only with ``confirm=True``. ``wait``: seconds to wait for another run writing
        the same mappings; ``stale``: ``stop`` or ``current`` for sources changed since planning."""
        return apply(
            self.systems(),
            plan,
            journal=journal,
            progress=progress,
            batch_size=batch_size,
            run_id=run_id,
            production=self.profile.is_production,
            confirm=confirm,
            wait=wait,
            stale=stale,
        )

    def resume(
        self,
        run_id: str,
        *,
        journal: str | Path | None = None,
        progress: bool = True,
        batch_size: int | None = None,
        confirm: bool = False,
        wait: float = 0.0,
        stale: str = "stop",
    ) -> SyncRun:
        """Finish an interrupted run from its journal (``d365kit.sync.resume``): refused when the run was
        made on another target; on a production profile only with ``confirm=True``."""
        return resume(
            self.systems(),
            run_id,
            journal=journal,
            progress=progress,
            batch_size=batch_size,
            production=self.profile.is_production,
            confirm=confirm,
            wait=wait,
            stale=stale,
        )


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
    bc = BCClient(
        bc_session,
        f"{prof.bc_api_url.rstrip('/')}/{prof.tenant_id}/{prof.bc_environment}/api",
        prof.bc_company,
    )
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
