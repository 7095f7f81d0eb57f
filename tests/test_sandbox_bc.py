"""BC API v2.0 + companion API of the sandbox, over HTTPS with real tokens (docs/sandbox.md, BC API).

Reads run against the seeded company; every write goes to a scratch company this module adds to the store
and removes afterwards, so the seed stays as other tests expect it.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any

import pytest
import requests
from helpers import PinnedSession, auth

from d365kit.sandbox import bc_pages, schema
from d365kit.sandbox.bc_api import BCService
from d365kit.sandbox.http import Headers, Req

CID = re.compile(r"  CorrelationId:  [0-9a-f-]{36}\.$")
BLANK = "00000000-0000-0000-0000-000000000000"


class BC:
    """A tiny client: paths are relative to the BC root (``.../api/v2.0``) or the companion root."""

    def __init__(self, info: dict[str, Any], root: str):
        self.root = root
        self.session = PinnedSession(info["ca_bundle"])
        self.session.headers.update(auth(info, info["bc_scope"]))

    def __call__(self, method: str, path: str, **kw: Any) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.root}/{path}"
        return self.session.request(method, url, timeout=30, **kw)

    def all_pages(self, path: str, page: int) -> list[dict]:
        rows, url, pages = [], f"{self.root}/{path}", 0
        while url:
            r = self.session.get(url, headers={"Prefer": f"odata.maxpagesize={page}"}, timeout=30)
            assert r.status_code == 200, r.text
            assert r.headers["Preference-Applied"] == f"odata.maxpagesize={page}"
            body = r.json()
            assert len(body["value"]) <= page
            rows += body["value"]
            url, pages = body.get("@odata.nextLink"), pages + 1
            assert pages < 500
        return rows


def assert_error(r: requests.Response, status: int, code: str, text: str = "") -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code, err
    assert CID.search(err["message"]), err["message"]
    assert text in err["message"], err["message"]
    return err


@pytest.fixture(scope="module")
def info(sandbox) -> dict[str, Any]:
    return sandbox.info()


@pytest.fixture(scope="module")
def bc(info) -> Any:
    client = BC(info, info["bc_url"])
    yield client
    client.session.close()


@pytest.fixture(scope="module")
def companion(info) -> Any:
    client = BC(info, info["bc_companion_url"])
    yield client
    client.session.close()


@pytest.fixture(scope="module")
def seeded_company(sandbox, bc) -> str:
    """The seeded company (CRONUS USA, Inc.) — the only thing taken from the seed."""
    companies = bc("GET", "companies").json()["value"]
    if not companies:  # TEMP while the seed is a stub
        sandbox.ctx.store.insert(
            schema.BC["companies"], {"id": str(uuid.uuid4()), "name": "CRONUS USA, Inc."}
        )
        companies = bc("GET", "companies").json()["value"]
    assert companies, "the seed must create at least one company"
    named = [c for c in companies if c["name"] == "CRONUS USA, Inc."]
    return (named or companies)[0]["id"]


@pytest.fixture(scope="module")
def company(sandbox) -> Any:
    """A scratch company for writes, removed with all its rows at the end of the module."""
    store = sandbox.ctx.store
    cid = str(uuid.uuid4())
    store.insert(schema.BC["companies"], {"id": cid, "name": f"Scratch {cid[:8]}", "displayName": "Scratch"})
    yield cid
    for es in schema.all_entity_sets():
        if es.service != "dataverse" and es.company_scoped:
            for row in store.query(es, company=cid):
                store.delete(es, row[es.key], company=cid)
    store.delete(schema.BC["companies"], cid)


def new_customer(bc: BC, company: str, **body: Any) -> dict:
    r = bc("POST", f"companies({company})/customers", json={"displayName": "Test customer", **body})
    assert r.status_code == 201, r.text
    return r.json()


# -- service, routing, companies ------------------------------------------------------------------------


def test_service_document_metadata_and_unknown_routes(bc, companion, info, seeded_company):
    doc = bc("GET", "").json()
    assert doc["@odata.context"] == f"{info['bc_url']}/$metadata"
    assert {"companies", "customers", "salesInvoices"} <= {v["name"] for v in doc["value"]}
    for client in (bc, companion):
        r = client("GET", "$metadata")
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/xml")
        assert b"EntityContainer" in r.content
    assert b"crmIntegrationRecords" in companion("GET", "$metadata").content
    url = f"{info['bc_url']}/companies({seeded_company})/widgets"
    err = assert_error(bc("GET", url), 404, "BadRequest_NotFound")
    assert f"'{url}'" in err["message"]
    wrong_tenant = info["bc_url"].replace(info["tenant_id"], str(uuid.uuid4()))
    assert_error(bc("GET", f"{wrong_tenant}/companies"), 404, "BadRequest_NotFound", "tenant")
    wrong_env = info["bc_url"].replace(f"/{info['environment']}/", "/Production/")
    assert_error(bc("GET", f"{wrong_env}/companies"), 404, "BadRequest_NotFound", "environment")


def test_companies_read_only_and_scoping(bc, seeded_company, company):
    companies = bc("GET", "companies").json()
    assert {seeded_company, company} <= {c["id"] for c in companies["value"]}
    one = bc("GET", f"companies({seeded_company})").json()
    assert one["id"] == seeded_company and one["@odata.context"].endswith("$metadata#companies/$entity")
    assert_error(
        bc("POST", "companies", json={"name": "x"}), 405, "BadRequest_MethodNotAllowed", "'POST' requests"
    )
    assert_error(bc("GET", f"companies({uuid.uuid4()})/customers"), 404, "Internal_CompanyNotFound")

    mine = new_customer(bc, company, displayName="Scoped Ltd")
    theirs = bc("GET", f"companies({seeded_company})/customers", params={"$filter": f"id eq {mine['id']}"})
    assert theirs.json()["value"] == []
    assert_error(
        bc("GET", f"companies({seeded_company})/customers({mine['id']})"), 404, "Internal_RecordNotFound"
    )
    by_query = bc("GET", "customers", params={"company": company, "$filter": "displayName eq 'Scoped Ltd'"})
    assert [c["id"] for c in by_query.json()["value"]] == [mine["id"]]
    assert_error(bc("GET", "customers"), 400, "BadRequest_NotFound", "company")


# -- paging ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def filled_company(sandbox, company) -> str:
    """The scratch company with 25 rows in every entity set (stored directly: GET-only sets included)."""
    for es in _all_scoped_sets():
        rows = [{es.key: str(uuid.uuid4())} for _ in range(25)]
        sandbox.ctx.store.bulk_insert(es, rows, company=company)
    return company


def _all_scoped_sets() -> list[schema.EntitySet]:
    return [es for es in schema.all_entity_sets() if es.service != "dataverse" and es.company_scoped]


@pytest.mark.parametrize("which", ["seeded", "filled"])
@pytest.mark.parametrize("es", _all_scoped_sets(), ids=lambda es: f"{es.service}.{es.name}")
def test_every_entity_set_reads_completely_through_paging(request, sandbox, bc, companion, es, which):
    company_id = request.getfixturevalue(f"{which}_company")
    # customerFinancialDetails is a view of the Customer table, computed when read (bc_pages.py)
    source = schema.BC["customers"] if bc_pages.touches_financial_details(es) else es
    expected = {r["id"] for r in sandbox.ctx.store.query(source, company=company_id)}
    page = max(7, len(expected) // 20 + 1)
    rows = (bc if es.service == "bc" else companion).all_pages(f"companies({company_id})/{es.name}", page)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicates across pages"
    assert set(ids) == expected
    assert which == "seeded" or len(ids) >= 25
    assert all(r["@odata.etag"].startswith('W/"') for r in rows)


def test_paging_by_key_by_orderby_and_with_top(bc, company):
    for i in range(9):
        new_customer(bc, company, displayName=f"Pager {i}", city=f"City {i % 3}")
    path = f"companies({company})/customers"
    by_key = bc.all_pages(path + "?$filter=startswith(displayName,'Pager')", 4)
    assert [r["id"] for r in by_key] == sorted(r["id"] for r in by_key) and len(by_key) == 9
    first = bc(
        "GET",
        path,
        params={"$filter": "startswith(displayName,'Pager')"},
        headers={"Prefer": "odata.maxpagesize=4"},
    )
    assert f"$skiptoken={first.json()['value'][-1]['id']}" in first.json()["@odata.nextLink"]
    ordered = bc.all_pages(path + "?$filter=startswith(displayName,'Pager')&$orderby=displayName desc", 4)
    assert [r["displayName"] for r in ordered] == [f"Pager {i}" for i in range(8, -1, -1)]
    top = bc(
        "GET",
        path,
        params={"$orderby": "displayName", "$top": "3", "$filter": "startswith(displayName,'Pager')"},
        headers={"Prefer": "odata.maxpagesize=5"},
    ).json()
    assert len(top["value"]) == 3 and "@odata.nextLink" not in top  # GH-AL-6858
    more = bc.all_pages(path + "?$filter=startswith(displayName,'Pager')&$top=7&$skip=1", 3)
    assert len(more) == 7
    assert_error(bc("GET", path, params={"$skiptoken": "junk"}), 400, "BadRequest", "$skiptoken")
    for bad in ("20001", "0", "abc"):
        r = bc("GET", path, headers={"Prefer": f"odata.maxpagesize={bad}"})
        assert_error(r, 400, "BadRequest", "maxpagesize")


# -- query options --------------------------------------------------------------------------------------


def test_filter_select_orderby_top_count_expand(bc, company):
    eur = bc("POST", f"companies({company})/currencies", json={"code": "EUR", "displayName": "Euro"}).json()
    for name, city in (("Query Alpha", "Oslo"), ("Query Beta", "Rome"), ("Query Gamma", "Oslo")):
        new_customer(bc, company, displayName=name, city=city, currencyId=eur["id"])
    path = f"companies({company})/customers"
    r = bc(
        "GET",
        path,
        params={
            "$filter": "city eq 'Oslo' and startswith(displayName,'Query')",
            "$select": "displayName,city",
            "$orderby": "displayName desc",
            "$count": "true",
        },
    )
    body = r.json()
    assert body["@odata.count"] == 2
    assert [c["displayName"] for c in body["value"]] == ["Query Gamma", "Query Alpha"]
    assert set(body["value"][0]) == {"@odata.etag", "displayName", "city"}
    assert body["@odata.context"].endswith(f"$metadata#companies({company})/customers(displayName,city)")
    top = bc(
        "GET",
        path,
        params={"$filter": "startswith(displayName,'Query')", "$top": "1", "$orderby": "displayName"},
    )
    assert [c["displayName"] for c in top.json()["value"]] == ["Query Alpha"]
    count = bc("GET", f"{path}/$count", params={"$filter": "city eq 'Oslo'"})
    assert count.headers["Content-Type"].startswith("text/plain") and count.text == "2"
    expanded = bc(
        "GET", path, params={"$filter": "displayName eq 'Query Beta'", "$expand": "currency($select=code)"}
    ).json()["value"][0]
    assert expanded["currency"]["code"] == "EUR" and set(expanded["currency"]) == {"@odata.etag", "code"}
    assert expanded["currencyCode"] == "EUR"
    assert_error(bc("GET", path, params={"$filter": "nosuch eq 1"}), 400, "BadRequest")


def test_injection_shaped_filter_literal_is_data(bc, company, seeded_company):
    new_customer(bc, company, displayName="Injection target")
    path = f"companies({company})/customers"
    before = bc("GET", f"{path}/$count").text
    r = bc("GET", path, params={"$filter": "displayName eq 'x'' OR ''1''=''1'"})
    assert r.status_code == 200 and r.json()["value"] == []
    r = bc("GET", path, params={"$filter": "displayName eq 'x''; DROP TABLE \"bc__customers\"; --'"})
    assert r.status_code == 200 and r.json()["value"] == []
    assert bc("GET", f"{path}/$count").text == before
    assert bc("GET", f"companies({seeded_company})/customers/$count").status_code == 200


def test_not_implemented_answers_501(bc, company):
    r = bc("GET", f"companies({company})/customers", params={"$apply": "groupby((city))"})
    assert_error(r, 501, "BadRequest_NotImplemented", "$apply")
    inv = bc("POST", f"companies({company})/salesInvoices", json={}).json()
    r = bc("POST", f"companies({company})/salesInvoices({inv['id']})/Microsoft.NAV.post")
    assert_error(r, 501, "BadRequest_NotImplemented", "Microsoft.NAV.post")
    r = bc(
        "POST", "$batch", data="--batch_1--", headers={"Content-Type": "multipart/mixed; boundary=batch_1"}
    )
    assert_error(r, 501, "BadRequest_NotImplemented", "Multipart")


# -- writes ---------------------------------------------------------------------------------------------


def test_create_update_delete_round_trip_with_etags(bc, company, info):
    r = bc("POST", f"companies({company})/customers", json={"displayName": "Round Trip", "blocked": "Ship"})
    assert r.status_code == 201
    created = r.json()
    cid = created["id"]
    assert r.headers["ETag"] == created["@odata.etag"]
    assert r.headers["Location"] == f"{info['bc_url']}/companies({company})/customers({cid})"
    assert created["number"] and created["currencyId"] == BLANK and created["currencyCode"] == "USD"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", created["lastModifiedDateTime"])
    inner = base64.b64decode(created["@odata.etag"][3:-1]).decode()
    assert re.fullmatch(r"'44;[A-Za-z0-9+/=]{44}1;00;'", inner)

    url = f"companies({company})/customers({cid})"
    assert bc("GET", url).json()["@odata.etag"] == created["@odata.etag"]
    assert_error(bc("PATCH", url, json={"city": "Oslo"}), 400, "BadRequest_InvalidToken")
    r = bc("PATCH", url, json={"city": "Oslo"}, headers={"If-Match": created["@odata.etag"]})
    assert r.status_code == 200 and r.json()["city"] == "Oslo" and r.json()["displayName"] == "Round Trip"
    updated = r.json()
    assert updated["@odata.etag"] != created["@odata.etag"] and r.headers["ETag"] == updated["@odata.etag"]
    stale = bc("PATCH", url, json={"city": "Rome"}, headers={"If-Match": created["@odata.etag"]})
    assert_error(stale, 409, "Request_EntityChanged", "Another user has already changed the record.")
    assert bc("GET", url).json()["city"] == "Oslo"
    assert_error(bc("DELETE", url), 400, "BadRequest_InvalidToken")
    assert_error(
        bc("DELETE", url, headers={"If-Match": created["@odata.etag"]}), 409, "Request_EntityChanged"
    )
    assert bc("PATCH", url, json={"city": "Bergen"}, headers={"If-Match": "*"}).status_code == 200
    assert bc("DELETE", url, headers={"If-Match": "*"}).status_code == 204
    assert_error(bc("GET", url), 404, "Internal_RecordNotFound")


def test_supplied_id_and_duplicates(bc, company):
    my_id = str(uuid.uuid4())
    first = new_customer(bc, company, id=my_id.upper(), number="DUP-1")
    assert first["id"] == my_id
    retry = {"id": my_id, "displayName": "Again", "number": "DUP-1"}  # a create retried after a lost response
    again = bc("POST", f"companies({company})/customers", json=retry)
    assert_error(again, 409, "Internal_EntityWithSameKeyExists", f"SystemId='{my_id}'")
    same_number = bc(
        "POST", f"companies({company})/customers", json={"displayName": "Other", "number": "DUP-1"}
    )
    assert_error(same_number, 409, "Internal_EntityWithSameKeyExists", "No.='DUP-1'")
    assert new_customer(bc, company)["number"] == "DUP-2"  # the series continues from the highest No.


@pytest.mark.parametrize(
    ("body", "code", "text"),
    [
        ({"city": "Nowhere"}, "Application_DialogException", 'A "displayName" must be provided.'),
        ({"displayName": "  "}, "Application_DialogException", 'A "displayName" must be provided.'),
        ({"displayName": "x", "colour": "red"}, "BadRequest", "'colour' does not exist on type"),
        ({"displayName": "x", "balanceDue": 5}, "BadRequest_InvalidOperation", "balanceDue"),
        ({"displayName": "x", "creditLimit": "lots"}, "BadRequest", "Invalid Request Body"),
        ({"displayName": "x", "taxLiable": "yes"}, "BadRequest", "Invalid Request Body"),
        (
            {"displayName": "x", "city": "C" * 31},
            "Application_StringExceededLength",
            "The length of the string is 31, but it must be less than or equal to 30 characters. Value: CCC",
        ),
        (
            {"displayName": "x", "blocked": "Nope"},
            "Unknown",
            "'Nope' is not an option. The existing options are:",
        ),
        (
            {"displayName": "x", "currencyId": str(uuid.uuid4())},
            "Application_DialogException",
            'The "currencyId" does not match to a Currency.',
        ),
        ({"displayName": "x", "paymentTermsId": "not-a-guid"}, "BadRequest", "Invalid Request Body"),
    ],
)
def test_validation_errors(bc, company, body, code, text):
    assert_error(bc("POST", f"companies({company})/customers", json=body), 400, code, text)


def test_malformed_bodies_and_wrong_methods(bc, company):
    path = f"companies({company})/customers"
    r = bc("POST", path, data=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 400, "BadRequest", "Invalid Request Body")
    assert_error(bc("POST", path, json=[1, 2]), 400, "BadRequest")
    assert_error(bc("PATCH", path, json={}), 405, "BadRequest_MethodNotAllowed")
    opp = bc(
        "POST", f"companies({company})/opportunities", json={"description": "d", "status": "In Progress"}
    )
    assert opp.status_code == 201 and opp.json()["status"] == "In_x0020_Progress"
    r = bc("POST", f"companies({company})/salesInvoices", json={"invoiceDate": "2024-02-30"})
    assert_error(r, 400, "BadRequest", "Unable to convert value to Date")


def test_currency_code_and_id_stay_consistent(bc, company):
    gbp = bc("POST", f"companies({company})/currencies", json={"code": "GBP", "displayName": "Pound"}).json()
    by_code = new_customer(bc, company, currencyCode="GBP")
    assert by_code["currencyId"] == gbp["id"]
    by_id = new_customer(bc, company, currencyId=gbp["id"])
    assert by_id["currencyCode"] == "GBP"
    url = f"companies({company})/customers({by_id['id']})"
    assert bc("GET", f"{url}/currency").json()["code"] == "GBP"
    lcy = bc("PATCH", url, json={"currencyCode": ""}, headers={"If-Match": "*"}).json()
    assert lcy["currencyId"] == BLANK and lcy["currencyCode"] == "USD"
    r = bc("PATCH", url, json={"currencyCode": "XYZ"}, headers={"If-Match": "*"})
    assert_error(r, 400, "Application_DialogException", '"currencyCode" does not match to a Currency')


def test_sales_invoice_derived_fields_lines_and_nested_paths(bc, company):
    customer = new_customer(bc, company, displayName="Invoice Customer")
    inv = bc(
        "POST",
        f"companies({company})/salesInvoices",
        json={
            "customerId": customer["id"],
            "invoiceDate": "2024-03-01",
            "salesInvoiceLines": [{"description": "A", "quantity": 2, "unitPrice": 10.5, "sequence": 10000}],
        },
    )
    assert inv.status_code == 201, inv.text
    invoice = inv.json()
    assert invoice["customerNumber"] == customer["number"] and invoice["customerName"] == "Invoice Customer"
    assert invoice["totalAmountExcludingTax"] == 21 and invoice["status"] == "Draft"
    assert invoice["dueDate"] == "0001-01-01"
    lines_path = f"companies({company})/salesInvoices({invoice['id']})/salesInvoiceLines"
    line = bc("POST", lines_path, json={"description": "B", "quantity": 1, "unitPrice": 4, "sequence": 20000})
    assert line.status_code == 201 and line.json()["documentId"] == invoice["id"]
    assert line.json()["amountExcludingTax"] == 4
    lines = bc("GET", lines_path, params={"$orderby": "sequence desc"}).json()["value"]
    assert [ln["description"] for ln in lines] == ["B", "A"]
    assert bc("GET", f"{lines_path}({line.json()['id']})").json()["description"] == "B"
    header = bc(
        "GET",
        f"companies({company})/salesInvoices({invoice['id']})",
        params={"$expand": "salesInvoiceLines($select=description;$orderby=sequence)"},
    ).json()
    assert header["totalAmountExcludingTax"] == 25
    assert [ln["description"] for ln in header["salesInvoiceLines"]] == ["A", "B"]
    other = bc("POST", f"companies({company})/salesInvoices", json={}).json()
    stray = f"companies({company})/salesInvoices({other['id']})/salesInvoiceLines({line.json()['id']})"
    assert_error(bc("GET", stray), 404, "Internal_RecordNotFound")
    assert (
        bc(
            "DELETE", f"companies({company})/salesInvoices({invoice['id']})", headers={"If-Match": "*"}
        ).status_code
        == 204
    )
    assert (
        bc(
            "GET",
            f"companies({company})/salesInvoiceLines",
            params={"$filter": f"documentId eq {invoice['id']}"},
        ).json()["value"]
        == []
    )


# -- $batch ---------------------------------------------------------------------------------------------


def test_batch_mixed_operations_in_order(bc, company):
    target = new_customer(bc, company, displayName="Batch Patch Me")
    new_id = str(uuid.uuid4())
    requests_ = [
        {
            "id": "c",
            "method": "POST",
            "url": f"companies({company})/customers",
            "headers": {"Content-Type": "application/json"},
            "body": {"id": new_id, "displayName": "Batch New"},
        },
        {"id": "g", "method": "GET", "url": f"companies({company})/customers({new_id})?$select=displayName"},
        {
            "id": "p",
            "method": "PATCH",
            "url": f"companies({company})/customers({target['id']})",
            "headers": {"If-Match": target["@odata.etag"]},
            "body": {"city": "Batchville"},
        },
        {
            "id": "bad",
            "method": "POST",
            "url": f"companies({company})/customers",
            "body": {"city": "no name"},
        },
        {"id": "n", "method": "GET", "url": f"{bc.root}/companies({company})/customers/$count"},
    ]
    r = bc("POST", "$batch", json={"requests": requests_})
    assert r.status_code == 200, r.text
    out = r.json()["responses"]
    assert [o["id"] for o in out] == ["c", "g", "p", "bad", "n"]
    assert [o["status"] for o in out] == [201, 200, 200, 400, 200]
    assert out[1]["body"]["displayName"] == "Batch New"
    assert (
        out[2]["body"]["city"] == "Batchville" and out[2]["headers"]["etag"] == out[2]["body"]["@odata.etag"]
    )
    assert out[3]["body"]["error"]["code"] == "Application_DialogException"
    assert int(out[4]["body"]) >= 2


def test_batch_snapshot_rolls_back_everything(bc, company):
    keep_id = str(uuid.uuid4())
    ops = [
        {
            "id": "1",
            "method": "POST",
            "url": f"companies({company})/customers",
            "body": {"id": keep_id, "displayName": "Snap"},
        },
        {
            "id": "2",
            "method": "POST",
            "url": f"companies({company})/customers",
            "body": {"displayName": "x" * 101},
        },
        {"id": "3", "method": "GET", "url": f"companies({company})/customers"},
    ]
    r = bc("POST", "$batch", json={"requests": ops}, headers={"Isolation": "snapshot"})
    out = r.json()["responses"]
    assert [o["status"] for o in out] == [424, 400, 424]
    assert out[1]["body"]["error"]["code"] == "Application_StringExceededLength"
    assert out[0]["body"]["error"]["code"] == "BadRequest_BatchRolledBack"
    assert_error(bc("GET", f"companies({company})/customers({keep_id})"), 404, "Internal_RecordNotFound")
    ok = bc("POST", "$batch", json={"requests": ops[:1]}, headers={"Isolation": "snapshot"}).json()[
        "responses"
    ]
    assert (
        ok[0]["status"] == 201 and bc("GET", f"companies({company})/customers({keep_id})").status_code == 200
    )


def test_batch_limits(bc, company):
    ops = [{"id": str(i), "method": "GET", "url": "companies"} for i in range(101)]
    assert_error(bc("POST", "$batch", json={"requests": ops}), 400, "BadRequest", "100")
    assert bc("POST", "$batch", json={"requests": ops[:100]}).status_code == 200
    nested = bc(
        "POST",
        "$batch",
        json={"requests": [{"id": "1", "method": "POST", "url": "$batch", "body": {"requests": []}}]},
    )
    assert nested.json()["responses"][0]["status"] == 400
    assert_error(
        bc("POST", "$batch", data=b"[]", headers={"Content-Type": "application/json"}), 400, "BadRequest"
    )
    assert_error(bc("GET", "$batch"), 405, "BadRequest_MethodNotAllowed")


# -- companion API ---------------------------------------------------------------------------------------


def test_companion_api_contract(companion, company):
    base = f"companies({company})"
    record = {"crmId": str(uuid.uuid4()), "integrationId": str(uuid.uuid4()), "tableId": 18}
    r = companion("POST", f"{base}/crmIntegrationRecords", json=record)
    assert r.status_code == 201, r.text
    rec = r.json()
    got = companion("GET", f"{base}/crmIntegrationRecords", params={"$filter": f"crmId eq {record['crmId']}"})
    assert [x["id"] for x in got.json()["value"]] == [rec["id"]]
    assert (
        companion(
            "DELETE", f"{base}/crmIntegrationRecords({rec['id']})", headers={"If-Match": rec["@odata.etag"]}
        ).status_code
        == 204
    )
    assert_error(
        companion("POST", f"{base}/integrationTableMappings", json={"name": "X"}),
        405,
        "BadRequest_MethodNotAllowed",
        "'POST' requests for 'integrationTableMappings'",
    )
    job = companion("POST", f"{base}/integrationSynchJobs", json={"message": "run", "inserted": 3})
    assert job.status_code == 201
    r = companion(
        "PATCH",
        f"{base}/integrationSynchJobs({job.json()['id']})",
        json={"failed": 1},
        headers={"If-Match": "*"},
    )
    assert_error(r, 405, "BadRequest_MethodNotAllowed")
    group = companion("POST", f"{base}/customerPriceGroups", json={"code": "RETAIL", "description": "Retail"})
    assert group.status_code == 201
    batch = companion(
        "POST",
        "$batch",
        json={
            "requests": [
                {"id": "1", "method": "GET", "url": f"{base}/customerPriceGroups?$filter=code eq 'RETAIL'"}
            ]
        },
    )
    assert [g["code"] for g in batch.json()["responses"][0]["body"]["value"]] == ["RETAIL"]


def test_error_bodies_never_leak_stack_traces(bc, company):
    r = bc("GET", f"companies({company})/customers(not-a-guid)")
    assert r.status_code == 400 and "Traceback" not in r.text
    assert json.loads(r.text)["error"]["message"].endswith(".")


def test_unexpected_failure_is_a_bc_500_body(sandbox, info):
    """Any exception inside the service becomes BC's error body with a correlation id, never a trace."""

    class BrokenStore:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("disk on fire")

    service = BCService(sandbox.ctx)
    service.store = BrokenStore()
    root = f"{info['bc_url'].rsplit('/v2.0', 1)[0]}/"
    resp = service.handle(Req("GET", "v2.0/companies", [], Headers(), b"", root))
    err = json.loads(resp.body)["error"]
    assert resp.status == 500 and err["code"] == "Internal_ServerError" and CID.search(err["message"])
    assert "disk on fire" not in err["message"]
