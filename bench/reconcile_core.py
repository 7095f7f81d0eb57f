"""Reconcile core: two frames of 1,000,000 coupled rows x 20 mapped fields, d365kit against datacompy.

The frames (seeded numpy, built once per run, pickled in the run's scratch folder; not measured): a GUID
key column ``id`` and 10 text fields (pandas ``string``, pyarrow-backed, as ``d365kit.frames`` types them)
and 10 decimal fields (``float64``). The right frame's rows are shuffled, so both tools join on the key.
Planted per field: 2% null on both sides (equal); ~5% differing cells (another value, and for a tenth of
them a null on one side); among the rest, 10% of the right side's text spelled otherwise but equal (upper
case, surrounding blanks) and 10% of its decimals off by less than the tolerance. ASCII text, no blanks:
there both tools' rules agree (d365kit: trim, blank == null, casefold; datacompy: strip, upper case).

Contenders, on the same frames with the same absolute tolerance (0.01, no relative tolerance):

- baseline: ``datacompy.PandasCompare(left, right, join_columns=["id"], abs_tol=0.01, rel_tol=0,
  ignore_spaces=True, ignore_case=True)`` (the pandas backend): outer join, per-column match series and
  column stats, both values of every joined row side by side (``intersect_rows``). ``all_mismatch()``
  is not called (it would compare every column again), which is in datacompy's favour;
- d365kit: ``d365kit.compare.compare(left, right, fields, on="id")`` with ``FieldSpec(kind="text")``
  (case-insensitive) and ``FieldSpec(kind="decimal", tolerance=0.01)``: the code ``reconcile`` runs
  per field (``field_differs``), plus the difference matrix, per-field counts and the differing values
  side by side (long format).

Every repetition of each tool is a fresh process (``python -m bench.reconcile_core <tool> <frames>``):
it loads the frames, warms up on their first 1,000 rows, then times one call. Peak memory is the child's
peak resident set during that call above its resident set at the start (Linux ``VmHWM``, reset through
``/proc/self/clear_refs``; ``VmRSS``): unlike tracemalloc it sees pyarrow's buffers, where both tools keep
their strings. The per-field differing counts of both tools must equal the planted ones, else the run is
void. Targets: d365kit >= 4x faster than datacompy, with no more peak memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.context import BenchContext
from bench.results import Case, Measurement, SpeedRatio
from d365kit.compare import FieldSpec, compare

TITLE = "Reconcile core: 1,000,000 coupled rows x 20 fields, d365kit compare vs datacompy"
ROOT = Path(__file__).resolve().parents[1]
ROWS = 1_000_000
SEED = 7
KEY = "id"
TEXT = tuple(f"text_{i:02d}" for i in range(10))
AMOUNTS = tuple(f"amount_{i:02d}" for i in range(10))
TOLERANCE = 0.01
DIFFER = 0.05  # share of differing cells per field
NULL = 0.02  # share of cells null on both sides
ONE_NULL = 0.1  # share of the differing cells that are null on one side
VARIANT = 0.10  # share of the other text cells spelled otherwise on the right (equal once normalized)
NOISE = 0.10  # share of the other decimals off by less than the tolerance on the right
VOCABULARY = 100_000
WARM_ROWS = 1_000
FIELDS = tuple(FieldSpec(c, c, "text") for c in TEXT) + tuple(
    FieldSpec(c, c, "decimal", tolerance=TOLERANCE) for c in AMOUNTS
)
SPEED = SpeedRatio(4.0, "d365kit >= 4x faster than datacompy")
PEAK = "peak RSS MiB"


# -- the frames ----------------------------------------------------------------------------------------


def _guids(rng: np.random.Generator, rows: int) -> pd.Series:
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    raw = rng.integers(0, 256, size=(rows, 16), dtype=np.uint8)
    hexed = digits[np.stack([raw >> 4, raw & 15], axis=-1).reshape(rows, 32)]
    text = np.full((rows, 36), ord("-"), dtype=np.uint8)
    for start, end, at in ((0, 8, 0), (8, 12, 9), (12, 16, 14), (16, 20, 19), (20, 32, 24)):
        text[:, at : at + end - start] = hexed[:, start:end]
    return pd.Series(text.view("S36").ravel().astype(str), dtype="string")


def _vocabulary(rng: np.random.Generator) -> np.ndarray:
    """Distinct values (also once trimmed and case-folded): two capitalized words and a serial number."""
    letters = rng.integers(ord("a"), ord("z") + 1, size=(2_000, 10), dtype=np.uint8)
    lengths = rng.integers(3, 11, size=2_000)
    words = [bytes(w[:n]).decode().capitalize() for w, n in zip(letters, lengths, strict=True)]
    picks = rng.integers(0, len(words), size=(VOCABULARY, 2))
    return np.array([f"{words[a]} {words[b]} {i:05d}" for i, (a, b) in enumerate(picks)], dtype=object)


def _plant(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Masks of one field: differing, null on both sides, null on the left only, null on the right only."""
    differ = rng.random(rows) < DIFFER
    both = ~differ & (rng.random(rows) < NULL)
    one = differ & (rng.random(rows) < ONE_NULL)
    on_left = rng.random(rows) < 0.5
    return differ, both, one & on_left, one & ~on_left


def _text_field(
    rng: np.random.Generator, vocabulary: np.ndarray, rows: int
) -> tuple[pd.Series, pd.Series, int]:
    differ, both, left_null, right_null = _plant(rng, rows)
    a = rng.integers(0, len(vocabulary), rows)
    b = np.where(differ, (a + rng.integers(1, len(vocabulary), rows)) % len(vocabulary), a)
    left = pd.Series(vocabulary[a], dtype="string").mask(both | left_null)
    right = pd.Series(vocabulary[b], dtype="string").mask(both | right_null)
    variant = ~differ & ~both & (rng.random(rows) < VARIANT)
    upper = variant & (rng.random(rows) < 0.5)
    right = right.mask(upper, right.str.upper()).mask(variant & ~upper, "  " + right + " ")
    return left, right, int(differ.sum())


def _amount_field(rng: np.random.Generator, rows: int) -> tuple[pd.Series, pd.Series, int]:
    differ, both, left_null, right_null = _plant(rng, rows)
    a = np.round(rng.uniform(0, 1_000_000, rows), 2)
    delta = np.round(rng.uniform(2 * TOLERANCE, 500, rows), 2) * rng.choice([-1.0, 1.0], rows)
    noise = ~differ & ~both & (rng.random(rows) < NOISE)
    b = a + np.where(differ, delta, np.where(noise, rng.uniform(-0.4, 0.4, rows) * TOLERANCE, 0.0))
    return (
        pd.Series(np.where(both | left_null, np.nan, a)),
        pd.Series(np.where(both | right_null, np.nan, b)),
        int(differ.sum()),
    )


def frames(rows: int = ROWS, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """The left and right frame (right rows shuffled) and the planted differing cells per field."""
    rng = np.random.default_rng(seed)
    keys = _guids(rng, rows)
    vocabulary = _vocabulary(rng)
    left, right, planted = {KEY: keys}, {KEY: keys}, {}
    for name in TEXT:
        left[name], right[name], planted[name] = _text_field(rng, vocabulary, rows)
    for name in AMOUNTS:
        left[name], right[name], planted[name] = _amount_field(rng, rows)
    shuffled = rng.permutation(rows)
    return (
        pd.DataFrame(left),
        pd.DataFrame({c: s.array.take(shuffled) for c, s in right.items()}),
        planted,
    )


# -- the contenders (run in a child process) -----------------------------------------------------------


def run_d365kit(left: pd.DataFrame, right: pd.DataFrame) -> dict[str, int]:
    result = compare(left, right, FIELDS, on=KEY, progress=False)
    return {field: int(n) for field, n in result.counts.items()}


def run_datacompy(left: pd.DataFrame, right: pd.DataFrame) -> dict[str, int]:
    from datacompy import PandasCompare

    result = PandasCompare(
        left,
        right,
        join_columns=[KEY],
        abs_tol=TOLERANCE,
        rel_tol=0,
        ignore_spaces=True,
        ignore_case=True,
    )
    return {s["column"]: int(s["unequal_cnt"]) for s in result.column_stats if s["column"] != KEY}


CONTENDERS: dict[str, Callable[[pd.DataFrame, pd.DataFrame], dict[str, int]]] = {
    "datacompy": run_datacompy,
    "d365kit": run_d365kit,
}


def _memory_kib(field: str) -> int:
    status = Path("/proc/self/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no {field} in /proc/self/status: peak memory needs Linux")
    return int(found.group(1))


def measure_child(tool: str, path: Path) -> dict[str, Any]:
    """In the child: one warmed-up call of ``tool`` on the pickled frames; its seconds, peak and counts."""
    left, right = pd.read_pickle(path)
    call = CONTENDERS[tool]
    warm = left.head(WARM_ROWS)
    call(warm.copy(), right[right[KEY].isin(warm[KEY])].copy())  # lazy imports, kernel set-up
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # peak resident set := the current one
    base = _memory_kib("VmRSS")
    start = time.perf_counter()
    counts = call(left, right)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mib": (_memory_kib("VmHWM") - base) / 1024, "counts": counts}


def _spawn(tool: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.reconcile_core", tool, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"the {tool} child exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the benchmark -------------------------------------------------------------------------------------

LABELS = {"datacompy": "datacompy PandasCompare", "d365kit": "d365kit compare"}
SPEED_BOUND = (
    "pairing the rows. Each right-frame column is gathered into the left frame's key order (pyarrow "
    "`take`, ~90 ms per million strings: about half of d365kit's time); identical strings are then settled "
    "at once and only the rest normalized (pyarrow trim and lower case). datacompy spends its time in the "
    "outer merge of both whole frames and in pandas string methods over every cell."
)
MEMORY_BOUND = (
    "d365kit holds one field's two paired columns at a time (~60 MB for a million strings), the boolean "
    "matrix (1 byte per cell) and the differing values (object dtype); datacompy holds the merged frame of "
    "both sides plus a match column per field."
)


@dataclass(frozen=True)
class PeakRatio:
    """The best candidate's peak memory is at most ``limit`` times the baseline's."""

    limit: float
    text: str
    peaks: dict[str, float]

    def figure(self, case: Case) -> float:
        assert case.baseline is not None, f"{case.title}: a memory ratio needs a baseline"
        return self.peaks[case.best.label] / self.peaks[case.baseline.label]

    def met(self, figure: float) -> bool:
        return figure <= self.limit

    def shown(self, figure: float) -> str:
        return f"{figure:.2f}x the baseline's peak"


def _calls(ctx: BenchContext, path: Path, planted: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    """Warm-up and timed children, the tools taking turns; every child's counts checked against the plant."""
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in CONTENDERS}
    for rep in range(ctx.warmup + ctx.repeats):
        for tool in CONTENDERS:
            what = "warm-up" if rep < ctx.warmup else f"call {rep - ctx.warmup + 1}"
            print(f"   {tool}: {what} in a fresh process ...", flush=True)
            got = _spawn(tool, path)
            if got["counts"] != planted:
                raise AssertionError(f"{tool} found {got['counts']}, planted {planted}: unequal work, void")
            if rep >= ctx.warmup:
                runs[tool].append(got)
    return runs


def run(ctx: BenchContext, rows: int = ROWS) -> list[Case]:
    print(f"building two frames of {rows:,} rows x {len(FIELDS)} fields ...", flush=True)
    started = time.perf_counter()
    left, right, planted = frames(rows)
    path = ctx.workdir / f"reconcile_core-{rows}.pkl"
    pd.to_pickle((left, right), path)
    setup = time.perf_counter() - started
    runs = _calls(ctx, path, planted)
    peaks = {LABELS[t]: statistics.median(r["peak_mib"] for r in runs[t]) for t in CONTENDERS}
    measured = {
        t: Measurement(
            LABELS[t], [r["seconds"] for r in runs[t]], rows, extra={PEAK: f"{peaks[LABELS[t]]:,.0f}"}
        )
        for t in CONTENDERS
    }
    notes = [
        f"Set-up (not measured): frames built and pickled in {setup:.1f} s; {sum(planted.values()):,} planted "
        f"differing cells of {rows * len(FIELDS):,}, found by both tools, field by field. Each call in a fresh "
        f"process after a warm-up on 1,000 rows; {PEAK}: the call's peak resident set above its start "
        "(median). Method and settings: `bench/reconcile_core.py`."
    ]
    d365kit, datacompy = measured["d365kit"], measured["datacompy"]
    return [
        Case(
            "(a) Wall time",
            [d365kit],
            SPEED,
            baseline=datacompy,
            notes=notes,
            bound=SPEED_BOUND,
            hot_path=lambda: compare(left, right, FIELDS, on=KEY, progress=False),
        ),
        Case(
            "(b) Peak memory",
            [d365kit],
            PeakRatio(1.0, "d365kit's peak <= datacompy's", peaks),
            baseline=datacompy,
            bound=MEMORY_BOUND,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description="one measured call in a fresh process (used by run)")
    parser.add_argument("tool", choices=list(CONTENDERS))
    parser.add_argument("frames", type=Path)
    args = parser.parse_args()
    print(json.dumps(measure_child(args.tool, args.frames)))


if __name__ == "__main__":
    main()
