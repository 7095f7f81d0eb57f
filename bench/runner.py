"""The one runner: every registered benchmark, one sandbox process, one dated section in RESULTS.md."""

from __future__ import annotations

import importlib
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench.context import BenchContext
from bench.measure import profile_top
from bench.results import BenchReport, append_section, render_section

# name -> module with TITLE and run(ctx) -> list[Case]; run in this order.
BENCHMARKS: dict[str, str] = {
    "read": "bench.read",
    "main_job": "bench.main_job",
    "reconcile_core": "bench.reconcile_core",
    "reconcile_scale": "bench.reconcile_scale",
    "write": "bench.write",
}
# run only when named (`d365kit bench --only NAME`): reconcile_scale seeds its own 100,000 sandbox (~2 min)
OPT_IN = frozenset({"reconcile_scale"})
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
WARMUP = 1


def _run_one(name: str, ctx: BenchContext) -> BenchReport:
    module = importlib.import_module(BENCHMARKS[name])
    print(f"\n== {module.TITLE}", flush=True)
    start = time.perf_counter()
    try:
        cases = module.run(ctx)
        for case in cases:
            if not case.met and case.hot_path is not None:
                print(f"   {case.title}: target missed; profiling the hot path once ...", flush=True)
                case.profile = profile_top(case.hot_path)
    except Exception:  # noqa: BLE001 - one failed benchmark is reported, the others still run
        traceback.print_exc()
        return BenchReport(name, module.TITLE, [], time.perf_counter() - start, traceback.format_exc(limit=4))
    return BenchReport(name, module.TITLE, cases, time.perf_counter() - start)


def run_benchmarks(names: list[str] | None = None, *, repeats: int = 5, results: Path = RESULTS) -> int:
    """Run the chosen benchmarks (default: all but ``OPT_IN``) and append their section to ``results``;
    1 if one failed."""
    chosen = names or [n for n in BENCHMARKS if n not in OPT_IN]
    unknown = [n for n in chosen if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="d365kit-bench-") as tmp:
        ctx = BenchContext(repeats=repeats, warmup=WARMUP, workdir=Path(tmp))
        try:
            reports = [_run_one(name, ctx) for name in chosen]
        finally:
            ctx.close()
    section = render_section(reports, repeats=repeats, warmup=WARMUP, started=started)
    append_section(results, section)
    print(f"\n{section}\nAppended to {results}.")
    return 1 if any(r.error for r in reports) else 0
