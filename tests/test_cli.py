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


def test_start_in_the_foreground_then_attach_from_another_process(tmp_path):
    """`sandbox start` records its address; `sandbox env` in another process attaches; SIGTERM stops it."""
    import signal
    import time

    env = {**os.environ, "D365KIT_SANDBOX_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "d365kit.cli",
            "sandbox",
            "start",
            "--limits",
            "realistic",
            "--latency-ms",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        facts = None
        while time.monotonic() < deadline and proc.poll() is None:
            out = subprocess.run(
                [sys.executable, "-m", "d365kit.cli", "sandbox", "env", "--json"],
                capture_output=True,
                text=True,
                env=env,
            )
            if out.returncode == 0:
                facts = json.loads(out.stdout)
                break
            time.sleep(0.3)
        assert facts is not None, proc.stdout.read() if proc.poll() is not None else "sandbox did not start"
        assert facts["data_dir"] == str(tmp_path) and facts["host"] == "127.0.0.1"
        import requests

        from d365kit.odata.session import PinnedSession

        r = PinnedSession(facts["ca_bundle"]).get(
            f"https://127.0.0.1:{facts['port']}/_sandbox/health", timeout=10
        )
        assert r.json() == {"status": "ok"}
        assert isinstance(r, requests.Response)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not (tmp_path / "running.json").exists()
