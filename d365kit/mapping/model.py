"""The mapping model: one ``TableMapping`` per BC integration table mapping, one ``FieldMapping`` per field row.

Names are API names: ``bc`` is the BC API property (API v2.0 camelCase, or the companion API's for
``bc_api = "companion"``), ``dv`` the Dataverse logical attribute name (a lookup is named by its attribute,
``ownerid``; it is read as ``_ownerid_value``). A field of BC's default mapping that API v2.0 does not expose
keeps its place with ``bc = None`` and ``companion_only = True``: reachable only once the companion
extension publishes it, and left out of every comparison until then.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Literal

from d365kit.errors import UnknownNameError

Direction = Literal["bidirectional", "to_dataverse", "from_dataverse"]
DIRECTIONS: tuple[str, ...] = ("bidirectional", "to_dataverse", "from_dataverse")
# BC's option names for the same directions (Integration Table Mapping field 10).
BC_DIRECTIONS = {
    "Bidirectional": "bidirectional",
    "ToIntegrationTable": "to_dataverse",
    "FromIntegrationTable": "from_dataverse",
}
BC_APIS = {"v2.0": "v2.0", "companion": "d365kit/integration/v1.0"}
COMPARE_KINDS = ("text", "email", "phone", "url", "decimal", "integer", "date", "guid", "boolean")


@dataclass(frozen=True)
class FieldMapping:
    """One Integration Field Mapping row, in API names.

    ``transform`` names a two-way value transform of ``d365kit.mapping.transforms`` (``lookup:<MAPPING>``,
    ``option:<name>``); ``compare`` chooses the normalisation used when comparing (default: from the
    Dataverse column's type); ``tolerance`` is the decimal tolerance. ``match_priority`` is set on the
    fields BC's match-based coupling uses (lower = earlier; 0 = first).
    """

    bc: str | None
    dv: str | None
    direction: Direction
    caption: str = ""  # the BC field caption, as BC's own mapping names it
    constant: str | None = None
    transform: str | None = None
    match_priority: int | None = None
    case_sensitive: bool = False
    companion_only: bool = False
    not_null: bool = False  # BC's "Not Null": a blank BC value is not transferred, so it is no difference
    compare: str | None = None
    tolerance: float | None = None

    @property
    def label(self) -> str:
        return self.bc or self.caption or str(self.dv)

    @property
    def comparable(self) -> bool:
        """Both sides are readable values (not a constant, not a field no API exposes)."""
        return self.bc is not None and self.dv is not None and self.constant is None


@dataclass(frozen=True)
class TableMapping:
    """One Integration Table Mapping, with its filters as OData ``$filter`` text.

    ``dv_company_field`` names the Dataverse company lookup (``bcbi_companyid``) on tables whose
    integration filter is "own company or empty"; ``dv_lookup_types`` restricts polymorphic lookups to a
    target table (``parentcustomerid = "account"``), which OData cannot filter, so it is checked on the
    ``lookuplogicalname`` annotation. ``bc_key`` is the property people (and lookups) name a row by.
    """

    name: str
    bc_entity: str
    dv_entity: str
    direction: Direction
    fields: tuple[FieldMapping, ...]
    bc_api: str = "v2.0"
    bc_table_id: int | None = None
    bc_table: str = ""
    dv_table: str = ""
    bc_key: str | None = None
    bc_filter: str | None = None  # the tenant's Table Filter, in OData terms
    dv_filter: str | None = None  # the tenant's Integration Table Filter, in OData terms
    bc_entity_filter: str | None = None  # what makes the API entity set the BC table (posted invoices only)
    filter_problems: tuple[str, ...] = ()  # tenant filters that could not be translated (default kept)
    dv_company_field: str | None = None
    dv_lookup_types: dict[str, str] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    synch_only_coupled: bool = True
    # BC's conflict settings (table 5335 fields 25/26; docs/reconcile.md#bc-integration-facts): None
    # (the record fails), Send Update to Integration / Get Update from Integration; Restore Records / Remove Coupling
    update_conflict: str = "None"
    deletion_conflict: str = "None"
    bc_modified: str | None = "lastModifiedDateTime"
    dv_modified: str = "modifiedon"
    lookup_fallback: str | None = None  # Dataverse field matched on the BC key when BC has no such row (LCY)
    bc_table_view: str = ""  # BC's own filter text, as read from a live tenant (information only)
    dv_table_view: str = ""

    @property
    def bc_scope(self) -> str | None:
        """The BC side's whole OData filter: the entity's own scope and the tenant's Table Filter."""
        parts = [f for f in (self.bc_entity_filter, self.bc_filter) if f]
        return " and ".join(f"({p})" for p in parts) if len(parts) > 1 else (parts[0] if parts else None)

    @property
    def api_path(self) -> str:
        return BC_APIS[self.bc_api]

    @property
    def compared(self) -> tuple[FieldMapping, ...]:
        return tuple(f for f in self.fields if f.comparable)

    @property
    def unreachable(self) -> tuple[FieldMapping, ...]:
        return tuple(f for f in self.fields if f.bc is None and f.constant is None and f.dv is not None)

    @property
    def match_fields(self) -> tuple[FieldMapping, ...]:
        rules = [f for f in self.compared if f.match_priority is not None]
        return tuple(sorted(rules, key=lambda f: f.match_priority or 0))

    def field_of(self, bc: str | None = None, dv: str | None = None) -> FieldMapping:
        for f in self.fields:
            if (bc is None or f.bc == bc) and (dv is None or f.dv == dv):
                return f
        raise UnknownNameError(f"mapping {self.name} has no field bc={bc!r} dv={dv!r}")


@dataclass(frozen=True)
class OptionMap:
    """BC codes <-> Dataverse option values for one option mapping (payment terms, shipment method, ...).

    ``bc_entity`` is the BC entity set whose rows the codes belong to; a BC property holding the id of
    such a row (``paymentTermsId``) is resolved to the code through it."""

    name: str
    values: dict[str, int]
    bc_entity: str | None = None


# Where a catalog's mappings come from: said in every result and report built on it.
STATIC = (
    "BC's default integration setup (static catalog): the tenant's own mappings, filters and rules "
    "were not read"
)
TENANT = "the tenant's own integration setup (read through the companion API)"


@dataclass(frozen=True)
class Catalog:
    """A set of table mappings (by name) and the option maps their transforms use; ``source`` says
    whether they are the tenant's own (``TENANT``) or the built-in fallback (``STATIC``)."""

    mappings: dict[str, TableMapping]
    options: dict[str, OptionMap] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    source: str = STATIC

    def with_mapping(self, m: TableMapping) -> Catalog:
        """This catalog with ``m`` added or replacing the mapping of its name."""
        return dataclasses.replace(self, mappings={**self.mappings, m.name: m})

    def __getitem__(self, name: str) -> TableMapping:
        try:
            return self.mappings[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.mappings), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownNameError(f"no mapping {name!r} in the catalog{hint}") from None

    def __iter__(self):
        return iter(self.mappings.values())

    def __len__(self) -> int:
        return len(self.mappings)

    def __contains__(self, name: object) -> bool:
        return name in self.mappings

    @property
    def names(self) -> list[str]:
        return list(self.mappings)

    def by_table_id(self, table_id: int) -> TableMapping | None:
        return next((m for m in self if m.bc_table_id == table_id), None)
