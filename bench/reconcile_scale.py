"""Wall time and peak memory of one reconcile at scale (by hand; not part of the test suite).

    .venv/bin/d365kit sandbox seed --scale 100000 --data-dir /tmp/rec100k    # ~2 min, once
    .venv/bin/python bench/reconcile_scale.py --data-dir /tmp/rec100k          # CUSTOMER by default

The sandbox runs in this process (a thread, as notebooks use it); the reconcile runs in a child process
so its peak memory is its own. Two children, one after the other: the first measures wall time and
``ru_maxrss`` (peak resident set: Python heap, numpy and pyarrow buffers, and the ~160 MiB the imports
take), the second the tracemalloc peak (Python and numpy allocations only; pyarrow-backed strings are
not traced), because tracing slows allocation-heavy code about twofold. The result is checked against
the seed manifest (precision and recall of the planted problems) and printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import time
import tracemalloc
from pathlib import Path
from typing import Any


def _mib(kib: int) -> float:
    return round(kib / 1024, 1)  # ru_maxrss is in KiB on Linux


def _reconcile(data_dir: str, mapping: str, trace: bool, out: Any) -> None:
    """Child process: connect to the running sandbox, reconcile, report time, memory and accuracy."""
    os.environ["D365KIT_SANDBOX_DIR"] = data_dir
    import pandas as pd

    import d365kit

    ws = d365kit.connect("sandbox")
    ws.bc.metadata(), ws.dataverse.metadata()  # warm-up outside the measurement: token + $metadata
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    result = ws.reconcile(mapping, progress=not trace)
    seconds = time.perf_counter() - started
    if trace:
        out.put({"tracemalloc_peak_mib": round(tracemalloc.get_traced_memory()[1] / 2**20, 1)})
        return
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    manifest = json.loads((Path(data_dir) / "manifest.json").read_text())
    expected = {
        (p["category"], p["bc_id"], p["dataverse_id"])
        for p in manifest["problems"]
        if p["mapping"] == mapping
    }
    rec = result.records[result.records["category"] != "in_sync"]
    found = {
        (c, None if pd.isna(b) else b, None if pd.isna(d) else d)
        for c, b, d in zip(rec["category"], rec["bc_id"], rec["dataverse_id"], strict=True)
    }
    out.put(
        {
            "mapping": mapping,
            "scale": manifest["scale"],
            "rows_read": result.read,
            "wall_seconds": round(seconds, 1),
            "peak_rss_mib": _mib(peak),
            "rss_growth_mib": _mib(peak - base),
            "categories": {
                c: n for c, n in zip(result.summary["category"], result.summary["records"], strict=True)
            },
            "precision": round(len(found & expected) / max(1, len(found)), 4),
            "recall": round(len(found & expected) / max(1, len(expected)), 4),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/tmp/rec100k", help="a seeded sandbox data folder")
    parser.add_argument("--mapping", default="CUSTOMER")
    parser.add_argument("--scale", type=int, default=100_000, help="seed this scale if the folder is empty")
    args = parser.parse_args()

    from d365kit.sandbox.server import Sandbox

    seeded = (Path(args.data_dir) / "manifest.json").exists()
    with Sandbox(args.data_dir, scale=None if seeded else args.scale):
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        report: dict[str, Any] = {}
        for trace in (False, True):
            child = ctx.Process(target=_reconcile, args=(args.data_dir, args.mapping, trace, queue))
            child.start()
            report.update(queue.get())
            child.join()
    report["sandbox_process_peak_rss_mib"] = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
