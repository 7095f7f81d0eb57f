"""``Systems``: the two services of one tenant as the domain sees them, and the reads its runs share.

Reconcile, planning, apply and health take a ``Systems`` (typed: the two clients), never the Workspace, so
the domain cannot call back up into the facade. One ``Systems`` lives for one run — a reconcile of twelve
mappings, one plan — and reads what every mapping of that run needs once: the coupling ledger, the own
company's ``bcbi_companyid``, reference tables for lookups and option maps. A new run starts with a new
``Systems`` (``Workspace.systems()``), so nothing read earlier goes stale across runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from d365kit import couplings as ledgers
from d365kit.bc import STANDARD, BCClient
from d365kit.dataverse import DataverseClient
from d365kit.errors import NotFoundError
from d365kit.mapping import Catalog, load_catalog, load_live
from d365kit.odata.query import Query


@dataclass
class Systems:
    """BC and Dataverse of one tenant (``profile`` names it, e.g. for the journal), with per-run shared reads."""

    bc: BCClient
    dataverse: DataverseClient
    profile: str
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def ledger(self) -> pd.DataFrame:
        """Every coupling (all BC tables) from the companion API, read once per run."""
        if "ledger" not in self._memo:
            self._memo["ledger"] = ledgers.from_companion(self.bc)
        return self._memo["ledger"]

    def catalog(self) -> Catalog:
        """The tenant's own setup (table and field mappings through the companion API, named in API terms
        with the built-in catalog's help) when the companion extension is installed, else the built-in
        catalog, which says so in ``source``. Read once per run."""
        if "catalog" not in self._memo:
            base = load_catalog()
            self._memo["catalog"] = (
                load_live(self.bc, self.dataverse, base) if self.bc.companion_installed() else base
            )
        return self._memo["catalog"]

    def own_company(self) -> str:
        """The ``bcbi_companyid`` of the BC company: ``bcbi_externalid`` is the company's id (the BC test
        library's format; production's exact format is UNVERIFIED), else the same name. Read once per run."""
        if "company" not in self._memo:
            self._memo["company"] = self._own_company()
        return self._memo["company"]

    def _own_company(self) -> str:
        company = self.bc.company_id
        rows = self.dataverse_frame("bcbi_companies", ("bcbi_companyid", "bcbi_name", "bcbi_externalid"))
        external = rows["bcbi_externalid"].astype("string").str.strip("{}").str.lower()
        hit = rows[external == company.lower()]
        if hit.empty:
            names = {c["id"]: c["name"] for c in self.bc.companies()}
            hit = rows[rows["bcbi_name"] == names.get(company)]
        if hit.empty:
            raise NotFoundError(
                404,
                "bcbi_company",
                f"no Dataverse bcbi_company row for BC company {company}; pass company=<bcbi_companyid>",
            )
        return str(hit["bcbi_companyid"].iloc[0])

    def whole_table(
        self, table: tuple[str, ...], columns: Sequence[str], read: Callable[[], pd.DataFrame]
    ) -> pd.DataFrame:
        """Every row of ``table`` (``("bc", api, entity_set)`` or ``("dataverse", entity_set)``) with at
        least ``columns``: from a read of this run that had them (a mapping side without filters, a lookup
        table), else ``read()``, kept for the rest of the run. Callers must not change the frame."""
        wanted = set(columns)
        for (name, have), frame in self._memo.get("tables", {}).items():
            if name == table and wanted <= set(have):
                return frame
        frame = read()
        self._memo.setdefault("tables", {})[(table, tuple(frame.columns))] = frame
        return frame

    def bc_frame(self, entity_set: str, select: tuple[str, ...], api: str = STANDARD) -> pd.DataFrame:
        """A whole BC reference table with ``select`` columns (at least), read once per run."""
        return self.whole_table(
            ("bc", api, entity_set),
            select,
            lambda: self.bc.to_frame(entity_set, Query(select=select), api=api),
        )

    def dataverse_frame(self, entity_set: str, select: tuple[str, ...]) -> pd.DataFrame:
        """A whole Dataverse reference table with ``select`` columns (at least), read once per run."""
        return self.whole_table(
            ("dataverse", entity_set),
            select,
            lambda: self.dataverse.to_frame(entity_set, Query(select=select)),
        )

    def writable(self, entity_set: str, purpose: str) -> set[str] | None:
        """The Dataverse attributes of ``entity_set`` valid for ``purpose`` ("create"/"update"), read once."""
        key = ("writable", entity_set)
        if key not in self._memo:
            self._memo[key] = self.dataverse.writable_attributes(entity_set)
        found = self._memo[key]
        return None if found is None else found[purpose]


__all__ = ["Systems"]
