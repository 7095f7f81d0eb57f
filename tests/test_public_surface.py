"""Public API that no other test reached: BC couplings through the companion API, ``list`` on both clients,
Dataverse ``upsert``/``upsert_multiple``, the ``ne``/``le``/``endswith`` filters, ``d365kit sync runs``,
``SyncPlan + SyncPlan`` and ``SyncRun.failed``.

Reads go to the shared session sandbox (``ws``); everything that writes runs on a private sandbox of this
module, so no other test's seed comparison sees these rows.
"""

from __future__ import annotations

import uuid

import pandas as pd
import pytest
from helpers import private_sandbox

from d365kit import NotFoundError, Q, Query, SyncPlan, SyncRun, cli

# -- reads on the shared sandbox -------------------------------------------------------------------


def test_bc_list_yields_every_row_across_pages(ws):
    query = Query().with_select("id", "number", "displayName")
    frame = ws.bc.to_frame("customers", query)
    assert len(frame) > 20
    rows = list(ws.bc.list("customers", query, page_size=7))  # several nextLink pages
    assert [r["id"] for r in rows] == frame["id"].tolist()
    assert [r["number"] for r in rows] == frame["number"].tolist()
    assert all(set(r) >= {"id", "number", "displayName"} for r in rows)
    filtered = list(ws.bc.list("customers", query.where(Q.eq("number", rows[3]["number"]))))
    assert [r["id"] for r in filtered] == [rows[3]["id"]]


def test_dataverse_list_yields_every_row_across_pages(ws):
    query = Query().with_select("accountid", "name")
    frame = ws.dataverse.to_frame("accounts", query)
    assert len(frame) > 20
    rows = list(ws.dataverse.list("accounts", query, page_size=9))
    assert [r["accountid"] for r in rows] == frame["accountid"].tolist()
    assert len({r["accountid"] for r in rows}) == len(rows)
    assert [r["name"] for r in rows] == frame["name"].tolist()


def _ids(frame: pd.DataFrame, key: str) -> set[str]:
    return set(frame[key].astype(str).str.lower())


def test_q_le_selects_the_rows_pandas_selects(ws):
    frame = ws.dataverse.to_frame("accounts", Query().with_select("accountid", "creditlimit"))
    limits = frame["creditlimit"].dropna()
    bound = float(limits.sort_values().iloc[len(limits) // 2])  # a value some row holds
    expected = frame[frame["creditlimit"] <= bound]  # null never compares: NaN <= x is False too
    assert 0 < len(expected) < len(frame) and (limits == bound).any()  # the bound itself is included
    got = ws.dataverse.to_frame(
        "accounts", Query().with_select("accountid").where(Q.le("creditlimit", bound))
    )
    assert _ids(got, "accountid") == _ids(expected, "accountid")


def test_q_ne_selects_the_rows_pandas_selects(ws):
    frame = ws.bc.to_frame("customers", Query().with_select("id", "number", "blocked"))
    common = frame["blocked"].value_counts().idxmax()
    expected = frame[frame["blocked"] != common]
    assert 0 < len(expected) < len(frame)
    got = ws.bc.to_frame("customers", Query().with_select("id").where(Q.ne("blocked", common)))
    assert _ids(got, "id") == _ids(expected, "id")
    # and on Dataverse: an int column, nulls included on the ne side (null ne 1 is true in OData)
    accounts = ws.dataverse.to_frame("accounts", Query().with_select("accountid", "statecode"))
    expected = accounts[accounts["statecode"].ne(0) | accounts["statecode"].isna()]
    assert 0 < len(expected) < len(accounts)
    got = ws.dataverse.to_frame("accounts", Query().with_select("accountid").where(Q.ne("statecode", 0)))
    assert _ids(got, "accountid") == _ids(expected, "accountid")


def test_q_endswith_selects_the_rows_pandas_selects(ws):
    frame = ws.bc.to_frame("customers", Query().with_select("id", "displayName"))
    names = frame["displayName"].fillna("").astype(str)
    counts = names.str[-3:].value_counts()
    # a suffix some rows share, not all, and one that case cannot make ambiguous (the sandbox, like
    # Dataverse's collation, may compare case-insensitively)
    suffix = next(
        s
        for s in counts[(counts > 1) & (counts < len(names))].index
        if s.strip() and (names.str.endswith(s) == names.str.lower().str.endswith(s.lower())).all()
    )
    expected = frame[names.str.endswith(suffix)]
    assert 1 < len(expected) < len(frame)
    got = ws.bc.to_frame("customers", Query().with_select("id").where(Q.endswith("displayName", suffix)))
    assert _ids(got, "id") == _ids(expected, "id")
    none = ws.bc.to_frame(
        "customers", Query().with_select("id").where(Q.endswith("displayName", "no-such-suffix"))
    )
    assert none.empty


# -- writes on a private sandbox -------------------------------------------------------------------


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("public-surface")
    with private_sandbox(data_dir) as (sbx, ws):
        yield sbx, ws, data_dir


def test_add_and_remove_a_coupling(private):
    _, ws, _ = private
    bc_id = ws.bc.create("customers", {"id": str(uuid.uuid4()), "displayName": "Coupling surface"})["id"]
    dv_id = ws.dataverse.create("accounts", {"name": "Coupling surface"})
    before = ws.bc.couplings()
    added = ws.bc.add_coupling({"integrationId": bc_id, "crmId": dv_id, "tableId": 18})
    assert added["integrationId"] == bc_id and added["crmId"] == dv_id and added["tableId"] == 18
    uuid.UUID(added["id"])  # the client made the id

    after = ws.bc.couplings()
    assert len(after) == len(before) + 1
    (row,) = after[after["id"] == added["id"]].to_dict("records")
    assert (row["integrationId"], row["crmId"], row["tableId"]) == (bc_id, dv_id, 18)
    assert added["id"] not in set(before["id"])

    ws.bc.remove_coupling(added["id"])
    gone = ws.bc.couplings()
    assert added["id"] not in set(gone["id"]) and len(gone) == len(before)
    with pytest.raises(NotFoundError):
        ws.bc.remove_coupling(added["id"])  # removing twice is an error, not a silent no-op


def test_dataverse_upsert_creates_then_updates_the_same_row(private):
    _, ws, _ = private
    key = str(uuid.uuid4())
    count = ws.dataverse.count("accounts")
    ws.dataverse.upsert("accounts", key, {"name": "Upsert surface", "telephone1": "+1 555 0100"})
    row = ws.dataverse.get("accounts", key, select=("accountid", "name", "telephone1"))
    assert (row["accountid"], row["name"], row["telephone1"]) == (key, "Upsert surface", "+1 555 0100")
    assert ws.dataverse.count("accounts") == count + 1

    ws.dataverse.upsert("accounts", key, {"telephone1": "+1 555 0199"})
    row = ws.dataverse.get("accounts", key, select=("name", "telephone1"))
    assert (row["name"], row["telephone1"]) == ("Upsert surface", "+1 555 0199")  # updated, name kept
    assert ws.dataverse.count("accounts") == count + 1  # no second row


def test_dataverse_upsert_multiple_creates_and_updates(private):
    _, ws, _ = private
    tag = "UM" + uuid.uuid4().hex[:6]
    existing = ws.dataverse.create_multiple(
        "contacts",
        [{"contactid": str(uuid.uuid4()), "firstname": tag, "lastname": f"Old{n}"} for n in range(3)],
    )
    new = [str(uuid.uuid4()) for _ in range(4)]
    rows = [{"contactid": i, "firstname": tag, "lastname": "Updated"} for i in existing] + [
        {"contactid": i, "firstname": tag, "lastname": f"New{n}"} for n, i in enumerate(new)
    ]
    ws.dataverse.upsert_multiple("contacts", rows, chunk_size=3)  # chunks across the existing/new boundary
    back = ws.dataverse.to_frame(
        "contacts", Query().with_select("contactid", "lastname").where(Q.eq("firstname", tag))
    )
    got = dict(zip(back["contactid"].str.lower(), back["lastname"], strict=True))
    assert got == {**dict.fromkeys(existing, "Updated"), **{i: f"New{n}" for n, i in enumerate(new)}}


# -- plans and runs --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_of_two_plans(private):
    """A CURRENCY plan (one good new currency, one whose 7-letter code Dataverse refuses) plus a CUSTOMER plan
    (two new customers), combined with ``+`` and applied into a journal of its own."""
    _, ws, data_dir = private
    suffix = uuid.uuid4().hex[:5].upper()
    good_code, bad_code = "Q" + suffix[:2], "Q" + suffix + "X"  # 3 letters, 7 letters (too long)
    cur, bad_cur = str(uuid.uuid4()), str(uuid.uuid4())
    ws.bc.create("currencies", {"id": cur, "code": good_code, "displayName": "Surface crown", "symbol": "k"})
    ws.bc.create("currencies", {"id": bad_cur, "code": bad_code, "displayName": "Too long", "symbol": "x"})
    customers = [str(uuid.uuid4()) for _ in range(2)]
    for n, c in enumerate(customers):
        ws.bc.create("customers", {"id": c, "displayName": f"Surface {suffix} {n}"})
    currency_plan = ws.plan_sync(
        ws.reconcile("CURRENCY", records=[cur, bad_cur], progress=False), progress=False
    )
    customer_plan = ws.plan_sync(ws.reconcile("CUSTOMER", records=customers, progress=False), progress=False)
    combined = customer_plan + currency_plan
    journal = data_dir / "journal.sqlite"
    run = ws.apply(combined, journal=journal, progress=False)
    return {
        "currency_plan": currency_plan,
        "customer_plan": customer_plan,
        "combined": combined,
        "run": run,
        "journal": journal,
        "bad": bad_cur,
        "good": [cur, *customers],
    }


def _kinds(plan: SyncPlan) -> dict[tuple[str, str], int]:
    return {
        (m, k): int(n)
        for m, k, n in plan.summary()[["mapping", "kind", "operations"]].itertuples(index=False)
    }


def test_sync_plans_add_up(run_of_two_plans):
    a, b, both = (
        run_of_two_plans["customer_plan"],
        run_of_two_plans["currency_plan"],
        run_of_two_plans["combined"],
    )
    assert len(a) == 2 and len(b) == 2 and isinstance(both, SyncPlan)
    assert len(both) == len(a) + len(b)
    assert {op.op_id for op in both} == {op.op_id for op in a} | {op.op_id for op in b}
    assert {op.bc_id for op in both} == {op.bc_id for op in a} | {op.bc_id for op in b}
    counts_a, counts_b, counts = _kinds(a), _kinds(b), _kinds(both)
    assert counts == {k: counts_a.get(k, 0) + counts_b.get(k, 0) for k in counts_a.keys() | counts_b.keys()}
    # dependencies first, whatever the order of the operands: currencies before customers
    assert [op.mapping for op in both] == ["CURRENCY", "CURRENCY", "CUSTOMER", "CUSTOMER"]
    assert both.mappings == ["CURRENCY", "CUSTOMER"]
    assert len(a + a) == len(a)  # the same operation twice is one operation


def test_sync_run_failed_lists_the_failed_operation(run_of_two_plans):
    run, bad = run_of_two_plans["run"], run_of_two_plans["bad"]
    assert isinstance(run, SyncRun) and not run.ok
    failed = run.failed
    assert failed["bc_id"].tolist() == [bad]
    assert failed["state"].tolist() == ["failed"] and failed["mapping"].tolist() == ["CURRENCY"]
    assert "isocurrencycode" in failed["error"].iloc[0]
    done = run.operations[run.operations["state"] == "done"]
    assert sorted(done["bc_id"]) == sorted(run_of_two_plans["good"])
    assert run.counts["failed"] == 1 and run.counts["inserted"] == 3


def test_cli_sync_runs_lists_the_journaled_run(run_of_two_plans, monkeypatch, capsys):
    run, journal = run_of_two_plans["run"], run_of_two_plans["journal"]
    monkeypatch.setenv("D365KIT_JOURNAL", str(journal))
    assert cli.main(["sync", "runs"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    header = lines[0].split()
    assert header[:5] == ["run_id", "profile", "created_at", "finished_at", "state"]
    (line,) = [ln for ln in lines[1:] if ln.split()[0] == run.run_id]
    fields = dict(zip(header, line.split(), strict=True))
    assert (fields["operations"], fields["done"], fields["failed"]) == ("4", "3", "1")
    assert (fields["conflict"], fields["pending"]) == ("0", "0")

    monkeypatch.setenv("D365KIT_JOURNAL", str(journal.with_name("absent.sqlite")))
    assert cli.main(["sync", "runs"]) == 1
    assert "no journal at" in capsys.readouterr().err
