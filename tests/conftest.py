"""Shared fixtures: one seeded sandbox per test session, reached over HTTPS like a real tenant."""

from __future__ import annotations

import pytest

from d365kit.sandbox.server import Sandbox


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    """A running, seeded sandbox (default scale) in a private data dir."""
    with Sandbox(data_dir=tmp_path_factory.mktemp("sandbox")) as sbx:
        yield sbx


@pytest.fixture()
def knobs(sandbox):
    """The sandbox's runtime knobs, restored after the test."""
    saved = sandbox.knobs.as_dict()
    yield sandbox.knobs
    sandbox.knobs.update(**saved)


@pytest.fixture(scope="session")
def ws(sandbox):
    """A Workspace on the session sandbox through the built-in ``sandbox`` profile (which attaches to it)."""
    import os

    import d365kit

    saved = os.environ.get("D365KIT_SANDBOX_DIR")
    os.environ["D365KIT_SANDBOX_DIR"] = sandbox.info()["data_dir"]
    try:
        yield d365kit.connect("sandbox")
    finally:
        if saved is None:
            os.environ.pop("D365KIT_SANDBOX_DIR", None)
        else:
            os.environ["D365KIT_SANDBOX_DIR"] = saved


# -- the notebooks, run once per session (tests/test_notebooks.py, test_report_browser.py, test_no_secrets.py)

# Notebook parameters for the test run: two mappings keep each notebook to a few seconds and still cover
# every category (CUSTOMER has them all). The selective sync notebook takes its own `mapping`.
NOTEBOOK_PARAMETERS = {"mappings": ["CUSTOMER", "CURRENCY"]}


@pytest.fixture(scope="session")
def notebook_run(tmp_path_factory):
    """``d365kit report`` (the CLI, default notebooks = every notebook in notebooks/) run headlessly against
    a private, pristine sandbox: the key figures are checked against its seed manifest, so other tests'
    scratch rows must not reach it. The sandbox keeps running for nbval's re-execution."""
    import contextlib
    import io
    import json
    import os
    from pathlib import Path
    from types import SimpleNamespace

    from d365kit import cli

    out = tmp_path_factory.mktemp("notebook-report")
    with Sandbox(data_dir=tmp_path_factory.mktemp("notebook-sandbox")) as sbx:
        info = sbx.info()
        saved = os.environ.get("D365KIT_SANDBOX_DIR")
        os.environ["D365KIT_SANDBOX_DIR"] = info["data_dir"]
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                args = ["report", "--out", str(out)]
                for name, value in NOTEBOOK_PARAMETERS.items():
                    args += ["-p", name, repr(value)]
                code = cli.main(args)
        finally:
            if saved is None:
                os.environ.pop("D365KIT_SANDBOX_DIR", None)
            else:
                os.environ["D365KIT_SANDBOX_DIR"] = saved
        summary = json.loads((out / "report.json").read_text())
        yield SimpleNamespace(
            sandbox=sbx,
            info=info,
            manifest=json.loads(Path(info["manifest"]).read_text()),
            out=out,
            index=out / "index.html",
            summary=summary,
            by_name={nb["notebook"]: nb for nb in summary["notebooks"]},
            code=code,
            log=stdout.getvalue() + stderr.getvalue(),
            stdout=stdout.getvalue(),
        )
