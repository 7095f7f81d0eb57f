"""What BC's integration does in code on insert, beyond the field mappings (docs/sync.md#insert-rules).

A new row must land inside the mapping's filters and carry the links BC sets itself:

- every create: the equality terms of the target side's filter (``customertypecode eq 3`` makes a new
  account a Customer; ``type eq 'Person'`` makes a new BC contact a person) and the mapping's constants
  (``ispriceoverridden = 1``). Choices: ``statecode``/``statuscode`` are left to the service (a new row
  is active; Dataverse refuses statecode on create); a constant that names an option by label
  (``pricingmethodcode = CurrencyAmount``) is left to the column's default, which is that option;
  ``owneridtype``/``parentcustomeridtype`` are implied by the lookup's bind.
- Dataverse rows of a mapping with a company filter get ``bcbi_companyid`` = the own company.
- CONTACT (table 5050): ``parentcustomerid`` = the account coupled to the customer of the contact's
  company; the other way, the BC contact's ``companyNumber`` = the company contact of the customer coupled
  to ``parentcustomerid``. BC links a company contact to its customer through Contact Business Relation,
  which API v2.0 shows only through ``contactsInformation``; choice (UNVERIFIED for real tenants, where
  names need not be unique): the company contact and the customer with the same name, names that occur
  twice being ambiguous and left unresolved.
- Sales invoice (table 112): ``customerid`` = the account coupled to the sell-to customer, ``name`` = the
  invoice number. Its lines (table 113) sync with it and never alone (BC's CannotSynchOnlyLinesErr):
  ``invoiceid`` = the coupled invoice, ``productid`` = the product coupled to the line's item (or
  resource), ``lineitemnumber`` = the line's sequence; a line without item or resource becomes a
  write-in product (``isproductoverridden``, ``productdescription`` = "<No.> <Description>.").

- Currency (table 4): ``currencyprecision`` from BC's ``amountDecimalPlaces`` ("2:2" -> 2), a blank
  symbol becomes the ISO code, ``exchangerate`` 1. Choice (UNVERIFIED): BC computes the rate from its
  exchange rates relative to the Dataverse base currency; those are not read here, so check new
  currencies' rates.
- Unit of measure (table 204): the unit group is named "NAV <code>".
- Salesperson (table 13) from a Dataverse user: code "SP NO. 00001", the next free number.

A link that cannot be resolved (the customer is not coupled) makes the create a skip with that reason:
BC fails such a record too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from d365kit.mapping import Catalog, TableMapping, dv_column
from d365kit.mapping.transforms import BLANK_GUID
from d365kit.odata.query import Q, Query
from d365kit.sync.context import PlanContext
from d365kit.sync.values import allows, navigation

CONTACT, CUSTOMER, ITEM, RESOURCE, INVOICE, INVOICE_LINE = 5050, 18, 27, 156, 112, 113
SALESPERSON, CURRENCY, UNIT_OF_MEASURE = 13, 4, 204
SALESPERSON_PREFIX = "SP NO. "  # BC numbers salespeople made from users "SP NO. 00001", ... (S13)
CHILDREN = {INVOICE: (INVOICE_LINE, "documentId")}  # parent table -> (child table, child's parent id)
# Tables whose couplings a mapping's code-level links use: they are written first.
CODE_DEPENDENCIES = {CONTACT: (CUSTOMER,), INVOICE: (CUSTOMER,), INVOICE_LINE: (INVOICE, ITEM, RESOURCE)}
_SOURCE_COLUMNS = {
    ("to_dataverse", CONTACT): ("companyNumber",),
    ("to_dataverse", INVOICE): ("customerId", "number"),
    ("to_dataverse", INVOICE_LINE): (
        "documentId",
        "itemId",
        "lineType",
        "lineObjectNumber",
        "description",
        "sequence",
    ),
    ("to_dataverse", CURRENCY): ("code", "symbol", "amountDecimalPlaces"),
    ("to_dataverse", UNIT_OF_MEASURE): ("code",),
}
_STATE = ("statecode", "statuscode")
_EQ = re.compile(r"^[\s(]*([A-Za-z_][A-Za-z0-9_]*)\s+eq\s+('(?:[^']|'')*'|-?\d+(?:\.\d+)?|true|false)[\s)]*$")


def source_columns(m: TableMapping, direction: str) -> tuple[str, ...]:
    """Extra source columns the rules of ``m`` read (BC properties)."""
    return _SOURCE_COLUMNS.get((direction, m.bc_table_id), ())  # type: ignore[arg-type]


def lookup_types(m: TableMapping, direction: str) -> tuple[str, ...]:
    """Dataverse lookups whose target table the rules need (a contact's parent must be an account)."""
    return tuple(m.dv_lookup_types) if direction == "from_dataverse" and m.bc_table_id == CONTACT else ()


def child_of(ctx: PlanContext, m: TableMapping) -> tuple[TableMapping, str] | None:
    """The mapping whose rows sync with ``m``'s (invoice lines with their invoice) and their parent id."""
    hit = CHILDREN.get(m.bc_table_id)  # type: ignore[arg-type]
    child = ctx.mapping_of_table(hit[0]) if hit else None
    return (child, hit[1]) if child and hit else None


def is_child(m: TableMapping) -> bool:
    return any(m.bc_table_id == child for child, _ in CHILDREN.values())


def parent_of(catalog: Catalog, m: TableMapping) -> TableMapping | None:
    parent = next((p for p, (child, _) in CHILDREN.items() if child == m.bc_table_id), None)
    return catalog.by_table_id(parent) if parent is not None else None


def filter_defaults(text: str | None) -> dict[str, Any]:
    """``{name: value}`` of the ``name eq literal`` terms of an and-only filter (state columns left out)."""
    if not text or re.search(r"\bor\b", text):
        return {}
    out: dict[str, Any] = {}
    for part in re.split(r"\band\b", text):
        hit = _EQ.match(part)
        if not hit or hit.group(1) in _STATE:
            continue
        name, lit = hit.groups()
        if lit.startswith("'"):
            out[name] = lit[1:-1].replace("''", "'")
        elif lit in ("true", "false"):
            out[name] = lit == "true"
        else:
            out[name] = float(lit) if "." in lit else int(lit)
    return out


@dataclass
class Extras:
    """Values the rules add to creates (by target column), Dataverse binds, and unresolved links."""

    index: pd.Index
    values: dict[str, pd.Series] = field(default_factory=dict)
    binds: dict[str, tuple[str, str]] = field(default_factory=dict)
    problems: pd.Series | None = None

    def set(self, column: str, values: Any, bind: tuple[str, str] | None = None) -> None:
        series = (
            values
            if isinstance(values, pd.Series)
            else pd.Series([values] * len(self.index), index=self.index)
        )
        self.values[column] = series.astype(object).where(series.notna(), None)
        if bind:
            self.binds[column] = bind

    def fail(self, mask: np.ndarray | pd.Series, text: pd.Series | str) -> None:
        base = (
            self.problems if self.problems is not None else pd.Series(pd.NA, index=self.index, dtype="string")
        )
        mask = np.asarray(mask, dtype=bool) & base.isna().to_numpy(dtype=bool)
        self.problems = base.mask(mask, text)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.values, index=self.index, dtype=object)


def _constant(value: str, edm: str) -> Any:
    if edm == "Edm.Boolean":
        return value.strip().lower() in ("1", "true", "yes")
    if edm.startswith("Edm.Int"):
        return int(value) if value.strip().lstrip("-").isdigit() else None
    if edm in ("Edm.Decimal", "Edm.Double"):
        return float(value)
    return value


def _defaults(ctx: PlanContext, m: TableMapping, direction: str, out: Extras) -> None:
    if direction == "to_dataverse":
        et = ctx.systems.dataverse.metadata().entity(m.dv_entity)
        pairs = [(k, v) for k, v in filter_defaults(m.dv_filter).items() if k in et.properties]
        for f in m.fields:
            column = dv_column(et, f.dv) if f.dv else None
            if f.constant is not None and column == f.dv and allows(f.direction, direction):
                pairs.append((column, _constant(f.constant, et.properties[column])))
    else:
        props = ctx.systems.bc.metadata(m.api_path).entity(m.bc_entity).properties
        pairs = [(k, v) for k, v in filter_defaults(m.bc_filter).items() if k in props and str(v).strip()]
        pairs += [
            (f.bc, f.constant)
            for f in m.fields
            if f.constant is not None and f.bc in props and allows(f.direction, direction)
        ]
    for column, value in pairs:
        if value is not None:
            out.set(column, value)


def _bind(
    ctx: PlanContext, m: TableMapping, attribute: str, table_id: int
) -> tuple[str, tuple[str, str]] | None:
    """(read column, (navigation, entity set)) of a Dataverse lookup to the rows of BC table ``table_id``."""
    target = ctx.mapping_of_table(table_id)
    if target is None:
        return None
    return f"_{attribute}_value", (
        navigation(ctx.systems, m.dv_entity, attribute, target.dv_entity),
        target.dv_entity,
    )


def company_customers(ctx: PlanContext) -> pd.DataFrame:
    """``company_number`` <-> ``customer_id``: company contacts and customers of the same (unique) name."""
    customers = ctx.mapping_of_table(CUSTOMER)
    contacts = ctx.mapping_of_table(CONTACT)
    if customers is None or contacts is None:
        return pd.DataFrame(
            {"company_number": pd.Series(dtype="string"), "customer_id": pd.Series(dtype="string")}
        )
    firms = ctx.bc_frame(contacts, ("number", "displayName"), Query(filter=Q.eq("type", "Company")))
    people = ctx.bc_frame(customers, ("id", "displayName"))
    firms = firms.drop_duplicates("displayName", keep=False)
    people = people.drop_duplicates("displayName", keep=False)
    joined = firms.merge(people, on="displayName")
    return pd.DataFrame(
        {
            "company_number": joined["number"].astype("string"),
            "customer_id": joined["id"].astype("string").str.lower(),
        }
    )


def _contact_parent(ctx: PlanContext, m: TableMapping, src: pd.DataFrame, out: Extras) -> None:
    link = company_customers(ctx)
    customer = src["companyNumber"].map(
        pd.Series(link["customer_id"].to_numpy(), index=link["company_number"].to_numpy())
    )
    account = ctx.dataverse_of(CUSTOMER, customer.astype("string"))
    bind = _bind(ctx, m, "parentcustomerid", CUSTOMER)
    if bind:
        out.set(bind[0], account, bind[1])
    out.fail(
        account.isna().to_numpy(),
        "parent company "
        + src["companyNumber"].astype("string").fillna("")
        + ": no customer of that name coupled to an account",
    )


def _contact_company(ctx: PlanContext, m: TableMapping, src: pd.DataFrame, out: Extras) -> None:
    link = company_customers(ctx)
    parent = src["_parentcustomerid_value"].astype("string")
    if "parentcustomeridtype" in src:
        parent = parent.where(src["parentcustomeridtype"].eq("account").fillna(False))
    customer = ctx.bc_of(CUSTOMER, parent)
    number = customer.map(pd.Series(link["company_number"].to_numpy(), index=link["customer_id"].to_numpy()))
    out.set("companyNumber", number)
    out.fail(
        number.isna().to_numpy(),
        "parent account " + parent.fillna("") + ": not coupled to a customer with a company contact",
    )


def _invoice(ctx: PlanContext, m: TableMapping, src: pd.DataFrame, out: Extras) -> None:
    account = ctx.dataverse_of(CUSTOMER, src["customerId"])
    bind = _bind(ctx, m, "customerid", CUSTOMER)
    if bind:
        out.set(bind[0], account, bind[1])
    out.set("name", src["number"].astype("string"))
    out.fail(
        account.isna().to_numpy(),
        "sell-to customer " + src["customerId"].astype("string").fillna("") + " is not coupled",
    )


def _invoice_line(ctx: PlanContext, m: TableMapping, src: pd.DataFrame, out: Extras) -> None:
    invoice = ctx.dataverse_of(INVOICE, src["documentId"])
    bind = _bind(ctx, m, "invoiceid", INVOICE)
    if bind:
        out.set(bind[0], invoice, bind[1])
    out.fail(
        invoice.isna().to_numpy(),
        "invoice " + src["documentId"].astype("string").fillna("") + " is not coupled",
    )
    item = src["itemId"].astype("string").str.lower()
    has_item = item.notna() & (item != BLANK_GUID)
    product = ctx.dataverse_of(ITEM, item.where(has_item))
    is_resource = src["lineType"].eq("Resource").fillna(False) & ~has_item
    resources = ctx.mapping_of_table(RESOURCE)
    if resources is not None and is_resource.any():
        rows = ctx.bc_frame(resources, ("id", "number"))
        ids = src["lineObjectNumber"].map(
            pd.Series(rows["id"].astype("string").str.lower().to_numpy(), index=rows["number"].to_numpy())
        )
        product = product.fillna(ctx.dataverse_of(RESOURCE, ids.where(is_resource).astype("string")))
    linked = has_item | is_resource
    bind = _bind(ctx, m, "productid", ITEM)
    if bind:
        out.set(bind[0], product.where(linked), bind[1])
    out.fail(
        (linked & product.isna()).to_numpy(),
        "line "
        + src["lineObjectNumber"].astype("string").fillna("")
        + ": its item or resource is not coupled",
    )
    write_in = ~linked
    if write_in.any():
        label = (
            src["lineObjectNumber"].astype("string").fillna("")
            + " "
            + src["description"].astype("string").fillna("")
            + "."
        )
        out.set("isproductoverridden", write_in)
        out.set("productdescription", label.where(write_in))
    out.set("lineitemnumber", pd.to_numeric(src["sequence"], errors="coerce").astype("Int64"))


def _currency(ctx: PlanContext, m: TableMapping, src: pd.DataFrame, out: Extras) -> None:
    places = src["amountDecimalPlaces"].astype("string").str.extract(r"(\d+)\s*$")[0]
    out.set("currencyprecision", pd.to_numeric(places, errors="coerce").fillna(2).astype("Int64"))
    symbol = src["symbol"].astype("string").str.strip()
    out.set("currencysymbol", symbol.mask(symbol.fillna("") == "", src["code"].astype("string")))
    out.set("exchangerate", 1.0)


def _unit_group(ctx: PlanContext, m: TableMapping, src: pd.DataFrame, out: Extras) -> None:
    out.set("name", "NAV " + src["code"].astype("string"))


def _salesperson(ctx: PlanContext, m: TableMapping, src: pd.DataFrame, out: Extras) -> None:
    codes = ctx.bc_frame(m, ("code",))["code"].astype("string")
    taken = pd.to_numeric(
        codes[codes.str.startswith(SALESPERSON_PREFIX, na=False)].str[len(SALESPERSON_PREFIX) :],
        errors="coerce",
    )
    start = int(max(taken.max() if taken.notna().any() else 0, ctx.counters.get(SALESPERSON, 0)))
    numbers = range(start + 1, start + 1 + len(src))
    ctx.counters[SALESPERSON] = start + len(src)
    out.set("code", pd.Series([f"{SALESPERSON_PREFIX}{n:05d}" for n in numbers], index=src.index))


def create_extras(ctx: PlanContext, m: TableMapping, direction: str, src: pd.DataFrame) -> Extras:
    """What the rules add to the creates of ``src``'s rows (the source side, indexed by source id)."""
    out = Extras(src.index)
    _defaults(ctx, m, direction, out)
    if direction == "to_dataverse":
        if m.dv_company_field:
            attribute = m.dv_company_field
            et = ctx.systems.dataverse.metadata().entity(m.dv_entity)
            target = next((name for name, t in et.navigation.items() if name == attribute), None)
            if target:
                entity_set = next(
                    (
                        s
                        for s, e in ctx.systems.dataverse.metadata().entity_sets.items()
                        if f"mscrm.{e.name}" == et.navigation[target]
                    ),
                    None,
                )
                if entity_set:
                    out.set(f"_{attribute}_value", ctx.company(), (target, entity_set))
        rules = {
            CONTACT: _contact_parent,
            INVOICE: _invoice,
            INVOICE_LINE: _invoice_line,
            CURRENCY: _currency,
            UNIT_OF_MEASURE: _unit_group,
        }
        rule = rules.get(m.bc_table_id)  # type: ignore[arg-type]
    else:
        rule = {CONTACT: _contact_company, SALESPERSON: _salesperson}.get(m.bc_table_id)  # type: ignore[arg-type]
    if rule is not None:
        rule(ctx, m, src, out)
    return out
