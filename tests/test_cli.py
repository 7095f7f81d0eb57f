"""The `d365kit` command: sandbox env/seed/reset and argument errors."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from d365kit.cli import ENV_EXPORTS, main


def test_env_prints_exports_and_json_of_the_running_sandbox(sandbox, capsys):
    data_dir = sandbox.info()["data_dir"]
    assert main(["sandbox", "env", "--data-dir", data_dir]) == 0
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in capsys.readouterr().out.strip().splitlines()
    )
    assert set(exports) == set(ENV_EXPORTS)
    info = sandbox.info()
    for var, key in ENV_EXPORTS.items():
        assert shlex.split(exports[var]) == [str(info[key])], var

    assert main(["sandbox", "env", "--data-dir", data_dir, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["bc_url"] == info["bc_url"] and facts["client_secret"] == info["client_secret"]
    assert "admin_key" not in facts


def test_env_without_a_running_sandbox_says_how_to_start_one(tmp_path, capsys):
    assert main(["sandbox", "env", "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "No sandbox is running" in err and "d365kit sandbox start" in err


def test_scale_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        main(["sandbox", "seed", "--scale", "0"])
    assert "--scale must be a positive number" in capsys.readouterr().err


def test_seed_and_reset_write_a_manifest(tmp_path, capsys):
    assert main(["sandbox", "seed", "--data-dir", str(tmp_path)]) == 0
    first = json.loads((tmp_path / "manifest.json").read_text())
    assert main(["sandbox", "reset", "--data-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "manifest.json").read_text()) == first
    assert "Reset" in capsys.readouterr().out


def test_console_script_runs(tmp_path):
    env = {**os.environ, "D365KIT_SANDBOX_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "d365kit.cli", "sandbox", "--help"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0 and "start" in out.stdout and "env" in out.stdout
