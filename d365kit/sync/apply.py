"""``apply(plan)`` and ``resume(run_id)``: run a plan through the journal, exactly once per operation.

1. Refuse what the catalog forbids (``plan.check_operations``) before anything is written.
2. Journal the run and every operation (state ``planned``).
3. Mapping by mapping, in the plan's (dependency) order: record writes in bulk (``writers``), chunks sent
   concurrently up to each service's concurrency cap. A chunk's operations are marked ``sent`` before the
   request and marked again after its answer. An operation whose outcome is unclear (no answer, 5xx, 429
   after the session's retries, "key exists" on a create) is verified by reading its target by id at the
   start of the next round, after a back-off that honours ``Retry-After``; only what verification shows
   was not applied is sent again, with the same client-chosen id and the same ``If-Match``. An operation
   that depends on one that failed is not sent.
4. Couplings (companion ``crmIntegrationRecords``, ``records.coupling_change``) and the journal's coupling
   rows.
5. Job and error rows: journal and companion API.

Before step 2: the profile's target must be the plan's (``target.check_same``), a production target needs
``confirm=True``, the run takes the locks of its mappings on this target (``locks``; ``wait`` seconds at
most, else ``SyncLockedError``), and operations an earlier run of the same journal finished are not sent
again: they end ``already_applied`` (a replay). In step 3, before a planned write is sent, its source row's
modification time is read again (in chunks): a source changed since planning, or a record another run
wrote after the plan was made, ends ``stale`` (re-plan), unless ``stale="current"`` writes the source's
current values.

Outcomes are never guessed: an operation whose outcome is still unclear after ``MAX_ROUNDS`` is verified
once more, and what stays unclear ends ``unknown`` (not ``failed``); one verified as not applied goes back to
``planned``. Such a run ends ``incomplete``; its job rows (BC's job log) wait until every outcome is
verified, so they count verified outcomes only.

``resume`` runs steps 3-5 again for a journaled run: operations still ``planned`` are sent, ``sent`` and
``unknown`` ones verified first, finished ones left alone, failed coupling changes written again, so a run
killed at any point ends in the same state as one that was not. Choice (UNVERIFIED for real services'
exact semantics): a create's retry relies on the service refusing a second row with the same primary key
(BC 409 ``Internal_EntityWithSameKeyExists``, Dataverse 412 ``DuplicateRecord``), which verification then
confirms by reading the row.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from d365kit.bc import COMPANION, COUPLINGS, SYNC_JOB_ERRORS, SYNC_JOBS
from d365kit.errors import D365Error, ODataError, SyncPlanError, SyncTargetError
from d365kit.mapping import Catalog, load_catalog
from d365kit.odata.batch import BatchRequest as Request
from d365kit.sync import records, writers
from d365kit.sync.build import MappingPlanner
from d365kit.sync.context import PlanContext
from d365kit.sync.journal import Journal, default_path
from d365kit.sync.locks import RunLocks
from d365kit.sync.model import FINAL, OPEN, STALE_POLICIES, Operation
from d365kit.sync.plan import SyncPlan, check_operations
from d365kit.sync.run import SyncRun
from d365kit.sync.target import Target, check_same, confirm_production, target_of
from d365kit.systems import Systems
from d365kit.timestamps import iso, now

MAX_ROUNDS = 12
MAX_WAIT = 30.0
DATAVERSE_WORKERS = 16  # of Dataverse's 52 concurrent requests: the session's cap bounds it further


# -- running ---------------------------------------------------------------------------------------------


def _backoff(rounds: int, hint: float | None) -> float:
    base = min(MAX_WAIT, 0.25 * 2 ** min(rounds, 7))
    return min(MAX_WAIT, max(hint or 0.0, random.uniform(base / 2, base)))


class _Executor:
    """One run of one journal: the loop of steps 3-5 (see the module docstring).

    Coupling changes are pipelined: as soon as a chunk's records are done their couplings go out, so the
    companion API's work overlaps the next chunks' writes; whatever did not go through then (no answer,
    "already exists") is written, with retries and verification, after the last stage."""

    def __init__(
        self,
        systems: Systems,
        journal: Journal,
        run_id: str,
        *,
        progress: bool,
        batch_size: int | None,
        fresh: list[Operation] | None = None,
        target: Target,
        catalog: Catalog | None = None,
        stale: str = "stop",
        plan_created: str | None = None,
        replayed: dict[str, str] | None = None,
    ):
        """``fresh``: the operations of a run just journaled (spares reading them back)."""
        self.systems, self.journal, self.run_id = systems, journal, run_id
        self.progress, self.batch_size = progress, batch_size
        self.target, self.catalog, self.stale_policy = target, catalog, stale
        self.plan_created = plan_created
        self.target_key = "|".join(target.key)
        if fresh is None:
            frame = journal.operations(run_id)
        else:
            replayed = replayed or {}
            frame = pd.DataFrame(
                {
                    "op_id": [op.op_id for op in fresh],
                    "op": fresh,
                    "state": [
                        "already_applied"
                        if op.op_id in replayed
                        else "skipped"
                        if op.kind == "skip"
                        else "planned"
                        for op in fresh
                    ],
                    "attempts": 0,
                    "result_stamp": None,
                    "error": [
                        f"already applied by run {replayed[op.op_id]}" if op.op_id in replayed else None
                        for op in fresh
                    ],
                    "coupling_state": [
                        "pending" if op.coupling_action and op.op_id not in replayed else "none"
                        for op in fresh
                    ],
                }
            )
        self.ops: dict[str, Operation] = {op.op_id: op for op in frame["op"]}
        self.order = list(self.ops)
        self.state = dict(zip(frame["op_id"], frame["state"], strict=True))
        self.stamp = dict(zip(frame["op_id"], frame["result_stamp"], strict=True))
        self.error = dict(zip(frame["op_id"], frame["error"], strict=True))
        self.attempts = dict(zip(frame["op_id"], frame["attempts"], strict=True))
        self.coupling_state = dict(zip(frame["op_id"], frame["coupling_state"], strict=True))
        retry = [i for i, c in self.coupling_state.items() if c == "failed"]  # resume retries them
        if retry:
            journal.mark_couplings(run_id, [(i, "pending") for i in retry])
            self.coupling_state.update(dict.fromkeys(retry, "pending"))
        self.checked: set[str] = set()  # planned writes whose source was read again
        self.last_error: dict[str, tuple[str | None, str | None]] = {}
        self.duplicates: set[str] = set()
        self.warnings: list[str] = []
        self.by_mapping = records.directions_by_mapping(list(self.ops.values()))
        self.early: list[tuple[list[tuple[Operation, str, dict[str, Any]]], Future]] = []
        self.early_ids: set[str] = set()
        self.companion_ok: bool | None = None
        workers = systems.bc.session.max_concurrency + min(
            systems.dataverse.session.max_concurrency, DATAVERSE_WORKERS
        )
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="d365kit-sync")

    def run(self) -> SyncRun:
        started = time.perf_counter()
        writes = [i for i in self.order if self.ops[i].write]
        try:
            with tqdm(
                total=len(writes), desc="apply", unit=" ops", disable=not self.progress, delay=1
            ) as bar:
                bar.update(sum(self.state[i] in FINAL for i in writes))
                for mapping in dict.fromkeys(op.mapping for op in self.ops.values()):
                    self._stage([self.ops[i] for i in self.order if self.ops[i].mapping == mapping], bar)
            self._couplings()
            open_ops = [i for i in self.order if self.state[i] in OPEN]
            if open_ops:
                self.warnings.append(
                    f"{len(open_ops)} operation(s) not finished ({self._open_states(open_ops)}): their outcome "
                    f"is verified by reading before anything else when you resume the run "
                    f"(d365kit sync resume {self.run_id}); the job rows wait until then"
                )
            else:
                self._jobs()
        finally:
            self.pool.shutdown(wait=True)
        done = not open_ops and all(c in ("done", "none") for c in self.coupling_state.values())
        self.journal.finish_run(self.run_id, "finished" if done else "incomplete")
        return self._result(time.perf_counter() - started)

    def _open_states(self, op_ids: list[str]) -> str:
        counted = pd.Series([self.state[i] for i in op_ids]).value_counts()
        return ", ".join(f"{n} {state}" for state, n in counted.items())

    # records ---------------------------------------------------------------------------------------

    def _finish(self, outcomes: list[writers.Outcome], bar: Any = None) -> None:
        final = [o for o in outcomes if o.state in FINAL]
        for o in outcomes:
            if o.state not in ("done", "resend"):
                self.last_error[o.op_id] = (o.code, o.error)
            if o.state == "duplicate":
                self.duplicates.add(o.op_id)
        for o in final:
            self.state[o.op_id], self.stamp[o.op_id], self.error[o.op_id] = o.state, o.stamp, o.error
        if final:
            self.journal.mark(
                self.run_id, [(o.op_id, o.state, o.stamp, o.etag, o.code, o.error) for o in final]
            )
            if bar is not None:
                bar.update(len(final))
            self._couple_early([o.op_id for o in final])

    def _blocked(self, op: Operation) -> str | None:
        for dep in op.depends_on:
            state = self.state.get(dep)
            if state in ("failed", "conflict", "skipped", "stale"):
                other = self.ops[dep]
                return f"not sent: it depends on {other.mapping} {other.bc_key or other.bc_id} ({other.kind}), which ended {state}"
        return None

    @staticmethod
    def _groups(ops: list[Operation]) -> dict[tuple[str, str | None, str | None], list[Operation]]:
        groups: dict[tuple[str, str | None, str | None], list[Operation]] = {}
        for op in ops:
            groups.setdefault((writers.side_of(op), op.target_set, op.target_api), []).append(op)
        return groups

    def _stage(self, ops: list[Operation], bar: Any) -> None:
        quiet = [op for op in ops if op.write is None and self.state[op.op_id] == "planned"]
        if quiet:
            self._finish([writers.Outcome(op.op_id, "done") for op in quiet])
        pending = [op for op in ops if op.write and self.state[op.op_id] not in FINAL]
        uncertain = {op.op_id for op in pending if self.state[op.op_id] in ("sent", "unknown")}
        rounds, hint = 0, None
        while pending:
            if rounds:
                time.sleep(_backoff(rounds, hint))
            if rounds >= MAX_ROUNDS:
                self._give_up(pending, uncertain, bar)
                return
            blocked = [(op, why) for op in pending if (why := self._blocked(op))]
            self._finish(
                [writers.Outcome(op.op_id, "failed", code="Dependency", error=why) for op, why in blocked],
                bar,
            )
            unclear = [op for op in pending if op.op_id in uncertain and self.state[op.op_id] not in FINAL]
            resend = self._verify(unclear, bar)
            uncertain -= {i for i in uncertain if self.state[i] in FINAL or i in resend}
            ready = [
                op
                for op in pending
                if self.state[op.op_id] not in FINAL
                and op.op_id not in uncertain
                and all(self.state.get(d) in FINAL for d in op.depends_on)
            ]
            ready = self._fresh(ready, bar)
            hint = self._send(ready, uncertain, bar)
            pending = [op for op in pending if self.state[op.op_id] not in FINAL]
            rounds += 1

    def _verify(self, ops: list[Operation], bar: Any) -> set[str]:
        """Verify unclear operations; returns those to send again."""
        resend: set[str] = set()
        for group in self._groups(ops).values():
            try:
                outcomes = writers.verify(self.systems, group, self.duplicates)
            except D365Error as exc:  # reading failed too: verify again next round
                for op in group:
                    self.last_error[op.op_id] = ("Verify", str(exc))
                continue
            resend |= {o.op_id for o in outcomes if o.state == "resend"}
            self._finish(outcomes, bar)
        return resend

    def _send(self, ops: list[Operation], uncertain: set[str], bar: Any) -> float | None:
        """Send ``ops`` in chunks, concurrently; returns the longest Retry-After heard."""
        chunks = [
            group[i : i + writers.chunk_size(side, self.batch_size)]
            for (side, _, _), group in self._groups(ops).items()
            for i in range(0, len(group), writers.chunk_size(side, self.batch_size))
        ]
        if not chunks:
            return None
        self.journal.mark_sent(self.run_id, [op.op_id for chunk in chunks for op in chunk])
        for chunk in chunks:
            for op in chunk:
                self.state[op.op_id] = "sent"
                self.attempts[op.op_id] += 1
        futures = [self.pool.submit(writers.send, self.systems, c) for c in chunks]
        hint: float | None = None
        for future in as_completed(futures):
            outcomes = future.result()
            for o in outcomes:
                if o.state in ("unknown", "duplicate"):
                    uncertain.add(o.op_id)
                    hint = max(hint or 0.0, o.retry_after or 0.0) or hint
            self._finish(outcomes, bar)
            self._drain_early(block=False)
        return hint

    def _give_up(self, ops: list[Operation], uncertain: set[str], bar: Any) -> None:
        """After ``MAX_ROUNDS``: verify the unclear ones once more; never guess an outcome. What is still
        unclear ends ``unknown``; what was verified as not applied (or never sent) stays ``planned``."""
        unclear = [op for op in ops if op.op_id in uncertain and self.state[op.op_id] not in FINAL]
        resend = self._verify(unclear, bar)
        left = [op for op in ops if self.state[op.op_id] not in FINAL]
        marks = []
        for op in left:
            code, text = self.last_error.get(op.op_id, (None, None))
            if op.op_id in uncertain and op.op_id not in resend:
                state, error = "unknown", f"outcome unknown after {MAX_ROUNDS} rounds (last: {text})"
            else:
                state, error = "planned", f"not applied after {MAX_ROUNDS} rounds (last: {text})"
            self.state[op.op_id], self.error[op.op_id] = state, error
            marks.append((op.op_id, state, None, None, code, f"{error}; resume the run to finish it"))
        self.journal.mark(self.run_id, marks)

    # sources changed after planning ----------------------------------------------------------------

    def _fresh(self, ops: list[Operation], bar: Any) -> list[Operation]:
        """The planned writes of ``ops`` whose source is as planned (read again, in chunks, once per write)
        and that no other run wrote after the plan was made; the others end ``stale`` (or, with
        ``stale="current"``, get the source's current values). Ops whose source cannot be read now wait."""
        todo = [op for op in ops if op.op_id not in self.checked and self.state[op.op_id] == "planned"]
        if not todo:
            return ops
        outcomes: dict[str, writers.Outcome] = {}
        waiting: set[str] = set()
        for op_id, why in self._touched_by_others(todo).items():
            outcomes[op_id] = writers.Outcome(op_id, "stale", code="Stale", error=why)
        groups: dict[tuple[str, str | None, str], list[Operation]] = {}
        for op in todo:
            if op.op_id not in outcomes and op.source_set and op.source_stamp_field and op.source_stamp:
                groups.setdefault((op.source_set, op.source_api, op.source_stamp_field), []).append(op)
        changed: list[tuple[Operation, str | None]] = []
        for (entity_set, api, stamp), group in groups.items():
            ids = [op.source_id or "" for op in group]
            try:
                if group[0].direction == "to_dataverse":
                    rows = self.systems.bc.rows_by_id(entity_set, ids, [stamp], api=api or "v2.0")
                else:
                    rows = self.systems.dataverse.rows_by_id(entity_set, ids, [stamp])
            except D365Error as exc:  # cannot tell now: not sent this round
                for op in group:
                    self.last_error[op.op_id] = ("SourceCheck", str(exc))
                waiting |= {op.op_id for op in group}
                continue
            for op, i in zip(group, ids, strict=True):
                now_stamp = iso(rows.at[i.lower(), stamp]) if i.lower() in rows.index else None
                if now_stamp != op.source_stamp:
                    changed.append((op, now_stamp))
        if changed and self.stale_policy == "current":
            outcomes.update(self._rewrite([op for op, _ in changed]))
        else:
            for op, stamp_now in changed:
                what = "no longer exists" if stamp_now is None else f"changed at {stamp_now}"
                outcomes[op.op_id] = writers.Outcome(
                    op.op_id,
                    "stale",
                    code="Stale",
                    error=f"not written: the source row {what}, after the plan read it ({op.source_stamp}); "
                    'plan again (or apply with stale="current" to write its current values)',
                )
        self.checked |= {op.op_id for op in todo if op.op_id not in waiting}
        if outcomes:
            self._finish(list(outcomes.values()), bar)
        return [op for op in ops if op.op_id not in waiting and self.state[op.op_id] not in FINAL]

    def _touched_by_others(self, ops: list[Operation]) -> dict[str, str]:
        """Records another run of this target wrote (or may have written) after this run's plan was made."""
        if not self.plan_created:
            return {}
        ids = sorted({i for op in ops for i in op.record_ids})
        others = self.journal.touching(self.target_key, ids, exclude_run=self.run_id)
        if others.empty:
            return {}
        mine = set(self.ops)
        others = others[
            others["state"].isin(["done", "sent", "unknown"])
            & (others["updated_at"] > self.plan_created)
            & ~others["op_id"].isin(mine)
        ]
        by_id: dict[str, tuple[str, str]] = {}
        for other, run_id, at in zip(others["op"], others["run_id"], others["updated_at"], strict=True):
            for i in other.record_ids - {(other.coupling_id or "").lower()}:
                by_id.setdefault(i, (run_id, at))
        out = {}
        for op in ops:
            hit = next((by_id[i] for i in op.record_ids if i in by_id), None)
            if hit:
                out[op.op_id] = (
                    f"not written: run {hit[0]} wrote this record at {hit[1]}, after this plan was made "
                    f"({self.plan_created}); plan again"
                )
        return out

    def _rewrite(self, ops: list[Operation]) -> dict[str, writers.Outcome]:
        """``stale="current"``: the changed sources' current values into ``ops`` (journaled); returns the
        outcomes of those that cannot be written."""
        catalog = self.catalog or load_catalog()
        ctx = PlanContext(self.systems, catalog, self.systems.ledger())
        problems: dict[str, str] = {}
        groups: dict[tuple[str, str | None], list[Operation]] = {}
        for op in ops:
            groups.setdefault((op.mapping, op.direction), []).append(op)
        for (mapping, _), group in groups.items():
            problems |= MappingPlanner(ctx, catalog[mapping], None).refresh(group)
        self.journal.save_operations(self.run_id, [op for op in ops if op.op_id not in problems])
        return {
            i: writers.Outcome(i, "stale", code="Stale", error=f"not written: {why}")
            for i, why in problems.items()
        }

    # couplings -------------------------------------------------------------------------------------

    def _companion(self, entity_set: str) -> dict[str, str] | None:
        try:
            return self.systems.bc.metadata(COMPANION).entity(entity_set).properties
        except D365Error as exc:
            self.warnings.append(f"the companion API has no {entity_set} ({exc}); kept in the journal only")
            return None

    def _changes(self, op_ids: list[str]) -> list[tuple[Operation, str, dict[str, Any]]]:
        """The coupling changes of these (finished) operations; those without one are marked ``none``."""
        changes, untouched = [], []
        for i in op_ids:
            op = self.ops[i]
            if self.coupling_state[i] != "pending" or self.state[i] not in FINAL:
                continue
            job = records.job_id(self.run_id, op.mapping, records.job_direction(op, self.by_mapping))
            change = records.coupling_change(op, self.state[i], self.stamp.get(i), job, now())
            if change is None:
                untouched.append((i, "none"))
                self.coupling_state[i] = "none"
            else:
                changes.append((op, *change))
        if untouched:
            self.journal.mark_couplings(self.run_id, untouched)
        return changes

    @staticmethod
    def _coupling_request(item: tuple[Operation, str, dict[str, Any]]) -> Request:
        op, method, values = item
        if method == "POST":
            return Request("POST", COUPLINGS, values, id=op.op_id)
        return Request(
            method, f"{COUPLINGS}({op.coupling_id})", values or None, {"If-Match": "*"}, id=op.op_id
        )

    def _couple_early(self, op_ids: list[str]) -> None:
        """Send the coupling changes of just-finished operations now (one attempt; see the class docstring)."""
        if self.companion_ok is None:
            self.companion_ok = self._companion(COUPLINGS) is not None
        if not self.companion_ok:
            return
        changes = [c for c in self._changes(op_ids) if c[0].op_id not in self.early_ids]
        self.early_ids |= {c[0].op_id for c in changes}
        for i in range(0, len(changes), writers.BC_CHUNK):
            chunk = changes[i : i + writers.BC_CHUNK]
            self.early.append(
                (chunk, self.pool.submit(self._batch, [self._coupling_request(c) for c in chunk]))
            )

    def _drain_early(self, block: bool) -> None:
        """Record the early coupling writes that finished (all of them when ``block``)."""
        keep = []
        for chunk, future in self.early:
            if not block and not future.done():
                keep.append((chunk, future))
                continue
            results, error = future.result()
            if error is not None:
                continue
            ok = {
                r.operation.id
                for r in results
                if r.ok or (r.operation.method == "DELETE" and r.status == 404)
            }
            self._record_couplings([c for c in chunk if c[0].op_id in ok])
        self.early = keep

    def _record_couplings(
        self, done: list[tuple[Operation, str, dict[str, Any]]], failed: list[str] = ()
    ) -> None:  # type: ignore[assignment]
        at = now()
        self.journal.save_couplings([records.ledger_row(op, m, v, at) for op, m, v in done])
        states = [(op.op_id, "done") for op, _, _ in done] + [(i, "failed") for i in failed]
        self.journal.mark_couplings(self.run_id, states)
        for i, state in states:
            self.coupling_state[i] = state

    def _couplings(self) -> None:
        self._drain_early(block=True)
        changes = self._changes(self.order)
        if not changes:
            return
        if self._companion(COUPLINGS) is None:
            self._record_couplings([], [op.op_id for op, _, _ in changes])
            return
        done = self._companion_writes(changes, self._coupling_request, exists_ok=lambda op: op.coupling_id)
        self._record_couplings(
            [c for c in changes if c[0].op_id in done],
            [op.op_id for op, _, _ in changes if op.op_id not in done],
        )
        failed = [op for op, _, _ in changes if op.op_id not in done]
        if failed:
            self.warnings.append(f"{len(failed)} coupling change(s) failed; resume the run to retry them")

    def _companion_writes(
        self,
        items: list[tuple[Any, str, dict[str, Any]]],
        request: Callable[[tuple[Any, str, dict[str, Any]]], Request],
        exists_ok: Callable[[Any], str | None],
    ) -> set[str]:
        """Write companion rows in $batch chunks, retrying what got no answer; returns the ids written.

        A POST answered "already exists" is verified by reading the row (our id: done); a DELETE answered
        404 is done (gone already)."""
        todo = {request(item).id: item for item in items}
        done: set[str] = set()
        rounds, hint = 0, None
        while todo and rounds < MAX_ROUNDS:
            if rounds:
                time.sleep(_backoff(rounds, hint))
            chunks = [list(todo)[i : i + writers.BC_CHUNK] for i in range(0, len(todo), writers.BC_CHUNK)]
            futures = [self.pool.submit(self._batch, [request(todo[i]) for i in c]) for c in chunks]
            exists: list[str] = []
            hint = None
            for future in as_completed(futures):
                results, error = future.result()
                if error is not None:
                    hint = (
                        max(hint or 0.0, error.retry_after or 0.0) if isinstance(error, ODataError) else hint
                    )
                    continue
                for r in results:
                    item = todo[r.operation.id]
                    if r.ok or (r.operation.method == "DELETE" and r.status == 404):
                        done.add(r.operation.id)
                    elif r.operation.method == "POST" and r.status in (409, 412):
                        exists.append(r.operation.id)
                    elif r.status and r.status < 500 and r.status != 429:
                        self.warnings.append(f"{item[1]} {request(item).url}: {r.error}")
                        todo.pop(r.operation.id)
            if exists:
                ids = {exists_ok(todo[i][0]): i for i in exists}
                entity = request(todo[exists[0]]).url.split("(")[0]
                try:
                    found = self.systems.bc.rows_by_id(entity, [k for k in ids if k], ["id"], api=COMPANION)
                    done |= {ids[k] for k in ids if k in found.index}
                except D365Error:
                    pass
            for i in done:
                todo.pop(i, None)
            rounds += 1
        return done

    def _batch(self, requests: list[Request]) -> tuple[list[Any], Exception | None]:
        try:
            return self.systems.bc.batch(requests, api=COMPANION), None
        except Exception as exc:  # noqa: BLE001 - the round retries the chunk
            return [], exc

    # job rows --------------------------------------------------------------------------------------

    def _frame(self) -> pd.DataFrame:
        """The operations with their states, from memory (the journal holds the same)."""
        return pd.DataFrame(
            {
                "op": [self.ops[i] for i in self.order],
                "state": [self.state[i] for i in self.order],
                "error": [self.error.get(i) for i in self.order],
            }
        )

    def _jobs(self) -> None:
        run = self.journal.run(self.run_id) or {}
        captions = _captions({op.mapping for op in self.ops.values()})
        jobs, errors = records.job_rows(
            self.run_id, run.get("created_at") or now(), now(), self._frame(), captions
        )
        before = {"runs": self.journal.jobs(self.run_id), "run_errors": self.journal.job_errors(self.run_id)}
        for rows, table, stamp in ((jobs, "runs", "finishDateTime"), (errors, "run_errors", "dateTime")):
            kept = dict(
                zip(before[table]["id"], before[table][stamp], strict=True)
            )  # a resumed run keeps its times
            for row in rows:
                row[stamp] = kept.get(row["id"], row[stamp])
        self.journal.save_jobs(jobs, errors)
        for entity_set, all_rows, table in (
            (SYNC_JOBS, jobs, "runs"),
            (SYNC_JOB_ERRORS, errors, "run_errors"),
        ):
            done = set(before[table].loc[before[table]["written"] == 1, "id"])
            rows = [row for row in all_rows if row["id"] not in done]
            props = self._companion(entity_set) if rows else None
            if props is None:
                continue
            items = [(row, "POST", {k: v for k, v in row.items() if k in props}) for row in rows]
            written = self._companion_writes(
                items,
                lambda item, s=entity_set: Request("POST", s, item[2], id=item[0]["id"]),
                lambda row: row["id"],
            )
            self.journal.mark_written(table, written)
            if len(written) < len(rows):
                self.warnings.append(
                    f"{len(rows) - len(written)} {entity_set} row(s) not written; resume to retry"
                )

    def _result(self, seconds: float) -> SyncRun:
        ops = [self.ops[i] for i in self.order]
        out = pd.DataFrame(
            {
                "op_id": self.order,
                "mapping": [op.mapping for op in ops],
                "kind": [op.kind for op in ops],
                "direction": [op.direction for op in ops],
                "category": [op.category for op in ops],
                "bc_key": [op.bc_key for op in ops],
                "bc_id": [op.bc_id for op in ops],
                "dataverse_id": [op.dataverse_id for op in ops],
                "fields": [op.fields for op in ops],
                "state": [self.state[i] for i in self.order],
                "attempts": [int(self.attempts[i]) for i in self.order],
                "coupling_state": [self.coupling_state[i] for i in self.order],
                "result_stamp": [self.stamp.get(i) for i in self.order],
                "error": [self.error.get(i) for i in self.order],
                "reason": [op.reason for op in ops],
            }
        )
        jobs, errors = self.journal.jobs(self.run_id), self.journal.job_errors(self.run_id)
        if any(self.state[i] in OPEN for i in self.order):  # not journaled yet: the verified outcomes so far
            run = self.journal.run(self.run_id) or {}
            rows, error_rows = records.job_rows(
                self.run_id,
                run.get("created_at") or now(),
                now(),
                self._frame(),
                _captions({op.mapping for op in self.ops.values()}),
            )
            jobs, errors = pd.DataFrame(rows), pd.DataFrame(error_rows)
        return SyncRun(self.run_id, self.journal.path, out, jobs, errors, seconds, self.warnings)


def _captions(mappings: set[str]) -> dict[str, str]:
    """BC table captions of the mappings (error rows name records "Customer: C00010")."""
    from d365kit.mapping import load_catalog

    catalog = load_catalog()
    return {name: (catalog[name].bc_table or name) if name in catalog else name for name in mappings}


# -- entry points ----------------------------------------------------------------------------------------


def _replays(j: Journal, plan: SyncPlan) -> dict[str, str]:
    """Operations of ``plan`` an earlier run of this journal finished: op id -> that run. Refuses a plan
    whose operations an unfinished run still holds open (resume that run instead)."""
    earlier = j.finished_ops([op.op_id for op in plan.operations])
    if earlier.empty:
        return {}
    open_runs = sorted(set(earlier.loc[earlier["state"].isin(OPEN), "run_id"]))
    if open_runs:
        raise SyncPlanError(
            f"this plan was applied before by run {', '.join(open_runs)}, which has not finished: resume it "
            f"(ws.resume(run_id), d365kit sync resume {open_runs[0]}) instead of applying the plan again"
        )
    done = earlier[earlier["state"].isin(["done", "already_applied"])]
    return dict(zip(done["op_id"], done["run_id"], strict=True))


def apply(
    systems: Systems,
    plan: SyncPlan,
    *,
    journal: str | Path | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    run_id: str | None = None,
    target: Target | None = None,
    production: bool | None = None,
    confirm: bool = False,
    wait: float = 0.0,
    stale: str = "stop",
) -> SyncRun:
    """Run ``plan`` (see the module docstring). ``journal``: the journal file (default
    ``journal.default_path(profile)``); ``batch_size``: operations per request (default and maximum:
    BC 100, Dataverse 500); ``target``: the profile's target (default: read from ``systems``, production
    when ``production`` says so, else by the environment's name); ``confirm``: write to a production target; ``wait``: seconds to wait for
    another run holding a lock of these mappings; ``stale``: ``stop`` (a source changed since planning ends
    ``stale``) or ``current`` (write its current values)."""
    if stale not in STALE_POLICIES:
        raise SyncPlanError(f"stale must be one of {STALE_POLICIES}, not {stale!r}")
    check_operations(plan.catalog, plan.operations)
    for op in plan.operations:
        if op.write == "update" and not op.etag:
            raise SyncPlanError(
                f"operation {op.op_id} ({op.mapping} {op.bc_key}) has no ETag to send as If-Match"
            )
    target = target or target_of(systems, production)
    check_same(plan.target, target, "this plan")
    confirm_production(target, plan.operations, confirm, "applying this plan")
    run_id = run_id or str(uuid.uuid4())
    path = Path(journal) if journal else default_path(systems.profile)
    with Journal(path) as j, RunLocks(target, plan.mappings, run_id, path) as locks:
        locks.acquire(wait)
        replayed = _replays(j, plan)
        j.start_run(
            run_id,
            systems.profile,
            plan.operations,
            plan.options,
            target=target.to_dict(),
            target_key="|".join(target.key),
            plan_created=plan.created,
            locks=plan.mappings,
            replayed=replayed,
        )
        return _Executor(
            systems,
            j,
            run_id,
            progress=progress,
            batch_size=batch_size,
            fresh=list(plan.operations),
            target=target,
            catalog=plan.catalog,
            stale=stale,
            plan_created=plan.created,
            replayed=replayed,
        ).run()


def resume(
    systems: Systems,
    run_id: str,
    *,
    journal: str | Path | None = None,
    progress: bool = True,
    batch_size: int | None = None,
    target: Target | None = None,
    production: bool | None = None,
    confirm: bool = False,
    wait: float = 0.0,
    stale: str = "stop",
) -> SyncRun:
    """Finish a journaled run (interrupted or not): see the module docstring. Refused when the profile's
    target is not the run's; a production target needs ``confirm`` when work is left."""
    if stale not in STALE_POLICIES:
        raise SyncPlanError(f"stale must be one of {STALE_POLICIES}, not {stale!r}")
    path = Path(journal) if journal else default_path(systems.profile)
    if not path.exists():
        raise SyncPlanError(f"no journal at {path}")
    with Journal(path) as j:
        run = j.run(run_id)
        if run is None:
            raise SyncPlanError(f"no run {run_id} in the journal {path}")
        target = target or target_of(systems, production)
        recorded = Target.from_dict(run["target"])
        if recorded is not None:
            check_same(recorded, target, f"run {run_id}")
        elif run["profile"] != systems.profile:  # journaled before runs recorded their target
            raise SyncTargetError(
                f"run {run_id} was made with profile {run['profile']!r} and records no target; resume it with "
                f"that profile, not {systems.profile!r}"
            )
        ops = j.operations(run_id)
        left = ops[ops["state"].isin(OPEN) | ops["coupling_state"].isin(["pending", "failed"])]
        if len(left):
            confirm_production(target, list(left["op"]), confirm, f"resuming run {run_id}")
        mappings = list(dict.fromkeys(ops["mapping"]))
        with RunLocks(target, mappings, run_id, path) as locks:
            locks.acquire(wait)
            j.set_locks(run_id, mappings)
            return _Executor(
                systems,
                j,
                run_id,
                progress=progress,
                batch_size=batch_size,
                target=target,
                stale=stale,
                plan_created=run.get("plan_created"),
            ).run()
