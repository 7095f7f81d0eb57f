"""Dataverse Web API v9.2 of the sandbox, over HTTPS with a real token (docs/sandbox.md, Dataverse API)."""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import quote, unquote

import pytest
import requests
from helpers import PinnedSession, auth

from d365kit.sandbox.schema import DATAVERSE

CRM = "Microsoft.Dynamics.CRM."
FORMATTED = "@OData.Community.Display.V1.FormattedValue"


class DV:
    """A tiny Dataverse client for the tests: base URL, pinned TLS, bearer token, JSON helpers."""

    def __init__(self, sandbox):
        self.info = sandbox.info()
        self.store = sandbox.ctx.store
        self.base = self.info["dataverse_api_url"] + "/"
        self.http = PinnedSession(self.info["ca_bundle"])
        self.http.headers.update(
            {
                **auth(self.info, self.info["dataverse_scope"]),
                "OData-Version": "4.0",
                "Accept": "application/json",
            }
        )

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else self.base + path

    def get(self, path: str, params=None, **headers) -> requests.Response:
        return self.http.get(self.url(path), params=params, headers=headers, timeout=30)

    def send(self, method: str, path: str, body=None, params=None, **headers) -> requests.Response:
        data = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
        headers.setdefault("Content-Type", "application/json")
        return self.http.request(
            method, self.url(path), data=data, params=params, headers=headers, timeout=30
        )

    def create(self, entity_set: str, body: dict) -> str:
        r = self.send("POST", entity_set, body)
        assert r.status_code == 204, r.text
        return re.search(r"\(([0-9a-f-]{36})\)$", r.headers["OData-EntityId"]).group(1)

    def exists(self, entity_set: str, key: str) -> bool:
        return self.store.get(DATAVERSE[entity_set], key) is not None


@pytest.fixture(scope="module")
def dv(sandbox):
    client = DV(sandbox)
    yield client
    client.http.close()  # an idle keep-alive connection would hold up the sandbox's shutdown


def tag() -> str:
    return uuid.uuid4().hex[:8]


def error_of(r: requests.Response) -> dict:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"code", "message"}, body
    return body["error"]


# -- reading ----------------------------------------------------------------------------------------


def test_every_entity_set_reads_completely_through_small_pages(dv):
    for i in range(3):
        dv.create("accounts", {"name": f"paging {tag()} {i}"})
    for name, es in DATAVERSE.items():
        expected = {r[es.key] for r in dv.store.query(es)}
        page_size = max(2, len(expected) // 12 + 1)
        seen: list[str] = []
        url, params, pages = name, {"$select": es.key}, 0
        while url:
            r = dv.get(url, params, Prefer=f"odata.maxpagesize={page_size}")
            assert r.status_code == 200, r.text
            assert r.headers["Preference-Applied"] == f"odata.maxpagesize={page_size}"
            body = r.json()
            assert len(body["value"]) <= page_size
            seen += [row[es.key] for row in body["value"]]
            url, params, pages = body.get("@odata.nextLink"), None, pages + 1
            if url:
                token = unquote(url.split("$skiptoken=")[1])
                assert token.startswith('<cookie pagenumber="') and 'istracking="False"' in token
        assert len(seen) == len(set(seen)), f"{name}: duplicates across pages"
        assert set(seen) == expected, name
        assert pages >= len(expected) // page_size


def test_paging_with_orderby_keeps_the_order(dv):
    prefix = f"ord-{tag()}"
    for i in range(7):
        dv.create("accounts", {"name": f"{prefix}-{i}"})
    names, url = [], "accounts"
    params = {"$select": "name", "$filter": f"startswith(name,'{prefix}')", "$orderby": "name desc"}
    while url:
        body = dv.get(url, params, Prefer="odata.maxpagesize=3").json()
        names += [row["name"] for row in body["value"]]
        url, params = body.get("@odata.nextLink"), None
    assert names == [f"{prefix}-{i}" for i in range(6, -1, -1)]


def test_page_size_above_5000_and_tampered_skiptoken_are_refused(dv):
    r = dv.get("accounts", {"$select": "name"}, Prefer="odata.maxpagesize=5001")
    assert r.status_code == 400 and "5000" in error_of(r)["message"]
    r = dv.get("accounts", {"$select": "name", "$skiptoken": '<cookie pagenumber="2" pagingcookie="junk" />'})
    assert r.status_code == 400


def test_top_caps_rows_and_is_ignored_with_maxpagesize(dv):
    for i in range(3):
        dv.create("accounts", {"name": f"top {tag()} {i}"})
    assert len(dv.get("accounts", {"$select": "name", "$top": "2"}).json()["value"]) == 2
    body = dv.get("accounts", {"$select": "name", "$top": "1"}, Prefer="odata.maxpagesize=2").json()
    assert len(body["value"]) == 2 and "@odata.nextLink" in body  # real Dataverse ignores $top here


def test_filter_select_orderby_count_and_wire_shape(dv):
    prefix = f"flt-{tag()}"
    ids = [
        dv.create("accounts", {"name": f"{prefix}-{i}", "creditlimit": 100 * i, "telephone1": "555"})
        for i in range(3)
    ]
    r = dv.get(
        "accounts",
        {
            "$select": "name,telephone1",
            "$filter": f"startswith(name,'{prefix}') and creditlimit ge 100",
            "$orderby": "creditlimit desc",
            "$count": "true",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"] == f"{dv.base}$metadata#accounts(name,telephone1)"
    assert body["@odata.count"] == 2
    assert [row["accountid"] for row in body["value"]] == [ids[2], ids[1]]
    row = body["value"][0]
    assert list(row) == ["@odata.etag", "name", "telephone1", "accountid"]
    assert re.fullmatch(r'W/"\d+"', row["@odata.etag"])
    full = dv.get(f"accounts({ids[2].upper()})").json()
    assert full["@odata.context"] == f"{dv.base}$metadata#accounts/$entity"
    assert full["accountid"] == ids[2] and full["creditlimit"] == 200
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", full["modifiedon"])
    assert full["versionnumber"] == int(full["@odata.etag"][3:-1])
    assert dv.get("accounts/$count", {"$filter": f"startswith(name,'{prefix}')"}).text == "3"
    assert dv.get(f"accounts(accountid={ids[0]})", {"$select": "name"}).json()["name"] == f"{prefix}-0"


def test_bad_property_and_unknown_segment_errors(dv):
    r = dv.get("accounts", {"$select": "Name"})
    assert r.status_code == 400 and error_of(r)["code"] == "0x0" and "'Name'" in error_of(r)["message"]
    r = dv.get("Account")
    assert r.status_code == 404
    assert error_of(r) == {"code": "0x8006088a", "message": "Resource not found for the segment 'Account'."}
    r = dv.get("accounts(accountnumber='X1')")
    assert r.status_code == 400 and "key in the request URI is not valid" in error_of(r)["message"]
    r = dv.get(f"accounts({uuid.uuid4()})")
    assert r.status_code == 404 and error_of(r)["code"] == "0x80040217"


def test_skip_is_refused_and_unimplemented_things_answer_501(dv):
    assert dv.get("accounts", {"$skip": "5"}).status_code == 400
    for path, params in [
        ("accounts", {"$apply": "groupby((name))"}),
        ("accounts/Microsoft.Dynamics.CRM.NoSuchFunction()", None),
        ("RetrieveTotalRecordCount(EntityNames=['account'])", None),
    ]:
        r = dv.get(path, params)
        assert r.status_code == 501, (path, r.text)
        assert "not implemented" in error_of(r)["message"]
    key = dv.create("accounts", {"name": f"ref {tag()}"})
    r = dv.send("DELETE", f"accounts({key})/primarycontactid/$ref")
    assert r.status_code == 501 and "$ref" in error_of(r)["message"]
    r = dv.send("POST", "$batch", {"requests": []})
    assert r.status_code == 501


def test_expand_lookup_and_collection_with_nested_select(dv):
    account = dv.create("accounts", {"name": f"exp {tag()}"})
    contact = dv.create(
        "contacts",
        {
            "firstname": "Ada",
            "lastname": "Lovelace",
            "parentcustomerid_account@odata.bind": f"/accounts({account})",
        },
    )
    body = dv.get(
        f"contacts({contact})", {"$select": "fullname", "$expand": "parentcustomerid_account($select=name)"}
    ).json()
    assert body["fullname"] == "Ada Lovelace"
    assert body["parentcustomerid_account"]["accountid"] == account
    assert set(body["parentcustomerid_account"]) == {"@odata.etag", "name", "accountid"}

    invoice = dv.create(
        "invoices", {"name": f"inv {tag()}", "customerid_account@odata.bind": f"/accounts({account})"}
    )
    for i in range(2):
        dv.create(
            "invoicedetails",
            {
                "invoicedetailname": f"line {i}",
                "quantity": i + 1,
                "invoiceid@odata.bind": f"/invoices({invoice})",
            },
        )
    body = dv.get(
        "invoices",
        {
            "$select": "name,invoicenumber",
            "$filter": f"invoiceid eq {invoice}",
            "$expand": "invoice_details($select=invoicedetailname;$orderby=invoicedetailname desc)",
        },
    ).json()
    (inv,) = body["value"]
    assert inv["invoicenumber"]  # auto-numbered
    assert [d["invoicedetailname"] for d in inv["invoice_details"]] == ["line 1", "line 0"]
    assert (
        dv.get(f"invoices({invoice})", {"$select": "_accountid_value"}).json()["_accountid_value"] == account
    )


def test_formatted_values_and_lookup_annotations(dv):
    currency = dv.create(
        "transactioncurrencies",
        {
            "currencyname": f"Euro {tag()}",
            "isocurrencycode": "EUR",
            "currencysymbol": "€",
            "currencyprecision": 2,
            "exchangerate": 0.9,
        },
    )
    account = dv.create(
        "accounts",
        {
            "name": f"fmt {tag()}",
            "creditlimit": 1234,
            "paymenttermscode": 2,
            "creditonhold": True,
            "transactioncurrencyid@odata.bind": f"/transactioncurrencies({currency})",
        },
    )
    prefer = (
        'odata.include-annotations="OData.Community.Display.V1.FormattedValue,'
        'Microsoft.Dynamics.CRM.lookuplogicalname,Microsoft.Dynamics.CRM.associatednavigationproperty"'
    )
    r = dv.get(
        f"accounts({account})",
        {"$select": "creditlimit,paymenttermscode,creditonhold,_transactioncurrencyid_value"},
        Prefer=prefer,
    )
    assert r.headers["Preference-Applied"] == prefer
    body = r.json()
    assert body[f"creditlimit{FORMATTED}"] == "€1,234.00"
    assert body[f"paymenttermscode{FORMATTED}"] == "2% 10, Net 30"
    assert body[f"creditonhold{FORMATTED}"] == "Yes"
    assert body[f"_transactioncurrencyid_value{FORMATTED}"].startswith("Euro ")
    assert body[f"_transactioncurrencyid_value@{CRM}lookuplogicalname"] == "transactioncurrency"
    assert body[f"_transactioncurrencyid_value@{CRM}associatednavigationproperty"] == "transactioncurrencyid"
    keys = list(body)
    assert keys.index(f"creditlimit{FORMATTED}") < keys.index("creditlimit")
    plain = dv.get(f"accounts({account})", {"$select": "creditlimit"}).json()
    assert not any("@OData.Community" in k for k in plain)


# -- writing ----------------------------------------------------------------------------------------


def test_create_update_upsert_delete_round_trip_with_etags(dv):
    key = str(uuid.uuid4())
    r = dv.send("POST", "accounts", {"accountid": key, "name": "Contoso"}, Prefer="return=representation")
    assert r.status_code == 201 and r.json()["accountid"] == key and r.json()["name"] == "Contoso"
    first = r.headers["ETag"]
    assert (
        dv.send("POST", "accounts", {"accountid": key, "name": "again"}).status_code == 412
    )  # idempotent create

    assert dv.get(f"accounts({key})", **{"If-None-Match": first}).status_code == 304
    r = dv.send("PATCH", f"accounts({key})", {"telephone1": "555-0100"}, **{"If-Match": first})
    assert r.status_code == 204 and r.headers["OData-EntityId"].endswith(f"accounts({key})")
    row = dv.get(f"accounts({key})").json()
    assert row["telephone1"] == "555-0100" and row["@odata.etag"] != first

    r = dv.send("PATCH", f"accounts({key})", {"telephone1": "stale"}, **{"If-Match": first})
    assert r.status_code == 412
    assert (
        error_of(r)["message"]
        == "The version of the existing record doesn't match the RowVersion property provided."
    )
    r = dv.send("PATCH", f"accounts({key})", {"name": "x"}, **{"If-None-Match": "*"})
    assert (
        r.status_code == 412 and error_of(r)["message"] == "A record with matching key values already exists."
    )
    assert dv.send("DELETE", f"accounts({key})", **{"If-Match": first}).status_code == 412

    fresh = str(uuid.uuid4())
    assert dv.send("PATCH", f"accounts({fresh})", {"name": "x"}, **{"If-Match": "*"}).status_code == 404
    assert not dv.exists("accounts", fresh)
    r = dv.send("PATCH", f"accounts({fresh})", {"name": "Upserted"}, Prefer="return=representation")
    assert r.status_code == 201 and r.json()["name"] == "Upserted"
    r = dv.send("PATCH", f"accounts({fresh})", {"name": "Updated"}, Prefer="return=representation")
    assert r.status_code == 200 and r.json()["name"] == "Updated"
    assert dv.send("PATCH", f"accounts({fresh})", {"name": "Again"}).status_code == 204

    assert dv.send("DELETE", f"accounts({key})", **{"If-Match": row["@odata.etag"]}).status_code == 204
    assert dv.send("DELETE", f"accounts({key})").status_code == 404
    assert not dv.exists("accounts", key)


def test_write_validation_errors(dv):
    key = dv.create("accounts", {"name": f"val {tag()}"})
    cases = [
        (b"{not json", 400, "0x0"),
        ({"nosuchcolumn": 1}, 400, "0x0"),
        ({"name": "x" * 161}, 400, "0x80044331"),
        ({"creditlimit": "lots"}, 400, "0x0"),
        ({"paymenttermscode": 99}, 400, "0x80044331"),
        ({"_primarycontactid_value": str(uuid.uuid4())}, 400, None),
        ({"versionnumber": 1}, 400, "0x0"),
    ]
    for body, status, code in cases:
        r = dv.send("PATCH", f"accounts({key})", body)
        assert r.status_code == status, (body, r.text)
        err = error_of(r)
        if code:
            assert err["code"] == code, (body, err)
    r = dv.send("PATCH", f"accounts({key})", {"name": "x" * 161})
    assert error_of(r)["message"].endswith(
        "The length of the 'name' attribute of the 'account' entity exceeded the maximum allowed length of '160'."
    )
    r = dv.send(
        "POST", "accounts", {"name": "x", "primarycontactid@odata.bind": f"/contacts({uuid.uuid4()})"}
    )
    assert r.status_code == 404 and error_of(r)["code"] == "0x80040217"


def test_polymorphic_customer_lookup_bind_and_read(dv):
    account = dv.create("accounts", {"name": f"cust {tag()}"})
    contact = dv.create("contacts", {"lastname": f"Cust {tag()}"})
    opp = dv.create(
        "opportunities", {"name": "Deal", "customerid_account@odata.bind": f"/accounts({account})"}
    )
    prefer = 'odata.include-annotations="*"'
    body = dv.get(f"opportunities({opp})", {"$select": "_customerid_value"}, Prefer=prefer).json()
    assert body["_customerid_value"] == account
    assert body[f"_customerid_value@{CRM}lookuplogicalname"] == "account"
    assert body[f"_customerid_value@{CRM}associatednavigationproperty"] == "customerid_account"

    r = dv.send(
        "PATCH", f"opportunities({opp})", {"customerid_contact@odata.bind": f"{dv.base}contacts({contact})"}
    )
    assert r.status_code == 204, r.text
    body = dv.get(f"opportunities({opp})", {"$select": "_customerid_value"}, Prefer=prefer).json()
    assert body["_customerid_value"] == contact
    assert body[f"_customerid_value@{CRM}lookuplogicalname"] == "contact"
    filtered = dv.get(
        "opportunities", {"$select": "name", "$filter": f"_customerid_value eq {contact}"}
    ).json()
    assert [row["opportunityid"] for row in filtered["value"]] == [opp]

    assert (
        dv.send("PATCH", f"opportunities({opp})", {"customerid_contact@odata.bind": None}).status_code == 204
    )
    assert (
        dv.get(f"opportunities({opp})", {"$select": "_customerid_value"}).json()["_customerid_value"] is None
    )


# -- bulk and batch ---------------------------------------------------------------------------------


def test_create_update_upsert_multiple(dv):
    t = f"{CRM}account"
    r = dv.send(
        "POST",
        f"accounts/{CRM}CreateMultiple",
        {"Targets": [{"@odata.type": t, "name": f"bulk {i}"} for i in range(3)]},
    )
    assert r.status_code == 200, r.text
    ids = r.json()["Ids"]
    assert len(ids) == 3 and all(dv.exists("accounts", i) for i in ids)

    r = dv.send(
        "POST",
        f"accounts/{CRM}UpdateMultiple",
        {"Targets": [{"@odata.type": t, "accountid": i, "telephone1": "777"} for i in ids]},
    )
    assert r.status_code == 204, r.text
    assert {dv.store.get(DATAVERSE["accounts"], i)["telephone1"] for i in ids} == {"777"}

    new = str(uuid.uuid4())
    r = dv.send(
        "POST",
        f"accounts/{CRM}UpsertMultiple",
        {
            "Targets": [
                {"@odata.type": t, "accountid": ids[0], "name": "bulk upd"},
                {"@odata.type": t, "accountid": new, "name": "bulk new"},
            ]
        },
    )
    assert r.status_code == 204, r.text
    assert dv.store.get(DATAVERSE["accounts"], ids[0])["name"] == "bulk upd" and dv.exists("accounts", new)

    before = dv.store.count(DATAVERSE["accounts"])
    r = dv.send(
        "POST",
        f"accounts/{CRM}CreateMultiple",
        {"Targets": [{"@odata.type": t, "name": "ok"}, {"@odata.type": t, "name": "x" * 500}]},
    )
    assert r.status_code == 400 and dv.store.count(DATAVERSE["accounts"]) == before  # all or nothing
    r = dv.send("POST", f"accounts/{CRM}CreateMultiple", {"Targets": [{"name": "no type"}]})
    assert r.status_code == 400 and "@odata.type" in error_of(r)["message"]
    r = dv.send("POST", f"accounts/{CRM}UpdateMultiple", {"Targets": [{"@odata.type": t, "name": "no key"}]})
    assert r.status_code == 400


def _batch(dv: DV, parts: list[str], **headers) -> requests.Response:
    body = "".join(f"--batch_t\r\n{p}\r\n" for p in parts) + "--batch_t--\r\n"
    return dv.send(
        "POST", "$batch", body.encode(), **{"Content-Type": "multipart/mixed; boundary=batch_t", **headers}
    )


def _request(method: str, url: str, body: dict | None = None, content_id: str | None = None) -> str:
    head = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
    if content_id:
        head += f"Content-ID: {content_id}\r\n"
    inner = f"{method} {url} HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
    return head + "\r\n" + inner + (json.dumps(body) if body is not None else "")


def _changeset(name: str, requests_: list[str]) -> str:
    inner = "".join(f"--{name}\r\n{r}\r\n" for r in requests_) + f"--{name}--"
    return f"Content-Type: multipart/mixed; boundary={name}\r\n\r\n{inner}"


def _statuses(r: requests.Response) -> list[int]:
    return [int(s) for s in re.findall(r"HTTP/1\.1 (\d{3})", r.text)]


def test_batch_changeset_with_content_id_reference(dv):
    name = f"batch {tag()}"
    r = _batch(
        dv,
        [
            _changeset(
                "changeset_a",
                [
                    _request("POST", f"{dv.base}accounts", {"name": name}, "1"),
                    _request("PATCH", "$1", {"telephone1": "123"}, "2"),
                    _request(
                        "POST",
                        "/api/data/v9.2/contacts",
                        {"lastname": "Batch", "parentcustomerid_account@odata.bind": "$1"},
                        "3",
                    ),
                ],
            ),
            _request("GET", "accounts?$select=name,telephone1&$filter=" + quote(f"name eq '{name}'")),
        ],
    )
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    assert "changesetresponse_" in r.text
    assert _statuses(r) == [204, 204, 204, 200]
    rows = json.loads(r.text[r.text.rindex('{"@odata.context"') :].split("\r\n")[0])["value"]
    assert len(rows) == 1 and rows[0]["telephone1"] == "123"


def test_batch_changeset_rolls_back_and_stops_at_first_failure(dv):
    name = f"rollback {tag()}"
    es = DATAVERSE["accounts"]
    r = _batch(
        dv,
        [
            _changeset(
                "changeset_b",
                [
                    _request("POST", "accounts", {"name": name}, "1"),
                    _request("POST", "accounts", {"name": "x" * 500}, "2"),
                ],
            ),
            _request("POST", "accounts", {"name": name + " after"}),
        ],
    )
    assert r.status_code == 400
    assert _statuses(r) == [400] and "0x80044331" in r.text
    assert dv.store.count(es, where='"name" LIKE ?', params=[name + "%"]) == 0

    r = _batch(
        dv,
        [
            _request("POST", "accounts", {"nosuch": 1}),
            _request("POST", "accounts", {"name": name + " continued"}),
        ],
        Prefer="odata.continue-on-error",
    )
    assert r.status_code == 200 and r.headers["Preference-Applied"] == "odata.continue-on-error"
    assert _statuses(r) == [400, 204]
    assert dv.store.count(es, where='"name" = ?', params=[name + " continued"]) == 1

    r = _batch(dv, [_changeset("changeset_c", [_request("PATCH", "$9", {"name": "x"})])])
    assert r.status_code == 400 and "Content-ID Reference: '$9' does not exist" in r.text
    r = _batch(dv, [_changeset("changeset_d", [_request("GET", "accounts")])])
    assert r.status_code == 400


# -- change tracking --------------------------------------------------------------------------------


def test_change_tracking_returns_created_updated_and_deleted_rows(dv):
    keep = dv.create("accounts", {"name": f"ct keep {tag()}"})
    gone = dv.create("accounts", {"name": f"ct gone {tag()}"})
    url, params, delta = "accounts", {"$select": "name"}, None
    ids: set[str] = set()
    while url:
        r = dv.get(url, params, Prefer="odata.track-changes,odata.maxpagesize=5000")
        assert r.status_code == 200, r.text
        assert "odata.track-changes" in r.headers["Preference-Applied"]
        body = r.json()
        ids |= {row["accountid"] for row in body["value"]}
        url, params = body.get("@odata.nextLink"), None
        delta = body.get("@odata.deltaLink", delta)
    assert (
        {keep, gone} <= ids
        and "$deltatoken=" in delta
        and delta.startswith(f"{dv.base}accounts?$select=name")
    )
    token = unquote(delta.split("$deltatoken=")[1])
    assert re.fullmatch(r"\d+!\d\d/\d\d/\d{4} \d\d:\d\d:\d\d", token)

    new = dv.create("accounts", {"name": f"ct new {tag()}"})
    assert dv.send("PATCH", f"accounts({keep})", {"name": "ct kept"}).status_code == 204
    assert dv.send("DELETE", f"accounts({gone})").status_code == 204

    body = dv.get(delta, Prefer="odata.track-changes").json()
    assert body["@odata.context"] == f"{dv.base}$metadata#accounts(name)/$delta"
    changed = {row["accountid"]: row for row in body["value"] if "accountid" in row}
    assert set(changed) >= {new, keep} and changed[keep]["name"] == "ct kept"
    deleted = [row for row in body["value"] if row.get("reason") == "deleted"]
    assert {
        "@odata.context": f"{dv.base}$metadata#accounts/$deletedEntity",
        "id": gone,
        "reason": "deleted",
    } in deleted
    assert gone not in changed

    again = dv.get(body["@odata.deltaLink"], Prefer="odata.track-changes").json()
    assert again["value"] == []

    r = dv.get("accounts", {"$filter": "name eq 'x'"}, Prefer="odata.track-changes")
    assert r.status_code == 400
    assert (
        error_of(r)["message"]
        == 'The "$filter" query parameter isn\'t supported when Change Tracking is enabled.'
    )
    assert dv.get("accounts", {"$deltatoken": "garbage"}).status_code == 400


# -- odds and ends ----------------------------------------------------------------------------------


def test_injection_shaped_filter_literal_leaves_data_intact(dv):
    es = DATAVERSE["accounts"]
    before = dv.store.count(es)
    for literal in ["x'' or 1 eq 1 or name eq ''", '\'; DROP TABLE "dataverse__accounts"; --']:
        r = dv.get("accounts", {"$filter": f"name eq '{literal.replace(chr(39), chr(39) * 2)}'"})
        assert r.status_code == 200 and r.json()["value"] == [], r.text
    assert dv.store.count(es) == before


def test_service_document_metadata_whoami_and_entity_definitions(dv):
    doc = dv.get("").json()
    assert {"name": "accounts", "kind": "EntitySet", "url": "accounts"} in doc["value"]
    r = dv.get("$metadata")
    assert r.status_code == 200 and "<edmx:Edmx" in r.text
    who = dv.get("WhoAmI").json()
    assert set(who) >= {"BusinessUnitId", "UserId", "OrganizationId"}
    body = dv.get(
        "EntityDefinitions", {"$select": "LogicalName,EntitySetName", "$filter": "LogicalName eq 'account'"}
    ).json()
    assert [(d["LogicalName"], d["EntitySetName"]) for d in body["value"]] == [("account", "accounts")]
    single = dv.get("EntityDefinitions(LogicalName='contact')", {"$select": "PrimaryIdAttribute"}).json()
    assert single["PrimaryIdAttribute"] == "contactid"
    r = dv.get("EntityDefinitions", {"$filter": "tolower(LogicalName) eq 'a'"})
    assert r.status_code == 501 and "tolower" in error_of(r)["message"]
