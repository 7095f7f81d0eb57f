"""A sandbox in its own process, as a user would run it: ``d365kit sandbox start`` in another shell.

The benchmark's client and the emulator must not share one interpreter (and its GIL): the figures would
then measure their contention. The process is started with ``python -m d365kit.cli sandbox start``;
it is ready when ``sandbox env --json`` answers. Knobs (latency, limits) change at run time through the
control endpoint ``PATCH {origin}/_sandbox/knobs``, whose admin key ``env --json`` leaves out: it is read
from ``<data dir>/credentials.json``, the runner's own sandbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

READY_TIMEOUT_S = 180.0


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "d365kit.cli", *args]


class SandboxProcess:
    """``with SandboxProcess(data_dir) as sbx: sbx.workspace() ...``; stopped (SIGTERM) on exit."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.log = self.data_dir.parent / f"{self.data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.facts: dict[str, Any] = {}

    @property
    def origin(self) -> str:
        return f"https://{self.facts['host']}:{self.facts['port']}"

    def start(self) -> SandboxProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                _cli("sandbox", "start", "--data-dir", str(self.data_dir)),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the sandbox exited with {self.proc.returncode}:\n{self._log_tail()}")
            env = subprocess.run(
                _cli("sandbox", "env", "--json", "--data-dir", str(self.data_dir)),
                capture_output=True,
                text=True,
            )
            if env.returncode == 0:
                self.facts = json.loads(env.stdout)
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"the sandbox did not answer `sandbox env` in {READY_TIMEOUT_S:.0f} s:\n{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def workspace(self) -> Any:
        """``d365kit.connect("sandbox")`` attached to this process (the profile reads the data dir from the
        environment once, while connecting)."""
        import d365kit

        saved = os.environ.get("D365KIT_SANDBOX_DIR")
        os.environ["D365KIT_SANDBOX_DIR"] = str(self.data_dir)
        try:
            return d365kit.connect("sandbox")
        finally:
            if saved is None:
                os.environ.pop("D365KIT_SANDBOX_DIR", None)
            else:
                os.environ["D365KIT_SANDBOX_DIR"] = saved

    def knobs(self, **changes: Any) -> dict[str, Any]:
        """Change knobs at run time, e.g. ``knobs(latency_ms=50)``; returns all of them."""
        admin_key = json.loads((self.data_dir / "credentials.json").read_text())["admin_key"]
        resp = requests.patch(
            f"{self.origin}/_sandbox/knobs",
            json=changes,
            headers={"X-Sandbox-Admin-Key": admin_key},
            verify=self.facts["ca_bundle"],
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the sandbox process has used so far (Linux ``/proc``)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
