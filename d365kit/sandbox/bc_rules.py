"""What a BC API page does on insert, modify and delete, as far as the sandbox models it.

Body validation (unknown / read-only properties, types, lengths, enums, required), number series, duplicate
keys, related-record validation with the derived fields BC fills from them (``customerId`` ->
``customerNumber``/``customerName``; ``currencyCode`` <-> ``currencyId`` with LCY = blank GUID, A.2), line
amounts and document totals, and deletion of document lines with their header. Callers run these inside
``store.transaction()`` so a failure part-way (e.g. the second line of a deep insert) leaves nothing behind.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

from d365kit.sandbox import schema
from d365kit.sandbox.bc_wire import BLANK_GUID, BCError, blank, caption, from_wire
from d365kit.sandbox.schema import EntitySet, Nav
from d365kit.sandbox.store import VERSION, DuplicateKey, NotFound, Store, VersionMismatch, q

# The sandbox company is shaped like CRONUS USA: its local currency code. BC shows it as the
# currencyCode of LCY records whose currencyId is the blank GUID (A.2, BC-AL-CUST).
LCY_CODE = "USD"

# Reference properties ``<base>Id`` whose target set no Nav names (BC API v2.0 naming).
REFERENCE_SETS = {
    "currency": "currencies",
    "paymentTerms": "paymentTerms",
    "shipmentMethod": "shipmentMethods",
    "paymentMethod": "paymentMethods",
    "customer": "customers",
    "billToCustomer": "customers",
    "item": "items",
    "itemCategory": "itemCategories",
    "baseUnitOfMeasure": "unitsOfMeasure",
    "unitOfMeasure": "unitsOfMeasure",
}
# Derived fields: <base><suffix> on the referencing entity is the target's property.
DERIVED = (("Number", "number"), ("Code", "code"), ("Name", "displayName"))
NATURAL_KEYS = {"number": "No.", "code": "Code"}  # the table's primary key field, by API property
FIRST_NUMBER = "10000"  # first number of an empty series (CRONUS-like)
DOCUMENT_TOTALS = (
    ("totalAmountExcludingTax", "amountExcludingTax"),
    ("totalTaxAmount", "totalTaxAmount"),
    ("totalAmountIncludingTax", "amountIncludingTax"),
)


def target_of(es: EntitySet, nav: Nav) -> EntitySet | None:
    """The entity set a navigation property leads to: same service first, else BC (companion -> BC)."""
    return schema.entity_set(es.service, nav.target) or schema.BC.get(nav.target)  # type: ignore[arg-type]


def _empty(value: Any) -> bool:
    return value is None or value == BLANK_GUID or (isinstance(value, str) and not value.strip())


def _scope(es: EntitySet, company: str | None) -> str | None:
    return company if es.company_scoped else None


class Rules:
    def __init__(self, store: Store):
        self.store = store

    # -- body ----------------------------------------------------------------------------------------

    @staticmethod
    def _unknown(es: EntitySet, name: str) -> BCError:
        return BCError(
            400,
            "BadRequest",
            f"The property '{name}' does not exist on type 'Microsoft.NAV.{es.type_name}'. Make sure to only "
            "use property names that are defined by the type.",
        )

    def _values(self, es: EntitySet, body: dict[str, Any], *, creating: bool) -> tuple[dict, dict]:
        """Body -> (stored values, deep-insert children). ``@odata.*`` annotations are ignored."""
        values: dict[str, Any] = {}
        children: dict[str, tuple[Nav, list]] = {}
        for name, value in body.items():
            if name.startswith("@odata."):
                continue
            prop = es.prop(name)
            if prop is None:
                nav = es.nav(name)
                if nav is None:
                    raise self._unknown(es, name)
                if not creating:
                    raise BCError(
                        400, "BadRequest", "Deep PATCH is not supported (BC-KNOWN); update lines one by one."
                    )
                if not nav.many or not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                    raise BCError(
                        400, "BadRequest", f"Invalid Request Body. '{name}' must be an array of objects."
                    )
                children[name] = (nav, value)
                continue
            if prop.read_only and not (name == es.key and creating):
                raise BCError(
                    400,
                    "BadRequest_InvalidOperation",
                    f"The property '{name}' of '{es.type_name}' is read-only.",
                )
            values[name] = from_wire(prop, value)
        return values, children

    # -- insert / modify / delete --------------------------------------------------------------------

    def create(
        self, es: EntitySet, body: dict[str, Any], company: str | None, parent: tuple[str, Any] | None = None
    ) -> dict[str, Any]:
        """Insert one entity (and its deep-inserted children). The client may supply ``id`` (A.1: SystemId
        can be supplied on create), which makes retried creates idempotent-detectable."""
        values, children = self._values(es, body, creating=True)
        supplied = set(values)
        if parent is not None:
            fk, fk_value = parent
            if fk in values and values[fk] != fk_value:
                raise BCError(400, "BadRequest", f"'{fk}' does not match the parent in the request URI.")
            values[fk] = fk_value
        values.setdefault(es.key, str(uuid.uuid4()))
        if es.key in supplied and self.store.get(es, values[es.key], _scope(es, company)) is not None:
            raise self._exists(es, "SystemId", values[es.key])  # a retried create, before other checks
        for p in es.props:
            if p.name not in values:
                values[p.name] = p.default if p.default is not None else blank(p)
        if "number" in values and _empty(values["number"]) and es.prop("number") is not None:
            values["number"] = self._next_number(es, company)
        self._references(es, values, supplied, company, creating=True)
        self._required(es, values, set(values))
        self._unique(es, values, company)
        self._line_amounts(es, values)
        try:
            row = self.store.insert(es, values, company=company)
        except DuplicateKey:
            raise self._exists(es, "SystemId", values[es.key]) from None
        for nav, items in children.values():
            child = target_of(es, nav)
            assert child is not None
            for item in items:
                self.create(child, item, company, (nav.remote, row[nav.local]))
        self._document_totals(es, row, company)
        return self.store.get(es, row[es.key], _scope(es, company)) or row

    def update(
        self, es: EntitySet, current: dict[str, Any], body: dict[str, Any], company: str | None
    ) -> dict:
        """PATCH: body holds the changed fields only (A.5); the caller checked If-Match."""
        key = current[es.key]
        if es.key in body and str(body[es.key]).lower() == key:
            body = {k: v for k, v in body.items() if k != es.key}
        values, _ = self._values(es, body, creating=False)
        supplied = set(values)
        merged = {**current, **values}
        self._references(es, merged, supplied, company, creating=False)
        self._line_amounts(es, merged)
        changes = {
            p.name: merged[p.name]
            for p in es.props
            if p.name in supplied or merged[p.name] != current[p.name]
        }
        self._required(es, merged, set(changes))
        if any(k in changes for k in NATURAL_KEYS):
            self._unique(es, merged, company)
        try:
            row = self.store.update(
                es, key, changes, company=_scope(es, company), expected_version=current[VERSION]
            )
        except NotFound:
            raise BCError(
                404, "Internal_RecordNotFound", f"The {caption(es.type_name)} does not exist."
            ) from None
        except VersionMismatch:
            raise BCError(
                409, "Request_EntityChanged", "Another user has already changed the record."
            ) from None
        self._document_totals(es, row, company)
        return row

    def delete(self, es: EntitySet, current: dict[str, Any], company: str | None) -> None:
        """DELETE; a document's lines go with it (BC deletes Sales Lines with the Sales Header)."""
        for nav in es.navs:
            child = target_of(es, nav)
            if nav.many and child is not None and child.name.endswith("Lines"):
                for line in self.store.query(
                    child,
                    where=f"{q(nav.remote)} = ?",
                    params=[current[nav.local]],
                    company=_scope(child, company),
                ):
                    self.store.delete(child, line[child.key], company=_scope(child, company))
        try:
            self.store.delete(
                es, current[es.key], company=_scope(es, company), expected_version=current[VERSION]
            )
        except VersionMismatch:
            raise BCError(
                409, "Request_EntityChanged", "Another user has already changed the record."
            ) from None
        self._document_totals(es, current, company)

    # -- rules ---------------------------------------------------------------------------------------

    @staticmethod
    def _required(es: EntitySet, values: dict[str, Any], check: set[str]) -> None:
        """BC-AL-CUST: ``A "displayName" must be provided.`` (an AL Error(), hence Application_DialogException)."""
        for p in es.props:
            if p.required and p.name in check and _empty(values.get(p.name)):
                raise BCError(400, "Application_DialogException", f'A "{p.name}" must be provided.')

    def _exists(self, es: EntitySet, field: str, value: Any) -> BCError:
        """UNVERIFIED status for a duplicate key (A.7 says 400 or 409): we answer 409 so a client can tell an
        idempotent-create retry from a validation error; code and wording from BC-ERR."""
        return BCError(
            409,
            "Internal_EntityWithSameKeyExists",
            f"The {caption(es.type_name)} already exists. Identification fields and values: {field}='{value}'",
        )

    def _unique(self, es: EntitySet, values: dict[str, Any], company: str | None) -> None:
        """The table's primary key (No. or Code) is unique within the company."""
        field = next((f for f in NATURAL_KEYS if es.prop(f) is not None), None)
        if field is None or _empty(values.get(field)):
            return
        clash = self.store.count(
            es,
            where=f"{q(field)} = ? AND {q(es.key)} <> ?",
            params=[values[field], values[es.key]],
            company=_scope(es, company),
        )
        if clash:
            raise self._exists(es, NATURAL_KEYS[field], values[field])

    def _next_number(self, es: EntitySet, company: str | None) -> str:
        """A No. Series stand-in: the highest number in the company plus one, keeping prefix and width."""
        last = self.store.query(
            es, where=f"{q('number')} <> ''", order=[("number", True)], limit=1, company=_scope(es, company)
        )
        m = re.match(r"^(.*?)(\d+)$", last[0]["number"]) if last else None
        prefix, digits = (m.group(1), m.group(2)) if m else ("", str(int(FIRST_NUMBER) - 1))
        n = int(digits)
        while True:
            n += 1
            candidate = f"{prefix}{str(n).zfill(len(digits))}"
            if not self.store.count(
                es, where=f"{q('number')} = ?", params=[candidate], company=_scope(es, company)
            ):
                return candidate

    def _reference_props(self, es: EntitySet) -> Iterator[tuple[str, EntitySet, dict[str, str]]]:
        """(``<base>Id`` property, target set, {derived own property: target property})."""
        for p in es.props:
            if p.edm != "Edm.Guid" or p.name == es.key or not p.name.endswith("Id"):
                continue
            base = p.name[:-2]
            nav = next((n for n in es.navs if n.local == p.name and not n.many), None)
            target = target_of(es, nav) if nav else None
            if target is None and base in REFERENCE_SETS:
                target = schema.entity_set(es.service, REFERENCE_SETS[base]) or schema.BC.get(
                    REFERENCE_SETS[base]
                )  # type: ignore[arg-type]
            if target is None or (nav is not None and nav.remote != target.key):
                continue
            derived = {
                base + suffix: tprop
                for suffix, tprop in DERIVED
                if es.prop(base + suffix) is not None and target.prop(tprop) is not None
            }
            yield p.name, target, derived

    def _references(
        self,
        es: EntitySet,
        values: dict[str, Any],
        supplied: set[str],
        company: str | None,
        *,
        creating: bool,
    ) -> None:
        """Validate supplied references and fill the fields BC derives from them (A.3 customers:
        ``The "currencyId" does not match to a Currency.``). A code/number may be supplied instead of the id."""
        for id_prop, target, derived in self._reference_props(es):
            lcy = target.name == "currencies"
            by = next(
                (own for own, tprop in derived.items() if own in supplied and tprop != "displayName"), None
            )
            if id_prop in supplied or (creating and by is None):
                ref = values[id_prop]
                trow = None
                if not _empty(ref):
                    trow = self.store.get(target, ref, _scope(target, company))
                    if trow is None:
                        raise BCError(
                            400,
                            "Application_DialogException",
                            f'The "{id_prop}" does not match to a {caption(target.type_name)}.',
                        )
            elif by is not None:
                code = values[by]
                trow = None
                if not (_empty(code) or (lcy and code == LCY_CODE)):
                    found = self.store.query(
                        target,
                        where=f"{q(derived[by])} = ?",
                        params=[code],
                        limit=1,
                        company=_scope(target, company),
                    )
                    if not found:
                        raise BCError(
                            400,
                            "Application_DialogException",
                            f'The "{by}" does not match to a {caption(target.type_name)}.',
                        )
                    trow = found[0]
                values[id_prop] = trow[target.key] if trow else BLANK_GUID
            else:
                continue
            for own, tprop in derived.items():
                if trow is not None:
                    values[own] = trow.get(tprop)
                elif own not in supplied or own == by:
                    values[own] = LCY_CODE if lcy and tprop == "code" else ""

    @staticmethod
    def _line_amounts(es: EntitySet, values: dict[str, Any]) -> None:
        """Line amounts BC computes: quantity x unit price - line discount, then tax (no rounding rules)."""
        if (
            es.prop("quantity") is None
            or es.prop("unitPrice") is None
            or es.prop("amountExcludingTax") is None
        ):
            return
        excl = round(
            (values.get("quantity") or 0) * (values.get("unitPrice") or 0)
            - (values.get("discountAmount") or 0),
            2,
        )
        tax = round(excl * (values.get("taxPercent") or 0) / 100, 2)
        computed = {
            "amountExcludingTax": excl,
            "netAmount": excl,
            "totalTaxAmount": tax,
            "netTaxAmount": tax,
            "amountIncludingTax": round(excl + tax, 2),
            "netAmountIncludingTax": round(excl + tax, 2),
        }
        values.update({k: v for k, v in computed.items() if es.prop(k) is not None})

    def _document_totals(self, es: EntitySet, line: dict[str, Any], company: str | None) -> None:
        """After a line write, the header's totals are the sums over its lines."""
        for header in schema.REGISTRIES[es.service].values():  # type: ignore[index]
            for nav in header.navs:
                if not (nav.many and nav.target == es.name and header.prop(DOCUMENT_TOTALS[0][0])):
                    continue
                hkey = line.get(nav.remote)
                lines = self.store.query(
                    es, where=f"{q(nav.remote)} = ?", params=[hkey], company=_scope(es, company)
                )
                hrow = self.store.query(
                    header,
                    where=f"{q(nav.local)} = ?",
                    params=[hkey],
                    limit=1,
                    company=_scope(header, company),
                )
                if not hrow:
                    continue
                totals = {
                    total: round(sum(r.get(part) or 0 for r in lines), 2)
                    for total, part in DOCUMENT_TOTALS
                    if header.prop(total) is not None and es.prop(part) is not None
                }
                self.store.update(header, hrow[0][header.key], totals, company=_scope(header, company))
