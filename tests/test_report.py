"""Headless notebook runs and the HTML report, against the session sandbox (papermill kernels are subprocesses)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from d365kit import cli
from d365kit.report import FIGURES_MIME, build_report, check_parameters, parse_value

ROOT = Path(__file__).resolve().parents[1]
SYNC_HEALTH = ROOT / "notebooks" / "04_sync_health.ipynb"
# A JWT: base64url '{"' header, '.', base64url '{"' payload, '.'. A bare "eyJ" is not a usable test: the
# inline plotly.js bundle contains it inside identifiers ("sankeyJustify").
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")


@pytest.fixture(scope="module")
def failing_notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nb") / "00_broken.ipynb"
    nb = new_notebook(
        cells=[
            new_code_cell('profile = "sandbox"', metadata={"tags": ["parameters"]}),
            new_code_cell('raise RuntimeError("planted failure")'),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def report(ws, failing_notebook, tmp_path_factory):
    """One report of two notebooks: the broken one first, so its failure cannot hide the good one."""
    # The `ws` fixture put D365KIT_SANDBOX_DIR in os.environ, which the papermill kernels inherit.
    assert os.environ["D365KIT_SANDBOX_DIR"] == ws.profile.sandbox_dir
    out = tmp_path_factory.mktemp("report")
    return build_report([failing_notebook, SYNC_HEALTH], out, {"days": 30}, profile="sandbox")


def test_sync_health_runs_and_the_index_links_it_with_figures(report):
    broken, health = report.results
    assert health.ok, health.error
    assert health.figures["jobs"] > 0 and 0 < health.figures["coverage_pct"] <= 100
    assert list(health.figures)[:2] == ["period_start", "period_end"]  # recorded order survives
    index = report.index.read_text()
    assert f'href="{health.html.name}"' in index
    assert f"<th>jobs</th><td>{health.figures['jobs']}</td>" in index
    assert json.loads((report.index.parent / "report.json").read_text())["notebooks"][1]["status"] == "ok"

    page = health.html.read_text()
    assert "plotly.js v" in page  # the bundle is inline: charts render offline
    assert page.count('class="plotly-graph-div"') >= 5
    assert not re.search(r"<script[^>]+src=\"https?:", page)  # no CDN script at all
    assert "load_history" not in page  # code cells are left out
    executed = nbformat.read(health.executed, as_version=4)
    recorded = [o for c in executed.cells for o in c.get("outputs", []) if FIGURES_MIME in o.get("data", {})]
    assert len(recorded) == 1


def test_a_failing_notebook_is_reported_and_does_not_hide_the_others(report):
    broken, health = report.results
    assert (broken.status, broken.error) == ("failed", "RuntimeError: planted failure")
    assert health.status == "ok" and not report.ok
    index = report.index.read_text()
    assert 'data-status="failed"' in index and "RuntimeError: planted failure" in index
    assert "1 of 2 notebooks ran, 1 failed" in index
    assert broken.html.exists() and "planted failure" in broken.html.read_text()


def test_no_secret_or_token_in_notebooks_or_reports(report, sandbox):
    secret = sandbox.info()["client_secret"]
    files = [p for p in report.index.parent.iterdir() if p.suffix in (".html", ".ipynb", ".json")]
    assert len(files) == 6
    for path in files:
        text = path.read_text()
        assert secret not in text, path.name
        assert not JWT.search(text), path.name


def test_cli_run_reports_a_failure_with_exit_code_1(ws, failing_notebook, tmp_path, capsys):
    assert cli.main(["run", str(failing_notebook), "--out", str(tmp_path), "-p", "profile", "sandbox"]) == 1
    err = capsys.readouterr().err
    assert "00_broken.ipynb: failed" in err and "RuntimeError: planted failure" in err
    assert (tmp_path / "00_broken.html").exists()


def test_cli_refuses_secret_looking_parameters(failing_notebook, tmp_path, capsys):
    assert (
        cli.main(
            [
                "report",
                "--notebooks",
                str(failing_notebook),
                "--out",
                str(tmp_path),
                "-p",
                "client_secret",
                "x",
            ]
        )
        == 2
    )
    assert "looks like a secret" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_parameters_parse_as_literals_and_secrets_are_refused():
    assert [parse_value(v) for v in ("30", "1.5", "True", "None", "['CUSTOMER']", "sandbox")] == [
        30,
        1.5,
        True,
        None,
        ["CUSTOMER"],
        "sandbox",
    ]
    check_parameters({"profile": "prod", "days": 7, "mappings": ["CUSTOMER"]})
    for bad in (
        {"password": "x"},
        {"access_token": "x"},
        {"note": "eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ4In0.sig"},
    ):
        with pytest.raises(ValueError, match="looks like a secret"):
            check_parameters(bad)
