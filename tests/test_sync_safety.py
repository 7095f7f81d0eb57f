"""Issue #13 "Reliability and security II": a sync writes only to the target it was planned on (production
only when confirmed), never guesses an outcome, lets one run at a time write a mapping, reports a replayed
plan as already applied, does not write a value its source changed since planning, names record ids that
do not exist, keeps its journal private and truncates over-length text only when asked to.

Every test writes, so the module runs its own sandbox (``private_sandbox``); set-up and checks go through
the raw APIs (``sync_raw.Raw``). Locks go to a folder of this module (``D365KIT_LOCK_DIR``).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from helpers import private_sandbox
from sync_raw import Raw
from test_sync_apply import craft_drift
from test_sync_faults import check_exact_state, load, plan_for

import d365kit
from d365kit import cli
from d365kit.config import Profile, is_production
from d365kit.errors import ConfirmationRequired, SyncPlanError, SyncTargetError
from d365kit.odata.session import RetryPolicy
from d365kit.sync import Journal, SyncPlan, writers
from d365kit.sync.locks import is_held
from d365kit.widgets import SyncPanel

apply_module = importlib.import_module("d365kit.sync.apply")  # the package exports apply()
USED: set[str] = set()


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("sync-safety")
    mp = pytest.MonkeyPatch()
    mp.setenv("D365KIT_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
    try:
        with private_sandbox(data_dir) as (sbx, ws):
            raw = Raw(sbx.info())
            yield sbx, ws, raw
            raw.close()
    finally:
        mp.undo()


def _accounts(raw: Raw, tag: str) -> pd.DataFrame:
    rows = raw.dv_rows("accounts", f"$select=accountid,name,telephone1&$filter=startswith(name,'{tag}')")
    return pd.DataFrame(rows, columns=["accountid", "name", "telephone1"])


def _account_phone(raw: Raw, account_id: str) -> str:
    (row,) = raw.dv_rows("accounts", f"$select=telephone1&$filter=accountid eq {account_id}")
    return row["telephone1"]


def _env(sbx) -> dict[str, str]:
    return {
        **os.environ,
        "D365KIT_SANDBOX_DIR": sbx.info()["data_dir"],
        "PYTHONPATH": str(Path(d365kit.__file__).parents[1]),
    }


# -- 2. the target ---------------------------------------------------------------------------------


def test_a_plan_or_run_of_one_target_is_refused_on_another(private, ws, tmp_path):
    sbx, pws, raw = private
    data = load(raw, 2, 2)
    plan = plan_for(pws, data)
    target = plan.target
    assert target is not None and target.bc_environment == "sandbox" and not target.production
    assert target.dataverse_org == pws.profile.dataverse_url.rstrip("/").lower()
    saved = SyncPlan.load(plan.save(tmp_path / "plan.json"))
    assert saved.target == target and json.loads((tmp_path / "plan.json").read_text())["target"]
    journal = tmp_path / "journal.sqlite"
    before = raw.stats()["requests"]

    other = dataclasses.replace(plan, target=dataclasses.replace(target, tenant_id="contoso.onmicrosoft.com"))
    with pytest.raises(SyncTargetError, match="tenant contoso.onmicrosoft.com.*tenant_id") as refused:
        pws.apply(other, journal=journal, progress=False)
    assert target.tenant_id in str(refused.value)  # both targets named
    with pytest.raises(SyncTargetError, match="dataverse_org"):  # the session sandbox: another org
        ws.apply(saved, journal=journal, progress=False)
    assert not _accounts(raw, data["tag"][0]).name.str.contains(" C").any()  # nothing was created
    assert not journal.exists() and raw.stats()["requests"] - before <= 4  # reads of the target only

    run = pws.apply(plan, journal=journal, progress=False)
    assert run.ok and run.counts["inserted"] == 2
    with pytest.raises(SyncTargetError, match=f"run {run.run_id} was made for"):
        ws.resume(run.run_id, journal=journal, progress=False)


def test_production_is_the_default_except_for_sandbox_environments():
    base = Profile(name="p", tenant_id="t", client_id="c")
    assert base.bc_environment == "Production" and base.is_production
    for name in ("sandbox", "Sandbox", "sandbox-uat", "UAT_Sandbox", "DevSandbox"):
        assert not is_production(name) and not dataclasses.replace(base, bc_environment=name).is_production
    assert is_production("Test") and is_production("sandbox2prod") is False  # "sandbox..." counts as sandbox
    assert not dataclasses.replace(base, production=False).is_production
    assert dataclasses.replace(base, bc_environment="sandbox", production=True).is_production


def _production_workspace(pws) -> d365kit.Workspace:
    return d365kit.connect(dataclasses.replace(pws.profile, production=True))


def test_writes_to_a_production_profile_need_an_explicit_confirmation(private, tmp_path):
    sbx, pws, raw = private
    prod = _production_workspace(pws)
    record = craft_drift(prod, raw, "CUSTOMER", USED)
    result = prod.reconcile("CUSTOMER", records=[record["bc_id"]], progress=False)
    plan = prod.plan_sync(result, categories=["drift"], direction="to_dataverse", progress=False)
    assert plan.target.production
    journal = tmp_path / "journal.sqlite"
    phone = _account_phone(raw, record["dataverse_id"])
    with pytest.raises(ConfirmationRequired, match=r"production target: tenant .* 'sandbox'.*1 update\(s\)"):
        prod.apply(plan, journal=journal, progress=False)
    assert _account_phone(raw, record["dataverse_id"]) == phone and not journal.exists()
    run = prod.apply(plan, journal=journal, progress=False, confirm=True)
    assert run.ok and run.counts["modified"] == 1


def test_the_command_line_writes_to_production_only_with_yes(private, tmp_path, monkeypatch, capsys):
    sbx, pws, raw = private
    info, p = sbx.info(), pws.profile
    fields = ("tenant_id", "client_id", "bc_environment", "bc_company", "dataverse_url", "authority_host")
    table = {k: getattr(p, k) for k in (*fields, "bc_api_url", "bc_scope", "ca_bundle")}
    table |= {"secret_env": "D365KIT_TEST_PRODBOX_SECRET", "token_cache": str(tmp_path / "tokens.json")}
    lines = ["[profiles.prodbox]", *(f"{k} = {json.dumps(v)}" for k, v in table.items()), "production = true"]
    (tmp_path / "config.toml").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("D365KIT_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("D365KIT_TEST_PRODBOX_SECRET", info["client_secret"])
    record = craft_drift(pws, raw, "CUSTOMER", USED)
    result = pws.reconcile("CUSTOMER", records=[record["bc_id"]], progress=False)
    plan_file = pws.plan_sync(result, categories=["drift"], direction="to_dataverse", progress=False).save(
        tmp_path / "plan.json"
    )
    args = ["sync", "apply", str(plan_file), "--profile", "prodbox", "--journal", str(tmp_path / "j.sqlite")]
    phone = _account_phone(raw, record["dataverse_id"])
    assert cli.main([*args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        "production target" in err
        and "1 update(s)" in err
        and "--yes" in err
        and "Nothing was written" in err
    )
    assert _account_phone(raw, record["dataverse_id"]) == phone
    assert cli.main([*args, "--quiet", "--yes"]) == 0
    assert "modified 1" in capsys.readouterr().out
    assert _account_phone(raw, record["dataverse_id"]) != phone


def test_the_sync_panel_asks_for_the_environment_name_on_production(private, tmp_path, monkeypatch):
    sbx, pws, raw = private
    monkeypatch.setenv("D365KIT_JOURNAL", str(tmp_path / "journal.sqlite"))
    prod = _production_workspace(pws)
    record = craft_drift(prod, raw, "CUSTOMER", USED)
    panel = SyncPanel(prod, prod.reconcile("CUSTOMER", records=[record["bc_id"]], progress=False))
    panel.records.value = (record["coupling_id"],)
    panel.direction.value = "to_dataverse"
    panel.plan_button.click()
    assert panel.confirm.layout.display is None and "Confirm" in panel.status.value
    shown = "".join(str(o) for o in panel.out.outputs)
    assert "Production target" in shown and "1 update(s)" in shown and "sandbox" in shown
    phone = _account_phone(raw, record["dataverse_id"])
    panel.apply_button.click()  # nothing typed
    assert "failed" in panel.status.value and "production target" in panel.status.value and panel.run is None
    assert _account_phone(raw, record["dataverse_id"]) == phone
    panel.confirm.value = "production"  # not the environment's name
    panel.apply_button.click()
    assert panel.run is None
    panel.confirm.value = "sandbox"
    panel.apply_button.click()
    assert "Applied: modified 1" in panel.status.value and panel.run.ok


# -- 3. outages: outcomes never guessed -------------------------------------------------------------


def _outage_apply(sbx, ws, plan, journal: Path, monkeypatch, *, committed: bool):
    """Apply while the service fails right after the first writes: their answers are lost after the commit
    (``committed``) or they are answered, and then every request fails (503) until the run gives up."""
    monkeypatch.setattr(apply_module, "MAX_ROUNDS", 3)
    monkeypatch.setattr(apply_module, "_backoff", lambda rounds, hint: 0.01)
    for session in (ws.bc.session, ws.dataverse.session):
        monkeypatch.setattr(session, "retry", RetryPolicy(max_attempts=1))
    send = writers.send

    def send_then_outage(systems, ops):
        out = send(systems, ops)
        sbx.knobs.update(error_rate=1.0)
        return out

    monkeypatch.setattr(writers, "send", send_then_outage)
    sbx.knobs.update(reset_after_commit_rate=1.0 if committed else 0.0, fault_seed=13)
    try:
        return ws.apply(plan, journal=journal, progress=False)
    finally:
        sbx.knobs.update(error_rate=0.0, reset_after_commit_rate=0.0, fault_seed=None)
        monkeypatch.setattr(writers, "send", send)
        for session in (ws.bc.session, ws.dataverse.session):
            monkeypatch.setattr(session, "retry", RetryPolicy())


def test_after_an_outage_outcomes_stay_unknown_and_resume_verifies_them(private, tmp_path, monkeypatch):
    sbx, ws, raw = private
    data = load(raw, 5, 5)
    plan = plan_for(ws, data)
    journal = tmp_path / "journal.sqlite"
    run = _outage_apply(sbx, ws, plan, journal, monkeypatch, committed=True)
    assert set(run.operations["state"]) == {"unknown"} and run.failed.empty and not run.ok
    assert "resume" in " ".join(run.warnings)
    with Journal(journal) as j:
        assert j.run(run.run_id)["state"] == "incomplete"
        assert set(j.operations(run.run_id)["state"]) == {"unknown"}
        assert j.jobs(run.run_id).empty and j.job_errors(run.run_id).empty  # no guessed job log
    assert not raw.bc_rows(
        "integrationSynchJobs",
        f"$filter=message eq 'd365kit selective sync, run {run.run_id}'",
        api="companion",
    )
    done = ws.resume(run.run_id, journal=journal, progress=False)
    assert done.ok and (done.operations["attempts"] == 1).all()  # verified by reading, never sent again
    check_exact_state(ws, raw, data, plan, journal, run.run_id)


def test_a_replan_verifies_unknown_outcomes_first_and_leaves_the_records_to_their_run(
    private, tmp_path, monkeypatch
):
    sbx, ws, raw = private
    data = load(raw, 3, 3)
    plan = plan_for(ws, data)
    journal = tmp_path / "journal.sqlite"
    run = _outage_apply(sbx, ws, plan, journal, monkeypatch, committed=True)
    assert set(run.operations["state"]) == {"unknown"}
    ids = [u[0] for u in data["updates"]] + [c[0] for c in data["creates"]]
    again = ws.plan_sync("CUSTOMER", records=ids, progress=False, journal=journal)
    created = {c[0] for c in data["creates"]}
    with Journal(journal) as j:
        ops = j.operations(run.run_id)
    states = dict(zip([op.bc_id for op in ops["op"]], ops["state"], strict=True))
    assert {states[b] for b in created} == {"done"}  # verified by reading, the journal corrected
    creates = [op for op in again if op.bc_id in created]
    assert len(creates) == 3 and all(op.kind == "skip" for op in creates)  # no second coupling or row
    assert all(f"d365kit sync resume {run.run_id}" in op.reason for op in creates)
    assert all(op.kind == "skip" for op in again)  # the updates' values are in place: nothing to write
    assert ws.resume(run.run_id, journal=journal, progress=False).ok
    check_exact_state(ws, raw, data, plan, journal, run.run_id)


def test_coupling_changes_that_failed_are_retried_by_resume(private, tmp_path, monkeypatch):
    sbx, ws, raw = private
    data = load(raw, 3, 3)
    plan = plan_for(ws, data)
    journal = tmp_path / "journal.sqlite"
    run = _outage_apply(sbx, ws, plan, journal, monkeypatch, committed=False)
    assert set(run.operations["state"]) == {"done"} and set(run.operations["coupling_state"]) == {"failed"}
    assert any("resume the run to retry them" in w for w in run.warnings) and not run.ok
    done = ws.resume(run.run_id, journal=journal, progress=False)
    assert done.ok and set(done.operations["coupling_state"]) == {"done"}
    check_exact_state(ws, raw, data, plan, journal, run.run_id)


# -- 4. one writer at a time ------------------------------------------------------------------------


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "d365kit.cli", "sync", *args]


def test_one_run_at_a_time_writes_a_mapping_across_processes(private, tmp_path):
    sbx, ws, raw = private
    data = load(raw, 0, 20)
    plan_file, overlapping = tmp_path / "plan.json", tmp_path / "overlapping.json"
    ids = [c[0] for c in data["creates"]]
    for path in (plan_file, overlapping):  # the same 20 records, planned twice: other new ids
        result = ws.reconcile("CUSTOMER", records=ids, progress=False)
        plan = ws.plan_sync(result, categories=["uncoupled_bc"], direction="to_dataverse", progress=False)
        assert [op.kind for op in plan] == ["create"] * 20
        plan.save(path)
    journal, env = tmp_path / "journal.sqlite", _env(sbx)
    target = SyncPlan.load(plan_file).target
    sbx.knobs.update(latency_ms=1500)
    try:
        first = subprocess.Popen(
            _cli("apply", str(plan_file), "--journal", str(journal), "--quiet"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not is_held(target, "CUSTOMER"):
            assert first.poll() is None, first.stdout.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        holder = is_held(target, "CUSTOMER")["run_id"]
        refused = subprocess.run(
            _cli("apply", str(overlapping), "--journal", str(journal), "--quiet"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert first.poll() is None, "the first run still holds its lock"
    finally:
        sbx.knobs.update(latency_ms=0)
    assert refused.returncode == 3 and f"being written by run {holder}" in refused.stderr, refused.stderr
    waiting = [
        subprocess.Popen(
            _cli("apply", str(path), "--journal", str(journal), "--quiet", "--wait", "120"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in (overlapping, plan_file)  # an overlapping plan, and the same plan again
    ]
    out_first, _ = first.communicate(timeout=120)
    (out_overlap, _), (out_same, _) = (p.communicate(timeout=120) for p in waiting)
    assert first.returncode == 0 and "inserted 20" in out_first, out_first
    assert waiting[0].returncode == 1 and "operations: stale 20" in out_overlap, out_overlap
    assert waiting[1].returncode == 0 and "operations: already_applied 20" in out_same, out_same
    assert "inserted 0" in out_same and "coupled 0" in out_same and "failed 0" in out_same
    accounts = _accounts(raw, data["tag"][0])
    assert len(accounts) == 20 and accounts["name"].is_unique  # no duplicate rows
    couplings = raw.bc_rows("crmIntegrationRecords", "$filter=tableId eq 18", api="companion")
    ours = [c for c in couplings if c["integrationId"] in {b for b, _, _ in data["creates"]}]
    assert len(ours) == 20 and len({c["crmId"] for c in ours}) == 20  # one coupling each


def _open_journals(folder: Path, rounds: int, barrier, failures) -> None:
    for n in range(rounds):  # a fresh file each round, opened by every process at the same moment
        barrier.wait(timeout=60)
        try:
            with Journal(folder / f"j{n}.sqlite") as j:
                j.start_run(uuid.uuid4().hex, "p", [], {})
        except Exception as exc:  # noqa: BLE001 - reported to the test
            failures.put(f"round {n}: {type(exc).__name__}: {exc}")


def test_simultaneous_journal_opens_retry_while_the_database_is_locked(tmp_path):
    """20 processes open a new journal at the same moment, 40 times: creating it and switching it to WAL
    used to fail now and then with "database is locked" (forked: no import in the children)."""
    ctx, rounds = multiprocessing.get_context("fork"), 40
    barrier, failures = ctx.Barrier(20), ctx.Queue()
    procs = [
        ctx.Process(target=_open_journals, args=(tmp_path, rounds, barrier, failures)) for _ in range(20)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0] * 20
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == []
    for n in range(rounds):
        with Journal(tmp_path / f"j{n}.sqlite") as j:
            assert len(j.list_runs()) == 20


# -- 5. replays ---------------------------------------------------------------------------------------


def test_applying_a_finished_plan_again_reports_it_already_applied(private, tmp_path):
    sbx, ws, raw = private
    data = load(raw, 3, 3)
    plan = plan_for(ws, data)
    journal = tmp_path / "journal.sqlite"
    first = ws.apply(plan, journal=journal, progress=False)
    assert first.ok and first.counts["inserted"] == 3 and first.counts["modified"] == 3
    again = ws.apply(plan, journal=journal, progress=False)
    assert set(again.operations["state"]) == {"already_applied"} and again.ok
    assert all(f"already applied by run {first.run_id}" in e for e in again.operations["error"])
    assert again.counts == {
        "inserted": 0,
        "modified": 0,
        "unchanged": 6,
        "skipped": 0,
        "failed": 0,
        "coupled": 0,
        "uncoupled": 0,
    }
    assert again.conflicts.empty and again.errors.empty and (again.operations["attempts"] == 0).all()
    assert len(_accounts(raw, data["tag"][0])) == 6


# -- 6. stale sources ---------------------------------------------------------------------------------


def test_a_source_changed_after_planning_is_stale_unless_the_current_value_is_asked_for(private, tmp_path):
    sbx, ws, raw = private
    record = craft_drift(ws, raw, "CUSTOMER", USED)
    result = ws.reconcile("CUSTOMER", records=[record["bc_id"]], progress=False)
    plan = ws.plan_sync(result, categories=["drift"], direction="to_dataverse", progress=False)
    (op,) = plan.operations
    planned, before = op.after["telephone1"], _account_phone(raw, record["dataverse_id"])
    newer = f"+1 666 {uuid.uuid4().int % 10_000_000:07d}"
    raw.bc_batch(
        [
            {
                "method": "PATCH",
                "url": f"customers({record['bc_id']})",
                "headers": {"If-Match": "*"},
                "body": {"phoneNumber": newer},
            }
        ]
    )
    journal = tmp_path / "journal.sqlite"
    run = ws.apply(plan, journal=journal, progress=False)
    assert list(run.operations["state"]) == ["stale"] and not run.ok and len(run.stale) == 1
    assert "source row changed" in run.stale["error"].iloc[0] and run.counts["skipped"] == 1
    assert _account_phone(raw, record["dataverse_id"]) == before != planned  # the old value not written
    current = ws.apply(plan, journal=journal, progress=False, stale="current")
    assert current.ok and current.counts["modified"] == 1
    assert _account_phone(raw, record["dataverse_id"]) == newer
    after = ws.reconcile("CUSTOMER", records=[record["bc_id"]], progress=False)
    assert set(after.records["category"]) == {"in_sync"}


# -- 7. unknown ids, private files, truncation ------------------------------------------------------


def test_record_ids_that_name_no_record_are_refused(private):
    sbx, ws, raw = private
    known = ws.reconcile("CUSTOMER", progress=False).records["bc_id"].dropna().iloc[0]
    ghost = str(uuid.uuid4())
    with pytest.raises(SyncPlanError, match=f"1 record id\\(s\\) name no record of CUSTOMER: {ghost}"):
        ws.plan_sync("CUSTOMER", records=[known, ghost], progress=False)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_journals_locks_and_saved_plans_are_private(private, tmp_path, monkeypatch):
    sbx, ws, raw = private
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("D365KIT_JOURNAL", raising=False)
    monkeypatch.delenv("D365KIT_LOCK_DIR", raising=False)
    folder = tmp_path / "data" / "d365kit" / "journal"
    folder.mkdir(parents=True, mode=0o755)
    os.chmod(folder, 0o755)
    old = folder / "sandbox.sqlite"
    sqlite3.connect(old).close()
    os.chmod(old, 0o644)  # as an earlier version left it
    record = craft_drift(ws, raw, "CUSTOMER", USED)
    result = ws.reconcile("CUSTOMER", records=[record["bc_id"]], progress=False)
    plan = ws.plan_sync(result, categories=["drift"], direction="to_dataverse", progress=False)
    assert _mode(plan.save(tmp_path / "plan.json")) == 0o600
    run = ws.apply(plan, progress=False)
    assert run.ok and run.journal == old
    assert _mode(folder) == 0o700 and _mode(old) == 0o600
    assert [_mode(p) for p in folder.glob("sandbox.sqlite-*")] == [0o600] * len(list(folder.glob("*-*")))
    locks = tmp_path / "data" / "d365kit" / "locks"
    assert _mode(locks) == 0o700 and {_mode(p) for p in locks.iterdir()} == {0o600}


def test_over_length_text_is_truncated_only_when_asked_and_the_operation_records_it(private, tmp_path):
    sbx, ws, raw = private
    record = ws.reconcile("CUSTOMER", progress=False).to_frame("in_sync").query("bc_id not in @USED").iloc[0]
    USED.add(record["bc_id"])
    long = f"Long {uuid.uuid4().hex[:8]} " + "x" * 106
    assert len(long) == 120
    raw.dv_patch("accounts", record["dataverse_id"], {"name": long})
    journal = tmp_path / "journal.sqlite"

    def plan(**options):
        result = ws.reconcile("CUSTOMER", records=[record["bc_id"]], progress=False)
        return ws.plan_sync(
            result, direction="from_dataverse", fields=["displayName"], progress=False, **options
        )

    (op,) = plan().operations
    assert len(op.after["displayName"]) == 120 and "too long" in op.reason and not op.truncated
    failed = ws.apply(plan(), journal=journal, progress=False)
    assert list(failed.operations["state"]) == ["failed"] and "100" in failed.failed["error"].iloc[0]
    cut = plan(truncate=True)
    (op,) = cut.operations
    assert op.after["displayName"] == long[:100] and op.truncated == {"displayName": 120}
    assert "truncated (truncate=True): displayName from 120 to 100 characters" in op.reason
    run = ws.apply(cut, journal=journal, progress=False)
    assert run.ok and run.counts["modified"] == 1
    (customer,) = raw.bc_rows("customers", f"$filter=id eq {record['bc_id']}&$select=displayName")
    assert customer["displayName"] == long[:100]
    with Journal(journal) as j:
        (journaled,) = j.operations(run.run_id)["op"]
    assert journaled.truncated == {"displayName": 120}
