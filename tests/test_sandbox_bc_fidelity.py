"""BC API v2.0 fidelity (issue #12, point 5): the sandbox's BC schema against the AL source of the real pages.

``tests/data/bc_apiv2_al_facts.json`` is a committed extract of Microsoft's public AL source (CI has no
network): the API v2.0 pages (microsoft/ALAppExtensions, Apps/W1/APIV2/app/src/pages) with their fields, page
parts and bound actions, the base-app tables and enums behind them (microsoft/BCApps, src/Layers/W1/BaseApp)
with field types and enum ordinals, and the lookups the API reference lists per resource
(MicrosoftDocs/dynamics365smb-devitpro-pb). Each source is named with the commit it was read at.

The tests hold ``d365kit/sandbox/tables/bc.toml`` against that extract, check that ``$metadata`` declares every
navigation and bound action of the real pages, and walk them on the running sandbox: each navigation is
served (``$expand`` and path) or answers 501 naming it; each bound action answers 501.
"""

from __future__ import annotations

import json
import re
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from test_sandbox_bc import BC, assert_error

from d365kit.sandbox import bc_pages, metadata, schema
from d365kit.sandbox.schema_defs import enum_values

FACTS = json.loads((Path(__file__).parent / "data" / "bc_apiv2_al_facts.json").read_text(encoding="utf-8"))
PAGES: dict[str, Any] = FACTS["pages"]
EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
NAV = "Microsoft.NAV."
BLANK = "00000000-0000-0000-0000-000000000000"

# AL type -> EDM type of the API property (BC's OData mapping).
AL_EDM = {
    "Guid": "Edm.Guid",
    "Decimal": "Edm.Decimal",
    "Boolean": "Edm.Boolean",
    "Date": "Edm.Date",
    "DateTime": "Edm.DateTimeOffset",
    "Integer": "Edm.Int32",
    "DateFormula": "Edm.String",
    "BLOB": "Edm.Stream",
}
DATE_FORMULA_LENGTH = 32  # Choice in bc.toml: AL gives a DateFormula no Text[n] length
SERVED_PAGES = [name for name in PAGES if name in schema.BC]


def expected_edm_and_length(al_type: str) -> tuple[str, int | None]:
    m = re.fullmatch(r"(?:Text|Code)(?:\[(\d+)\])?", al_type)
    if m:
        return "Edm.String", int(m.group(1)) if m.group(1) else None
    if al_type.startswith("Enum "):
        return "Edm.String", None
    return AL_EDM[al_type], DATE_FORMULA_LENGTH if al_type == "DateFormula" else None


def enum_of(al_type: str) -> str:
    """The bc.toml enum for an AL ``Enum "<name>"`` field type."""
    al_name = al_type.removeprefix("Enum ").strip('"')
    return next(name for name, fact in FACTS["enums"].items() if fact["enum"].endswith(f'"{al_name}"'))


# -- the extract itself -----------------------------------------------------------------------------------


def test_the_extract_names_its_sources():
    sources = FACTS["sources"]
    assert sources["pages"]["repo"] == "microsoft/ALAppExtensions"
    assert sources["tables_and_enums"]["repo"] == "microsoft/BCApps"
    assert sources["lookups"]["repo"] == "MicrosoftDocs/dynamics365smb-devitpro-pb"
    for source in (sources["pages"], sources["tables_and_enums"]):
        assert re.fullmatch(r"[0-9a-f]{40}", source["commit"]), source
    for name, fact in PAGES.items():
        assert re.fullmatch(r'\d+ "APIV2 - .+"', fact["page"]) and fact["file"].endswith(".Page.al"), name
        assert all(t is not None for t in fact["fields"].values()), name
    # the facts issue #12 names
    assert PAGES["customers"]["fields"]["website"] == "Text[255]"
    assert PAGES["customers"]["fields"]["taxRegistrationNumber"] == "Text[50]"
    assert PAGES["salesInvoiceLines"]["fields"]["taxCode"] == "Code[50]"
    assert [10, "Allocation Account"] in FACTS["enums"]["invoiceLineAggLineType"]["values"]
    assert sum(len(PAGES[n]["parts"]) for n in SERVED_PAGES) == 21  # 20 + salesInvoiceLines


# -- columns, lengths, enums ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVED_PAGES)
def test_columns_types_and_lengths_follow_the_al_source(name):
    es, fields = schema.BC[name], PAGES[name]["fields"]
    assert list(es.prop_names) == list(fields), "the page's fields, in page order"
    for prop in es.props:
        edm, length = expected_edm_and_length(fields[prop.name])
        assert (prop.edm, prop.max_length) == (edm, length), (name, prop.name, fields[prop.name])
        assert bool(prop.enum) == fields[prop.name].startswith("Enum "), (name, prop.name)


@pytest.mark.parametrize("name", SERVED_PAGES)
def test_enums_follow_the_al_enums(name):
    es, fields = schema.BC[name], PAGES[name]["fields"]
    for prop in es.props:
        if not prop.enum:
            continue
        enum = enum_of(fields[prop.name])
        assert prop.enum_type == enum, (name, prop.name)
        ordinals, labels = zip(*FACTS["enums"][enum]["values"], strict=True)
        assert prop.enum == enum_values(*labels), (name, prop.name)
        assert (bc_pages.enum_ordinals(enum) or tuple(range(len(labels)))) == ordinals, enum


def test_the_issue_12_values():
    customers, contacts = schema.BC["customers"], schema.BC["contacts"]
    assert customers.prop("website").max_length == 255
    assert customers.prop("taxRegistrationNumber").max_length == 50
    assert contacts.prop("taxRegistrationNumber").max_length == 50
    assert schema.BC["salesInvoiceLines"].prop("taxCode").max_length == 50
    assert contacts.prop("contactBusinessRelation").enum == (
        " ",
        "Customer",
        "Vendor",
        "Bank_x0020_Account",
        "Employee",
        "None",
        "Other",
        "Multiple",
    )
    assert schema.BC["salesInvoiceLines"].prop("lineType").enum[-1] == "Allocation_x0020_Account"


def test_the_picture_part_type_follows_the_al_source():
    picture = bc_pages.part_types()["picture"]
    fields = PAGES["pictures"]["fields"]
    assert [c["name"] for c in picture.columns] == list(fields)
    for column in picture.columns:
        edm, length = expected_edm_and_length(fields[column["name"]])
        assert (column["edm"], column.get("max_length")) == (edm, length), column
    labels = [label for _, label in FACTS["enums"]["pictureEntityParentType"]["values"]]
    assert bc_pages.enum_wire_values("pictureEntityParentType") == enum_values(*labels)


# -- every navigation and action of the real pages is declared ----------------------------------------------


def declared(name: str) -> dict[str, tuple[str, bool]]:
    """Navigation name -> (target entity type, collection) as the sandbox declares it."""
    es = schema.BC[name]
    out = {n.name: (schema.BC[n.target].type_name, n.many) for n in es.navs}
    pg = bc_pages.page(name)
    out.update({n.name: (n.type, n.many) for n in (*pg.unserved, *pg.computed)})
    return out


@pytest.mark.parametrize("name", SERVED_PAGES)
def test_every_part_and_lookup_of_the_real_page_is_declared(name):
    fact, navs = PAGES[name], declared(name)
    for part in fact["parts"]:
        assert part["name"] in navs, (name, part["name"])
        assert navs[part["name"]] == (part["entityName"], part["multiplicity"] != "ZeroOrOne"), part
    for lookup in fact["lookups"]["navs"]:
        assert lookup in navs, (name, lookup)
    extra = set(navs) - {p["name"] for p in fact["parts"]} - set(fact["lookups"]["navs"])
    # unitOfMeasure on items is the API reference's lookup; salesInvoiceLines.salesInvoice likewise
    assert not extra, (name, extra)
    assert bc_pages.page(name).actions == tuple(fact["actions"])


def _csdl() -> ET.Element:
    return ET.fromstring(metadata.csdl("bc")).find(f".//{EDM}Schema")  # type: ignore[return-value]


def test_metadata_declares_every_navigation_and_bound_action():
    schema_el = _csdl()
    types = {e.get("Name"): e for e in schema_el.findall(f"{EDM}EntityType")}
    container = schema_el.find(f"{EDM}EntityContainer")
    sets = {e.get("Name"): e.get("EntityType") for e in container.findall(f"{EDM}EntitySet")}
    for name in SERVED_PAGES:
        et = types[schema.BC[name].type_name]
        navs = {n.get("Name"): n.get("Type") for n in et.findall(f"{EDM}NavigationProperty")}
        for nav, (target, many) in declared(name).items():
            assert navs[nav] == (f"Collection({NAV}{target})" if many else f"{NAV}{target}"), (name, nav)
            assert target in types, (name, nav, target)
    for pt in bc_pages.part_types().values():
        assert sets[pt.set] == f"{NAV}{pt.name}"
        keys = [k.get("Name") for k in types[pt.name].findall(f"{EDM}Key/{EDM}PropertyRef")]
        assert keys == [pt.key]
    actions = {
        (a.get("Name"), a.find(f"{EDM}Parameter").get("Type"))
        for a in schema_el.findall(f"{EDM}Action")
        if a.get("IsBound") == "true"
    }
    expected = {(a, f"{NAV}salesInvoice") for a in PAGES["salesInvoices"]["actions"]}
    assert expected == actions
    assert {"post", "send", "postAndSend", "cancel", "cancelAndSend", "makeCorrectiveCreditMemo"} == {
        a for a, _ in actions
    }
    enums = {e.get("Name"): e for e in schema_el.findall(f"{EDM}EnumType")}
    members = {m.get("Name"): m.get("Value") for m in enums["invoiceLineAggLineType"]}
    assert members["Allocation_x0020_Account"] == "10" and members["Charge"] == "5"
    members = {m.get("Name"): m.get("Value") for m in enums["contactBusinessRelation"]}
    assert (members["Customer"], members["None"], members["Multiple"]) == ("1", "100", "102")


def test_client_metadata_parser_reads_the_extended_document():
    from d365kit.odata.metadata import parse_csdl

    md = parse_csdl("bc", metadata.csdl("bc"))
    assert {"customers", "paymentMethods", "defaultDimensions", "pictures"} <= set(md.entity_sets)
    customer = md.entity("customers")
    assert customer.navigation["picture"] == f"{NAV}picture"
    assert customer.navigation["defaultDimensions"] == f"Collection({NAV}defaultDimension)"
    assert customer.max_length["website"] == 255 and "currencyCode" not in customer.max_length


# -- on the wire ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def info(sandbox) -> dict[str, Any]:
    return sandbox.info()


@pytest.fixture(scope="module")
def bc(info) -> Any:
    client = BC(info, info["bc_url"])
    yield client
    client.session.close()


@pytest.fixture(scope="module")
def cronus(bc) -> str:
    return next(c["id"] for c in bc("GET", "companies").json()["value"] if c["name"] == "CRONUS USA, Inc.")


@pytest.fixture(scope="module")
def scratch(sandbox) -> Any:
    store = sandbox.ctx.store
    cid = str(uuid.uuid4())
    store.insert(
        schema.BC["companies"], {"id": cid, "name": f"Fidelity {cid[:8]}", "displayName": "Fidelity"}
    )
    yield cid
    for es in schema.BC.values():
        if es.company_scoped:
            for row in store.query(es, company=cid):
                store.delete(es, row[es.key], company=cid)
    store.delete(schema.BC["companies"], cid)


def _first(bc: BC, company: str, name: str, flt: str | None = None) -> dict:
    params = {"$top": "1", **({"$filter": flt} if flt else {})}
    rows = bc("GET", f"companies({company})/{name}", params=params).json()["value"]
    assert rows, name
    return rows[0]


@pytest.mark.parametrize("name", SERVED_PAGES)
def test_walk_every_navigation_served_or_501(bc, cronus, name):
    """Every NavigationProperty $metadata declares for the type: $expand and the path are served (200; a
    single navigation whose reference is blank is 404 on the path) or answer 501 naming the navigation."""
    es = schema.BC[name]
    et = next(e for e in _csdl().findall(f"{EDM}EntityType") if e.get("Name") == es.type_name)
    navs = [n.get("Name") for n in et.findall(f"{EDM}NavigationProperty")]
    assert set(navs) == set(declared(name))
    row = _first(bc, cronus, name)
    base = f"companies({cronus})/{name}"
    pg = bc_pages.page(name)
    for nav in navs:
        served = es.nav(nav) is not None or nav in {p.name for p in pg.computed}
        expanded = bc("GET", base, params={"$top": "2", "$expand": nav})
        single = bc("GET", f"{base}({row['id']})", params={"$expand": nav})
        path = bc("GET", f"{base}({row['id']})/{nav}")
        if served:
            assert expanded.status_code == 200, (nav, expanded.text)
            assert all(nav in r for r in expanded.json()["value"]), nav
            assert single.status_code == 200 and nav in single.json(), (nav, single.text)
            if path.status_code == 404:
                target = es.nav(nav)
                assert target is not None and not target.many, (nav, path.text)
                assert_error(path, 404, "Internal_RecordNotFound")
                assert single.json()[nav] is None, nav
            else:
                assert path.status_code == 200, (nav, path.text)
        else:
            for r in (expanded, single, path):
                err = assert_error(r, 501, "BadRequest_NotImplemented", f"'{nav}'")
                assert "navigation property" in err["message"], err


def test_bound_actions_are_501(bc, cronus):
    invoice = _first(bc, cronus, "salesInvoices")
    for action in PAGES["salesInvoices"]["actions"]:
        r = bc("POST", f"companies({cronus})/salesInvoices({invoice['id']})/{NAV}{action}")
        assert_error(r, 501, "BadRequest_NotImplemented", f"'{NAV}{action}'")
    customer = _first(bc, cronus, "customers")
    r = bc("POST", f"companies({cronus})/customers({customer['id']})/{NAV}post")
    assert_error(r, 404, "BadRequest_NotFound")
    r = bc("POST", f"companies({cronus})/salesInvoices({uuid.uuid4()})/{NAV}post")
    assert_error(r, 404, "Internal_RecordNotFound")


def test_nested_and_unserved_expands(bc, cronus):
    base = f"companies({cronus})/salesInvoices"
    r = bc("GET", base, params={"$top": "1", "$expand": "customer($expand=agedAccountsReceivable)"})
    assert_error(r, 501, "BadRequest_NotImplemented", "'agedAccountsReceivable'")
    r = bc("GET", base, params={"$top": "1", "$expand": "customer($expand=picture)"})
    assert_error(r, 501, "BadRequest_NotImplemented", "'picture'")
    r = bc("GET", base, params={"$top": "1", "$expand": "customer($expand=paymentMethod),salesInvoiceLines"})
    assert r.status_code == 200 and "paymentMethod" in r.json()["value"][0]["customer"]
    r = bc("GET", base, params={"$top": "1", "$expand": "nosuch"})
    assert_error(r, 400, "BadRequest", "nosuch")


def test_picture_metadata_is_served(bc, cronus):
    customer = _first(bc, cronus, "customers")
    url = f"companies({cronus})/customers({customer['id']})/picture"
    r = bc("GET", url)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"].endswith(f"customers({customer['id']})/picture/$entity")
    assert (body["id"], body["parentType"], body["width"], body["height"], body["contentType"]) == (
        customer["id"],
        "Customer",
        0,
        0,
        "",
    )
    assert r.headers["ETag"] == body["@odata.etag"]
    sel = bc("GET", url, params={"$select": "width,height"}).json()
    assert set(sel) == {"@odata.context", "@odata.etag", "width", "height"}
    assert_error(bc("GET", f"{url}/pictureContent"), 501, "BadRequest_NotImplemented", "pictureContent")
    assert_error(bc("PATCH", url, json={}, headers={"If-Match": "*"}), 501, "BadRequest_NotImplemented")
    assert_error(bc("GET", url, params={"$filter": "width eq 0"}), 501, "BadRequest_NotImplemented")
    item = _first(bc, cronus, "items")
    expanded = bc(
        "GET", f"companies({cronus})/items({item['id']})", params={"$expand": "picture($select=parentType)"}
    )
    assert expanded.json()["picture"]["parentType"] == "Item"
    contact = bc("GET", f"companies({cronus})/contacts", params={"$top": "1", "$expand": "picture"}).json()
    assert contact["value"][0]["picture"]["parentType"] == "Contact"


def test_customer_financial_details_are_computed_from_customers_and_invoices(bc, cronus):
    base = f"companies({cronus})"
    customers = bc("GET", f"{base}/customers", params={"$expand": "customerFinancialDetails"}).json()["value"]
    details = bc.all_pages(f"{base}/customerFinancialDetails", 50)
    assert {d["id"] for d in details} == {c["id"] for c in customers}
    invoices = bc.all_pages(f"{base}/salesInvoices", 200)
    posted = [i for i in invoices if i["status"] in ("Open", "Paid", "Corrective")]
    for c in customers:
        fin = c["customerFinancialDetails"]
        assert (fin["id"], fin["number"]) == (c["id"], c["number"])
        expect = round(sum(i["remainingAmount"] for i in posted if i["customerId"] == c["id"]), 2)
        assert fin["balance"] == pytest.approx(expect), c["number"]
    rich = max(customers, key=lambda c: c["customerFinancialDetails"]["totalSalesExcludingTax"])
    assert rich["customerFinancialDetails"]["totalSalesExcludingTax"] > 0
    one = bc("GET", f"{base}/customers({rich['id']})/customerFinancialDetails")
    assert one.status_code == 200 and one.json()["id"] == rich["id"]
    again = bc("GET", f"{base}/customers({rich['id']})/customerFinancialDetails")
    assert again.json()["@odata.etag"] == one.json()["@odata.etag"], "reading does not change the rows"
    assert_error(bc("POST", f"{base}/customerFinancialDetails", json={}), 405, "BadRequest_MethodNotAllowed")


def test_default_dimensions_are_seeded_and_read_only_here(bc, cronus):
    base = f"companies({cronus})"
    dims = bc.all_pages(f"{base}/defaultDimensions", 50)
    assert {d["parentType"] for d in dims} == {"Customer", "Item"}
    assert {d["dimensionCode"] for d in dims} == {"CUSTOMERGROUP", "DEPARTMENT"}
    one = next(d for d in dims if d["parentType"] == "Customer")
    via_path = bc("GET", f"{base}/customers({one['parentId']})/defaultDimensions").json()["value"]
    assert [d["id"] for d in via_path] == [one["id"]]
    assert via_path[0]["postingValidation"] == "Code_x0020_Mandatory"
    expanded = bc(
        "GET",
        f"{base}/customers({one['parentId']})",
        params={"$expand": "defaultDimensions($select=dimensionCode)"},
    ).json()
    assert [d["dimensionCode"] for d in expanded["defaultDimensions"]] == ["CUSTOMERGROUP"]
    assert_error(bc("POST", f"{base}/defaultDimensions", json={}), 501, "BadRequest_NotImplemented", "POST")
    r = bc("DELETE", f"{base}/defaultDimensions({one['id']})", headers={"If-Match": "*"})
    assert_error(r, 501, "BadRequest_NotImplemented", "DELETE")


def test_payment_methods_and_the_payment_method_lookup(bc, cronus, scratch):
    seeded = bc("GET", f"companies({cronus})/paymentMethods").json()["value"]
    assert {p["code"] for p in seeded} == {code for code, _ in bc_pages.PAYMENT_METHODS}
    base = f"companies({scratch})"
    pm = bc("POST", f"{base}/paymentMethods", json={"code": "WIRE", "displayName": "Wire"})
    assert pm.status_code == 201, pm.text
    c = bc(
        "POST", f"{base}/customers", json={"displayName": "Pays by wire", "paymentMethodId": pm.json()["id"]}
    )
    assert c.status_code == 201, c.text
    got = bc("GET", f"{base}/customers({c.json()['id']})", params={"$expand": "paymentMethod"}).json()
    assert got["paymentMethod"]["code"] == "WIRE"
    assert bc("GET", f"{base}/customers({c.json()['id']})/paymentMethod").json()["code"] == "WIRE"
    bad = bc("POST", f"{base}/customers", json={"displayName": "x", "paymentMethodId": str(uuid.uuid4())})
    assert_error(
        bad, 400, "Application_DialogException", 'The "paymentMethodId" does not match to a Payment Method.'
    )
    fin = bc("GET", f"{base}/customers({c.json()['id']})/customerFinancialDetails").json()
    assert (fin["balance"], fin["number"]) == (0, c.json()["number"])


def test_current_lengths_and_enums_on_the_wire(bc, scratch):
    base = f"companies({scratch})"
    ok = bc(
        "POST",
        f"{base}/customers",
        json={"displayName": "Long", "website": "w" * 255, "taxRegistrationNumber": "T" * 50},
    )
    assert ok.status_code == 201, ok.text
    assert_error(
        bc("POST", f"{base}/customers", json={"displayName": "x", "website": "w" * 256}),
        400,
        "Application_StringExceededLength",
        "less than or equal to 255",
    )
    inv = bc("POST", f"{base}/salesInvoices", json={"customerId": ok.json()["id"]}).json()
    line = bc(
        "POST",
        f"{base}/salesInvoices({inv['id']})/salesInvoiceLines",
        json={"lineType": "Allocation Account", "description": "Split", "taxCode": "X" * 50},
    )
    assert line.status_code == 201, line.text
    assert line.json()["lineType"] == "Allocation_x0020_Account"
    back = bc(
        "GET", f"{base}/salesInvoiceLines({line.json()['id']})", params={"$expand": "salesInvoice"}
    ).json()
    assert back["salesInvoice"]["id"] == inv["id"]
    contact = bc(
        "POST", f"{base}/contacts", json={"displayName": "Rel", "contactBusinessRelation": "Multiple"}
    )
    assert contact.status_code == 201 and contact.json()["contactBusinessRelation"] == "Multiple"
    assert (
        bc("POST", f"{base}/customers", json={"displayName": "x", "currencyCode": "EURO-DOLLAR"}).status_code
        == 400
    )
