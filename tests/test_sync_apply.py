"""Applying plans through ``connect("sandbox")``: drift synced in each direction and nothing else touched,
a change made between plan and apply kept as a conflict, forbidden directions refused before any write,
lookups through couplings the same plan adds, an invoice with its lines, and the job and error rows that
the health functions read back.

The module runs its own sandbox; set-up and checks use the raw APIs (``sync_raw.Raw``)."""

from __future__ import annotations

import dataclasses
import uuid

import pandas as pd
import pytest
from helpers import private_sandbox
from sync_raw import Raw, new_id

from d365kit import health
from d365kit.errors import SyncDirectionError
from d365kit.odata.batch import parse_multipart_response
from d365kit.sync import Journal

ENTITIES = {
    "CUSTOMER": ("customers", "accounts", "phoneNumber", "telephone1"),
    "CONTACT": ("contacts", "contacts", "phoneNumber", "telephone1"),
}
SYSTEM = {"@odata.etag", "modifiedon", "_modifiedby_value", "versionnumber", "lastModifiedDateTime"}


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sync-apply")
    with private_sandbox(data_dir) as (sbx, ws):
        raw = Raw(sbx.info())
        yield ws, raw, data_dir / "journal.sqlite"
        raw.close()


def snapshot(raw: Raw, mapping: str) -> dict[str, dict[str, dict]]:
    bc_set, dv_set, _, _ = ENTITIES[mapping]
    key = "accountid" if dv_set == "accounts" else "contactid"
    return {
        "bc": {r["id"]: r for r in raw.bc_rows(bc_set)},
        "dataverse": {r[key]: r for r in raw.dv_rows(dv_set)},
        "couplings": {r["id"]: r for r in raw.bc_rows("crmIntegrationRecords", api="companion")},
    }


def changes(before: dict, after: dict) -> dict[str, dict[str, set[str]]]:
    """Per part, per row id: the fields whose value changed (new rows: every field)."""
    out: dict[str, dict[str, set[str]]] = {}
    for part in before:
        rows = {}
        for key, row in after[part].items():
            old = before[part].get(key)
            diff = set(row) if old is None else {f for f in row if row[f] != old.get(f)}
            if diff:
                rows[key] = diff
        out[part] = rows
    return out


def craft_drift(ws, raw: Raw, mapping: str, used: set[str]) -> pd.Series:
    """An in-sync coupled pair made to drift through the raw APIs: a new BC phone number, and the coupling's
    BC timestamp moved to the row's new modification time (so neither side counts as changed)."""
    bc_set, _, bc_phone, _ = ENTITIES[mapping]
    result = ws.reconcile(mapping, progress=False)
    record = result.to_frame("in_sync").query("bc_id not in @used").iloc[0]
    used.add(record["bc_id"])
    phone = f"+1 777 {uuid.uuid4().int % 10_000_000:07d}"
    answer = raw.bc_batch(
        [
            {
                "method": "PATCH",
                "url": f"{bc_set}({record['bc_id']})",
                "headers": {"If-Match": "*"},
                "body": {bc_phone: phone},
            }
        ]
    )[0]
    raw.bc_batch(
        [
            {
                "method": "PATCH",
                "url": f"crmIntegrationRecords({record['coupling_id']})",
                "headers": {"If-Match": "*"},
                "body": {"lastSynchModifiedOn": answer["body"]["lastModifiedDateTime"]},
            }
        ],
        api="companion",
    )
    return record


USED: set[str] = set()


@pytest.mark.parametrize("mapping", ["CUSTOMER", "CONTACT"])
@pytest.mark.parametrize("direction", ["to_dataverse", "from_dataverse"])
def test_drift_applied_in_each_direction_is_in_sync_and_nothing_else_changed(private, mapping, direction):
    ws, raw, journal = private
    record = craft_drift(ws, raw, mapping, USED)
    result = ws.reconcile(mapping, progress=False)
    drifted = result.to_frame("drift")
    assert record["coupling_id"] in set(drifted["coupling_id"])
    before = snapshot(raw, mapping)
    plan = ws.plan_sync(
        result, records=[record["coupling_id"]], categories=["drift"], direction=direction, progress=False
    )
    (op,) = plan.operations
    run = ws.apply(plan, journal=journal, progress=False)
    assert run.ok and run.counts["modified"] == 1
    changed = changes(before, snapshot(raw, mapping))
    _, _, bc_phone, dv_phone = ENTITIES[mapping]
    target, field, other = (
        ("dataverse", dv_phone, "bc") if direction == "to_dataverse" else ("bc", bc_phone, "dataverse")
    )
    target_id = record["dataverse_id"] if target == "dataverse" else record["bc_id"]
    assert set(changed[target]) == {target_id} and changed[target][target_id] - SYSTEM == {field}
    assert changed[other] == {}
    assert set(changed["couplings"]) == {record["coupling_id"]}
    result_fields = (
        {"lastSynchCrmResult", "lastSynchCrmJobId"}
        if direction == "to_dataverse"
        else {"lastSynchResult", "lastSynchJobId"}
    )
    assert changed["couplings"][record["coupling_id"]] - SYSTEM <= {
        "lastSynchModifiedOn",
        "lastSynchCrmModifiedOn",
        "skipped",
        *result_fields,
    }
    after = ws.reconcile(mapping, progress=False)
    key = ["category", "coupling_id", "bc_id", "dataverse_id"]
    old = result.records[key].astype("string").fillna("")
    new = after.records[key].astype("string").fillna("")
    moved = set(map(tuple, old.to_numpy())) ^ set(map(tuple, new.to_numpy()))
    assert moved == {
        ("drift", record["coupling_id"], record["bc_id"], record["dataverse_id"]),
        ("in_sync", record["coupling_id"], record["bc_id"], record["dataverse_id"]),
    }


def test_a_record_edited_between_plan_and_apply_is_a_conflict_and_keeps_its_new_value(private):
    ws, raw, journal = private
    record = craft_drift(ws, raw, "CUSTOMER", USED)
    result = ws.reconcile("CUSTOMER", records=[record["bc_id"]], progress=False)
    plan = ws.plan_sync(result, categories=["drift"], direction="to_dataverse", progress=False)
    coupling_before = {r["id"]: r for r in raw.bc_rows("crmIntegrationRecords", api="companion")}[
        record["coupling_id"]
    ]
    raw.dv_patch("accounts", record["dataverse_id"], {"telephone1": "+1 999 555 0199"})  # someone, meanwhile
    run = ws.apply(plan, journal=journal, progress=False)
    assert list(run.conflicts["dataverse_id"]) == [record["dataverse_id"]] and not run.ok
    assert "update conflict" in run.conflicts["error"].iloc[0]
    (account,) = raw.dv_rows("accounts", f"$select=telephone1&$filter=accountid eq {record['dataverse_id']}")
    assert account["telephone1"] == "+1 999 555 0199"  # not overwritten
    coupling_after = {r["id"]: r for r in raw.bc_rows("crmIntegrationRecords", api="companion")}[
        record["coupling_id"]
    ]
    assert coupling_after == coupling_before  # the row was not touched: nor is its coupling
    assert run.counts["failed"] == 1 and len(run.errors) == 1

    # the job and error rows are in the companion API and the health functions read them back
    (job_id,) = run.jobs["id"]
    jobs = raw.bc_rows("integrationSynchJobs", f"$filter=id eq {job_id}", api="companion")
    assert [(j["integrationTableMappingName"], j["synchDirection"], j["failed"]) for j in jobs] == [
        ("CUSTOMER", "ToIntegrationTable", 1)
    ]
    errors = raw.bc_rows(
        "integrationSynchJobErrors", f"$filter=integrationSynchJobId eq {job_id}", api="companion"
    )
    assert len(errors) == 1 and record["dataverse_id"].upper() in errors[0]["destinationRecordId"]
    hist, log = health.load_history(ws.bc, days=30, mappings=["CUSTOMER"])
    ours = hist[hist["job_id"] == job_id]
    assert len(ours) == 1 and ours["failed"].iloc[0] == 1 and ours["source"].iloc[0] == "bc"
    assert log[log["job_id"] == job_id]["category"].astype(str).tolist() == ["conflict (bi-directional)"]
    with Journal(journal) as j:  # the journal keeps the same rows, in the shape health.history takes
        local = health.history(pd.DataFrame(jobs), j.jobs(run.run_id))
        assert set(local[local["job_id"] == job_id]["source"]) == {"bc", "d365kit"}
        assert health.error_log(j.job_errors(run.run_id), local)["job_id"].tolist() == [job_id, job_id]


@pytest.mark.parametrize(("mapping", "policy"), [("CUSTOMER", "bc_wins"), ("CONTACT", "dataverse_wins")])
def test_a_conflict_resolved_by_policy_ends_in_sync(private, mapping, policy):
    ws, raw, journal = private
    result = ws.reconcile(mapping, progress=False)
    record = result.to_frame("conflict").iloc[0]
    values = result.values.set_index("coupling_id").loc[record["coupling_id"]]
    run = ws.apply(
        ws.plan_sync(result, categories=["conflict"], conflict=policy, progress=False),
        journal=journal,
        progress=False,
    )
    assert run.ok and run.counts["modified"] == 1
    bc_set, dv_set, bc_phone, dv_phone = ENTITIES[mapping]
    key = "accountid" if dv_set == "accounts" else "contactid"
    (row,) = raw.dv_rows(dv_set, f"$select={dv_phone}&$filter={key} eq {record['dataverse_id']}")
    winner = values["bc_value"] if policy == "bc_wins" else values["dataverse_value"]
    assert row[dv_phone] == winner
    after = ws.reconcile(mapping, records=[record["coupling_id"]], progress=False)
    assert set(after.records["category"]) == {"in_sync"}


def test_forbidden_directions_are_refused_before_anything_is_written(private, tmp_path):
    ws, raw, _ = private
    currency = ws.reconcile("CURRENCY", progress=False)
    plan = ws.plan_sync(currency, categories=["drift"], direction="to_dataverse", progress=False)
    assert [op.kind for op in plan] == ["update"]
    flipped = dataclasses.replace(
        plan, operations=[dataclasses.replace(plan.operations[0], direction="from_dataverse")]
    )
    customer = ws.reconcile("CUSTOMER", progress=False)
    record = customer.to_frame("in_sync").iloc[0]
    good = ws.plan_sync(customer, records=[record["bc_id"]], progress=False)
    forged = dataclasses.replace(
        good.operations[0],
        kind="update",
        direction="from_dataverse",
        fields=("creditLimit",),
        after={"creditLimit": 1.0},
        body={"creditLimit": 1.0},
        etag="*",
        target_set="customers",
        target_api="v2.0",
    )
    journal = tmp_path / "refused.sqlite"
    before = raw.stats()["requests"]
    with pytest.raises(SyncDirectionError, match="mapping CURRENCY syncs to_dataverse only"):
        ws.apply(flipped, journal=journal, progress=False)
    with pytest.raises(
        SyncDirectionError,
        match=r"mapping CUSTOMER, field Credit Limit \(LCY\) \(creditLimit -> creditlimit\)",
    ):
        ws.apply(dataclasses.replace(good, operations=[forged]), journal=journal, progress=False)
    assert raw.stats()["requests"] == before and not journal.exists()


def test_lookups_resolve_through_couplings_the_same_plan_adds(private):
    ws, raw, journal = private
    code, bad = (
        "XQ" + uuid.uuid4().hex[:2].upper(),
        "XQ" + uuid.uuid4().hex[:5].upper(),
    )  # 7 chars: too long for Dataverse
    cur, bad_cur, cust, bad_cust = new_id(), new_id(), new_id(), new_id()
    raw.bc_batch(
        [
            {
                "method": "POST",
                "url": "currencies",
                "body": {"id": cur, "code": code, "displayName": "Test crown", "symbol": "kr"},
            },
            {
                "method": "POST",
                "url": "currencies",
                "body": {"id": bad_cur, "code": bad, "displayName": "Too long", "symbol": "x"},
            },
            {
                "method": "POST",
                "url": "customers",
                "body": {"id": cust, "displayName": f"Lookup {code}", "currencyCode": code},
            },
            {
                "method": "POST",
                "url": "customers",
                "body": {"id": bad_cust, "displayName": f"Lookup {bad}", "currencyCode": bad},
            },
        ]
    )
    results = [
        ws.reconcile(m, records=ids, progress=False)
        for m, ids in (("CUSTOMER", [cust, bad_cust]), ("CURRENCY", [cur, bad_cur]))
    ]
    plan = ws.plan_sync(
        results, progress=False
    )  # given customers first: planned currencies first all the same
    assert [op.mapping for op in plan] == ["CURRENCY", "CURRENCY", "CUSTOMER", "CUSTOMER"]
    ops = {op.bc_id: op for op in plan}
    assert ops[cust].after["_transactioncurrencyid_value"] == ops[cur].dataverse_id
    assert ops[cust].depends_on == (ops[cur].op_id,) and ops[bad_cust].depends_on == (ops[bad_cur].op_id,)
    run = ws.apply(plan, journal=journal, progress=False)
    states = run.operations.set_index("bc_id")["state"].to_dict()
    assert states == {cur: "done", cust: "done", bad_cur: "failed", bad_cust: "failed"}
    reasons = run.operations.set_index("bc_id")["error"]
    assert "depends on CURRENCY" in reasons[bad_cust] and "isocurrencycode" in reasons[bad_cur]
    (account,) = raw.dv_rows(
        "accounts", f"$select=_transactioncurrencyid_value&$filter=accountid eq {ops[cust].dataverse_id}"
    )
    assert account["_transactioncurrencyid_value"] == ops[cur].dataverse_id
    assert not raw.dv_rows("accounts", f"$select=accountid&$filter=accountid eq {ops[bad_cust].dataverse_id}")
    for mapping, ids in (("CURRENCY", [cur]), ("CUSTOMER", [cust])):
        assert set(ws.reconcile(mapping, records=ids, progress=False).records["category"]) == {"in_sync"}
    assert {
        (j["integrationTableMappingName"], j["inserted"], j["failed"]) for _, j in run.jobs.iterrows()
    } == {
        ("CURRENCY", 1, 1),
        ("CUSTOMER", 1, 1),
    }


def test_an_invoice_syncs_with_its_lines(private):
    ws, raw, journal = private
    invoices = ws.reconcile("POSTEDSALESINV-INV", progress=False).to_frame("in_sync")
    lines = pd.DataFrame(raw.bc_rows("salesInvoiceLines", "$select=id,documentId,itemId,lineType"))
    with_lines = lines[lines["documentId"].isin(invoices["bc_id"])].groupby("documentId").size()
    invoice = invoices.set_index("bc_id").loc[with_lines[with_lines >= 2].index[0]]
    line_ids = set(lines[lines["documentId"] == invoice.name]["id"])
    couplings = raw.bc_rows(
        "crmIntegrationRecords", "$filter=tableId eq 112 or tableId eq 113", api="companion"
    )
    ours = [c for c in couplings if c["integrationId"] in line_ids | {invoice.name}]
    assert len(ours) == len(line_ids) + 1
    raw.bc_batch(
        [
            {"method": "DELETE", "url": f"crmIntegrationRecords({c['id']})", "headers": {"If-Match": "*"}}
            for c in ours
        ],
        api="companion",
    )
    for c in ours:  # the invoice and its lines are gone from Dataverse: BC's rows are uncoupled now
        if c["tableId"] == 113:
            raw.dv_delete("invoicedetails", c["crmId"])
    raw.dv_delete("invoices", invoice["dataverse_id"])

    plan = ws.plan_sync("POSTEDSALESINV-INV", records=[invoice.name], progress=False)
    header = [op for op in plan if op.mapping == "POSTEDSALESINV-INV"]
    details = [op for op in plan if op.mapping == "POSTEDSALESLINE-INV"]
    assert [op.kind for op in header] == ["create"] and {op.kind for op in details} == {"create"}
    assert {op.bc_id for op in details} == line_ids
    assert all(
        op.depends_on == (header[0].op_id,) and op.after["_invoiceid_value"] == header[0].dataverse_id
        for op in details
    )
    run = ws.apply(plan, journal=journal, progress=False)
    assert run.ok and run.counts["inserted"] == len(line_ids) + 1
    rows = raw.dv_rows(
        "invoicedetails",
        f"$select=invoicedetailid,_productid_value,lineitemnumber&$filter=_invoiceid_value eq {header[0].dataverse_id}",
    )
    assert {r["invoicedetailid"] for r in rows} == {op.dataverse_id for op in details}
    assert all(r["_productid_value"] for r in rows) or any(
        op.after.get("isproductoverridden") for op in details
    )
    for mapping, ids in (("POSTEDSALESINV-INV", [invoice.name]), ("POSTEDSALESLINE-INV", list(line_ids))):
        assert set(ws.reconcile(mapping, records=ids, progress=False).records["category"]) == {"in_sync"}


def test_the_run_result_frames(private):
    ws, raw, journal = private
    result = ws.reconcile("CONTACT", progress=False)
    run = ws.apply(
        ws.plan_sync(result, categories=["duplicate_coupling", "out_of_scope"], progress=False),
        journal=journal,
        progress=False,
    )
    assert set(run.operations["state"]) == {"skipped"} and run.ok
    assert run.counts["skipped"] == len(run.operations) and run.summary()["operations"].sum() == len(
        run.operations
    )
    assert "<table" in run._repr_html_() and run.run_id in repr(run)
    with Journal(journal) as j:
        listed = j.list_runs()
    assert run.run_id in set(listed["run_id"])


def test_batch_answers_are_split_per_part_changesets_included():
    body = (
        b"--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
        b"--changesetresponse_2\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"HTTP/1.1 204 No Content\r\nOData-EntityId: https://x/api/data/v9.2/accounts(1)\r\n\r\n\r\n"
        b"--changesetresponse_2\r\nContent-Type: application/http\r\n\r\n"
        b'HTTP/1.1 412 Precondition Failed\r\nContent-Type: application/json\r\n\r\n{"error":{"code":"0x80060882","message":"m"}}\r\n'
        b"--changesetresponse_2--\r\n"
        b"--batchresponse_1\r\nContent-Type: application/http\r\n\r\n"
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"value":[{"name":"a--b"}]}\r\n'
        b"--batchresponse_1--\r\n"
    )
    parts = parse_multipart_response('multipart/mixed; boundary="batchresponse_1"', body)
    assert [(s, h.get("OData-EntityId")) for s, h, _ in parts] == [
        (204, "https://x/api/data/v9.2/accounts(1)"),
        (412, None),
        (200, None),
    ]
    assert parts[1][2]["error"]["code"] == "0x80060882" and parts[2][2] == {"value": [{"name": "a--b"}]}
    assert parse_multipart_response("application/json", b"{}") == []
