"""Wall time, peak memory and a profile of one call: the measuring instruments of the benchmarks.

Wall time: ``time.perf_counter`` around one call. Each contender is called ``warmup`` times first
(connections, caches, lazy imports), then the contenders take turns ``repeats`` times, interleaved, so a
drift of the machine (another process, a warming cache) hits all of them alike; the figure is the median.
``gc.collect()`` runs before each call, outside the timing, and each call's result is dropped before the
next one, so one contender's garbage is not collected on another's clock.

Peak memory: ``tracemalloc``, in a separate call that is not timed (tracing slows every allocation several
fold). It is the peak of what Python's allocators hand out above the level at the start of the call, which
includes numpy and pandas buffers (numpy reports its data allocations to tracemalloc) but not memory a C
library allocates on its own (OpenSSL's buffers, SQLite's page cache). Chosen over ``ru_maxrss`` because
it measures one call in this process, with no child process to start and no high-water mark left behind
by earlier work; it suits comparing two pandas pipelines on the same frames.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

Call = Callable[[], Any]
ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def time_contenders(contenders: dict[str, Call], *, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each contender: ``warmup`` untimed calls each, then ``repeats`` timed rounds."""
    for call in contenders.values():
        for _ in range(warmup):
            call()
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, call in contenders.items():
            gc.collect()
            start = time.perf_counter()
            result = call()
            seconds[name].append(time.perf_counter() - start)
            del result
    return seconds


def peak_traced_mib(call: Call) -> float:
    """Peak of traced allocations during one call, in MiB above the level at its start."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return (peak - base) / 2**20


def profile_top(call: Call, n: int = 5) -> list[str]:
    """The ``n`` entries with the most cumulative time in one profiled call (this thread only), leaving
    out the benchmark's own wrappers (files under ``bench/``)."""
    profiler = cProfile.Profile()
    profiler.runcall(call)
    stats = pstats.Stats(profiler)
    entries = sorted(stats.stats.items(), key=lambda item: item[1][3], reverse=True)  # type: ignore[attr-defined]
    entries = [e for e in entries if not e[0][0].startswith(ROOT + "bench/")]
    lines = []
    for (path, line, func), (_, calls, _, cumulative, _) in entries[:n]:
        where = f"  ({path.removeprefix(ROOT).rsplit('/site-packages/', 1)[-1]}:{line})" if line else ""
        lines.append(f"{cumulative:8.3f} s  {calls:>7} calls  {func}{where}")
    return lines
