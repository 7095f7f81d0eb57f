"""Entity definitions the sandbox serves: one source of truth for storage, validation, typing and $metadata.

Each service (``bc``, ``dataverse``, ``companion``) has entity sets whose properties carry their EDM type.
Storage (``store.py``) makes one SQLite table per entity set from these definitions, the query layer
(``odata.py``) resolves names through them, and ``metadata.py`` renders CSDL from them. Property names are
the wire names of the real services (BC API v2.0 camelCase, Dataverse logical names). The definitions
themselves are data (``tables/<service>.toml``, loaded by ``schema_defs.py``; docs/sandbox.md#entity-definitions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Service = Literal["bc", "dataverse", "companion"]

# EDM primitive types used here. Enum-typed BC properties use edm="Edm.String" plus ``enum=(...)``
# and are advertised in $metadata as ``Microsoft.NAV.<enum_type>``.
EDM_TYPES = frozenset(
    {
        "Edm.String",
        "Edm.Guid",
        "Edm.Boolean",
        "Edm.Int32",
        "Edm.Int64",
        "Edm.Decimal",
        "Edm.Double",
        "Edm.Date",
        "Edm.DateTimeOffset",
    }
)


@dataclass(frozen=True)
class Prop:
    """One structural property as it appears on the wire."""

    name: str
    edm: str = "Edm.String"
    read_only: bool = False
    required: bool = False  # must be supplied (non-empty) on create
    max_length: int | None = None
    enum_type: str | None = None  # BC: NAV enum type name, e.g. "customerBlocked"
    enum: tuple[str, ...] | None = None  # BC: allowed wire values (spaces spelled _x0020_)
    options: tuple[tuple[int, str], ...] | None = None  # Dataverse choice: (value, label) for FormattedValue
    default: object = None  # value stored when a create omits the property
    # Dataverse attribute metadata (EntityDefinitions/Attributes; docs/sandbox.md#entity-definitions).
    # None/defaults for BC. attribute_type: AttributeType name (String, Memo, Picklist, State, Status,
    # Lookup, Customer, Owner, DateTime, Money, Decimal, Double, Integer, BigInt, Boolean, Uniqueidentifier,
    # EntityName, Virtual); required_level: None/SystemRequired/ApplicationRequired/Recommended;
    # date_behavior: UserLocal/DateOnly/TimeZoneIndependent; format: the attribute's Format (Email, Url,
    # Phone, Text, TextArea, DateOnly, DateAndTime, ...); option_set: a global option set's name if shared.
    attribute_type: str | None = None
    schema_name: str | None = None
    display_name: str | None = None
    required_level: str = "None"
    date_behavior: str | None = None
    format: str | None = None
    option_set: str | None = None
    valid_for_create: bool = True
    valid_for_update: bool = True

    def __post_init__(self) -> None:
        if self.edm not in EDM_TYPES:
            raise ValueError(f"{self.name}: unknown EDM type {self.edm!r}")


@dataclass(frozen=True)
class Lookup:
    """Dataverse single-valued navigation property backed by a lookup column.

    Read as ``_<column>_value`` (a Prop of the entity set, Edm.Guid, read-only); written as
    ``<nav>@odata.bind: "/<target>(<guid>)"``. Polymorphic lookups (customer, owner) have one Lookup per
    target sharing the same column, e.g. ``parentcustomerid_account`` and ``parentcustomerid_contact``.
    """

    nav: str  # navigation property name, e.g. "transactioncurrencyid" or "parentcustomerid_account"
    column: str  # lookup logical name, e.g. "parentcustomerid" -> stored/read as _parentcustomerid_value
    target: str  # target entity set, e.g. "accounts"

    @property
    def value_prop(self) -> str:
        return f"_{self.column}_value"


@dataclass(frozen=True)
class Nav:
    """Navigation property usable in ``$expand``.

    ``local`` is the property of this entity set whose value is matched against ``remote`` on the target:
    single-valued (``many=False``): target.remote == self.local (e.g. customer.currencyId -> currency.id);
    collection (``many=True``): target.remote == self.local (e.g. salesInvoice.id -> line.documentId).
    """

    name: str
    target: str
    local: str
    remote: str
    many: bool = False


@dataclass(frozen=True)
class EntitySet:
    service: Service
    name: str  # entity set name on the wire, e.g. "customers" / "accounts"
    type_name: str  # entity type name, e.g. "customer" / "account"
    key: str  # key property, always a GUID here
    props: tuple[Prop, ...]
    lookups: tuple[Lookup, ...] = ()
    navs: tuple[Nav, ...] = ()
    methods: frozenset[str] = frozenset({"GET", "POST", "PATCH", "DELETE"})
    company_scoped: bool = True  # BC/companion: lives under companies({id})
    change_tracking: bool = False  # Dataverse: Prefer: odata.track-changes allowed
    primary_name: str | None = None  # Dataverse primary name attribute (FormattedValue of lookups)
    logical_name: str | None = None  # Dataverse entity logical name (EntityDefinitions); = type_name
    modified_prop: str | None = None  # property stamped with the modification time on every write
    created_prop: str | None = None  # property stamped with the creation time on create
    # Dataverse table metadata (EntityDefinitions; docs/sandbox.md#entity-definitions)
    schema_name: str | None = None  # e.g. "Account"
    object_type_code: int | None = None  # e.g. 1 for account
    primary_image: str | None = None  # PrimaryImageAttribute, e.g. "entityimage"
    is_activity: bool = False
    ownership_type: str | None = None  # UserOwned, OrganizationOwned, ...
    alternate_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (key logical name, attribute names)
    _by_name: dict[str, Prop] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name.update({p.name: p for p in self.props})
        if self.key not in self._by_name:
            raise ValueError(f"{self.name}: key {self.key!r} is not a property")
        for lk in self.lookups:
            if lk.value_prop not in self._by_name:
                raise ValueError(f"{self.name}: lookup {lk.nav} needs property {lk.value_prop}")

    def prop(self, name: str) -> Prop | None:
        return self._by_name.get(name)

    @property
    def prop_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.props)

    def lookup(self, nav: str) -> Lookup | None:
        return next((lk for lk in self.lookups if lk.nav == nav), None)

    def nav(self, name: str) -> Nav | None:
        return next((n for n in self.navs if n.name == name), None)


# The registries are filled by the service modules below this line (kept in one file so storage,
# query and metadata cannot disagree about a name).
BC: dict[str, EntitySet] = {}
DATAVERSE: dict[str, EntitySet] = {}
COMPANION: dict[str, EntitySet] = {}

REGISTRIES: dict[Service, dict[str, EntitySet]] = {"bc": BC, "dataverse": DATAVERSE, "companion": COMPANION}


# Entity sets the real services have but the sandbox does not serve: they answer 501 naming themselves,
# so a client can tell "not emulated" from "does not exist" (404).
UNSERVED: dict[Service, frozenset[str]] = {
    "bc": frozenset(
        {
            "subscriptions",
            "vendors",
            "employees",
            "salesOrders",
            "salesOrderLines",
            "salesQuotes",
            "salesQuoteLines",
            "salesCreditMemos",
            "salesCreditMemoLines",
            "salesShipments",
            "purchaseInvoices",
            "purchaseInvoiceLines",
            "customerSales",
            "agedAccountsReceivables",
            "contactsInformation",
            "customerContacts",
            "itemCategories",
            "itemVariants",
            "currencyExchangeRates",
            "countriesRegions",
            "dimensions",
            "dimensionValues",
            "accounts",
            "generalLedgerEntries",
            "journals",
            "locations",
            "taxAreas",
            "taxGroups",
            "attachments",
            "documentAttachments",
            "pdfDocument",
            "pictures",
            "dimensionSetLines",
            "inventoryPostingGroups",
            "generalProductPostingGroups",
            "projects",
            "bankAccounts",
            "entityDefinitions",
        }
    ),
    "dataverse": frozenset(
        {
            "teams",
            "businessunits",
            "organizations",
            "salesorders",
            "salesorderdetails",
            "quotes",
            "quotedetails",
            "leads",
            "competitors",
            "activitypointers",
            "tasks",
            "emails",
            "phonecalls",
            "appointments",
            "annotations",
            "roles",
            "systemuserroles",
            "discounttypes",
            "territories",
            "incidents",
            "nav_connections",
            "nav_defaultconnections",
            "cdm_companies",
            "RelationshipDefinitions",
            "GlobalOptionSetDefinitions",
        }
    ),
    "companion": frozenset(),
}


def register(es: EntitySet) -> EntitySet:
    REGISTRIES[es.service][es.name] = es
    return es


def all_entity_sets() -> list[EntitySet]:
    return [es for reg in REGISTRIES.values() for es in reg.values()]


def entity_set(service: Service, name: str) -> EntitySet | None:
    return REGISTRIES[service].get(name)


# The BC, companion and Dataverse entity sets are data (tables/<service>.toml), loaded by schema_defs.py,
# imported last so that the registries are complete whenever this module is imported.
from d365kit.sandbox import schema_defs as _defs  # noqa: E402,F401
