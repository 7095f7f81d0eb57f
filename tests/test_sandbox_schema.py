"""Entity-set definitions, $metadata CSDL and Dataverse EntityDefinitions of the sandbox (pure, no server)."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET

import pytest

from d365kit.sandbox import metadata, schema
from d365kit.sandbox.schema import entity_set

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"

BC_SETS = {
    "companies": ("name", "displayName", "systemVersion"),
    "customers": (
        "number",
        "displayName",
        "type",
        "addressLine1",
        "postalCode",
        "phoneNumber",
        "email",
        "website",
        "salespersonCode",
        "creditLimit",
        "currencyId",
        "currencyCode",
        "paymentTermsId",
        "shipmentMethodId",
        "blocked",
        "lastModifiedDateTime",
    ),
    "contacts": ("number", "type", "displayName", "companyNumber", "mobilePhoneNumber", "privacyBlocked"),
    "currencies": ("code", "displayName", "symbol", "amountDecimalPlaces", "amountRoundingPrecision"),
    "unitsOfMeasure": ("code", "displayName", "internationalStandardCode", "symbol"),
    "items": (
        "number",
        "displayName",
        "type",
        "blocked",
        "inventory",
        "unitPrice",
        "unitCost",
        "baseUnitOfMeasureId",
    ),
    "salespeoplePurchasers": ("code", "displayName", "email", "phoneNo", "commisionPercent", "blocked"),
    "opportunities": (
        "number",
        "contactNumber",
        "salespersonCode",
        "status",
        "estimatedValue",
        "systemCreatedAt",
    ),
    "salesInvoices": (
        "number",
        "customerId",
        "customerNumber",
        "shipToAddressLine1",
        "billToPostCode",
        "sellToCity",
        "currencyCode",
        "totalAmountIncludingTax",
        "status",
    ),
    "salesInvoiceLines": (
        "documentId",
        "sequence",
        "itemId",
        "lineType",
        "quantity",
        "unitPrice",
        "amountIncludingTax",
    ),
    "paymentTerms": ("code", "displayName", "dueDateCalculation", "discountPercent"),
    "shipmentMethods": ("code", "displayName"),
    # page parts served as sets (issue #12; tests/test_sandbox_bc_fidelity.py)
    "paymentMethods": ("code", "displayName"),
    "defaultDimensions": (
        "parentType",
        "parentId",
        "dimensionCode",
        "dimensionValueCode",
        "postingValidation",
    ),
    "customerFinancialDetails": ("number", "balance", "totalSalesExcludingTax", "overdueAmount"),
}

COMPANION_SETS = {
    "resources": (
        "number",
        "displayName",
        "type",
        "baseUnitOfMeasureCode",
        "unitPrice",
        "capacity",
        "blocked",
    ),
    "customerPriceGroups": ("code", "description", "currencyCode"),
    "salesPrices": ("itemNumber", "salesType", "salesCode", "startingDate", "minimumQuantity", "unitPrice"),
    "crmIntegrationRecords": (
        "crmId",
        "integrationId",
        "tableId",
        "lastSynchModifiedOn",
        "lastSynchCrmModifiedOn",
        "lastSynchResult",
        "lastSynchCrmResult",
        "lastSynchJobId",
        "lastSynchCrmJobId",
        "skipped",
        "statisticsUploaded",
    ),
    "integrationTableMappings": (
        "name",
        "tableId",
        "integrationTableName",
        "direction",
        "integrationTableFilter",
        "dependencyFilter",
        "synchModifiedOnFilter",
        "synchIntTblModOnFltr",
    ),
    "integrationFieldMappings": (
        "no",
        "fieldName",
        "integrationFieldName",
        "direction",
        "status",
        "matchPriority",
    ),
    "integrationSynchJobs": ("startDateTime", "inserted", "failed", "coupled", "synchDirection", "type"),
    "integrationSynchJobErrors": ("no", "integrationSynchJobId", "sourceRecordId", "message", "errorMessage"),
}

DATAVERSE_SETS = {
    "systemusers": (
        "fullname",
        "internalemailaddress",
        "isdisabled",
        "islicensed",
        "isintegrationuser",
        "azureactivedirectoryobjectid",
        "applicationid",
    ),
    "accounts": (
        "name",
        "accountnumber",
        "telephone1",
        "address1_line1",
        "address1_primarycontactname",
        "address1_freighttermscode",
        "address1_shippingmethodcode",
        "paymenttermscode",
        "customertypecode",
        "creditlimit",
        "_transactioncurrencyid_value",
        "_primarycontactid_value",
        "_ownerid_value",
        "_bcbi_companyid_value",
        "statecode",
        "statuscode",
    ),
    "contacts": ("firstname", "middlename", "lastname", "mobilephone", "pager", "_parentcustomerid_value"),
    "transactioncurrencies": ("isocurrencycode", "currencyname", "currencysymbol", "exchangerate"),
    "uomschedules": ("name", "baseuomname"),
    "uoms": ("name", "quantity", "_baseuom_value", "_uomscheduleid_value"),
    "products": (
        "productnumber",
        "name",
        "price",
        "stockvolume",
        "stockweight",
        "vendorid",
        "vendorpartnumber",
        "quantityonhand",
        "producttypecode",
        "_defaultuomid_value",
        "_defaultuomscheduleid_value",
    ),
    "pricelevels": ("name", "begindate", "enddate", "_transactioncurrencyid_value"),
    "productpricelevels": (
        "amount",
        "pricingmethodcode",
        "_pricelevelid_value",
        "_productid_value",
        "_uomid_value",
    ),
    "opportunities": (
        "name",
        "estimatedvalue",
        "estimatedclosedate",
        "_parentcontactid_value",
        "_customerid_value",
    ),
    "invoices": (
        "invoicenumber",
        "shipto_name",
        "billto_city",
        "shippingmethodcode",
        "totalamount",
        "duedate",
    ),
    "invoicedetails": (
        "lineitemnumber",
        "ispriceoverridden",
        "isproductoverridden",
        "productdescription",
        "priceperunit",
        "extendedamount",
        "_invoiceid_value",
    ),
    "bcbi_companies": ("bcbi_name", "bcbi_externalid"),
}

ALL = {"bc": BC_SETS, "companion": COMPANION_SETS, "dataverse": DATAVERSE_SETS}


def _cases() -> list[tuple[str, str, tuple[str, ...]]]:
    return [(svc, name, props) for svc, sets in ALL.items() for name, props in sets.items()]


@pytest.mark.parametrize(("service", "name", "props"), _cases())
def test_entity_set_has_reference_properties(service, name, props):
    es = entity_set(service, name)
    assert es is not None, f"{service}/{name} not registered"
    missing = [p for p in props if es.prop(p) is None]
    assert not missing
    assert es.prop(es.key).edm == "Edm.Guid"


def test_registries_hold_exactly_the_issue_sets():
    for service, sets in ALL.items():
        assert set(schema.REGISTRIES[service]) == set(sets)


def test_bc_conventions():
    for es in [*schema.BC.values(), *schema.COMPANION.values()]:
        assert es.key == "id"
        assert es.company_scoped == (es.name != "companies")
        assert len(set(es.prop_names)) == len(es.props), es.name
    assert entity_set("bc", "customers").prop("displayName").required
    assert entity_set("bc", "opportunities").created_prop == "systemCreatedAt"
    assert entity_set("bc", "customers").modified_prop == "lastModifiedDateTime"
    assert entity_set("bc", "customers").prop("lastModifiedDateTime").read_only


def test_bc_enums_use_wire_spelling():
    blocked = entity_set("bc", "customers").prop("blocked")
    assert blocked.enum_type == "customerBlocked"
    assert blocked.enum == (" ", "Ship", "Invoice", "All")
    assert blocked.default == " "
    assert "In_x0020_Progress" in entity_set("bc", "opportunities").prop("status").enum
    assert "Customer_x0020_Price_x0020_Group" in entity_set("companion", "salesPrices").prop("salesType").enum
    assert entity_set("companion", "crmIntegrationRecords").prop("lastSynchResult").enum == (
        " ",
        "Success",
        "Failure",
    )
    for es in schema.all_entity_sets():
        for p in es.props:
            if p.enum:
                assert p.enum_type and all(" " not in v or v == " " for v in p.enum), (es.name, p.name)


def test_bc_blank_defaults_render_like_bc():
    customers = entity_set("bc", "customers")
    assert customers.prop("currencyId").default == "00000000-0000-0000-0000-000000000000"
    assert customers.prop("creditLimit").default == 0
    assert customers.prop("phoneNumber").default == ""
    assert customers.prop("id").default is None
    assert entity_set("bc", "salesInvoices").prop("status").default == "Draft"


def test_bc_navs_point_at_existing_properties():
    expected = {
        ("customers", "currency"): ("currencies", False),
        ("customers", "paymentTerm"): ("paymentTerms", False),
        ("customers", "shipmentMethod"): ("shipmentMethods", False),
        ("salesInvoices", "salesInvoiceLines"): ("salesInvoiceLines", True),
        ("salesInvoices", "customer"): ("customers", False),
        ("salesInvoiceLines", "item"): ("items", False),
        ("items", "unitOfMeasure"): ("unitsOfMeasure", False),
    }
    for (name, nav_name), (target, many) in expected.items():
        nav = entity_set("bc", name).nav(nav_name)
        assert nav is not None and (nav.target, nav.many) == (target, many)
    for es in schema.all_entity_sets():
        for nav in es.navs:
            target = entity_set(es.service, nav.target)
            assert target is not None, (es.name, nav.name)
            assert es.prop(nav.local) is not None and target.prop(nav.remote) is not None, (es.name, nav.name)


def test_companion_methods():
    assert entity_set("companion", "crmIntegrationRecords").methods == {"GET", "POST", "PATCH", "DELETE"}
    assert entity_set("companion", "integrationTableMappings").methods == {"GET"}
    assert entity_set("companion", "integrationFieldMappings").methods == {"GET"}
    assert entity_set("companion", "integrationSynchJobs").methods == {"GET", "POST"}
    assert entity_set("companion", "integrationSynchJobErrors").methods == {"GET", "POST"}


def test_dataverse_conventions():
    for es in schema.DATAVERSE.values():
        assert not es.company_scoped and es.change_tracking
        assert es.logical_name == es.type_name and es.primary_name
        assert (es.modified_prop, es.created_prop) == ("modifiedon", "createdon")
        for common in ("createdon", "modifiedon", "versionnumber"):
            assert es.prop(common).read_only, (es.name, common)
        assert es.prop("versionnumber").edm == "Edm.Int64"
        assert len(set(es.prop_names)) == len(es.props), es.name
        for lk in es.lookups:
            value = es.prop(lk.value_prop)
            assert value is not None and value.edm == "Edm.Guid" and value.read_only, (es.name, lk.nav)
            assert entity_set("dataverse", lk.target) is not None
            assert es.nav(lk.nav) is not None, (es.name, lk.nav)


def test_dataverse_lookups():
    contacts = entity_set("dataverse", "contacts")
    assert contacts.lookup("parentcustomerid_account").target == "accounts"
    assert contacts.lookup("parentcustomerid_contact").target == "contacts"
    opportunities = entity_set("dataverse", "opportunities")
    assert {opportunities.lookup(n).column for n in ("customerid_account", "customerid_contact")} == {
        "customerid"
    }
    assert entity_set("dataverse", "accounts").lookup("ownerid").target == "systemusers"
    for name in (
        "accounts",
        "contacts",
        "opportunities",
        "products",
        "pricelevels",
        "productpricelevels",
        "invoices",
    ):
        lk = entity_set("dataverse", name).lookup("bcbi_companyid")
        assert lk is not None and lk.target == "bcbi_companies", name
    details = entity_set("dataverse", "invoices").nav("invoice_details")
    assert (details.target, details.local, details.remote, details.many) == (
        "invoicedetails",
        "invoiceid",
        "_invoiceid_value",
        True,
    )


def test_dataverse_choices_and_lengths():
    accounts = entity_set("dataverse", "accounts")
    assert dict(accounts.prop("customertypecode").options)[3] == "Customer"
    assert dict(accounts.prop("customertypecode").options)[11] == "Vendor"
    assert dict(accounts.prop("paymenttermscode").options)[1] == "Net 30"
    assert accounts.prop("statecode").default == 0
    assert accounts.prop("name").max_length == 160
    assert entity_set("dataverse", "transactioncurrencies").prop("isocurrencycode").max_length == 5
    assert dict(entity_set("dataverse", "invoices").prop("statuscode").options)[100001] == "Complete"
    assert dict(entity_set("dataverse", "pricelevels").prop("statuscode").options) == {
        100001: "Active",
        100002: "Inactive",
    }
    assert entity_set("dataverse", "opportunities").prop("estimatedclosedate").edm == "Edm.Date"


# -- $metadata --------------------------------------------------------------------------------------


def _parse(service: str) -> ET.Element:
    root = ET.fromstring(metadata.csdl(service))
    schemas = root.findall(f".//{EDM}Schema")
    assert len(schemas) == 1
    return schemas[0]


@pytest.mark.parametrize("service", ["bc", "companion", "dataverse"])
def test_csdl_lists_every_entity_set_and_property(service):
    schema_el = _parse(service)
    namespace = schema_el.get("Namespace")
    assert namespace == ("Microsoft.Dynamics.CRM" if service == "dataverse" else "Microsoft.NAV")
    container = schema_el.find(f"{EDM}EntityContainer")
    assert container.get("Name") == ("System" if service == "dataverse" else "NAV")
    sets = {e.get("Name"): e.get("EntityType") for e in container.findall(f"{EDM}EntitySet")}
    types = {e.get("Name"): e for e in schema_el.findall(f"{EDM}EntityType")}
    for es in schema.REGISTRIES[service].values():
        assert sets[es.name] == f"{namespace}.{es.type_name}"
        et = types[es.type_name]
        assert [k.get("Name") for k in et.findall(f"{EDM}Key/{EDM}PropertyRef")] == [es.key]
        props = {p.get("Name"): p.get("Type") for p in et.findall(f"{EDM}Property")}
        assert list(props) == list(es.prop_names)
        navs = {n.get("Name") for n in et.findall(f"{EDM}NavigationProperty")}
        assert {n.name for n in es.navs} <= navs


def test_bc_csdl_enum_types():
    schema_el = _parse("bc")
    enums = {e.get("Name"): [m.get("Name") for m in e] for e in schema_el.findall(f"{EDM}EnumType")}
    assert enums["customerBlocked"] == ["_x0020_", "Ship", "Invoice", "All"]
    assert "In_x0020_Progress" in enums["opportunityStatus"]
    customer = next(e for e in schema_el.findall(f"{EDM}EntityType") if e.get("Name") == "customer")
    types = {p.get("Name"): p.get("Type") for p in customer.findall(f"{EDM}Property")}
    assert types["blocked"] == "Microsoft.NAV.customerBlocked"
    assert types["creditLimit"] == "Edm.Decimal"
    company = next(e for e in schema_el.findall(f"{EDM}EntityType") if e.get("Name") == "company")
    assert "customers" in {n.get("Name") for n in company.findall(f"{EDM}NavigationProperty")}


def test_dataverse_csdl_lookups_and_change_tracking():
    schema_el = _parse("dataverse")
    account = next(e for e in schema_el.findall(f"{EDM}EntityType") if e.get("Name") == "account")
    navs = {n.get("Name"): n for n in account.findall(f"{EDM}NavigationProperty")}
    constraint = navs["transactioncurrencyid"].find(f"{EDM}ReferentialConstraint")
    assert constraint.get("Property") == "_transactioncurrencyid_value"
    assert constraint.get("ReferencedProperty") == "transactioncurrencyid"
    invoice = next(e for e in schema_el.findall(f"{EDM}EntityType") if e.get("Name") == "invoice")
    details = next(
        n for n in invoice.findall(f"{EDM}NavigationProperty") if n.get("Name") == "invoice_details"
    )
    assert details.get("Type") == "Collection(mscrm.invoicedetail)"
    for set_el in schema_el.findall(f"{EDM}EntityContainer/{EDM}EntitySet"):
        term = set_el.find(f"{EDM}Annotation")
        assert term.get("Term") == "Org.OData.Capabilities.V1.ChangeTracking"
        assert term.find(f"{EDM}Record/{EDM}PropertyValue").get("Bool") == "true"
    plain = ET.fromstring(metadata.csdl("dataverse", annotations=False))
    assert plain.find(f".//{EDM}Annotation") is None


# -- EntityDefinitions ------------------------------------------------------------------------------


def test_entity_definitions_list_every_dataverse_set():
    defs = metadata.entity_definitions()
    assert {d["EntitySetName"] for d in defs} == set(DATAVERSE_SETS)
    account = next(d for d in defs if d["LogicalName"] == "account")
    assert account["PrimaryIdAttribute"] == "accountid"
    assert account["PrimaryNameAttribute"] == "name"
    assert account["ChangeTrackingEnabled"] is True
    assert account["LogicalCollectionName"] == "accounts"
    assert uuid.UUID(account["MetadataId"])
    assert "Attributes" not in account
    assert [d["MetadataId"] for d in defs] == [d["MetadataId"] for d in metadata.entity_definitions()]
    assert len({d["MetadataId"] for d in defs}) == len(defs)


def test_attribute_definitions():
    account = next(
        d for d in metadata.entity_definitions(with_attributes=True) if d["LogicalName"] == "account"
    )
    attrs = {a["LogicalName"]: a for a in account["Attributes"]}
    assert attrs["name"]["AttributeType"] == "String" and attrs["name"]["MaxLength"] == 160
    assert attrs["name"]["IsPrimaryName"] and attrs["accountid"]["IsPrimaryId"]
    assert attrs["creditlimit"]["AttributeType"] == "Money"
    assert attrs["statecode"]["AttributeType"] == "State"
    assert attrs["paymenttermscode"]["AttributeType"] == "Picklist"
    assert attrs["paymenttermscode"]["OptionSet"]["Options"][0]["Value"] == 1
    assert attrs["transactioncurrencyid"]["AttributeType"] == "Lookup"
    assert attrs["transactioncurrencyid"]["Targets"] == ["transactioncurrency"]
    assert attrs["ownerid"]["AttributeType"] == "Owner"
    assert "_transactioncurrencyid_value" not in attrs
    assert (
        attrs["versionnumber"]["AttributeType"] == "BigInt" and not attrs["versionnumber"]["IsValidForUpdate"]
    )
    contact = next(
        d for d in metadata.entity_definitions(with_attributes=True) if d["LogicalName"] == "contact"
    )
    parent = next(a for a in contact["Attributes"] if a["LogicalName"] == "parentcustomerid")
    assert parent["AttributeType"] == "Customer" and set(parent["Targets"]) == {"account", "contact"}


# -- the definitions are data (d365kit/sandbox/tables/*.toml) ----------------------------------------


def test_every_registered_set_comes_from_the_packaged_data():
    from d365kit.sandbox import schema_defs

    for service in schema_defs.SERVICES:
        assert (schema_defs.TABLES_DIR / f"{service}.toml").is_file()
        assert [es.name for es in schema_defs.load(service)] == list(schema.REGISTRIES[service])
        assert schema_defs.load(service) == list(schema.REGISTRIES[service].values())


@pytest.mark.parametrize(
    ("service", "typo"),
    [
        ("bc", {"name": "x", "edm": "Edm.String", "max_lenght": 5}),
        ("dataverse", {"name": "x", "edm": "Edm.String", "requried": True}),
    ],
)
def test_a_misspelt_column_key_is_refused(service, typo):
    from d365kit.sandbox import schema_defs

    key = {"name": "xid", "edm": "Edm.Guid"}
    if service == "bc":
        spec = {"type": "x", "key": "xid", "columns": [key, typo]}
        with pytest.raises(ValueError, match="unknown key"):
            schema_defs.bc_sets("bc", {"sets": {"xs": spec}})
    else:
        spec = {"logical_name": "x", "key": "xid", "columns": [key, typo]}
        with pytest.raises(ValueError, match="unknown key"):
            schema_defs.dataverse_sets({"sets": {"xs": spec}})


def test_dataverse_lookup_rows_name_their_navigations():
    from d365kit.sandbox import schema_defs

    data = {
        "sets": {
            "as": {"logical_name": "a", "key": "aid", "columns": [{"name": "aid", "edm": "Edm.Guid"}]},
            "bs": {"logical_name": "b", "key": "bid", "columns": [{"name": "bid", "edm": "Edm.Guid"}]},
            "cs": {
                "logical_name": "c",
                "key": "cid",
                "columns": [
                    {"name": "cid", "edm": "Edm.Guid"},
                    {"name": "one", "lookup": ["as"]},
                    {"name": "poly", "lookup": ["as", "bs"]},
                    {"name": "derived", "lookup": ["as"], "read_only": True},
                    {"name": "owner", "targets": ["a", "team"], "lookup": ["as"], "attribute_type": "Owner"},
                    {"name": "elsewhere", "targets": ["team"]},
                ],
            },
        }
    }
    cs = schema_defs.dataverse_sets(data)[2]
    assert [p.name for p in cs.props] == [
        "cid",
        "_one_value",
        "_poly_value",
        "_derived_value",
        "_owner_value",
        "_elsewhere_value",
    ]
    assert all(cs.prop(p).read_only and cs.prop(p).edm == "Edm.Guid" for p in cs.prop_names[1:])
    assert cs.prop("_owner_value").attribute_type == "Owner"
    # writable lookups are bound (Lookup) and expandable; a read-only one is expandable only; a lookup with
    # no served target has neither
    assert [(lk.nav, lk.column, lk.target) for lk in cs.lookups] == [
        ("one", "one", "as"),
        ("poly_a", "poly", "as"),
        ("poly_b", "poly", "bs"),
        ("owner", "owner", "as"),
    ]
    assert [(n.name, n.local, n.remote) for n in cs.navs] == [
        ("one", "_one_value", "aid"),
        ("poly_a", "_poly_value", "aid"),
        ("poly_b", "_poly_value", "bid"),
        ("derived", "_derived_value", "aid"),
        ("owner", "_owner_value", "aid"),
    ]
    assert schema_defs.LOOKUP_TARGETS[("cs", "owner")] == ("a", "team")
    assert schema_defs.LOOKUP_TARGETS[("cs", "elsewhere")] == ("team",)
    assert schema_defs.LOOKUP_TARGETS[("cs", "poly")] == ("a", "b")
