"""``d365kit doctor``: is this profile ready? Each finding says what was checked and, when it fails, the fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from d365kit.bc import COMPANION, COMPANION_SETS, STANDARD
from d365kit.config import Profile
from d365kit.errors import AuthenticationError, AuthError, ConfigError, D365Error, NotFoundError
from d365kit.mapping import Catalog, load_catalog
from d365kit.odata.query import Query
from d365kit.profiles import get_profile


def entity_sets(catalog: Catalog | None = None) -> dict[str, tuple[str, ...]]:
    """The entity sets the catalog's mappings read, per API ("bc" = API v2.0, "companion", "dataverse"),
    plus the companion API's own sets and the Dataverse tables reconcile needs beside them."""
    catalog = catalog or load_catalog()
    mappings = list(catalog.mappings.values())
    options = [o.bc_entity for o in catalog.options.values() if o.bc_entity]
    bc = [m.bc_entity for m in mappings if m.api_path == STANDARD] + options
    companion = [*COMPANION_SETS, *(m.bc_entity for m in mappings if m.api_path == COMPANION)]
    dataverse = [m.dv_entity for m in mappings] + ["bcbi_companies"]
    return {
        k: tuple(dict.fromkeys(v))
        for k, v in (("bc", bc), ("companion", companion), ("dataverse", dataverse))
    }


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def _fix_for(exc: Exception, service: str) -> str:
    if isinstance(exc, AuthenticationError) and exc.status == 403:
        if service == "Dataverse":
            return "give the application user a security role with read access to this table"
        return "assign the app a permission set with read access (Microsoft Entra Applications page in BC)"
    if isinstance(exc, AuthenticationError):
        if service == "Dataverse":
            return "create an application user for the app in the environment (Power Platform admin center)"
        return (
            "register the app in BC (Microsoft Entra Applications page) and grant API.ReadWrite.All consent"
        )
    if isinstance(exc, NotFoundError):
        return "check the environment, company and URLs of the profile"
    return "see the detail; run again with a working network"


class Doctor:
    def __init__(self, profile: str | Profile):
        self.profile_name = profile if isinstance(profile, str) else profile.name
        self._profile = profile
        self.findings: list[Finding] = []

    def _run(self, check: str, fn: Callable[[], str], service: str = "", fix: str | None = None) -> Any:
        try:
            detail = fn()
        except (D365Error, AuthError, ConfigError, OSError, ValueError, KeyError) as exc:
            text = str(exc)
            self.findings.append(Finding(check, False, text, fix or _fix_for(exc, service)))
            return False
        self.findings.append(Finding(check, True, detail))
        return True

    def run(self) -> list[Finding]:
        from d365kit.workspace import connect

        state: dict[str, Any] = {}

        def profile() -> str:
            state["profile"] = p = (
                get_profile(self._profile) if isinstance(self._profile, str) else self._profile
            )
            return f"tenant {p.tenant_id}, client {p.client_id}, auth {p.auth_mode}"

        if not self._run(
            "profile", profile, fix="fix the profile file or the environment as the detail says"
        ):
            return self.findings
        p: Profile = state["profile"]
        ws = connect(p)

        def bc_token() -> str:
            ws.tokens.token(p.bc_scope)
            return f"token for {p.bc_scope}"

        def dv_token() -> str:
            ws.tokens.token(p.dataverse_scope)
            return f"token for {p.dataverse_scope}"

        sets = entity_sets()
        # an option table API v2.0 does not publish (shippingAgents) is compared as codes, never read
        options = {o.bc_entity for o in load_catalog().options.values()}
        auth_fix = "check tenant_id, client_id and the secret/certificate; see the Entra error in the detail"
        bc_ok = self._run("BC token", bc_token, fix=auth_fix)
        dv_ok = self._run("Dataverse token", dv_token, fix=auth_fix) if p.dataverse_url else False
        if bc_ok:
            company_ok = self._run(
                "BC company", lambda: f"{ws.bc.company_id} on {ws.bc.api_url}", "Business Central"
            )
            if company_ok:
                served = ws.bc.metadata().entity_sets
                for name in (n for n in sets["bc"] if n in served or n not in options):
                    self._read(
                        f"BC read {name}",
                        lambda n=name: ws.bc.pages(n, Query(top=1), page_size=1),
                        "Business Central",
                    )
                if ws.bc.companion_installed():
                    self.findings.append(
                        Finding("companion API", True, "installed (couplings and sync log readable)")
                    )
                    for name in sets["companion"]:
                        self._read(
                            f"BC read {name}",
                            lambda n=name: ws.bc.pages(n, Query(top=1), page_size=1, api=COMPANION),
                            "Business Central",
                        )
                else:
                    self.findings.append(
                        Finding(
                            "companion API",
                            False,
                            "not installed: couplings and the sync log cannot be read from BC",
                            "install bc-extension/ (see bc-extension/README.md), or load couplings from a CSV export",
                        )
                    )
        if dv_ok and self._run(
            "Dataverse WhoAmI", lambda: f"user {ws.dataverse.whoami()['UserId']}", "Dataverse"
        ):
            for name in sets["dataverse"]:
                self._read(
                    f"Dataverse read {name}",
                    lambda n=name: ws.dataverse.pages(n, Query(top=1), page_size=1),
                    "Dataverse",
                )
        return self.findings

    def _read(self, check: str, pages: Callable[[], Any], service: str) -> None:
        def fn() -> str:
            first = next(iter(pages()), [])
            return f"readable ({'rows' if first else 'empty'})"

        self._run(check, fn, service)


def render(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    lines = [f"{'':2} {'check'.ljust(width)}  detail"]
    for f in findings:
        lines.append(f"{'ok' if f.ok else 'XX'} {f.check.ljust(width)}  {f.detail}")
        if not f.ok:
            lines.append(f"{'':2} {''.ljust(width)}  fix: {f.fix}")
    failed = sum(not f.ok for f in findings)
    lines.append(f"\n{len(findings) - failed} checks passed, {failed} failed")
    return "\n".join(lines)
