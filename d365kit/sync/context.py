"""What planning the mappings of one plan shares: the systems, the catalog, the couplings (read once, plus
the ones the plan itself will add) and a few reference tables read once.

Couplings the plan adds count as soon as they are planned: a create chooses its new row's id when it is
planned, so a later mapping's lookup (a customer's currency, an invoice line's invoice) can name that row
already, and the plan records that it depends on the create.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from d365kit import couplings as ledgers
from d365kit.mapping import Catalog, TableMapping
from d365kit.odata.query import Query
from d365kit.reconcile import TransformContext
from d365kit.systems import Systems


@dataclass
class PlanContext:
    systems: Systems
    catalog: Catalog
    ledger: pd.DataFrame
    planned: dict[str, str] = field(default_factory=dict)  # id of a row a create will write -> op id
    _rows: list[dict[str, Any]] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)
    counters: dict[int, int] = field(default_factory=dict)  # numbers handed out to new rows, per BC table
    truncate: bool = False  # cut text longer than the target column (recorded in the operation)

    def add_coupling(self, table_id: int | None, bc_id: str, dataverse_id: str, coupling_id: str) -> None:
        """A coupling the plan will add (a create's, or a match's)."""
        self._rows.append(
            {"coupling_id": coupling_id, "bc_id": bc_id, "dataverse_id": dataverse_id, "table_id": table_id}
        )
        self._cache.pop("ledger", None)

    @property
    def couplings(self) -> pd.DataFrame:
        """The ledger read when planning, then the couplings planned so far."""
        if "ledger" not in self._cache:
            extra = ledgers.normalize(pd.DataFrame(self._rows)) if self._rows else None
            self._cache["ledger"] = (
                self.ledger if extra is None else pd.concat([self.ledger, extra], ignore_index=True)
            )
        return self._cache["ledger"]

    def transforms(self) -> TransformContext:
        """A fresh transform context on the current couplings (planned ones included)."""
        return TransformContext(self.systems, self.catalog, self.couplings)

    def dataverse_of(self, table_id: int | None, bc_ids: pd.Series) -> pd.Series:
        """The Dataverse id coupled to each BC id (first coupling; NA when uncoupled)."""
        pairs = ledgers.for_table(self.couplings, table_id).drop_duplicates("bc_id")
        lookup = pd.Series(pairs["dataverse_id"].to_numpy(), index=pairs["bc_id"].to_numpy())
        return bc_ids.astype("string").str.lower().map(lookup).astype("string")

    def bc_of(self, table_id: int | None, dataverse_ids: pd.Series) -> pd.Series:
        pairs = ledgers.for_table(self.couplings, table_id).drop_duplicates("dataverse_id")
        lookup = pd.Series(pairs["bc_id"].to_numpy(), index=pairs["dataverse_id"].to_numpy())
        return dataverse_ids.astype("string").str.lower().map(lookup).astype("string")

    def company(self) -> str:
        """The own ``bcbi_companyid`` (looked up once)."""
        return self.systems.own_company()

    def bc_frame(
        self, m: TableMapping | str, select: tuple[str, ...], query: Query | None = None, api: str = "v2.0"
    ) -> pd.DataFrame:
        """A BC reference table (all rows, ``select`` columns), read once per plan."""
        entity_set, api = (m.bc_entity, m.api_path) if isinstance(m, TableMapping) else (m, api)
        key = f"bc:{api}:{entity_set}:{select}:{query}"
        if query is None:
            return self.systems.bc_frame(entity_set, select, api)
        if key not in self._cache:
            self._cache[key] = self.systems.bc.to_frame(entity_set, query.with_select(*select), api=api)
        return self._cache[key]

    def mapping_of_table(self, table_id: int) -> TableMapping | None:
        return self.catalog.by_table_id(table_id)

    def writable(self, entity_set: str, purpose: str) -> set[str] | None:
        """The Dataverse attributes of ``entity_set`` valid for ``purpose`` ("create" or "update"), from
        ``EntityDefinitions(...)/Attributes`` (``IsValidForCreate``/``IsValidForUpdate``); None when the
        service does not say (then every attribute is tried)."""
        return self.systems.writable(entity_set, purpose)
