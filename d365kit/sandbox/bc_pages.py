"""The BC API v2.0 pages beyond their served columns: page parts, lookups and bound actions (docs/sandbox.md#bc-api).

The real pages (microsoft/ALAppExtensions, ``Apps/W1/APIV2/app/src/pages``) have page parts (``picture``,
``defaultDimensions``, ``agedAccountsReceivable`` ...) and the platform adds lookups for ``<x>Id`` fields
(``paymentMethod``, ``countryRegion`` ...). ``tables/bc.toml`` declares them:

- a set's ``navs`` are served like any navigation (``$expand`` and navigation paths);
- ``[pages.<set>].unserved``: declared in ``$metadata``; ``$expand`` and navigation paths answer 501 naming
  the navigation;
- ``[pages.<set>].computed``: served from the parent row without a table (``picture``: BC answers width and
  height 0 and a blank content type for a record without a picture; the sandbox stores no pictures);
- ``[pages.<set>].actions``: bound actions (``Microsoft.NAV.post`` ...), declared in ``$metadata``, 501;
- ``[pages.<set>].not_implemented``: methods the sandbox does not implement for the set (501);
- ``[part_types]``: the entity types those navigations lead to when no served set has them;
- ``[enum_ordinals]``: AL ordinals of enums not numbered 0, 1, 2 ... (``$metadata`` member values).

It also keeps ``customerFinancialDetails`` (a read-only view of the Customer table in BC) computed from the
customers and their invoices, and seeds the rows of the part tables (``seed``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from d365kit.sandbox import schema
from d365kit.sandbox.bc_wire import BCError, etag
from d365kit.sandbox.odata import top_level_items
from d365kit.sandbox.schema import EntitySet
from d365kit.sandbox.schema_defs import TABLES_DIR, enum_values
from d365kit.sandbox.store import VERSION

FINANCIAL_DETAILS = "customerFinancialDetails"
# Invoice statuses (wire spelling) that are posted, and the ones that count as sales.
_POSTED = frozenset({"Open", "Paid", "Corrective"})
_SALES = frozenset({"Open", "Paid"})


@dataclass(frozen=True)
class PartNav:
    """A navigation of a real page that the set's ``navs`` do not serve."""

    name: str
    type: str  # target entity type name, e.g. "agedAccountsReceivable"
    many: bool = False
    parent_type: str | None = None  # computed parts: the parent's type in the part's key (picture)
    computed: bool = False


@dataclass(frozen=True)
class Page:
    set: str
    page: str = ""
    unserved: tuple[PartNav, ...] = ()
    computed: tuple[PartNav, ...] = ()
    actions: tuple[str, ...] = ()
    not_implemented: frozenset[str] = frozenset()

    def declared(self, name: str) -> PartNav | None:
        return next((n for n in (*self.unserved, *self.computed) if n.name == name), None)


@dataclass(frozen=True)
class PartType:
    """An entity type a declared navigation leads to (no served set has it)."""

    name: str
    set: str
    key: str
    columns: tuple[dict[str, Any], ...] = field(default=())


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    return tomllib.loads((TABLES_DIR / "bc.toml").read_text(encoding="utf-8"))


@lru_cache(maxsize=64)
def page(set_name: str) -> Page:
    spec = _data().get("pages", {}).get(set_name, {})
    return Page(
        set=set_name,
        page=spec.get("page", ""),
        unserved=tuple(PartNav(**n) for n in spec.get("unserved", ())),
        computed=tuple(PartNav(**n, computed=True) for n in spec.get("computed", ())),
        actions=tuple(spec.get("actions", ())),
        not_implemented=frozenset(spec.get("not_implemented", ())),
    )


def pages() -> list[Page]:
    return [page(name) for name in _data().get("pages", {})]


@lru_cache(maxsize=1)
def part_types() -> dict[str, PartType]:
    out = {}
    for name, spec in _data().get("part_types", {}).items():
        columns = spec.get("columns") or [{"name": spec["key"], "edm": "Edm.Guid"}]
        out[name] = PartType(name, spec["set"], spec["key"], tuple(columns))
    return out


def enum_ordinals(enum: str) -> tuple[int, ...] | None:
    values = _data().get("enum_ordinals", {}).get(enum)
    return tuple(values) if values is not None else None


def enum_wire_values(enum: str) -> tuple[str, ...]:
    return enum_values(*_data()["enums"][enum])


# -- computed parts ----------------------------------------------------------------------------------


def picture(parent: dict[str, Any], nav: PartNav, select: Iterable[str] | None = None) -> dict[str, Any]:
    """The picture part of a record without a picture (what BC answers): id = the parent's id."""
    tag = etag({"id": f"picture:{parent['id']}", VERSION: parent.get(VERSION, 0)}, _KEYED)
    row = {
        "id": str(parent["id"]).lower(),
        "parentType": enum_values(nav.parent_type or "")[0],
        "width": 0,
        "height": 0,
        "contentType": "",
    }
    wanted = set(select or row)
    return {"@odata.etag": tag, **{k: v for k, v in row.items() if k in wanted}}


class _Keyed:
    """Stand-in entity set for ETags of computed rows (``etag`` reads only ``key``)."""

    key = "id"


_KEYED: Any = _Keyed()


# -- $expand and navigation paths --------------------------------------------------------------------


def not_implemented_nav(es: EntitySet, name: str) -> BCError:
    return BCError(
        501,
        "BadRequest_NotImplemented",
        f"The navigation property '{name}' of '{es.name}' is not implemented by the d365kit sandbox.",
    )


def _item(text: str) -> tuple[str, str]:
    name, _, inner = text.partition("(")
    return name.strip(), inner[: inner.rfind(")")] if inner else ""


def _options(inner: str) -> list[tuple[str, str]]:
    out = []
    for part in top_level_items(inner, ";"):
        key, _, value = part.partition("=")
        out.append((key.strip(), value.strip()))
    return out


def _check_nested(es: EntitySet, inner: str) -> None:
    """Declared navigations inside a nested ``$expand`` answer 501 (computed parts too, there)."""
    for key, value in _options(inner):
        if key != "$expand":
            continue
        for text in top_level_items(value, ","):
            name, sub = _item(text)
            if es.service == "bc" and page(es.name).declared(name) is not None:
                raise not_implemented_nav(es, name)
            nav = es.nav(name)
            target = schema.entity_set(es.service, nav.target) if nav else None  # type: ignore[arg-type]
            if target is not None and sub:
                _check_nested(target, sub)


def split_expand(
    es: EntitySet, pairs: list[tuple[str, str]]
) -> tuple[list[tuple[str, str]], list[tuple[PartNav, list[str] | None]]]:
    """The query without the computed parts' ``$expand`` items, and those items (part, ``$select``).

    A declared navigation that is not served answers 501 naming it; the query layer checks the rest.
    """
    out: list[tuple[str, str]] = []
    computed: list[tuple[PartNav, list[str] | None]] = []
    for key, value in pairs:
        if key != "$expand":
            out.append((key, value))
            continue
        keep = []
        for text in top_level_items(value, ","):
            name, inner = _item(text)
            part = page(es.name).declared(name) if es.service == "bc" else None
            if part is None:
                nav = es.nav(name)
                target = schema.entity_set(es.service, nav.target) if nav else None  # type: ignore[arg-type]
                if target is not None and inner:
                    _check_nested(target, inner)
                keep.append(text)
                continue
            if not part.computed:
                raise not_implemented_nav(es, name)
            computed.append((part, computed_select(part, _options(inner))))
        if keep:
            out.append((key, ",".join(keep)))
    return out, computed


def computed_select(part: PartNav, options: list[tuple[str, str]]) -> list[str] | None:
    """``$select`` is the one query option a computed part takes; others answer 501."""
    pt = part_types()[part.type]
    names = {c["name"] for c in pt.columns if c["edm"] != "Edm.Stream"}
    select = None
    for key, value in options:
        if key != "$select":
            raise BCError(
                501,
                "BadRequest_NotImplemented",
                f"The query option '{key}' on '{part.name}' is not implemented by the d365kit sandbox.",
            )
        select = [s.strip() for s in value.split(",") if s.strip()]
        unknown = [s for s in select if s not in names]
        if unknown:
            raise BCError(
                400,
                "BadRequest",
                f"Could not find a property named '{unknown[0]}' on type 'Microsoft.NAV.{pt.name}'.",
            )
    return select


# -- customerFinancialDetails ------------------------------------------------------------------------


def refresh_financial_details(store: Any, company: str | None) -> None:
    """Bring ``customerFinancialDetails`` of a company in line with its customers and invoices.

    Rows change only when their values do, so ETags stay put between reads of unchanged data.
    """
    fin, customers, invoices = (
        schema.BC[FINANCIAL_DETAILS],
        schema.BC["customers"],
        schema.BC["salesInvoices"],
    )
    today = datetime.now(UTC).date().isoformat()
    with store.transaction():
        sums: dict[str, list[float]] = {}
        for inv in store.query(invoices, company=company):
            s = sums.setdefault(str(inv.get("customerId")), [0.0, 0.0, 0.0])
            status, remaining = inv.get("status"), inv.get("remainingAmount") or 0
            if status in _POSTED:
                s[0] += remaining
                if (inv.get("dueDate") or "") < today and inv.get("dueDate") not in (None, "0001-01-01"):
                    s[2] += remaining
            if status in _SALES:
                s[1] += inv.get("totalAmountExcludingTax") or 0
        wanted = {}
        for c in store.query(customers, company=company):
            balance, sales, overdue = sums.get(str(c["id"]), [0.0, 0.0, 0.0])
            wanted[c["id"]] = {
                "number": c.get("number") or "",
                "balance": round(balance, 2),
                "totalSalesExcludingTax": round(sales, 2),
                "overdueAmount": round(overdue, 2),
                "lastModifiedDateTime": c.get("lastModifiedDateTime"),
            }
        have = {r["id"]: r for r in store.query(fin, company=company)}
        for key in have.keys() - wanted.keys():
            store.delete(fin, key, company=company)
        for key, values in wanted.items():
            row = have.get(key)
            if row is None:
                store.insert(fin, {"id": key, **values}, company=company, stamp=False)
            elif any(row.get(k) != v for k, v in values.items()):
                store.update(fin, key, values, company=company, stamp=False)


def touches_financial_details(es: EntitySet | None) -> bool:
    return es is not None and es.service == "bc" and es.name == FINANCIAL_DETAILS


# -- seed --------------------------------------------------------------------------------------------

PAYMENT_METHODS = (
    ("ACCOUNT", "Payment on account"),
    ("BANK", "Bank Transfer"),
    ("CASH", "Cash"),
    ("CHECK", "Check"),
    ("CREDITCARD", "Credit card"),
)
# (dimension, values, posting validation) for customers and items, assigned round-robin by number order.
CUSTOMER_DIMENSION = ("CUSTOMERGROUP", ("LARGE", "MEDIUM", "SMALL"), "Code Mandatory")
ITEM_DIMENSION = ("DEPARTMENT", ("ADM", "PROD", "SALES"), " ")


def seed(seeder: Any) -> None:
    """Payment methods and default dimensions of the seeded company: deterministic (uuid5 ids, a fixed
    clock, no random draws), so the rest of the seed and its manifest stay as they are."""
    from d365kit.sandbox.seed import START, gid, ts

    stamp = ts(START)
    for code, name in PAYMENT_METHODS:
        seeder.emit(
            "bc",
            "paymentMethods",
            {
                "id": gid("paymentMethod", code),
                "code": code,
                "displayName": name,
                "lastModifiedDateTime": stamp,
            },
        )
    store, company = seeder.store, seeder.company_id
    for set_name, parent_type, (dimension, values, posting), every in (
        ("customers", "Customer", CUSTOMER_DIMENSION, 3),
        ("items", "Item", ITEM_DIMENSION, 4),
    ):
        parents = sorted(store.query(schema.BC[set_name], company=company), key=lambda r: r["number"])
        for i, parent in enumerate(parents[::every]):
            value = values[i % len(values)]
            seeder.emit(
                "bc",
                "defaultDimensions",
                {
                    "id": gid("defaultDimension", parent["id"], dimension),
                    "parentType": enum_values(parent_type)[0],
                    "parentId": parent["id"],
                    "dimensionId": gid("dimension", dimension),
                    "dimensionCode": dimension,
                    "dimensionValueId": gid("dimensionValue", dimension, value),
                    "dimensionValueCode": value,
                    "postingValidation": enum_values(posting)[0],
                    "lastModifiedDateTime": stamp,
                },
            )
    seeder.flush()


# -- $metadata ---------------------------------------------------------------------------------------


def extend_csdl(schema_el: Any, namespace: str) -> None:
    """Add to the BC API v2.0 CSDL (built by ``metadata.py`` from the served sets): the declared
    navigations, the entity types and sets they lead to, the bound actions, and AL ordinals as enum member
    values (Choice, UNVERIFIED: BC numbers members by their AL ordinals)."""
    import xml.etree.ElementTree as ET

    from d365kit.sandbox.metadata import enum_member_name

    def sub(parent: Any, tag: str, **attrs: str) -> Any:
        return ET.SubElement(parent, tag, attrs)

    container = schema_el.find("EntityContainer")
    assert container is not None
    schema_el.remove(container)
    enums = {e.get("Name"): e for e in schema_el.findall("EnumType")}
    types = {e.get("Name"): e for e in schema_el.findall("EntityType")}
    served = {es.name: es for es in schema.BC.values()}
    for pt in part_types().values():
        for column in pt.columns:
            if "enum" in column and column["enum"] not in enums:
                enums[column["enum"]] = en = sub(schema_el, "EnumType", Name=column["enum"])
                for i, value in enumerate(enum_wire_values(column["enum"])):
                    sub(en, "Member", Name=enum_member_name(value), Value=str(i))
    for name, en in enums.items():
        ordinals = enum_ordinals(name)
        if ordinals is not None:
            members = en.findall("Member")
            assert len(members) == len(ordinals), name
            for member, ordinal in zip(members, ordinals, strict=True):
                member.set("Value", str(ordinal))
    for pt in part_types().values():
        if pt.name in types:
            continue
        et = types[pt.name] = sub(schema_el, "EntityType", Name=pt.name)
        sub(sub(et, "Key"), "PropertyRef", Name=pt.key)
        for column in pt.columns:
            attrs = {"Name": column["name"], "Type": column["edm"]}
            if "enum" in column:
                attrs["Type"] = f"{namespace}.{column['enum']}"
            if column["name"] == pt.key:
                attrs["Nullable"] = "false"
            if "max_length" in column:
                attrs["MaxLength"] = str(column["max_length"])
            sub(et, "Property", **attrs)
    for pg in pages():
        es = served.get(pg.set)
        if es is None:
            continue
        et = types[es.type_name]
        for nav in (*pg.unserved, *pg.computed):
            target = f"{namespace}.{nav.type}"
            sub(
                et,
                "NavigationProperty",
                Name=nav.name,
                Type=f"Collection({target})" if nav.many else target,
                ContainsTarget="true",
            )
        for action in pg.actions:
            el = sub(schema_el, "Action", Name=action, IsBound="true")
            sub(el, "Parameter", Name="bindingParameter", Type=f"{namespace}.{es.type_name}")
    schema_el.append(container)
    listed = {e.get("Name") for e in container.findall("EntitySet")}
    for pt in part_types().values():
        if pt.set not in listed:
            sub(container, "EntitySet", Name=pt.set, EntityType=f"{namespace}.{pt.name}")
