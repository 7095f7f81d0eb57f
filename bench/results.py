"""What a benchmark reports (measurements, cases, targets) and the dated Markdown section it becomes.

A ``Case`` is one comparison: a baseline (the tool a user would otherwise pick, measured in the same run)
and d365kit's candidates, with a target. The verdict takes the best candidate (the lowest median). The
runner fills ``profile`` when a target is missed; the benchmark says in ``bound`` what limits the figure.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

HEADER = (
    "# Benchmark results\n\n"
    "Appended by `make bench` (`d365kit bench`), one dated section per run, newest last. Each figure is the\n"
    "median of the repeats after a warm-up; ratios compare with a baseline measured in the same run on the\n"
    "same machine. How to read and extend them: `bench/__init__.py`.\n"
)


@dataclass
class Measurement:
    """One contender's timed calls; ``work`` units (e.g. rows) per call give the throughput."""

    label: str
    seconds: list[float]
    work: int | None = None
    unit: str = "rows"
    peak_mib: float | None = None
    extra: dict[str, str] = field(default_factory=dict)  # more columns, e.g. {"server CPU s": "3.1"}

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput(self) -> float | None:
        return self.work / self.median if self.work else None


class Target(Protocol):
    text: str

    def figure(self, case: Case) -> float: ...

    def met(self, figure: float) -> bool: ...

    def shown(self, figure: float) -> str: ...


@dataclass(frozen=True)
class SpeedRatio:
    """The best candidate is at least ``minimum`` times as fast as the baseline (baseline / candidate time)."""

    minimum: float
    text: str

    def figure(self, case: Case) -> float:
        assert case.baseline is not None, f"{case.title}: a speed ratio needs a baseline"
        return case.baseline.median / case.best.median

    def met(self, figure: float) -> bool:
        return figure >= self.minimum

    def shown(self, figure: float) -> str:
        return f"{figure:.2f}x"


@dataclass(frozen=True)
class MaxSeconds:
    """The best candidate's median wall time is at most ``limit`` seconds."""

    limit: float
    text: str

    def figure(self, case: Case) -> float:
        return case.best.median

    def met(self, figure: float) -> bool:
        return figure <= self.limit

    def shown(self, figure: float) -> str:
        return f"{figure:.1f} s"


@dataclass
class Case:
    title: str
    candidates: list[Measurement]
    target: Target
    baseline: Measurement | None = None
    notes: list[str] = field(default_factory=list)
    bound: str = ""  # what limits the figure, shown when the target is missed
    hot_path: Callable[[], Any] | None = None  # profiled once by the runner when the target is missed
    profile: list[str] = field(default_factory=list)

    @property
    def best(self) -> Measurement:
        return min(self.candidates, key=lambda m: m.median)

    @property
    def figure(self) -> float:
        return self.target.figure(self)

    @property
    def met(self) -> bool:
        return self.target.met(self.figure)


@dataclass
class BenchReport:
    name: str
    title: str
    cases: list[Case]
    seconds: float
    error: str = ""


# -- the machine ---------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _ram_gib() -> str:
    try:
        return f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError):
        return "unknown"


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True)
    except OSError:
        return "unknown"
    if head.returncode:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


def machine() -> str:
    """One line: platform, CPU model, cores, RAM and the versions that shape the figures."""
    return (
        f"{platform.platform()}; {_cpu_model()}; {os.cpu_count()} cores; {_ram_gib()} RAM; "
        f"Python {platform.python_version()}; pandas {_pkg('pandas')}; requests {_pkg('requests')}; "
        f"d365kit {_pkg('d365kit')} (commit {_commit()})"
    )


# -- Markdown ------------------------------------------------------------------------------------------


def _table(case: Case) -> list[str]:
    rows = ([case.baseline] if case.baseline else []) + case.candidates
    extras = list(dict.fromkeys(k for m in rows for k in m.extra))
    memory = any(m.peak_mib is not None for m in rows)
    unit = next((m.unit for m in rows if m.work), None)
    head = ["contender", "median s", "min-max s"]
    head += [f"{unit}/s"] if unit else []
    head += ["peak MiB (tracemalloc)"] if memory else []
    head += extras
    head += ["speed vs baseline"] if case.baseline else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in rows:
        cells = [m.label + (" (baseline)" if m is case.baseline else ""), f"{m.median:.3f}"]
        cells.append(f"{min(m.seconds):.3f}-{max(m.seconds):.3f}")
        if unit:
            cells.append(f"{m.throughput:,.0f}" if m.throughput else "")
        if memory:
            cells.append(f"{m.peak_mib:,.1f}" if m.peak_mib is not None else "")
        cells += [m.extra.get(k, "") for k in extras]
        if case.baseline:
            cells.append(f"{case.baseline.median / m.median:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _case(case: Case) -> list[str]:
    out = [f"#### {case.title}", "", *case.notes, ""] if case.notes else [f"#### {case.title}", ""]
    out += _table(case)
    figure = case.figure
    shown = case.target.shown(figure)
    if case.met:
        out += ["", f"Target: {case.target.text}. Result: {shown} ({case.best.label}): **met**."]
        return out
    out += ["", f"Target: {case.target.text}. Result: {shown} ({case.best.label}): **missed**."]
    if case.bound:
        out += ["", f"What bounds it: {case.bound}"]
    if case.profile:
        out += ["", "Profile of the hot path (cProfile, one call, top 5 by cumulative time):", "", "```"]
        out += case.profile + ["```"]
    return out


def render_section(reports: list[BenchReport], *, repeats: int, warmup: int, started: datetime) -> str:
    lines = [
        f"## {started.astimezone(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}.",
        f"Method: median of {repeats} timed calls after {warmup} warm-up call(s), contenders interleaved; "
        "peak memory by tracemalloc in a separate untimed call (see `bench/measure.py`).",
    ]
    for report in reports:
        lines += ["", f"### {report.title}", ""]
        if report.error:
            lines += [f"**Failed** after {report.seconds:.0f} s:", "", "```", report.error.rstrip(), "```"]
            continue
        for case in report.cases:
            lines += _case(case) + [""]
        lines.append(f"({report.name}: {report.seconds:.0f} s including set-up)")
    return "\n".join(lines) + "\n"


def append_section(path: Path, section: str) -> None:
    """Append to ``path`` (created with a header first), one blank line before the section."""
    text = path.read_text() if path.exists() else HEADER
    path.write_text(text.rstrip("\n") + "\n\n" + section)
