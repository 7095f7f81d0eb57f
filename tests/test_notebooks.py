"""The four notebooks: run headlessly by ``d365kit report`` (papermill) against a pristine sandbox, key
figures held against the seed manifest, then re-executed and compared cell by cell by nbval."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import nbformat
import pytest
from conftest import NOTEBOOK_PARAMETERS

from d365kit.report import INTERACTIVE_TAG, check_parameters, default_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_compare_records", "02_coupling_mismatches", "03_selective_sync", "04_sync_health"]
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"


def _problems(manifest: dict, mappings: list[str]) -> Counter:
    return Counter(p["category"] for p in manifest["problems"] if p["mapping"] in mappings)


def test_the_notebooks_folder_holds_the_four_notebooks():
    assert [p.stem for p in default_notebooks(ROOT / "notebooks")] == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_holds_plain_values_only(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and nb.cells.index(tagged[0]) == 1  # right after the title
    values = {}
    for stmt in ast.parse(tagged[0].source).body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1, ast.unparse(stmt)
        values[stmt.targets[0].id] = ast.literal_eval(stmt.value)  # a literal: no code, no lookups
    assert values["profile"] == "sandbox"
    check_parameters(values)  # no secret-looking name or token value
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert max(len(c.source.splitlines()) for c in code) <= 15  # thin cells: the logic lives in d365kit
    assert not any(c.outputs for c in code)  # stored clean; outputs come from runs


def test_report_covers_every_notebook_and_all_ran(notebook_run):
    assert notebook_run.code == 0, notebook_run.log
    assert [nb["notebook"] for nb in notebook_run.summary["notebooks"]] == [f"{n}.ipynb" for n in NOTEBOOKS]
    index = notebook_run.index.read_text()
    assert "4 of 4 notebooks ran" in index
    for name in NOTEBOOKS:
        assert f'href="{name}.html"' in index
        assert f"{name}.ipynb: ok" in notebook_run.stdout
    assert notebook_run.stdout.strip().splitlines()[-1] == str(notebook_run.index)


def test_compare_records_figures_match_the_seed_manifest(notebook_run):
    figures = notebook_run.by_name["01_compare_records.ipynb"]["figures"]
    expected = _problems(notebook_run.manifest, NOTEBOOK_PARAMETERS["mappings"])
    assert figures["mappings"] == 2
    for category in ("drift", "conflict", "pending", "coupled_missing_bc", "coupled_missing_dataverse"):
        assert figures[category] == expected[category], category
    for category in ("duplicate_coupling", "uncoupled_bc", "uncoupled_dataverse", "out_of_scope"):
        assert figures[category] == expected[category], category
    assert (figures["skipped"], figures["failed"]) == (expected["skipped"], expected["failed"])
    assert figures["problems"] == sum(expected.values())
    assert figures["records"] == figures["in_sync"] + figures["problems"] > figures["problems"]
    fields = {
        (p["mapping"], f["bc"], f["dataverse"])
        for p in notebook_run.manifest["problems"]
        if p["mapping"] in NOTEBOOK_PARAMETERS["mappings"]
        for f in p.get("fields", [])
    }
    assert figures["differing_fields"] == len(fields)


def test_coupling_mismatch_figures_match_the_seed_manifest(notebook_run):
    figures = notebook_run.by_name["02_coupling_mismatches.ipynb"]["figures"]
    mappings = NOTEBOOK_PARAMETERS["mappings"]
    expected = _problems(notebook_run.manifest, mappings)
    assert figures["orphan"] == expected["coupled_missing_bc"] + expected["coupled_missing_dataverse"]
    assert figures["duplicate"] == expected["duplicate_coupling"]
    assert figures["uncoupled"] == expected["uncoupled_bc"] + expected["uncoupled_dataverse"]
    for kind in ("out_of_scope", "skipped", "failed"):
        assert figures[kind] == expected[kind], kind
    matched = [
        p
        for p in notebook_run.manifest["problems"]
        if p["mapping"] in mappings and p["category"].startswith("uncoupled") and p["match"]
    ]
    assert figures["uncoupled_with_candidate"] == len(matched)
    assert 0 < figures["coverage_pct"] < 100


def test_selective_sync_notebook_plans_a_dry_run_by_default(notebook_run):
    """Defaults: CUSTOMER's drift and uncoupled BC records to Dataverse: the drifted record is updated, the
    uncoupled one with an exact match is coupled to it, the other is created; nothing is applied."""
    figures = notebook_run.by_name["03_selective_sync.ipynb"]["figures"]
    problems = [p for p in notebook_run.manifest["problems"] if p["mapping"] == "CUSTOMER"]
    drift = [p for p in problems if p["category"] == "drift"]
    lonely = [p for p in problems if p["category"] == "uncoupled_bc"]
    matched = [p for p in lonely if p["match"]]
    assert figures["mapping"] == "CUSTOMER" and figures["applied"] is False
    assert figures["operations"] == len(drift) + len(lonely)
    assert figures["plan_update"] == len(drift)
    assert figures["plan_couple"] == len(matched)
    assert figures["plan_create"] == len(lonely) - len(matched)


def test_sync_health_figures_match_the_seed(notebook_run):
    """The seed's job log for the notebook's mappings, exactly: every scheduled mapping runs every
    ``job_every_min`` over the manifest's ``history_days`` up to ``now``, one job per direction; a job's
    ``failed`` equals its error rows. The error rows are the planted problems' (a skipped record failed in two
    runs, a failed one in one run) plus historical errors of records that synchronized fine later; the
    manifest lists only the former, so the exact counts are read from the pristine sandbox's store (which
    tests/test_sandbox_seed.py holds against the manifest), not through d365kit."""
    from d365kit.sandbox import schema
    from d365kit.sandbox.seed_catalog import BIDI, MAPPINGS

    figures = notebook_run.by_name["04_sync_health.ipynb"]["figures"]
    manifest = notebook_run.manifest
    mappings = NOTEBOOK_PARAMETERS["mappings"]
    now = datetime.fromisoformat(manifest["now"].replace("Z", "+00:00"))
    assert figures["period_end"] == now.strftime("%Y-%m-%d")
    assert figures["period_start"] == (now - timedelta(days=manifest["history_days"])).strftime("%Y-%m-%d")

    by_name = {m.name: m for m in MAPPINGS}
    runs = {name: manifest["history_days"] * 24 * 60 // by_name[name].job_every_min for name in mappings}
    directions = {name: 2 if by_name[name].direction == BIDI else 1 for name in mappings}
    assert figures["jobs"] == sum(runs[name] * directions[name] for name in mappings)

    store = notebook_run.sandbox.ctx.store
    company = manifest["company"]["id"]
    jobs = [
        j
        for j in store.query(schema.COMPANION["integrationSynchJobs"], company=company)
        if j["integrationTableMappingName"] in mappings
    ]
    assert len(jobs) == figures["jobs"]
    errors = Counter(
        e["integrationSynchJobId"].lower()
        for e in store.query(schema.COMPANION["integrationSynchJobErrors"], company=company)
    )
    failed = {j["id"].lower(): j["failed"] for j in jobs if j["failed"]}
    assert all(errors[job] == n for job, n in failed.items())
    assert figures["failed_jobs"] == len(failed)
    assert figures["failed_records"] == figures["errors"] == sum(failed.values())
    per_mapping = Counter()
    for j in jobs:
        per_mapping[j["integrationTableMappingName"]] += j["failed"]
    (worst, most), *rest = per_mapping.most_common()
    if not rest or rest[0][1] < most:
        assert figures["worst_mapping"] == worst

    # the planted skipped/failed records are among them: their couplings name a failed job of the log
    planted = _problems(manifest, mappings)
    assert planted["skipped"] > 0 and planted["failed"] > 0
    assert figures["errors"] >= 2 * planted["skipped"] + planted["failed"]
    couplings = {c["id"]: c for c in store.query(schema.COMPANION["crmIntegrationRecords"], company=company)}
    for p in manifest["problems"]:
        if p["mapping"] in mappings and p["category"] in ("skipped", "failed"):
            (cid,) = p["coupling_ids"]
            c = couplings[cid]
            job = c["lastSynchCrmJobId"] if p["changed_side"] == "bc" else c["lastSynchJobId"]
            assert failed.get(job.lower(), 0) >= 1, p["id"]

    # coverage: couplings of the mappings' BC tables against those tables' rows (capped per table)
    coupled = Counter(c["tableId"] for c in couplings.values())
    total = covered = 0
    for name in mappings:
        m = by_name[name]
        rows = store.count(schema.entity_set(m.bc_service, m.bc_set), company=company)
        total, covered = total + rows, covered + min(rows, coupled[m.table_id])
    assert figures["coverage_pct"] == round(100 * covered / total, 1) < 100


def test_interactive_panels_run_headlessly_and_stay_out_of_the_html(notebook_run):
    for name in NOTEBOOKS:
        executed = nbformat.read(notebook_run.out / f"{name}.ipynb", as_version=4)
        tagged = [c for c in executed.cells if INTERACTIVE_TAG in c.metadata.get("tags", [])]
        panels = [c for c in tagged if c.cell_type == "code"]
        assert len(panels) == 1 and tagged[-1] is panels[0], name  # its heading is tagged too
        (output,) = panels[0].outputs  # the panel was built and shown, with a plain-text stand-in
        assert "application/vnd.jupyter.widget-view+json" in output["data"]
        assert "an interactive panel" in output["data"]["text/plain"]
        # inside the kernel the panel rendered into its Output widget (papermill saved the widget state)
        state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        shown = [m["state"].get("outputs", []) for m in state.values() if m["model_name"] == "OutputModel"]
        assert any(shown), name
        page = (notebook_run.out / f"{name}.html").read_text()
        assert "an interactive panel" not in page and "widget-view+json" not in page, name
        assert "jupyter-widgets" not in page and "unpkg.com" not in page, name


def test_nbval_reexecutes_every_notebook_to_the_same_outputs(notebook_run, tmp_path):
    """nbval runs each executed notebook again in a fresh kernel (same sandbox) and compares every cell's
    outputs, random plotly ids sanitized; the key figures' JSON is compared exactly."""
    executed = [str(notebook_run.out / f"{name}.ipynb") for name in NOTEBOOKS]
    env = {**os.environ, "D365KIT_SANDBOX_DIR": notebook_run.info["data_dir"]}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(SANITIZE),
            *executed,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = proc.stdout[-4000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    cells = sum(
        c.cell_type == "code"
        for name in NOTEBOOKS
        for c in nbformat.read(notebook_run.out / f"{name}.ipynb", 4).cells
    )
    assert f"{cells} passed" in proc.stdout, tail
