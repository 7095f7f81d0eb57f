"""The sync journal: a SQLite file (WAL) where every operation is written before it is sent and marked after
its answer, so a killed run resumes from it without duplicates or loss.

Where: ``$D365KIT_JOURNAL`` if set, else ``$XDG_DATA_HOME/d365kit/journal/<profile>.sqlite`` (default
``~/.local/share/d365kit/journal/<profile>.sqlite``), one file per profile.

Tables:

- ``run_state``: one row per run (id, profile, created/finished, state ``running``/``finished``/
  ``incomplete``, the target as JSON and its key, the plan's creation time, the mappings it locked).
- ``operations``: one row per operation: the operation as planned (JSON, with the ids it chose), its
  ``state`` (``model.STATES``: planned, sent, unknown, done, failed, conflict, skipped, stale,
  already_applied), attempts, the answer (new modification time, ETag, error), ``coupling_state`` (pending,
  done, failed, none) of its coupling change, and the record's BC and Dataverse ids (to find the runs that
  touched a record).
- ``couplings``: the couplings the runs added, moved or removed, in ``couplings.JOURNAL_DDL``'s shape
  (``couplings.from_journal`` reads them as a ledger).
- ``runs`` / ``run_errors``: the job rows and error rows of each run, in the companion API's field names
  (BC's Integration Synch. Job / Errors), as ``health.history(jobs, runs)`` takes them; ``written`` says
  whether the companion API has them too.

Files: the journal (and its ``-wal``/``-shm`` files, which SQLite creates with the journal's mode) is 0600;
a folder it creates is 0700, and so is the default journal folder. Opening retries while another process
holds the database locked (creating the file, switching it to WAL), up to ``OPEN_TIMEOUT`` seconds.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from d365kit.couplings import JOURNAL_DDL, LEDGER_COLUMNS
from d365kit.sync.locks import private_dir
from d365kit.sync.model import Operation
from d365kit.timestamps import now

OPEN_TIMEOUT = 60.0
_CHUNK = 400  # ids per IN (...) query

JOB_COUNTS = ("inserted", "modified", "deleted", "unchanged", "skipped", "failed", "coupled", "uncoupled")
_DDL = (
    JOURNAL_DDL,
    """
    CREATE TABLE IF NOT EXISTS run_state (
        run_id TEXT PRIMARY KEY,
        profile TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        state TEXT NOT NULL DEFAULT 'running',  -- running, finished, incomplete
        options TEXT                            -- JSON: the plan's options
    )""",
    """
    CREATE TABLE IF NOT EXISTS operations (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,                   -- position in the plan
        op_id TEXT NOT NULL,
        mapping TEXT NOT NULL,
        kind TEXT NOT NULL,
        op TEXT NOT NULL,                       -- JSON: the operation as planned
        state TEXT NOT NULL DEFAULT 'planned',  -- planned, sent, done, failed, conflict, skipped
        attempts INTEGER NOT NULL DEFAULT 0,
        result_stamp TEXT,                      -- the target's modification time after the write
        result_etag TEXT,
        error_code TEXT,
        error TEXT,
        coupling_state TEXT NOT NULL DEFAULT 'pending',  -- pending, done, failed, none
        updated_at TEXT,
        PRIMARY KEY (run_id, op_id)
    )""",
    "CREATE INDEX IF NOT EXISTS operations_state ON operations (run_id, state)",
    "CREATE INDEX IF NOT EXISTS operations_op ON operations (op_id)",
    """
    CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,                    -- the job id (also sent to the companion API)
        run_id TEXT NOT NULL,
        integrationTableMappingName TEXT NOT NULL,
        synchDirection TEXT NOT NULL,
        type TEXT NOT NULL DEFAULT 'Synchronization',
        startDateTime TEXT NOT NULL,
        finishDateTime TEXT,
        message TEXT NOT NULL DEFAULT '',
        inserted INTEGER NOT NULL DEFAULT 0,
        modified INTEGER NOT NULL DEFAULT 0,
        deleted INTEGER NOT NULL DEFAULT 0,
        unchanged INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        coupled INTEGER NOT NULL DEFAULT 0,
        uncoupled INTEGER NOT NULL DEFAULT 0,
        written INTEGER NOT NULL DEFAULT 0
    )""",
    """
    CREATE TABLE IF NOT EXISTS run_errors (
        id TEXT PRIMARY KEY,
        integrationSynchJobId TEXT NOT NULL,
        sourceRecordId TEXT,
        destinationRecordId TEXT,
        message TEXT,
        errorMessage TEXT,
        dateTime TEXT,
        written INTEGER NOT NULL DEFAULT 0
    )""",
)


# Columns added after the first release: added to older journals when opened.
_ADDED = {
    "run_state": {
        "target": "TEXT",  # JSON: the target (tenant, environment, company, Dataverse org, production)
        "target_key": "TEXT",  # tenant|environment|company id|org, lower case
        "plan_created": "TEXT",  # when the plan was made
        "locks": "TEXT",  # JSON: the mappings whose locks the run held
    },
    "operations": {"bc_id": "TEXT", "dataverse_id": "TEXT"},
}
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS operations_bc ON operations (bc_id)",
    "CREATE INDEX IF NOT EXISTS operations_dv ON operations (dataverse_id)",
)


def _busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _own_folder() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "d365kit" / "journal"


def default_path(profile: str = "sandbox") -> Path:
    """``$D365KIT_JOURNAL``, else ``$XDG_DATA_HOME/d365kit/journal/<profile>.sqlite``."""
    env = os.environ.get("D365KIT_JOURNAL")
    if env:
        return Path(env).expanduser()
    return _own_folder() / f"{profile}.sqlite"


class Journal:
    """One journal file. Not shared between threads: the apply loop writes it from one thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        private_dir(self.path.parent, own=self.path.parent == _own_folder())
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        for extra in ("-wal", "-shm"):
            side = self.path.with_name(self.path.name + extra)
            if side.exists():
                os.chmod(side, 0o600)
        deadline, wait = time.monotonic() + OPEN_TIMEOUT, 0.01
        while True:
            try:
                self.conn = self._open()
                return
            except sqlite3.OperationalError as exc:  # another process is creating it or switching to WAL
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(wait / 2, wait))
                wait = min(1.0, wait * 2)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: committed rows survive a killed process
            conn.execute("BEGIN IMMEDIATE")
            try:
                for ddl in _DDL:
                    conn.execute(ddl)
                for table, columns in _ADDED.items():
                    have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                    for name, kind in columns.items():
                        if name not in have:
                            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                for ddl in _INDEXES:
                    conn.execute(ddl)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # -- runs and operations -------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        profile: str | None,
        operations: list[Operation],
        options: dict[str, Any],
        *,
        target: dict[str, Any] | None = None,
        target_key: str | None = None,
        plan_created: str | None = None,
        locks: list[str] | None = None,
        replayed: dict[str, str] | None = None,
    ) -> None:
        """Record a run and all its operations (state ``planned``; ``replayed``: op id -> the earlier run
        that finished it, state ``already_applied``) in one transaction."""
        stamp = now()
        replayed = replayed or {}

        def state(op: Operation) -> str:
            return (
                "already_applied" if op.op_id in replayed else "skipped" if op.kind == "skip" else "planned"
            )

        with self.tx() as c:
            c.execute(
                "INSERT INTO run_state (run_id, profile, created_at, options, target, target_key, plan_created,"
                " locks) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    profile,
                    stamp,
                    json.dumps(options, default=str),
                    json.dumps(target) if target else None,
                    target_key,
                    plan_created,
                    json.dumps(locks or []),
                ),
            )
            c.executemany(
                "INSERT INTO operations (run_id, seq, op_id, mapping, kind, op, state, coupling_state, error,"
                " updated_at, bc_id, dataverse_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        i,
                        op.op_id,
                        op.mapping,
                        op.kind,
                        op.to_json(),
                        state(op),
                        "pending" if op.coupling_action and op.op_id not in replayed else "none",
                        f"already applied by run {replayed[op.op_id]}" if op.op_id in replayed else None,
                        stamp,
                        (op.bc_id or "").lower() or None,
                        (op.dataverse_id or "").lower() or None,
                    )
                    for i, op in enumerate(operations)
                ],
            )

    _RUN_KEYS = (
        "run_id",
        "profile",
        "created_at",
        "finished_at",
        "state",
        "options",
        "target",
        "target_key",
        "plan_created",
        "locks",
    )

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            f"SELECT {', '.join(self._RUN_KEYS)} FROM run_state WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        out = dict(zip(self._RUN_KEYS, row, strict=True))
        out["options"] = json.loads(out["options"] or "{}")
        out["target"] = json.loads(out["target"]) if out["target"] else None
        out["locks"] = json.loads(out["locks"] or "[]")
        return out

    def finish_run(self, run_id: str, state: str = "finished") -> None:
        """``finished``: every operation final; ``incomplete``: some are open (resume to finish them)."""
        with self.tx() as c:
            c.execute(
                "UPDATE run_state SET state = ?, finished_at = ? WHERE run_id = ?", (state, now(), run_id)
            )

    def set_locks(self, run_id: str, mappings: list[str]) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE run_state SET locks = ?, state = CASE WHEN state = 'finished' THEN state ELSE"
                " 'running' END WHERE run_id = ?",
                (json.dumps(mappings), run_id),
            )

    def _by_ids(
        self, sql: str, column_sets: tuple[str, ...], ids: list[str], params: tuple = ()
    ) -> pd.DataFrame:
        frames = []
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            where = " OR ".join(f"o.{c} IN ({marks})" for c in column_sets)
            frames.append(
                pd.read_sql_query(
                    sql.format(where=where), self.conn, params=(*params, *chunk * len(column_sets))
                )
            )
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def finished_ops(self, op_ids: list[str], exclude_run: str | None = None) -> pd.DataFrame:
        """Earlier runs' rows of these operations (a replayed plan): op_id, run_id, state, run_state."""
        return self._by_ids(
            "SELECT o.op_id, o.run_id, o.state, r.state AS run_state FROM operations o"
            " JOIN run_state r ON r.run_id = o.run_id WHERE o.run_id != ? AND ({where})",
            ("op_id",),
            op_ids,
            (exclude_run or "",),
        )

    def touching(self, target_key: str, ids: list[str], exclude_run: str | None = None) -> pd.DataFrame:
        """Other runs' operations on these records (BC or Dataverse ids) on this target: op_id, run_id, op
        (Operation), state, coupling_state, updated_at, run_state, locks."""
        ids = sorted({i.lower() for i in ids if i})
        frame = self._by_ids(
            "SELECT o.op_id, o.run_id, o.op, o.state, o.coupling_state, o.updated_at, r.state AS run_state,"
            " r.locks FROM operations o JOIN run_state r ON r.run_id = o.run_id"
            " WHERE r.target_key = ? AND o.run_id != ? AND ({where})",
            ("bc_id", "dataverse_id"),
            ids,
            (target_key, exclude_run or ""),
        )
        if len(frame):
            frame = frame.drop_duplicates(["run_id", "op_id"]).reset_index(drop=True)
            frame["op"] = [Operation.from_json(text) for text in frame["op"]]
        return frame

    def operations(self, run_id: str) -> pd.DataFrame:
        """The run's operations: ``op`` (Operation) with state, attempts, answer and coupling state."""
        frame = pd.read_sql_query(
            "SELECT op_id, mapping, kind, op, state, attempts, result_stamp, result_etag, error_code, error,"
            " coupling_state FROM operations WHERE run_id = ? ORDER BY seq",
            self.conn,
            params=(run_id,),
        )
        frame["op"] = [Operation.from_json(text) for text in frame["op"]]
        return frame

    def mark_sent(self, run_id: str, op_ids: Iterable[str]) -> None:
        """Before a request: its operations are ``sent`` (their outcome is unknown until marked again)."""
        stamp = now()
        with self.tx() as c:
            c.executemany(
                "UPDATE operations SET state = 'sent', attempts = attempts + 1, updated_at = ? WHERE run_id = ? AND op_id = ?",
                [(stamp, run_id, i) for i in op_ids],
            )

    def mark(
        self, run_id: str, outcomes: Iterable[tuple[str, str, str | None, str | None, str | None, str | None]]
    ) -> None:
        """After an answer: ``(op_id, state, result_stamp, result_etag, error_code, error)`` per operation."""
        stamp = now()
        with self.tx() as c:
            c.executemany(
                "UPDATE operations SET state = ?, result_stamp = ?, result_etag = ?, error_code = ?, error = ?,"
                " updated_at = ? WHERE run_id = ? AND op_id = ?",
                [(s, rs, re, code, err, stamp, run_id, i) for i, s, rs, re, code, err in outcomes],
            )

    def save_operations(self, run_id: str, operations: Iterable[Operation]) -> None:
        """Journal changed operations (``stale="current"`` gave them the source's current values)."""
        with self.tx() as c:
            c.executemany(
                "UPDATE operations SET op = ?, updated_at = ? WHERE run_id = ? AND op_id = ?",
                [(op.to_json(), now(), run_id, op.op_id) for op in operations],
            )

    def mark_couplings(self, run_id: str, states: Iterable[tuple[str, str]]) -> None:
        with self.tx() as c:
            c.executemany(
                "UPDATE operations SET coupling_state = ? WHERE run_id = ? AND op_id = ?",
                [(s, run_id, i) for i, s in states],
            )

    def list_runs(self) -> pd.DataFrame:
        """Every run, newest first, with its operation counts by state."""
        return pd.read_sql_query(
            "SELECT r.run_id, r.profile, r.created_at, r.finished_at, r.state,"
            " COUNT(o.op_id) AS operations,"
            " SUM(o.state = 'done') AS done, SUM(o.state = 'failed') AS failed,"
            " SUM(o.state = 'conflict') AS conflict, SUM(o.state = 'skipped') AS skipped,"
            " SUM(o.state = 'stale') AS stale, SUM(o.state = 'already_applied') AS already_applied,"
            " SUM(o.state = 'unknown') AS unknown, SUM(o.state IN ('planned', 'sent')) AS pending"
            " FROM run_state r LEFT JOIN operations o ON o.run_id = r.run_id"
            " GROUP BY r.run_id ORDER BY r.created_at DESC",
            self.conn,
        )

    # -- couplings -----------------------------------------------------------------------------------

    def save_couplings(self, rows: list[dict[str, Any]]) -> None:
        """Upsert coupling rows (``LEDGER_COLUMNS`` + ``removed_at``)."""
        if not rows:
            return
        names = [*LEDGER_COLUMNS, "removed_at"]
        with self.tx() as c:
            c.executemany(
                f"INSERT INTO couplings ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
                f" ON CONFLICT (coupling_id) DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in names[1:])}",
                [tuple(r.get(n) for n in names) for r in rows],
            )

    # -- job rows ------------------------------------------------------------------------------------

    def save_jobs(self, jobs: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
        """Upsert job rows (``runs``) and error rows (``run_errors``) as built for the companion API."""
        with self.tx() as c:
            for table, rows in (("runs", jobs), ("run_errors", errors)):
                for row in rows:
                    names = list(row)
                    c.execute(
                        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
                        f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in names[1:])}",
                        tuple(row[n] for n in names),
                    )

    def mark_written(self, table: str, ids: Iterable[str]) -> None:
        assert table in ("runs", "run_errors")
        with self.tx() as c:
            c.executemany(f"UPDATE {table} SET written = 1 WHERE id = ?", [(i,) for i in ids])

    def jobs(self, run_id: str | None = None) -> pd.DataFrame:
        """Job rows in the companion API's shape (``health.history(jobs, runs=...)`` takes them)."""
        where, params = ("WHERE run_id = ?", (run_id,)) if run_id else ("", ())
        return pd.read_sql_query(
            f"SELECT * FROM runs {where} ORDER BY startDateTime", self.conn, params=params
        )

    def job_errors(self, run_id: str | None = None) -> pd.DataFrame:
        """Error rows in the companion API's shape (``integrationSynchJobId`` names the job)."""
        if run_id:
            return pd.read_sql_query(
                "SELECT e.* FROM run_errors e JOIN runs r ON r.id = e.integrationSynchJobId WHERE r.run_id = ?",
                self.conn,
                params=(run_id,),
            )
        return pd.read_sql_query("SELECT * FROM run_errors", self.conn)
