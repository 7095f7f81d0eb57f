"""Generate d365kit/sandbox/tables/dataverse.toml from Microsoft's table/entity reference pages.

Usage::

    python tools/dataverse_schema.py PAGES_DIR [-o d365kit/sandbox/tables/dataverse.toml] [--fetched YYYY-MM-DD]

``PAGES_DIR`` holds one downloaded reference page per served table, named ``<logical name>.md`` (the
markdown source of the Learn page; the URLs are in ``TABLES``, the raw markdown lives in the GitHub repos
named there). Standard library only; no network: download the pages first, e.g.::

    curl -o pages/account.md https://raw.githubusercontent.com/MicrosoftDocs/dynamics-365-customer-engagement/main/ce/sales/developer/entities/account.md

The pages have one section per attribute (``### <a name="BKMK_X"></a> X`` followed by a ``|Property|Value|``
table: LogicalName, DisplayName, Type, MaxLength, RequiredLevel, DateTimeBehavior, Format/FormatName,
Targets, IsValidForCreate/Update/Read, and a ``Choices/Options`` table with ``**DefaultValue**``). Rows a
page leaves out have the page's own defaults (RequiredLevel None, IsValidFor* True). Attributes under
"Read-only columns/attributes" are valid neither for create nor for update.

What becomes a Web API property (docs/sandbox.md, "Entity definitions"):

- every attribute valid for read, except the helper attributes the Web API does not expose as properties:
  ``EntityName`` attributes (a lookup's target type: the ``lookuplogicalname`` annotation carries it) and
  the ``...name``/``...yominame`` String attributes of lookups (AttributeOf a lookup: the FormattedValue
  annotation carries them; the pages give them no DisplayName), ``Virtual`` attributes;
- Image attributes (``entityimage``, Edm.Binary) are not emulated: listed under ``skipped`` with the
  reason; their helper columns (``entityimage_url`` ...) are served;
- a lookup (Lookup/Customer/Owner) is the property ``_<name>_value``; it gets navigations to the targets
  the sandbox serves (writable lookups are bound with ``<nav>@odata.bind``; read-only ones are expand
  only), none when no target is served (teams, business units, ... are not served: ``ownerid`` binds
  systemusers only).

Types: String/Memo -> Edm.String (MaxLength), Integer -> Edm.Int32, BigInt -> Edm.Int64, Double ->
Edm.Double, Decimal/Money -> Edm.Decimal, Boolean -> Edm.Boolean, Picklist/State/Status -> Edm.Int32
with their choices, Uniqueidentifier -> Edm.Guid, DateTime -> Edm.Date with DateTimeBehavior DateOnly,
else Edm.DateTimeOffset.

The sandbox's own additions and choices (``OVERLAY``: the BC integration solution's ``bcbi_companyid``
lookups and ``bcbi_companies`` table, defaults of new rows, the invoice number) are data below, each with
its reason; they are written with a ``Choice:`` comment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SALES = "https://learn.microsoft.com/dynamics365/sales/developer/entities/{}"
DATAVERSE = "https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/{}"
SALES_MD = "MicrosoftDocs/dynamics-365-customer-engagement: ce/sales/developer/entities/{}.md"
DATAVERSE_MD = "MicrosoftDocs/powerapps-docs: powerapps-docs/developer/data-platform/reference/entities/{}.md"
D365 = "https://learn.microsoft.com/dynamics365/developer/reference/entities/{}"
D365_MD = "MicrosoftDocs/dynamics-365-customer-engagement: ce/developer/reference/entities/{}.md"

# Served tables in file order: entity set -> (logical name, page URL, markdown source).
TABLES: dict[str, tuple[str, str, str]] = {
    name: (logical, url.format(logical), md.format(logical))
    for name, logical, url, md in (
        ("systemusers", "systemuser", DATAVERSE, DATAVERSE_MD),
        ("accounts", "account", SALES, SALES_MD),
        ("contacts", "contact", SALES, SALES_MD),
        ("transactioncurrencies", "transactioncurrency", DATAVERSE, DATAVERSE_MD),
        ("uomschedules", "uomschedule", D365, D365_MD),
        ("uoms", "uom", D365, D365_MD),
        ("products", "product", SALES, SALES_MD),
        ("pricelevels", "pricelevel", SALES, SALES_MD),
        ("productpricelevels", "productpricelevel", SALES, SALES_MD),
        ("opportunities", "opportunity", SALES, SALES_MD),
        ("invoices", "invoice", SALES, SALES_MD),
        ("invoicedetails", "invoicedetail", SALES, SALES_MD),
    )
}

_EDM = {
    "String": "Edm.String",
    "Memo": "Edm.String",
    "Integer": "Edm.Int32",
    "BigInt": "Edm.Int64",
    "Double": "Edm.Double",
    "Decimal": "Edm.Decimal",
    "Money": "Edm.Decimal",
    "Boolean": "Edm.Boolean",
    "Picklist": "Edm.Int32",
    "State": "Edm.Int32",
    "Status": "Edm.Int32",
    "Uniqueidentifier": "Edm.Guid",
}
LOOKUP_TYPES = frozenset({"Lookup", "Customer", "Owner"})
CHOICE_TYPES = frozenset({"Picklist", "State", "Status", "Boolean"})

# --------------------------------------------------------------------------------------------------
# The sandbox's own additions and choices
# --------------------------------------------------------------------------------------------------

# The BC integration solution adds a company lookup to the coupled tables (reconcile.md, BC integration
# facts); it is not in Microsoft's pages.
BCBI_COMPANY = {"name": "bcbi_companyid", "targets": ["bcbi_company"], "lookup": ["bcbi_companies"]}
OVERLAY_EXTRA_COLUMNS: dict[str, list[dict[str, Any]]] = {
    name: [BCBI_COMPANY]
    for name in (
        "accounts",
        "contacts",
        "products",
        "pricelevels",
        "productpricelevels",
        "opportunities",
        "invoices",
    )
}
# Defaults of new rows where the pages state none (the value Dataverse stores when a create omits the
# column, as the sandbox has always done), and overrides: (set, column) -> (value, reason).
OVERLAY_DEFAULTS: dict[tuple[str, str], tuple[Any, str]] = {
    ("products", "statecode"): (
        0,
        "new products start Active (an org with 'create products in active state'); a default org "
        "creates them Draft (2/0)",
    ),
    ("products", "statuscode"): (1, "see products.statecode"),
    ("products", "producttypecode"): (1, "Sales Inventory, as the sandbox has always created products"),
    ("products", "productstructure"): (1, "Product"),
    ("uoms", "quantity"): (1, "a unit is one base unit unless stated"),
    ("productpricelevels", "pricingmethodcode"): (1, "Currency Amount"),
    ("productpricelevels", "quantitysellingcode"): (1, "No Control"),
    ("invoicedetails", "producttypecode"): (1, "Product"),
    ("invoicedetails", "propertyconfigurationstatus"): (2, "Not Configured"),
    ("systemusers", "islicensed"): (True, "users of the sandbox org are licensed"),
}
# SystemRequired columns the API layer fills itself, so a create may omit them: (set, column) -> reason.
OVERLAY_NOT_REQUIRED: dict[tuple[str, str], str] = {
    ("invoices", "invoicenumber"): "SystemRequired but auto-numbered when omitted (API layer)",
}
# Columns the pages mark not valid for create that the sandbox accepts on create: (set, column) -> reason.
_TOTALS = (
    "Dataverse calculates the amounts (invoice totals from the lines, line amounts from quantity and "
    "price); the sandbox does not, so the client (the BC integration) sets them on create as on update"
)
OVERLAY_VALID_FOR_CREATE: dict[tuple[str, str], str] = {
    (name, column): _TOTALS
    for name, columns in (
        (
            "invoices",
            (
                "totalamount",
                "totalamountlessfreight",
                "totaldiscountamount",
                "totallineitemamount",
                "totallineitemdiscountamount",
                "totaltax",
            ),
        ),
        ("invoicedetails", ("baseamount", "extendedamount")),
    )
    for column in columns
}
OVERLAY_NAVS: dict[str, list[dict[str, Any]]] = {
    "invoices": [
        {
            "name": "invoice_details",
            "target": "invoicedetails",
            "local": "invoiceid",
            "remote": "_invoiceid_value",
            "many": True,
        }
    ],
}
# Tables whose page was not transcribed yet: rows carried over as the sandbox defined them before the
# generator (hand-written from the same reference; not checked against a page). Used only when the page is
# missing from PAGES_DIR; a downloaded page replaces them.
CARRIED_OVER = {
    "systemusers": """[sets.systemusers]
# NOT GENERATED: the systemuser page (https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/systemuser)
# was not in PAGES_DIR; these are the columns the sandbox defined before the generator.
logical_name = "systemuser"
key = "systemuserid"
primary_name = "fullname"
schema_name = "SystemUser"
ownership_type = "BusinessOwned"
source = "https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/systemuser"
columns = [
  { name = "systemuserid", edm = "Edm.Guid", valid_for_update = false },
  # Choice (UNVERIFIED lengths): names 64, fullname 200 (computed from first/last name).
  { name = "firstname", edm = "Edm.String", max_length = 64 },
  { name = "lastname", edm = "Edm.String", max_length = 64 },
  { name = "fullname", edm = "Edm.String", max_length = 200, read_only = true },
  { name = "internalemailaddress", edm = "Edm.String", max_length = 100, required = true },
  { name = "domainname", edm = "Edm.String", max_length = 1024 },
  { name = "mobilephone", edm = "Edm.String", max_length = 64 },
  { name = "title", edm = "Edm.String", max_length = 128 },
  { name = "isdisabled", edm = "Edm.Boolean", default = false },
  { name = "islicensed", edm = "Edm.Boolean", default = true },
  { name = "isintegrationuser", edm = "Edm.Boolean", default = false },
  { name = "azureactivedirectoryobjectid", edm = "Edm.Guid" },
  { name = "applicationid", edm = "Edm.Guid" },
  { name = "createdon", edm = "Edm.DateTimeOffset", read_only = true },
  { name = "modifiedon", edm = "Edm.DateTimeOffset", read_only = true },
  { name = "createdby", targets = ["systemuser"], lookup = ["systemusers"], read_only = true },
  { name = "modifiedby", targets = ["systemuser"], lookup = ["systemusers"], read_only = true },
  { name = "versionnumber", edm = "Edm.Int64", read_only = true },
]
""",
}

# The BC integration solution's own table (not in Microsoft's reference): kept as the sandbox defined it.
BCBI_COMPANIES = """[sets.bcbi_companies]
# The BC integration solution's company table (Business Central Integration solution; not in Microsoft's
# table reference): the columns the sandbox has always served, with the system columns every table has.
logical_name = "bcbi_company"
key = "bcbi_companyid"
primary_name = "bcbi_name"
schema_name = "bcbi_Company"
ownership_type = "UserOwned"
columns = [
  { name = "bcbi_companyid", edm = "Edm.Guid", valid_for_update = false },
  { name = "bcbi_name", edm = "Edm.String", max_length = 100 },
  { name = "bcbi_externalid", edm = "Edm.String", max_length = 36 },  # BC Company.SystemId, lower-case, no braces
  { name = "statecode", edm = "Edm.Int32", options = "bcbi_company_statecode", default = 0, attribute_type = "State", valid_for_create = false },
  { name = "statuscode", edm = "Edm.Int32", options = "bcbi_company_statuscode", default = 1, attribute_type = "Status" },
  { name = "ownerid", attribute_type = "Owner", targets = ["systemuser", "team"], lookup = ["systemusers"] },
  { name = "bcbi_defaultowningteam", targets = ["team"] },  # lookup to team: teams are not served
  { name = "createdon", edm = "Edm.DateTimeOffset", read_only = true },
  { name = "modifiedon", edm = "Edm.DateTimeOffset", read_only = true },
  { name = "createdby", targets = ["systemuser"], lookup = ["systemusers"], read_only = true },
  { name = "modifiedby", targets = ["systemuser"], lookup = ["systemusers"], read_only = true },
  { name = "versionnumber", edm = "Edm.Int64", read_only = true },
]
"""
BCBI_OPTION_SETS = {
    "bcbi_company_statecode": [(0, "Active"), (1, "Inactive")],
    "bcbi_company_statuscode": [(1, "Active"), (2, "Inactive")],
}

# --------------------------------------------------------------------------------------------------
# Parsing the pages
# --------------------------------------------------------------------------------------------------

_HEADING = re.compile(r'^###\s+<a name="BKMK_[^"]*"></a>\s*(\S+)\s*$')
_ROW = re.compile(r"^\|([^|]*)\|(.*)\|\s*$")
_DEFAULT = re.compile(r"^\*\*DefaultValue\*\*:\s*(\S+)")


@dataclass
class Attribute:
    schema_name: str
    rows: dict[str, str] = field(default_factory=dict)
    options: list[tuple[int, str]] = field(default_factory=list)
    default: str | None = None
    read_only_section: bool = False

    def get(self, key: str, default: str = "") -> str:
        return _clean(self.rows.get(key, default))

    @property
    def logical_name(self) -> str:
        return self.get("LogicalName") or self.schema_name.lower()

    @property
    def type(self) -> str:
        return self.get("Type")

    def flag(self, key: str) -> bool:
        if self.read_only_section and key in ("IsValidForCreate", "IsValidForUpdate"):
            return False
        return self.get(key, "True") != "False"


@dataclass
class Page:
    properties: dict[str, str]
    attributes: list[Attribute]


def _clean(text: str) -> str:
    """A cell as text: the generated pages wrap values in backticks or bold."""
    return text.strip().strip("`").replace("**", "").strip()


def parse_page(text: str) -> Page:
    """The table properties and the attribute sections of one reference page."""
    properties: dict[str, str] = {}
    attributes: list[Attribute] = []
    current: Attribute | None = None
    section = ""
    in_options = False
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
            current, in_options = None, False
            if section.startswith(("one-to-many", "many-to-one", "many-to-many")):
                break
            continue
        m = _HEADING.match(line)
        if m and ("columns" in section or "attributes" in section):
            current = Attribute(m.group(1), read_only_section=section.startswith("read-only"))
            attributes.append(current)
            in_options = False
            continue
        if line.startswith("#### ") and current is not None:
            in_options = "option" in line.lower() or "choice" in line.lower()
            continue
        d = _DEFAULT.match(line.strip())
        if d and current is not None:
            current.default = d.group(1)
            continue
        r = _ROW.match(line.strip())
        if not r:
            continue
        key, value = _clean(r.group(1)), r.group(2).split("|")[0]
        if key in ("Property", "Value") or set(key) <= {"-", " "}:
            continue
        if current is None:
            if section == "properties":
                properties[key] = _clean(value)
        elif in_options:
            if re.fullmatch(r"-?\d+", key):
                current.options.append((int(key), _clean(value)))
        else:
            current.rows[key] = value
    return Page(properties, attributes)


# --------------------------------------------------------------------------------------------------
# Attributes -> rows
# --------------------------------------------------------------------------------------------------


def skip_reason(attr: Attribute, page: Page, lookups: set[str]) -> str | None:
    """Why an attribute is not a Web API property of the sandbox, or None when it is one."""
    kind = attr.type
    name = attr.logical_name
    if not attr.flag("IsValidForRead"):
        return "not valid for read"
    if kind == "EntityName":
        return "EntityName (a lookup's target type): not a Web API property"
    if kind == "Virtual":
        return "Virtual: not a Web API property"
    if kind == "Image":
        return "Image (Edm.Binary): not emulated by the sandbox"
    if (
        kind == "String"
        and not attr.get("DisplayName")
        and name.endswith("name")
        and name != page.properties.get("PrimaryNameAttribute")
    ):
        return (
            "name of a lookup (AttributeOf): not a Web API property, carried by the FormattedValue annotation"
        )
    if kind not in _EDM and kind not in LOOKUP_TYPES and kind != "DateTime":
        return f"type {kind}: not emulated by the sandbox"
    return None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _inline(row: dict[str, Any]) -> str:
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in row.items()) + " }"


@dataclass
class Table:
    name: str
    logical: str
    url: str
    md: str
    page: Page
    rows: list[dict[str, Any]] = field(default_factory=list)
    comments: dict[int, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    option_sets: dict[str, list[tuple[int, str]]] = field(default_factory=dict)


def build_table(name: str, page: Page, served: dict[str, str]) -> Table:
    """``served``: logical name -> entity set of every served table."""
    logical, url, md = TABLES[name]
    table = Table(name, logical, url, md, page)
    key = page.properties.get("PrimaryIdAttribute", f"{logical}id")
    attrs = sorted(page.attributes, key=lambda a: a.logical_name != key)  # the key first, then page order
    lookups = {a.logical_name for a in attrs if a.type in LOOKUP_TYPES}
    for attr in attrs:
        col = attr.logical_name
        reason = skip_reason(attr, page, lookups)
        if reason:
            table.skipped.append((col, reason))
            continue
        kind = attr.type
        # The primary id is never valid for update (the generated pages leave the row out).
        create, update = attr.flag("IsValidForCreate"), attr.flag("IsValidForUpdate") and col != key
        row: dict[str, Any] = {"name": col}
        note = ""
        if (name, col) in OVERLAY_VALID_FOR_CREATE and not create:
            create = True
            note = f"Choice: valid for create (the page: not): {OVERLAY_VALID_FOR_CREATE[name, col]}."
        if kind in LOOKUP_TYPES:
            targets = [t.strip() for t in attr.get("Targets").split(",") if t.strip()]
            row["targets"] = targets
            navigable = [served[t] for t in targets if t in served]
            if navigable:
                row["lookup"] = navigable
            if not (create or update):
                row["read_only"] = True
        else:
            if kind == "DateTime":
                row["edm"] = (
                    "Edm.Date" if attr.get("DateTimeBehavior") == "DateOnly" else "Edm.DateTimeOffset"
                )
            else:
                row["edm"] = _EDM[kind]
            if attr.get("MaxLength") and kind in ("String", "Memo"):
                row["max_length"] = int(attr.get("MaxLength"))
            level = attr.get("RequiredLevel", "None")
            if (
                level == "SystemRequired"
                and create
                and col != key
                and kind not in ("State", "Status", "Picklist")  # choices: the service stores a default
                and (name, col) not in OVERLAY_DEFAULTS
            ):
                if (name, col) in OVERLAY_NOT_REQUIRED:
                    note = f"Choice: not `required`: {OVERLAY_NOT_REQUIRED[name, col]}."
                else:
                    row["required"] = True
            if not (create or update):
                row["read_only"] = True
            if kind in ("Picklist", "State", "Status"):
                set_name = f"{logical}_{col}"
                table.option_sets[set_name] = attr.options
                row["options"] = set_name
            default = _default(attr)
            if (name, col) in OVERLAY_DEFAULTS:
                default, why = OVERLAY_DEFAULTS[name, col]
                note = f"Choice: default {default!r}: {why}."
            if default is not None:
                row["default"] = default
        row["attribute_type"] = kind
        row["schema_name"] = attr.schema_name
        if attr.get("DisplayName"):
            row["display_name"] = attr.get("DisplayName")
        level = attr.get("RequiredLevel", "None")
        if level != "None":
            row["required_level"] = level
        if attr.get("DateTimeBehavior"):
            row["date_behavior"] = attr.get("DateTimeBehavior")
        fmt = attr.get("FormatName") or attr.get("Format")
        if fmt and fmt != "None":
            row["format"] = fmt
        if not create:
            row["valid_for_create"] = False
        if not update:
            row["valid_for_update"] = False
        if note:
            table.comments[len(table.rows)] = note
        table.rows.append(row)
    for extra in OVERLAY_EXTRA_COLUMNS.get(name, []):
        table.comments[len(table.rows)] = (
            "The BC integration solution's company lookup (not in Microsoft's page)."
        )
        table.rows.append(dict(extra))
    return table


def _default(attr: Attribute) -> Any:
    """The value Dataverse stores when a create omits the column, where the page states it."""
    kind = attr.type
    if kind == "Boolean" and attr.default is not None:
        return attr.default in ("1", "True", "true")
    if kind == "State" and attr.options:
        return attr.options[0][0]
    if kind == "Status" and attr.options:
        return attr.options[0][0]
    return None


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------

HEADER = """\
# Dataverse Web API v9.2 tables the sandbox serves: one row per column, as data.
# GENERATED by tools/dataverse_schema.py from Microsoft's table/entity reference pages; do not edit by
# hand: change the generator (its OVERLAY_* data holds the sandbox's own additions and choices) and
# regenerate. Loaded by d365kit/sandbox/schema_defs.py; the contract is docs/sandbox.md, sections
# "Dataverse API" and "Entity definitions".
#
# Source pages (read {fetched}; each set names its page in `source`):
{sources}
#
# Set keys: logical_name (also the entity type name), key, primary_name, schema_name, ownership_type,
# primary_image (table metadata from the page), source (the page), skipped (documented attributes that
# are not Web API properties of the sandbox, with the reason), navs (extra $expand navigations).
# Column keys: name (logical name), edm, max_length, required, read_only, options (an [option_sets]
# entry: value, label), default, targets (a lookup's documented target tables), lookup (the served
# entity sets among them: navigations), attribute_type, schema_name, display_name, required_level,
# date_behavior, format, valid_for_create, valid_for_update.
#
# Conventions
# - A lookup row (targets/lookup) is read as _<name>_value (Edm.Guid, read-only). Its navigations go to
#   the served targets only: <name>, or <name>_<target logical name> for a Customer lookup. A writable
#   lookup is bound with <nav>@odata.bind; a read_only one (createdby ...) is expandable only. A lookup
#   with no served target (teams, business units, SLAs ...) has no navigation: its value is readable.
# - ownerid targets systemuser and team; teams are not served, so ownerid navigates and binds to
#   systemusers only (a team bind is refused; /teams answers 501 as an unserved set).
# - Only SystemRequired columns valid for create are `required` (ApplicationRequired is a form rule the
#   Web API does not enforce); lookups are never `required` here (the API layer checks binds); statecode
#   is set by the service.
# - DateTime columns: Edm.Date with DateTimeBehavior DateOnly, else Edm.DateTimeOffset (UserLocal and
#   TimeZoneIndependent columns are date-times on the wire, whatever their Format).
# - Not Web API properties (listed in `skipped`): EntityName attributes, the ...name/...yominame String
#   attributes of lookups, attributes not valid for read, and Image columns (Edm.Binary, not emulated).
"""


def render(entries: list[Table | str], fetched: str) -> str:
    tables = [t for t in entries if isinstance(t, Table)]
    sources = "\n".join(
        f"#   {name}: {url} ({md})"
        + ("" if any(t.name == name for t in tables) else " -- NOT GENERATED, carried over")
        for name, (_, url, md) in TABLES.items()
    )
    out = [HEADER.format(fetched=fetched, sources=sources)]
    out.append("# What every table below has unless it says otherwise.")
    out.append("[defaults]")
    out += ["company_scoped = false", "change_tracking = true", 'modified_prop = "modifiedon"']
    out += ['created_prop = "createdon"', ""]
    out.append("[option_sets]")
    for t in tables:
        for set_name, options in t.option_sets.items():
            out.append(f"{set_name} = {_toml([[v, label] for v, label in options])}")
    for set_name, options in BCBI_OPTION_SETS.items():
        out.append(f"{set_name} = {_toml([[v, label] for v, label in options])}")
    for t in entries:
        if isinstance(t, str):
            out += ["", t.rstrip()]
            continue
        props = t.page.properties
        out += ["", f"[sets.{t.name}]"]
        out.append(f"logical_name = {_toml(t.logical)}")
        out.append(f"key = {_toml(props.get('PrimaryIdAttribute', t.logical + 'id'))}")
        out.append(f"primary_name = {_toml(props['PrimaryNameAttribute'])}")
        out.append(f"schema_name = {_toml(props.get('SchemaName', t.logical))}")
        if props.get("OwnershipType"):
            out.append(f"ownership_type = {_toml(props['OwnershipType'])}")
        image = next((a.logical_name for a in t.page.attributes if a.get("IsPrimaryImage") == "True"), None)
        if image:
            out.append(f"primary_image = {_toml(image)}")
        out.append(f"source = {_toml(t.url)}")
        out.append("columns = [")
        for i, row in enumerate(t.rows):
            if i in t.comments:
                out.append(f"  # {t.comments[i]}")
            out.append(f"  {_inline(row)},")
        out.append("]")
        out.append("skipped = [")
        for col, reason in t.skipped:
            out.append(f"  {_inline({'name': col, 'reason': reason})},")
        out.append("]")
        if t.name in OVERLAY_NAVS:
            out.append("navs = [")
            out += [f"  {_inline(nav)}," for nav in OVERLAY_NAVS[t.name]]
            out.append("]")
    out += ["", BCBI_COMPANIES.rstrip()]
    return "\n".join(out) + "\n"


def generate(pages_dir: Path, fetched: str) -> str:
    served = {logical: name for name, (logical, _, _) in TABLES.items()}
    served["bcbi_company"] = "bcbi_companies"
    tables: list[Table | str] = []
    for name, (logical, _, _) in TABLES.items():
        path = pages_dir / f"{logical}.md"
        if path.is_file():
            tables.append(build_table(name, parse_page(path.read_text(encoding="utf-8")), served))
        elif name in CARRIED_OVER:
            print(f"note: {path} missing: {name} carried over (not generated)", file=sys.stderr)
            tables.append(CARRIED_OVER[name])
        else:
            raise SystemExit(f"missing page {path} (download {TABLES[name][2]})")
    return render(tables, fetched)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("pages", type=Path, help="folder of downloaded reference pages (<logical name>.md)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("d365kit/sandbox/tables/dataverse.toml"),
        help="toml to write",
    )
    parser.add_argument("--fetched", default=dt.date.today().isoformat(), help="date the pages were read")
    args = parser.parse_args(argv)
    args.output.write_text(generate(args.pages, args.fetched), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
