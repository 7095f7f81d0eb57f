"""Selective sync under faults: a 2,000-record run through injected 5xx, connection resets after commit and
throttling ends in exactly the planned state; a run killed with SIGKILL midway and resumed ends there too.

The set-up goes through the raw APIs (plain requests), and so do the checks: no duplicate rows (by id and
by natural key), no lost update, couplings exactly one per record, the journal consistent with the data.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from helpers import private_sandbox
from sync_raw import Raw, new_id

import d365kit
from d365kit import couplings as ledgers
from d365kit.sync import Journal, SyncPlan


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A private sandbox (fault knobs and thousands of rows must not reach the shared one), a workspace on
    it and raw access."""
    data_dir = tmp_path_factory.mktemp("sync-faults")
    with private_sandbox(data_dir) as (sbx, ws):
        raw = Raw(sbx.info())
        yield sbx, ws, raw
        raw.close()


def load(raw: Raw, n_update: int, n_create: int) -> dict[str, list]:
    """Coupled customer/account pairs that differ only in the phone number (drift), and uncoupled customers.

    Returns the update pairs (bc id, account id, name, BC phone) and the creates (bc id, name, phone)."""
    tag = "F" + uuid.uuid4().hex[:6]
    usd = raw.dv_rows(
        "transactioncurrencies", "$filter=isocurrencycode eq 'USD'&$select=transactioncurrencyid"
    )
    usd_id = usd[0]["transactioncurrencyid"]
    updates = [(new_id(), new_id(), f"{tag} U{n:05d}", f"+1 555 1{n:05d}") for n in range(n_update)]
    creates = [(new_id(), f"{tag} C{n:05d}", f"+1 555 2{n:05d}") for n in range(n_create)]
    answers = raw.bc_batch(
        [
            {
                "method": "POST",
                "url": "customers",
                "body": {"id": b, "displayName": name, "phoneNumber": phone},
            }
            for b, _, name, phone in updates
        ]
        + [
            {
                "method": "POST",
                "url": "customers",
                "body": {"id": b, "displayName": name, "phoneNumber": phone},
            }
            for b, name, phone in creates
        ]
    )
    bc_stamp = {a["body"]["id"]: a["body"]["lastModifiedDateTime"] for a in answers}
    raw.dv_create_multiple(
        "accounts",
        "account",
        [
            {
                "accountid": v,
                "name": name,
                "telephone1": "+1 000 000 0000",
                "customertypecode": 3,
                "creditlimit": 0,
                "transactioncurrencyid@odata.bind": f"/transactioncurrencies({usd_id})",
            }
            for _, v, name, _ in updates
        ],
    )
    dv_stamp = {
        r["accountid"]: r["modifiedon"]
        for r in raw.dv_rows("accounts", f"$select=accountid,modifiedon&$filter=startswith(name,'{tag} U')")
    }
    raw.bc_batch(
        [
            {
                "method": "POST",
                "url": "crmIntegrationRecords",
                "body": {
                    "id": new_id(),
                    "crmId": v,
                    "integrationId": b,
                    "tableId": 18,
                    "lastSynchModifiedOn": bc_stamp[b],
                    "lastSynchCrmModifiedOn": dv_stamp[v],
                    "lastSynchResult": "Success",
                    "lastSynchCrmResult": "Success",
                },
            }
            for b, v, _, _ in updates
        ],
        api="companion",
    )
    return {"tag": [tag], "updates": updates, "creates": creates}


def plan_for(ws, data) -> SyncPlan:
    ids = [u[0] for u in data["updates"]] + [c[0] for c in data["creates"]]
    result = ws.reconcile("CUSTOMER", records=ids, progress=False)
    counts = result.summary().set_index("category")["records"]
    assert counts["drift"] == len(data["updates"]) and counts["uncoupled_bc"] == len(data["creates"])
    assert set(result.to_frame("drift")["fields"]) == {("telephone1",)}  # the pairs differ in the phone only
    plan = ws.plan_sync(
        result, categories=["drift", "uncoupled_bc"], direction="to_dataverse", progress=False
    )
    assert dict(plan.summary().set_index("kind")["operations"]) == {
        "create": len(data["creates"]),
        "update": len(data["updates"]),
    }
    return plan


def check_exact_state(ws, raw: Raw, data, plan: SyncPlan, journal: Path, run_id: str) -> None:
    """The data is what the plan says, once; the couplings and the journal agree with it."""
    tag = data["tag"][0]
    accounts = pd.DataFrame(
        raw.dv_rows("accounts", f"$select=accountid,name,telephone1&$filter=startswith(name,'{tag}')")
    )
    n_update, n_create = len(data["updates"]), len(data["creates"])
    assert len(accounts) == n_update + n_create
    assert (
        accounts["accountid"].is_unique and accounts["name"].is_unique
    )  # no duplicate by id or by natural key
    phones = dict(zip(accounts["name"], accounts["telephone1"], strict=True))
    assert all(phones[name] == phone for _, _, name, phone in data["updates"])  # no lost update
    assert all(phones[name] == phone for _, name, phone in data["creates"])
    planned_ids = {op.bc_id: op.dataverse_id for op in plan if op.kind == "create"}
    by_name = dict(zip(accounts["name"], accounts["accountid"], strict=True))
    assert {b: by_name[name] for b, name, _ in data["creates"]} == planned_ids  # the client-chosen ids

    bc_ids = {u[0] for u in data["updates"]} | {c[0] for c in data["creates"]}
    couplings = pd.DataFrame(raw.bc_rows("crmIntegrationRecords", "$filter=tableId eq 18", api="companion"))
    ours = couplings[couplings["integrationId"].isin(bc_ids)]
    assert len(ours) == len(bc_ids) and ours["integrationId"].is_unique and ours["crmId"].is_unique
    assert set(zip(ours["integrationId"], ours["crmId"], strict=True)) == (
        {(b, v) for b, v, _, _ in data["updates"]} | set(planned_ids.items())
    )
    assert (ours["lastSynchCrmResult"] == "Success").all()

    with Journal(journal) as j:
        ops = j.operations(run_id)
        assert (ops["state"] == "done").all() and (ops["coupling_state"] == "done").all()
        jobs = j.jobs(run_id)
    assert (jobs[["inserted", "modified", "coupled", "failed"]].sum().to_dict()) == {
        "inserted": n_create,
        "modified": n_update,
        "coupled": n_create,
        "failed": 0,
    }
    assert jobs["written"].all()
    companion_jobs = raw.bc_rows(
        "integrationSynchJobs", f"$filter=message eq 'd365kit selective sync, run {run_id}'", api="companion"
    )
    assert {j["id"] for j in companion_jobs} == set(jobs["id"])  # written once each
    ledger = ledgers.from_journal(journal)
    journaled = ledger[ledger["bc_id"].isin(bc_ids)]
    assert set(zip(journaled["bc_id"], journaled["dataverse_id"], strict=True)) == set(
        zip(ours["integrationId"], ours["crmId"], strict=True)
    )
    after = ws.reconcile("CUSTOMER", records=list(bc_ids), progress=False)
    assert set(after.records["category"]) == {"in_sync"} and len(after.records) == len(bc_ids)


def test_2000_records_under_5xx_resets_and_throttling_end_exactly_as_planned(private, tmp_path):
    sbx, ws, raw = private
    data = load(raw, 1000, 1000)
    plan = plan_for(ws, data)
    before = raw.stats()
    journal = tmp_path / "journal.sqlite"
    sbx.knobs.update(
        error_rate=0.10, reset_after_commit_rate=0.05, limits="realistic", limits_scale=0.002, fault_seed=5
    )
    try:
        run = ws.apply(plan, journal=journal, progress=False, batch_size=40)
    finally:
        sbx.knobs.update(
            error_rate=0.0, reset_after_commit_rate=0.0, limits="unlimited", limits_scale=1.0, fault_seed=None
        )
    faults = {k: raw.stats()[k] - before[k] for k in ("injected_errors", "resets", "throttled")}
    assert all(n > 0 for n in faults.values()), faults  # every kind of fault happened
    assert run.ok and run.counts["inserted"] == 1000 and run.counts["modified"] == 1000
    assert (run.operations["attempts"] > 1).any()  # some operations went out again (after a verification)
    check_exact_state(ws, raw, data, plan, journal, run.run_id)


KILLED_APPLY = """
import sys
import d365kit
from d365kit.sync import SyncPlan
ws = d365kit.connect("sandbox")
plan = SyncPlan.load(sys.argv[1])
ws.apply(plan, journal=sys.argv[2], run_id=sys.argv[3], progress=False, batch_size=10)
"""


def _done(journal: Path, run_id: str) -> int:
    if not journal.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(
                "SELECT COUNT(*) FROM operations WHERE run_id = ? AND state = 'done'", (run_id,)
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_run_killed_midway_resumes_to_the_same_exact_state(private, tmp_path):
    sbx, ws, raw = private
    data = load(raw, 200, 200)
    plan = plan_for(ws, data)
    plan_file, journal, run_id = tmp_path / "plan.json", tmp_path / "journal.sqlite", str(uuid.uuid4())
    plan.save(plan_file)
    env = {
        **os.environ,
        "D365KIT_SANDBOX_DIR": sbx.info()["data_dir"],
        "PYTHONPATH": str(Path(d365kit.__file__).parents[1]),
    }
    sbx.knobs.update(latency_ms=60)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_APPLY, str(plan_file), str(journal), run_id],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while _done(journal, run_id) < 100:
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the apply made no progress"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        sbx.knobs.update(latency_ms=0)
    killed_at = _done(journal, run_id)
    assert 100 <= killed_at < len(plan), "killed midway"
    with Journal(journal) as j:
        states = j.operations(run_id)["state"].value_counts().to_dict()
    assert states.get("planned", 0) + states.get("sent", 0) > 0  # work was left

    cli = subprocess.run(
        [sys.executable, "-m", "d365kit.cli", "sync", "resume", run_id, "--journal", str(journal), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "inserted 200" in cli.stdout and "modified 200" in cli.stdout
    check_exact_state(ws, raw, data, plan, journal, run_id)
    listed = subprocess.run(
        [sys.executable, "-m", "d365kit.cli", "sync", "runs", "--journal", str(journal)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run_id in listed.stdout and "finished" in listed.stdout
    again = ws.resume(run_id, journal=journal, progress=False)  # a finished run resumes to itself
    assert again.ok and again.counts["inserted"] == 200 and again.counts["modified"] == 200
