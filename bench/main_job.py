"""Main job: the `make demo` steps after installation, cold.

Each call runs ``.venv/bin/d365kit demo --data-dir <fresh folder>`` as a subprocess from the repository
root (as ``make demo`` does), so every run starts, seeds and stops its own sandbox from nothing. The demo
grows (notebooks, reports); the benchmark times the command, whatever it does. Target: <= 60 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.context import BenchContext
from bench.measure import time_contenders
from bench.results import Case, MaxSeconds, Measurement

TITLE = "Main job: `make demo` after installation"
ROOT = Path(__file__).resolve().parents[1]
LIMIT_S = 60.0


def demo_once(workdir: Path) -> None:
    data_dir = tempfile.mkdtemp(prefix="demo-", dir=workdir)
    env = {k: v for k, v in os.environ.items() if k != "D365KIT_SANDBOX_DIR"}
    exe = Path(sys.executable).with_name("d365kit")
    done = subprocess.run(
        [str(exe), "demo", "--data-dir", data_dir], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(
            f"`d365kit demo` exited with {done.returncode}:\n{(done.stdout + done.stderr)[-2000:]}"
        )


def demo_in_process(workdir: Path) -> None:
    """The same demo in this process, for the profile of a missed target (cProfile sees one process)."""
    from d365kit.demo import run_demo

    run_demo(Path(tempfile.mkdtemp(prefix="demo-", dir=workdir)))


def run(ctx: BenchContext) -> list[Case]:
    print("timing `d365kit demo` on fresh data folders ...", flush=True)
    times = time_contenders({"demo": lambda: demo_once(ctx.workdir)}, repeats=ctx.repeats, warmup=ctx.warmup)
    return [
        Case(
            "Cold `d365kit demo --data-dir <fresh folder>`",
            [Measurement("d365kit demo", times["demo"])],
            MaxSeconds(LIMIT_S, f"<= {LIMIT_S:.0f} s"),
            notes=["Each call: a new data folder, so key material, seed and sandbox start are part of it."],
            bound="the demo's steps; the profile is of the same demo run inside the benchmark process.",
            hot_path=lambda: demo_in_process(ctx.workdir),
        )
    ]
