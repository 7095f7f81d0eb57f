"""Write: 10,000 synced updates, d365kit ``apply`` against a per-record PATCH loop; and the same apply under
the realistic service-protection profile, as a share of the ceiling that profile allows.

Set-up (not measured). The benchmark seeds a sandbox of its own (``d365kit sandbox seed --scale``, in its
own process like the runner's; ~15 s), big enough for 10,500 CUSTOMER couplings in sync, so its writes,
limits and throttling counters touch no other benchmark. The first 10,000 in-sync couplings by customer
number are d365kit's records, the next 500 the loop's: apart, so the loop's writes (which leave the
couplings as they are) cannot turn d365kit's records into conflicts.

Fresh drift before every call (untimed). Each call gets a *round* of new values. For d365kit: BC's
``addressLine2`` and ``creditLimit`` of its 10,000 customers are edited (BC ``$batch``, 100 per request,
``If-Match: *``), so BC changed after the last sync; a full reconcile then finds them ``pending`` and
``ws.plan_sync(result, records=<their BC ids>)`` plans 10,000 updates of ``address1_line2`` and
``creditlimit`` to Dataverse, each with the row's ETag as read then. The plan is checked (exactly that,
else the run is void). Choice: re-edit with new values rather than restore the rows, so every call writes
values that differ from the stored ones, as a real sync does.

Contenders, with 20 ms injected latency per request (knob ``latency_ms``, set around the timed call only):

- baseline, the loop a user writes by hand: one ``requests.Session``, one ``PATCH accounts(<id>)`` per
  record with the round's new values of the same two columns and ``If-Match: *`` (update only, never an
  upsert; no ETag, since reading each row's ETag first would double the requests; so, unlike apply, the
  loop cannot notice a change made meanwhile); every answer must be 204. Timed on its fixed 500-record
  subset (at ~24 ms a record, 10,000 would take 4 minutes per call, ~12 s here): compared by throughput
  (updates/s), not by wall time. Target: d365kit >= 25x the loop's updates/s.
- d365kit: ``ws.apply(plan, journal=<a new file per call>, progress=False)`` with its defaults: Dataverse
  ``$batch`` of 500 updates with each row's ETag as ``If-Match``, the couplings' last-sync timestamps
  moved in BC (companion API ``$batch`` of 100), job rows, every operation journaled (SQLite). Checked:
  ``run.ok`` and 10,000 modified; after the last call, a fresh reconcile must find all 10,000 in sync.

(b) The same d365kit call under ``limits=realistic`` with ``limits_scale`` 0.01 (the gate's windows become
60 requests per 3 s per principal and service, Dataverse's execution time 12 s per 3 s, concurrency caps
unchanged), set around the timed call only; each call starts with empty windows (the gate starts fresh
buckets when the profile changes). Its calls take turns with (a)'s, so a drift of the machine hits both
alike; no warm-up of its own (the same code path, warmed up by (a)). Choice of scale: the window must trip
within a call of ~10 s, yet stay long against ``Retry-After``, which is whole seconds (>= 1 s). The
ceiling, see ``ceiling``: the updates/s that the request windows allow when every request carries the
largest batch the service takes; a synced update is one Dataverse row write plus one coupling row write in
BC, so the lower of the two services' figures (2,000/s, BC's). Target: d365kit >= 80% of it. Throttling:
the gate's 429 count (``GET /_sandbox/stats``) and each session's retried 429s per service.

The figures per call: wall time, CPU of the sandbox process (``/proc``) and of this process (d365kit and
its worker threads), 429s. Method as ``bench.measure.time_contenders`` (warm-up, contenders interleaved,
median, ``gc.collect()`` outside the timing) plus an untimed ``prepare`` before each call (``time_prepared``).
"""

from __future__ import annotations

import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import requests

from bench.context import BenchContext
from bench.measure import profile_top
from bench.results import Case, Measurement
from bench.sandbox_process import SandboxProcess
from d365kit.odata.batch import BC_MAX_OPERATIONS, DATAVERSE_MAX_OPERATIONS
from d365kit.odata.batch import BatchRequest as Request
from d365kit.sandbox.faults import BC_LIMITS, DATAVERSE_LIMITS

TITLE = "Write: 10,000 synced updates, d365kit apply vs a per-record PATCH loop"
MAPPING = "CUSTOMER"
DV_COLUMNS = ("address1_line2", "creditlimit")  # what the plan writes: BC addressLine2, creditLimit
RECORDS = 10_000
LOOP_RECORDS = 500
LATENCY_MS = 20
LIMITS_SCALE = 0.01
IN_SYNC_SHARE = 0.9  # of the seeded customers, at least (0.94 at 12,000: 0.5% planted per category)
QUIET = {"latency_ms": 0, "limits": "unlimited", "limits_scale": 1.0}
UNIT = "updates"
LOOP_TARGET = 25.0  # d365kit's updates/s over the loop's
CEILING_TARGET = 0.8  # d365kit's updates/s over the ceiling, under the realistic profile


# -- the test bed: a seeded sandbox of its own and the records it writes --------------------------------


def seed_scale(records: int, loop_records: int) -> int:
    """Customers to seed so that at least ``records + loop_records`` couplings are in sync."""
    return math.ceil((records + loop_records) / IN_SYNC_SHARE) + 40


@dataclass
class Bed:
    """The benchmark's sandbox process, a workspace on it and the records each contender writes."""

    sbx: SandboxProcess
    ws: Any
    records: pd.DataFrame  # bc_id, dataverse_id, bc_key: d365kit's
    loop: pd.DataFrame  # the loop's
    workdir: Path
    seeded_s: float
    rounds: int = 0
    calls: int = 0
    written: dict[str, int] = field(default_factory=dict)  # the last round planned for d365kit / the loop

    def next_round(self) -> int:
        self.rounds += 1
        return self.rounds

    def journal(self) -> Path:
        self.calls += 1
        return self.workdir / f"journal-{self.calls:03d}.sqlite"

    def knobs(self, **changes: Any) -> None:
        self.sbx.knobs(**changes)

    def gate_stats(self) -> dict[str, int]:
        admin_key = json.loads((self.sbx.data_dir / "credentials.json").read_text())["admin_key"]
        resp = requests.get(
            f"{self.sbx.origin}/_sandbox/stats",
            headers={"X-Sandbox-Admin-Key": admin_key},
            verify=self.sbx.facts["ca_bundle"],
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()

    def edit_bc(self, rnd: int) -> None:
        """New ``addressLine2``/``creditLimit`` on d365kit's BC customers (``$batch``, 100 per request)."""
        bodies = [
            Request("PATCH", f"customers({bc_id})", bc_values(rnd, i), {"If-Match": "*"})
            for i, bc_id in enumerate(self.records["bc_id"])
        ]
        chunks = [bodies[i : i + BC_MAX_OPERATIONS] for i in range(0, len(bodies), BC_MAX_OPERATIONS)]
        with ThreadPoolExecutor(self.ws.bc.session.max_concurrency) as pool:
            failed = [r for results in pool.map(self.ws.bc.batch, chunks) for r in results if not r.ok]
        if failed:
            raise RuntimeError(f"set-up: {len(failed)} BC edits failed, e.g. {failed[0].error}")

    def fresh_plan(self) -> Any:
        """Drift (a new round of BC values), reconcile, plan; the plan must be exactly the 10,000 updates."""
        rnd = self.written["d365kit"] = self.next_round()
        self.edit_bc(rnd)
        result = self.ws.reconcile(MAPPING, progress=False)
        plan = self.ws.plan_sync(result, records=list(self.records["bc_id"]), progress=False)
        ops = plan.operations
        wrong = [
            op
            for op in ops
            if op.kind != "update" or op.direction != "to_dataverse" or set(op.fields) != set(DV_COLUMNS)
        ]
        if len(ops) != len(self.records) or wrong:
            raise AssertionError(
                f"set-up: the plan has {len(ops)} operations ({len(wrong)} not an update of {DV_COLUMNS} "
                f"to Dataverse) instead of {len(self.records):,} updates: {plan.summary().to_dict('records')}"
            )
        return plan

    def in_sync(self) -> int:
        """d365kit's records a fresh reconcile finds in sync; raises when one is not (the run is void)."""
        result = self.ws.reconcile(MAPPING, progress=False)
        recs = result.records
        mine = recs[recs["bc_id"].astype("string").str.lower().isin(set(self.records["bc_id"].str.lower()))]
        found = mine["category"].value_counts().to_dict()
        if found.get("in_sync", 0) != len(self.records):
            raise AssertionError(f"after the writes, d365kit's {len(self.records):,} records are {found}")
        return len(self.records)

    def close(self) -> None:
        self.sbx.stop()


def bc_values(rnd: int, i: int) -> dict[str, Any]:
    """Round ``rnd``'s BC values of record ``i`` (they differ from every earlier round's)."""
    return {"addressLine2": f"Bench {rnd:03d}-{i:05d}", "creditLimit": float(20_000 + 10 * rnd + i % 7)}


def loop_values(rnd: int, i: int) -> dict[str, Any]:
    """Round ``rnd``'s Dataverse values of loop record ``i``: the same columns, the same kind of values."""
    return {"address1_line2": f"Loop {rnd:03d}-{i:05d}", "creditlimit": float(20_000 + 10 * rnd + i % 7)}


def open_bed(workdir: Path, records: int = RECORDS, loop_records: int = LOOP_RECORDS) -> Bed:
    """Seed and start the benchmark's sandbox, pick the records (first ``records`` in-sync couplings by
    customer number for d365kit, the next ``loop_records`` for the loop)."""
    data_dir = workdir / "write-sandbox"
    scale = seed_scale(records, loop_records)
    print(f"seeding a sandbox of its own at {scale:,} customers ...", flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "d365kit.cli",
            "sandbox",
            "seed",
            "--scale",
            str(scale),
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"`d365kit sandbox seed` exited with {done.returncode}:\n{done.stderr[-2000:]}")
    seeded = time.perf_counter() - started
    sbx = SandboxProcess(data_dir).start()
    try:
        ws = sbx.workspace()
        recs = ws.reconcile(MAPPING, progress=False).records
        pairs = recs.loc[recs["category"] == "in_sync", ["bc_id", "dataverse_id", "bc_key"]].astype(str)
        pairs = pairs.sort_values("bc_key").reset_index(drop=True)
        if len(pairs) < records + loop_records:
            raise RuntimeError(
                f"set-up: {len(pairs)} in-sync couplings at scale {scale}, {records + loop_records} needed"
            )
        mine, loop = pairs.iloc[:records], pairs.iloc[records : records + loop_records].reset_index(drop=True)
        return Bed(sbx, ws, mine, loop, workdir, seeded)
    except BaseException:
        sbx.stop()
        raise


# -- the contenders: an untimed prepare, a timed call, an untimed settle --------------------------------


class Contender(Protocol):
    def prepare(self) -> None: ...

    def __call__(self) -> Any: ...

    def settle(self) -> None: ...


def time_prepared(
    contenders: dict[str, Contender], *, repeats: int, warmup: int, warm: tuple[str, ...] | None = None
) -> dict[str, list[float]]:
    """Seconds per call as ``bench.measure.time_contenders`` measures them, with each call's ``prepare``
    (fresh drift, a plan, the knobs of the timed call) before and ``settle`` (checks, knobs back) after it,
    both untimed. Warm-up rounds (of the ``warm`` contenders, default all) come first, then the timed
    rounds, the contenders taking turns."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    for rnd in range(warmup + repeats):
        for name, call in contenders.items():
            if rnd < warmup and warm is not None and name not in warm:
                continue
            what = "warm-up" if rnd < warmup else f"call {rnd - warmup + 1}"
            print(f"   {name}: {what} ...", flush=True)
            call.prepare()
            gc.collect()
            start = time.perf_counter()
            result = call()
            elapsed = time.perf_counter() - start
            del result
            call.settle()
            if rnd >= warmup:
                seconds[name].append(elapsed)
    return seconds


@dataclass
class Observed:
    """Per-call figures besides wall time: CPU of the sandbox and of this process, 429s."""

    server_cpu: list[float] = field(default_factory=list)
    client_cpu: list[float] = field(default_factory=list)
    throttled: list[dict[str, int]] = field(default_factory=list)

    def median(self, values: list[float], n: int) -> float:
        return statistics.median(values[-n:])

    def extra(self, n: int, limits: bool = False) -> dict[str, str]:
        out = {
            "sandbox CPU s": f"{self.median(self.server_cpu, n):.2f}",
            "client CPU s": f"{self.median(self.client_cpu, n):.2f}",
        }
        if limits:
            last = self.throttled[-n:]
            out["429s per call: sandbox (BC / Dataverse retried)"] = ", ".join(
                f"{t['gate']} ({t['bc']} / {t['dataverse']})" for t in last
            )
        return out


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


class Apply:
    """d365kit: ``ws.apply`` of a plan made in ``prepare``; the knobs of the timed call set there."""

    def __init__(self, bed: Bed, knobs: dict[str, Any]):
        self.bed, self.timed_knobs = bed, knobs
        self.plan: Any = None
        self.run: Any = None
        self.seen = Observed()
        self._before: tuple[dict[str, int], int, int] | None = None

    def prepare(self) -> None:
        self.plan = self.bed.fresh_plan()
        ws = self.bed.ws
        self._before = (
            self.bed.gate_stats(),
            ws.bc.session.stats["throttled"],
            ws.dataverse.session.stats["throttled"],
        )
        self.bed.knobs(**self.timed_knobs)

    def __call__(self) -> Any:
        server, client = self.bed.sbx.cpu_seconds(), _cpu()
        self.run = self.bed.ws.apply(self.plan, journal=self.bed.journal(), progress=False)
        self.seen.server_cpu.append(self.bed.sbx.cpu_seconds() - server)
        self.seen.client_cpu.append(_cpu() - client)
        return self.run

    def settle(self) -> None:
        self.bed.knobs(**QUIET)
        run, ws = self.run, self.bed.ws
        assert self._before is not None
        gate, bc, dv = self._before
        self.seen.throttled.append(
            {
                "gate": self.bed.gate_stats()["throttled"] - gate["throttled"],
                "bc": ws.bc.session.stats["throttled"] - bc,
                "dataverse": ws.dataverse.session.stats["throttled"] - dv,
            }
        )
        modified = run.counts.get("modified", 0)
        if not run.ok or modified != len(self.bed.records):
            raise AssertionError(
                f"apply modified {modified:,} of {len(self.bed.records):,} (ok={run.ok}): {run.summary().to_dict('records')}"
            )
        self.plan = self.run = None


class PatchLoop:
    """The baseline: one PATCH per account with ``If-Match: *``, one ``requests.Session``."""

    def __init__(self, bed: Bed):
        self.bed = bed
        self.http = requests.Session()
        self.seen = Observed()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.headers: dict[str, str] = {}

    def prepare(self) -> None:
        rnd = self.bed.written["loop"] = self.bed.next_round()
        dv = self.bed.ws.dataverse
        self.calls = [
            (dv.entity_url("accounts", dv_id), loop_values(rnd, i))
            for i, dv_id in enumerate(self.bed.loop["dataverse_id"])
        ]
        token = self.bed.ws.tokens.token(self.bed.ws.profile.dataverse_scope)
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "OData-Version": "4.0",
            "Content-Type": "application/json",
            "If-Match": "*",
        }
        self.bed.knobs(latency_ms=LATENCY_MS)

    def __call__(self) -> int:
        server, client = self.bed.sbx.cpu_seconds(), _cpu()
        ca = self.bed.ws.profile.ca_bundle
        for url, body in self.calls:
            resp = self.http.patch(url, json=body, headers=self.headers, verify=ca, timeout=60)
            if resp.status_code != 204:
                raise AssertionError(f"the loop's PATCH {url} answered {resp.status_code}: {resp.text[:300]}")
        self.seen.server_cpu.append(self.bed.sbx.cpu_seconds() - server)
        self.seen.client_cpu.append(_cpu() - client)
        return len(self.calls)

    def settle(self) -> None:
        self.bed.knobs(**QUIET)


# -- targets and the ceiling ------------------------------------------------------------------------------


@dataclass
class ThroughputCase(Case):
    """A case whose contenders wrote different counts: the best is the most updates/s, not the least time."""

    @property
    def best(self) -> Measurement:
        return max(self.candidates, key=lambda m: m.throughput or 0.0)


@dataclass(frozen=True)
class ThroughputRatio:
    """``candidate``'s updates/s at least ``minimum`` times ``baseline``'s (they wrote different counts)."""

    minimum: float
    text: str
    candidate: str
    baseline: str

    def figure(self, case: Case) -> float:
        by_label = {m.label: m for m in case.candidates}
        return (by_label[self.candidate].throughput or 0.0) / (by_label[self.baseline].throughput or math.inf)

    def met(self, figure: float) -> bool:
        return figure >= self.minimum

    def shown(self, figure: float) -> str:
        return f"{figure:.1f}x the loop's updates/s"


@dataclass(frozen=True)
class CeilingShare:
    """The best candidate's updates/s at least ``minimum`` of ``ceiling``."""

    minimum: float
    ceiling: float
    text: str

    def figure(self, case: Case) -> float:
        return (case.best.throughput or 0.0) / self.ceiling

    def met(self, figure: float) -> bool:
        return figure >= self.minimum

    def shown(self, figure: float) -> str:
        return f"{figure:.0%} of {self.ceiling:,.0f} {UNIT}/s ({figure * self.ceiling:,.0f} {UNIT}/s)"


def ceiling() -> tuple[float, str]:
    """Updates/s the realistic profile's request windows allow, and the sentence that derives it.

    Each service admits ``requests / window_s`` requests per second on average per principal (the scale
    shrinks both alike); a request carries at most 1,000 operations in Dataverse (``$batch``) and 100 in
    BC (``$batch``). A synced update needs one Dataverse row write and one coupling row write in BC, so the
    ceiling is the lower of the two services' ``rate x batch``."""
    dv_rate = DATAVERSE_LIMITS.requests / DATAVERSE_LIMITS.window_s
    bc_rate = BC_LIMITS.requests / BC_LIMITS.window_s
    dv, bc = dv_rate * DATAVERSE_MAX_OPERATIONS, bc_rate * BC_MAX_OPERATIONS
    text = (
        f"Ceiling: per principal the profile admits {DATAVERSE_LIMITS.requests:,} Dataverse and "
        f"{BC_LIMITS.requests:,} BC requests per {BC_LIMITS.window_s:g} s window ({dv_rate:g}/s and "
        f"{bc_rate:g}/s at any `limits_scale`); at the largest batches ({DATAVERSE_MAX_OPERATIONS:,} operations "
        f"per Dataverse `$batch`, {BC_MAX_OPERATIONS} per BC `$batch`) that is {dv:,.0f} row writes/s and "
        f"{bc:,.0f} coupling writes/s; a synced update needs one of each, so the ceiling is "
        f"**{min(dv, bc):,.0f} updates/s**, set by {'BC' if bc <= dv else 'Dataverse'}'s window."
    )
    return min(dv, bc), text


# -- the benchmark ----------------------------------------------------------------------------------------


def _profile(contender: Apply) -> list[str]:
    """One more call of ``contender`` under cProfile (this thread), prepared and settled untimed."""
    contender.prepare()
    try:
        return profile_top(contender)
    finally:
        contender.settle()


def measure(ctx: BenchContext, bed: Bed, *, profile: bool = True) -> list[Case]:
    """Both cases on an open bed; the bed's records are checked in sync at the end. ``profile``: profile one
    more call of a case that misses its target (the runner cannot: the bed is closed by then)."""
    n, loop_n, reps = len(bed.records), len(bed.loop), ctx.repeats
    limits = {"latency_ms": LATENCY_MS, "limits": "realistic", "limits_scale": LIMITS_SCALE}
    apply_a, loop, apply_b = Apply(bed, {"latency_ms": LATENCY_MS}), PatchLoop(bed), Apply(bed, limits)
    print(
        f"{n:,} updates with apply, {loop_n:,} with the loop, {LATENCY_MS} ms latency; apply again under "
        f"limits=realistic, limits_scale={LIMITS_SCALE} ...",
        flush=True,
    )
    times = time_prepared(
        {"d365kit apply": apply_a, "PATCH loop": loop, "d365kit apply (realistic limits)": apply_b},
        repeats=reps,
        warmup=ctx.warmup,
        warm=("d365kit apply", "PATCH loop"),
    )
    apply_label, loop_label = "d365kit apply", f"per-record PATCH loop ({loop_n:,}-record subset, baseline)"
    measured_a = Measurement(apply_label, times["d365kit apply"], n, UNIT, extra=apply_a.seen.extra(reps))
    measured_loop = Measurement(loop_label, times["PATCH loop"], loop_n, UNIT, extra=loop.seen.extra(reps))
    loop_tp, a_tp = measured_loop.throughput or math.inf, measured_a.throughput or 0.0
    measured_a.extra["updates/s vs loop"] = f"{a_tp / loop_tp:.1f}x"
    measured_loop.extra["updates/s vs loop"] = "1.0x"
    case_a = ThroughputCase(
        f"(a) {LATENCY_MS} ms injected latency per request",
        [measured_loop, measured_a],
        ThroughputRatio(
            LOOP_TARGET,
            f"d365kit >= {LOOP_TARGET:g}x the per-record loop's updates/s",
            apply_label,
            loop_label,
        ),
        notes=[
            f"Set-up (not measured): a sandbox of its own seeded at {seed_scale(n, loop_n):,} customers in "
            f"{bed.seeded_s:.0f} s; d365kit writes {n:,} coupled CUSTOMER/account pairs, the loop {loop_n:,} "
            "others (a fixed subset: the first in-sync couplings by customer number after d365kit's). Before "
            "every call, untimed: new BC values of `addressLine2` and `creditLimit`, reconcile and `plan_sync` "
            f"({n:,} updates to Dataverse, checked); the loop writes the same two columns of its accounts. "
            "**The loop is timed on its subset: compare updates/s, not seconds.** The loop sends `If-Match: *` "
            "(no ETag), apply each row's planned ETag and also moves every coupling's last-sync timestamps (BC "
            "companion API), writes job rows and journals every operation. Sandbox/client CPU: CPU time of the "
            "sandbox process and of this process per call (median).",
        ],
    )

    measured_b = Measurement(
        "d365kit apply, limits=realistic",
        times["d365kit apply (realistic limits)"],
        n,
        UNIT,
        extra=apply_b.seen.extra(reps, limits=True),
    )
    top, derivation = ceiling()
    throttled = apply_b.seen.throttled[-reps:]
    window = BC_LIMITS.scaled(LIMITS_SCALE)
    dv_window = DATAVERSE_LIMITS.scaled(LIMITS_SCALE)
    case_b = Case(
        f"(b) limits=realistic (limits_scale {LIMITS_SCALE}), {LATENCY_MS} ms latency",
        [measured_b],
        CeilingShare(
            CEILING_TARGET, top, f"d365kit >= {CEILING_TARGET:.0%} of the ceiling ({top:,.0f} {UNIT}/s)"
        ),
        notes=[
            f"The same {n:,} updates and checks as (a), its calls taking turns with (a)'s (no warm-up of its "
            "own: the same code path, warmed up by (a)). The profile is set around the timed call only, so "
            "every call starts with empty windows: "
            f"{window.requests} requests per {window.window_s:g} s per service, Dataverse "
            f"{(dv_window.execution_ms or 0) / 1000:g} s of execution per window, {DATAVERSE_LIMITS.concurrent} "
            f"concurrent Dataverse and {BC_LIMITS.concurrent} BC requests (+{BC_LIMITS.queue} queued). 429s: "
            f"{sum(t['gate'] for t in throttled)} answered by the sandbox over {reps} calls; d365kit's sessions "
            f"retried {sum(t['bc'] for t in throttled)} BC and {sum(t['dataverse'] for t in throttled)} Dataverse "
            "ones, honouring `Retry-After` (whole seconds).",
            derivation,
            f"Without limits, (a): {a_tp:,.0f} {UNIT}/s = {a_tp / top:.0%} of that ceiling; under the profile "
            f"d365kit kept {(measured_b.throughput or 0.0) / a_tp:.0%} of it.",
        ],
    )
    sandbox_ms = 1000 * statistics.median(apply_a.seen.server_cpu[-reps:]) / n
    case_a.bound = _bound_latency(measured_a, measured_loop, sandbox_ms)
    case_b.bound = _bound_limits(measured_b, measured_a, throttled, sandbox_ms, top)
    for case, contender in ((case_a, apply_a), (case_b, apply_b)):
        if profile and not case.met:
            print(f"   {case.title}: target missed; profiling one more call ...", flush=True)
            case.profile = _profile(contender)
    print(f"checking with a fresh reconcile that d365kit's {n:,} records are in sync ...", flush=True)
    bed.in_sync()
    case_a.notes.append(
        f"After the last call a fresh reconcile found all {n:,} of d365kit's records in sync."
    )
    return [case_a, case_b]


EMULATOR = (
    "The sandbox is one Python process: its request threads share one GIL, a `$batch` resolves every inner "
    "request on its own (in BC a company lookup and a row read each) and every write is its own SQLite "
    "transaction behind the store's one write lock."
)
CLOSE = (
    "What would close it: a faster emulator (fewer lookups and one transaction per `$batch` where the "
    "semantics allow; BC and Dataverse served by separate processes), or a real tenant, where the services "
    "run apart and in parallel. The client is not the bound: the profile below shows d365kit's thread "
    "waiting for answers."
)


def _busy(m: Measurement) -> str:
    return f"{float(m.extra['sandbox CPU s']) / m.median:.0%}"


def _bound_latency(m: Measurement, loop: Measurement, sandbox_ms: float) -> str:
    cap, loop_tp = 1000 / sandbox_ms, loop.throughput or 1.0
    return (
        f"the emulator: {(m.throughput or 0.0) / loop_tp:.1f}x the loop where {LOOP_TARGET:g}x was the target "
        f"({(m.throughput or 0.0):,.0f} of the {LOOP_TARGET * loop_tp:,.0f} {UNIT}/s needed). The loop pays {LATENCY_MS} ms of latency plus ~{1000 * loop.median / (loop.work or 1) - LATENCY_MS:.1f} "
        f"ms per record; apply kept the sandbox process busy {_busy(m)} of its {m.median:.1f} s per call "
        f"({m.extra['sandbox CPU s']} s of CPU; this process {m.extra['client CPU s']} s). {EMULATOR} At "
        f"~{sandbox_ms:.2f} ms of sandbox CPU per synced update (a Dataverse PATCH and a coupling PATCH), apply "
        f"cannot pass ~{cap:,.0f} {UNIT}/s here, {cap / loop_tp:.0f}x the loop. {CLOSE}"
    )


def _bound_limits(
    m: Measurement, unlimited: Measurement, throttled: list[dict[str, int]], sandbox_ms: float, top: float
) -> str:
    cap = 1000 / sandbox_ms
    per_call = {s: statistics.median(t[s] for t in throttled) for s in ("bc", "dataverse")}
    tripped = " and ".join(
        f"{name} {per_call[s]:g}" for s, name in (("bc", "BC"), ("dataverse", "Dataverse")) if per_call[s]
    )
    cost = 1 - (m.throughput or 0.0) / (unlimited.throughput or 1)
    return (
        f"the emulator, not the profile: {(m.throughput or 0.0) / top:.0%} of the ceiling where "
        f"{CEILING_TARGET:.0%} was the target ({(m.throughput or 0.0):,.0f} of {CEILING_TARGET * top:,.0f} "
        f"{UNIT}/s). Without limits the same apply reached "
        f"{unlimited.throughput:,.0f} {UNIT}/s ({(unlimited.throughput or 0.0) / top:.0%} of the ceiling) with the "
        f"sandbox process busy {_busy(unlimited)} of the time; at ~{sandbox_ms:.2f} ms of its CPU per synced "
        f"update it could serve ~{cap:,.0f} {UNIT}/s ({cap / top:.0%} of the ceiling) were it never idle. "
        f"{EMULATOR} The profile itself cost {cost:.0%}: "
        + (
            f"429s per call (median): {tripped}, each waited out for its `Retry-After`. "
            if tripped
            else "no 429s. "
        )
        + CLOSE
    )


def run(ctx: BenchContext, records: int = RECORDS, loop_records: int = LOOP_RECORDS) -> list[Case]:
    bed = open_bed(ctx.workdir, records, loop_records)
    try:
        return measure(ctx, bed)
    finally:
        bed.close()
