"""The mapping catalog (default, overrides, live), its validation against $metadata, and the transforms."""

from __future__ import annotations

import pandas as pd
import pytest

from d365kit.errors import CatalogError
from d365kit.mapping import check, load_catalog, load_live, validate
from d365kit.mapping.loader import guess_bc_property
from d365kit.mapping.transforms import (
    LookupTransform,
    OptionTransform,
    bc_enum_decode,
    bc_enum_encode,
    equal,
    normalize,
)

TWELVE = [
    "SALESPEOPLE",
    "CUSTOMER",
    "CONTACT",
    "CURRENCY",
    "UNIT OF MEASURE",
    "ITEM-PRODUCT",
    "RESOURCE-PRODUCT",
    "CUSTPRCGRP-PRICE",
    "SALESPRC-PRODPRICE",
    "OPPORTUNITY",
    "POSTEDSALESINV-INV",
    "POSTEDSALESLINE-INV",
]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def issues_of(catalog, ws, name):
    return validate(catalog, ws.bc.metadata, ws.dataverse.metadata(), [name])


# -- the default catalog -----------------------------------------------------------------------------


def test_default_catalog_has_the_twelve_mappings_with_the_reference_directions(catalog):
    assert catalog.names == TWELVE
    directions = {m.name: m.direction for m in catalog}
    assert directions["SALESPEOPLE"] == "from_dataverse"
    assert {n for n, d in directions.items() if d == "bidirectional"} == {
        "CUSTOMER",
        "CONTACT",
        "ITEM-PRODUCT",
        "RESOURCE-PRODUCT",
        "OPPORTUNITY",
    }
    assert {m.name for m in catalog if not m.synch_only_coupled} == {
        "SALESPRC-PRODPRICE",
        "OPPORTUNITY",
        "POSTEDSALESLINE-INV",
    }
    assert {m.name for m in catalog if m.bc_api == "companion"} == {
        "RESOURCE-PRODUCT",
        "CUSTPRCGRP-PRICE",
        "SALESPRC-PRODPRICE",
    }
    assert [(f.bc, f.dv) for f in catalog["CURRENCY"].match_fields] == [("code", "isocurrencycode")]
    assert catalog["CUSTOMER"].dv_company_field == "bcbi_companyid"
    assert catalog["CONTACT"].dv_lookup_types == {"parentcustomerid": "account"}
    owner = catalog["CUSTOMER"].field_of(dv="ownerid")
    assert (owner.bc, owner.transform, owner.not_null, owner.direction) == (
        "salespersonCode",
        "lookup:SALESPEOPLE",
        True,
        "to_dataverse",
    )
    assert catalog.options["payment_terms"].values == {"NET30": 1, "2%10NET30": 2, "NET45": 3, "NET60": 4}


def test_fields_no_api_exposes_stay_in_the_catalog_but_are_not_compared(catalog):
    customer = catalog["CUSTOMER"]
    hidden = {f.dv for f in customer.unreachable}
    assert hidden == {"address1_primarycontactname", "fax", "address1_shippingmethodcode", "primarycontactid"}
    assert all(f.companion_only and f.bc is None for f in customer.unreachable)
    assert not hidden & {f.dv for f in customer.compared}
    contact_hidden = {f.caption for f in catalog["CONTACT"].unreachable}
    assert {"First Name", "Middle Name", "Surname", "Pager", "Fax No."} <= contact_hidden
    # constants are kept for the record, not compared
    assert "owneridtype" not in {f.dv for f in customer.compared}
    assert customer.field_of(dv="owneridtype").constant == "systemuser"


def test_default_catalog_matches_both_services_metadata(ws, catalog):
    assert validate(catalog, ws.bc.metadata, ws.dataverse.metadata()) == []
    assert check(catalog, ws.bc, ws.dataverse) is catalog


# -- validation errors are precise -------------------------------------------------------------------


def test_a_misspelled_field_names_the_mapping_the_field_and_the_closest_names(ws):
    bad = load_catalog(
        overrides=[
            {
                "mapping": [
                    {
                        "name": "CUSTOMER",
                        "extends": True,
                        "field": [
                            {"bc": "phoneNumbr", "dv": "telephone1", "direction": "bidirectional"},
                            {"bc": "email", "dv": "emailadress1", "direction": "bidirectional"},
                        ],
                    }
                ]
            }
        ]
    )
    issues = issues_of(bad, ws, "CUSTOMER")
    assert [(i.mapping, i.field) for i in issues] == [("CUSTOMER", "phoneNumbr"), ("CUSTOMER", "email")]
    assert issues[0].suggestions[0] == "phoneNumber"
    assert issues[1].suggestions[0] == "emailaddress1"
    with pytest.raises(CatalogError) as err:
        check(bad, ws.bc, ws.dataverse, ["CUSTOMER"])
    text = str(err.value)
    assert "mapping CUSTOMER, field phoneNumbr: BC 'customers' has no property 'phoneNumbr'" in text
    assert "closest valid names: 'phoneNumber'" in text
    assert "Dataverse 'accounts' has no attribute 'emailadress1'" in text
    assert err.value.issues == issues


def test_an_unknown_entity_is_reported_with_the_closest_entity_sets(ws):
    bad = load_catalog(
        overrides=[
            {
                "mapping": [
                    {"name": "CUSTOMER", "extends": True, "bc_entity": "custmers", "dv_entity": "acount"}
                ]
            }
        ]
    )
    issues = issues_of(bad, ws, "CUSTOMER")
    assert [str(i) for i in issues] == [
        "mapping CUSTOMER: BC (v2.0) has no entity set 'custmers'; closest valid names: 'customers'",
        "mapping CUSTOMER: Dataverse has no entity set 'acount'; closest valid names: 'accounts'",
    ]


def test_bad_filters_transforms_and_directions_are_reported(ws):
    bad = load_catalog(
        overrides=[
            {
                "mapping": [
                    {
                        "name": "ITEM-PRODUCT",
                        "extends": True,
                        "bc_filter": "blocekd eq false",
                        "direction": "to_dataverse",
                        "field": [
                            {
                                "bc": "baseUnitOfMeasureCode",
                                "dv": "defaultuomscheduleid",
                                "transform": "lookup:UNIT OF MESURE",
                            }
                        ],
                    }
                ]
            }
        ]
    )
    text = "\n".join(map(str, issues_of(bad, ws, "ITEM-PRODUCT")))
    assert "BC filter names 'blocekd', which 'items' does not have; closest valid names: 'blocked'" in text
    assert (
        "transform 'lookup:UNIT OF MESURE' names no mapping of the catalog; closest valid names: 'UNIT OF MEASURE'"
        in text
    )
    assert "field displayName: field direction bidirectional contradicts the table's to_dataverse" in text


def test_a_malformed_override_file_fails_to_load_with_suggestions(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[[mapping]]\nname = "CUSTOMER"\nextends = true\ndv_filtre = "statecode eq 0"\n')
    with pytest.raises(
        CatalogError, match=r"mapping CUSTOMER: unknown key 'dv_filtre'; closest valid names: 'dv_filter'"
    ):
        load_catalog(overrides=[path])
    path.write_text('[[mapping]]\nname = "CUSTOMR"\nextends = true\n')
    with pytest.raises(
        CatalogError, match=r"extends a mapping that does not exist; closest valid names: 'CUSTOMER'"
    ):
        load_catalog(overrides=[path])


# -- overrides and live mappings ---------------------------------------------------------------------


def test_an_override_file_extends_replaces_adds_and_removes(tmp_path, catalog):
    path = tmp_path / "mine.toml"
    path.write_text(
        """
[options.payment_terms]
values = { "COD" = 5 }

[[mapping]]
name = "CUSTOMER"
extends = true
dv_filter = "statecode eq 0"

[[mapping.field]]
bc = "phoneNumber"
dv = "telephone1"
compare = "text"

[[mapping.field]]
bc = "creditLimit"
dv = "creditlimit"
remove = true

[[mapping]]
name = "CURRENCY"
bc_entity = "currencies"
dv_entity = "transactioncurrencies"
direction = "to_dataverse"

[[mapping.field]]
bc = "code"
dv = "isocurrencycode"
direction = "to_dataverse"

[[mapping]]
name = "OPPORTUNITY"
remove = true

[[mapping]]
name = "MY-VENDORS"
bc_entity = "vendors"
dv_entity = "accounts"
direction = "bidirectional"
"""
    )
    mine = load_catalog(overrides=[path])
    customer = mine["CUSTOMER"]
    assert customer.dv_filter == "statecode eq 0"
    assert customer.bc_filter == catalog["CUSTOMER"].bc_filter  # untouched keys stay
    assert customer.field_of(bc="phoneNumber").compare == "text"
    assert customer.field_of(bc="phoneNumber").direction == "bidirectional"
    assert "creditlimit" not in {f.dv for f in customer.fields}
    assert len(customer.fields) == len(catalog["CUSTOMER"].fields) - 1
    assert [(f.bc, f.dv) for f in mine["CURRENCY"].fields] == [("code", "isocurrencycode")]  # replaced
    assert "OPPORTUNITY" not in mine and mine.names[-1] == "MY-VENDORS"
    assert mine.options["payment_terms"].values["COD"] == 5
    assert mine.options["payment_terms"].values["NET60"] == 4


def test_live_mappings_from_the_companion_api_are_named_in_api_terms(ws, catalog):
    live = load_live(ws.bc, ws.dataverse)
    assert set(live.names) == set(TWELVE) and live.warnings == ()
    for m in live:
        default = catalog[m.name]
        assert (m.direction, m.dv_entity, m.bc_entity, m.synch_only_coupled) == (
            default.direction,
            default.dv_entity,
            default.bc_entity,
            default.synch_only_coupled,
        ), m.name
        assert set(m.fields) == set(default.fields), m.name
        assert m.bc_table_view == "" or m.bc_table_view.startswith("WHERE(")
    assert live["CUSTOMER"].bc_table_view == "WHERE(Blocked=FILTER(' '))"
    assert validate(live, ws.bc.metadata, ws.dataverse.metadata()) == []


def test_unknown_live_captions_resolve_to_the_property_spelled_alike():
    props = ["phoneNo", "salespersonCode", "email", "postalCode"]
    assert guess_bc_property("Phone No.", props) == "phoneNo"
    assert guess_bc_property("Salesperson Code", props) == "salespersonCode"
    assert guess_bc_property("E-Mail", props) == "email"
    assert guess_bc_property("Post Code", props) is None


# -- transforms, both ways ---------------------------------------------------------------------------


def s(*values, dtype="string"):
    return pd.Series(list(values), dtype=dtype)


def test_lookup_through_couplings_both_ways():
    bc_rows = pd.DataFrame({"id": ["b1", "b2", "b3", "b4"], "code": ["SP1", "SP2", "SP3", "EUR"]})
    couplings = pd.DataFrame({"bc_id": ["b1", "b2", "b2"], "dataverse_id": ["u1", "u2", "u9"]})
    fallback = pd.Series(["c-usd", "c-eur"], index=["USD", "EUR"])
    t = LookupTransform.from_frames("SALESPEOPLE", bc_rows, "code", couplings, fallback)
    to = t.to_dataverse(s("SP1", " SP2 ", "SP3", None, "USD", "EUR"))
    assert to.tolist() == ["u1", "u2", pd.NA, pd.NA, "c-usd", pd.NA]  # EUR has a BC row: no fallback
    back = t.from_dataverse(s("U1", "u2", "c-usd", "zz", None))
    assert back.tolist() == ["SP1", "SP2", "USD", pd.NA, pd.NA]
    assert t.from_dataverse(t.to_dataverse(s("SP1", "SP2"))).tolist() == ["SP1", "SP2"]


def test_option_maps_both_ways_with_codes_and_with_ids():
    terms = {"NET30": 1, "2%10NET30": 2, "NET45": 3, "NET60": 4}
    codes = OptionTransform("payment_terms", terms)
    assert codes.to_dataverse(s("NET30", "2%10NET30", "NET60", "COD", None)).tolist() == [
        1,
        2,
        4,
        pd.NA,
        pd.NA,
    ]
    assert codes.from_dataverse(pd.Series([3, 1, 7, None], dtype="Int64")).tolist() == [
        "NET45",
        "NET30",
        pd.NA,
        pd.NA,
    ]
    ids = pd.Series(["NET30", "NET45", "COD"], index=["id-30", "id-45", "id-cod"])
    by_id = OptionTransform("payment_terms", terms, ids)
    assert by_id.to_dataverse(s("ID-30", "id-45", "id-cod")).tolist() == [1, 3, pd.NA]
    assert by_id.from_dataverse(pd.Series([1, 3, 2], dtype="Int64")).tolist() == ["id-30", "id-45", pd.NA]
    assert by_id.bc_label(s("id-45")).tolist() == ["NET45"]
    ship = OptionTransform("shipment_method", {"FOB": 1, "NOCHARGE": 2})
    assert ship.from_dataverse(ship.to_dataverse(s("FOB", "NOCHARGE"))).tolist() == ["FOB", "NOCHARGE"]


def test_bc_enum_spelling_both_ways():
    wire = s("In_x0020_Progress", "Customer_x0020_Price_x0020_Group", "Open", None)
    text = bc_enum_decode(wire)
    assert text.tolist() == ["In Progress", "Customer Price Group", "Open", pd.NA]
    assert bc_enum_encode(text).tolist() == wire.tolist()


@pytest.mark.parametrize(
    ("kind", "left", "right", "same"),
    [
        ("text", " Adatum ", "adatum", True),
        ("text", "", None, True),  # a blank BC text is a null Dataverse column
        ("text", "Adatum", "Adatum Intl.", False),
        ("phone", "+1 (425) 555-0100", "+14255550100", True),
        ("phone", "+1 425 555 0100", "+1 425 555 0101", False),
        ("url", "https://www.Adatum.example/", "www.adatum.example", True),
        ("email", "Info@Adatum.example", "info@adatum.example", True),
        ("guid", "00000000-0000-0000-0000-000000000000", None, True),
        ("guid", "A1B2C3D4-0000-0000-0000-000000000001", "a1b2c3d4-0000-0000-0000-000000000001", True),
        ("date", "2026-11-20", pd.Timestamp("2026-11-20T00:00:00Z"), True),
        ("date", "2026-11-20", "2026-11-21", False),
        ("decimal", 10.0, 10.004, True),
        ("decimal", 10.0, 10.01, False),
        ("decimal", 0.0, None, False),
        ("integer", 3, 3.0, True),
    ],
)
def test_comparison_normalisation(kind, left, right, same):
    a = normalize(pd.Series([left], dtype=object), kind)
    b = normalize(pd.Series([right], dtype=object), kind)
    assert equal(a, b, kind).tolist() == [same]


def test_case_sensitivity_and_tolerance_are_per_field():
    a, b = pd.Series(["Adatum"]), pd.Series(["ADATUM"])
    assert equal(
        normalize(a, "text", case_sensitive=True), normalize(b, "text", case_sensitive=True), "text"
    ).tolist() == [False]
    x, y = pd.Series([100.0]), pd.Series([100.4])
    assert equal(x, y, "decimal", tolerance=0.5).tolist() == [True]
    assert equal(x, y, "decimal").tolist() == [False]
