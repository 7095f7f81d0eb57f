"""The tenant's table-view filters in OData terms (d365kit.mapping.filters), and what happens when a
filter cannot be translated: named, marked, never silently widened."""

from __future__ import annotations

import pytest

from d365kit.mapping import load_live
from d365kit.mapping.filters import translate

BC_TYPES = {
    "blocked": "Microsoft.NAV.customerBlocked",
    "type": "Microsoft.NAV.contactType",
    "companyNumber": "Edm.String",
    "displayName": "Edm.String",
    "creditLimit": "Edm.Decimal",
    "taxLiable": "Edm.Boolean",
}
DV_TYPES = {"statecode": "Edm.Int32", "_parentcustomerid_value": "Edm.Guid", "isdisabled": "Edm.Boolean"}
OPTIONS = {("statecode", "Active"): 0, ("statecode", "Inactive"): 1}


def bc(view: str):
    resolve = {
        "Blocked": "blocked",
        "Type": "type",
        "Company No.": "companyNumber",
        "Name": "displayName",
        "Credit Limit (LCY)": "creditLimit",
        "Tax Liable": "taxLiable",
    }.get
    return translate(view, resolve, BC_TYPES, lambda p, label: None)


def dv(view: str):
    resolve = {
        "StateCode": "statecode",
        "ParentCustomerId": "_parentcustomerid_value",
        "IsDisabled": "isdisabled",
    }.get
    return translate(view, resolve, DV_TYPES, lambda p, label: OPTIONS.get((p, label)))


@pytest.mark.parametrize(
    ("view", "odata"),
    [
        ("", None),
        ("WHERE(Blocked=FILTER(' '))", "blocked eq ' '"),
        (
            "WHERE(Type=FILTER(Person),Company No.=FILTER(<>''))",
            "(type eq 'Person') and (companyNumber ne '')",
        ),
        ("WHERE(Blocked=FILTER(Ship|Invoice))", "(blocked eq 'Ship') or (blocked eq 'Invoice')"),
        ("WHERE(Credit Limit (LCY)=FILTER(100..500))", "(creditLimit ge 100.0) and (creditLimit le 500.0)"),
        ("WHERE(Credit Limit (LCY)=FILTER(>=100))", "creditLimit ge 100.0"),
        ("WHERE(Name=FILTER(*Bike*))", "contains(displayName,'Bike')"),
        ("WHERE(Name=FILTER(Adatum*))", "startswith(displayName,'Adatum')"),
        ("WHERE(Tax Liable=CONST(Yes))", "taxLiable eq true"),
        ("WHERE(Blocked=FILTER(Not Started))", "blocked eq 'Not_x0020_Started'"),
    ],
)
def test_bc_table_views_become_odata(view, odata):
    t = bc(view)
    assert t.problem is None and t.filter == odata


def test_dataverse_views_resolve_options_lookups_company_and_lookup_types():
    t = dv(
        "WHERE(ParentCustomerId=FILTER(<>{00000000-0000-0000-0000-000000000000}),StateCode=FILTER(Active),"
        "ParentCustomerIdType=FILTER(account),CompanyId=FILTER({5b1b6c1e-0000-4000-8000-000000000001}|"
        "{00000000-0000-0000-0000-000000000000}))"
    )
    assert t.problem is None
    assert t.filter == "(_parentcustomerid_value ne null) and (statecode eq 0)"
    assert t.company and t.lookup_types == (("parentcustomerid", "account"),)
    assert dv("WHERE(IsDisabled=FILTER(No))").filter == "isdisabled eq false"


@pytest.mark.parametrize(
    ("view", "named"),
    [
        ("WHERE(Fax No.=FILTER(<>''))", "no API property for field 'Fax No.'"),
        ("WHERE(Name=FILTER(@bike))", "uses &, @ or ?"),
        ("WHERE(Name=FILTER(A*B*))", "only *x*, x* and *x are translated"),
        ("SORTING(No.)", "is not a WHERE(...) table view"),
        ("WHERE(Tax Liable=FILTER(Maybe))", "is not Yes or No"),
    ],
)
def test_what_cannot_be_translated_is_named(view, named):
    t = bc(view)
    assert t.filter is None and named in t.problem


def test_an_unknown_option_caption_is_named_not_guessed():
    t = dv("WHERE(StateCode=FILTER(Archived))")
    assert t.filter is None and "option 'Archived' of statecode has no known value" in t.problem


def test_the_tenants_filters_become_each_mappings_scope(ws):
    live = load_live(ws.bc, ws.dataverse)
    contact = live["CONTACT"]
    assert contact.bc_filter == "(type eq 'Person') and (companyNumber ne '')"  # Company No. -> companyNumber
    assert contact.bc_table_view.startswith("WHERE(Type=FILTER(Person)")
    assert (
        live["SALESPEOPLE"].dv_filter
        == "((isdisabled eq false) and (islicensed eq true)) and (isintegrationuser eq false)"
    )
    assert live["POSTEDSALESINV-INV"].bc_scope.startswith("status eq 'Open'")  # the entity's own scope stays
    # BC's default setup translates whole: option captions resolved through Dataverse's option metadata
    assert [m.name for m in live if m.filter_problems] == []
    assert live["CUSTOMER"].dv_filter == "(statecode eq 0) and (customertypecode eq 3)"
    assert live["ITEM-PRODUCT"].dv_filter == "(producttypecode eq 1) and (statecode eq 0)"  # SalesInventory


def test_a_filter_that_cannot_be_translated_is_named_and_the_default_kept(ws, monkeypatch):
    """A tenant filter on a field no API exposes: the mapping says so, the result says so, scope stays."""
    real = ws.bc.table_mappings

    def tenant_setup():
        tables = real()
        tables.loc[tables["name"] == "CUSTOMER", "tableFilter"] = (
            "WHERE(Blocked=FILTER(' '),Fax No.=FILTER(<>''))"
        )
        return tables

    monkeypatch.setattr(ws.bc, "table_mappings", tenant_setup)
    live = load_live(ws.bc, ws.dataverse)
    customer = live["CUSTOMER"]
    assert customer.filter_problems and "no API property for field 'Fax No.'" in customer.filter_problems[0]
    assert customer.bc_filter == "blocked eq ' '"  # the default, not a wider scope
    result = ws.reconcile(customer, catalog=live, progress=False)
    assert "Filter not translated: Table Filter WHERE(Blocked" in result.to_text()
