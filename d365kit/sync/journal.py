"""The sync journal: a SQLite file (WAL) where every operation is written before it is sent and marked after
its answer, so a killed run resumes from it without duplicates or loss.

Where: ``$D365KIT_JOURNAL`` if set, else ``$XDG_DATA_HOME/d365kit/journal/<profile>.sqlite`` (default
``~/.local/share/d365kit/journal/<profile>.sqlite``), one file per profile.

Tables:

- ``run_state``: one row per run (id, profile, created/finished, state ``running``/``finished``).
- ``operations``: one row per operation: the operation as planned (JSON, with the ids it chose), its
  ``state`` (planned, sent, done, failed, conflict, skipped), attempts, the answer (new modification time,
  ETag, error) and ``coupling_state`` (pending, done, failed, none) of its coupling change.
- ``couplings``: the couplings the runs added, moved or removed, in ``couplings.JOURNAL_DDL``'s shape
  (``couplings.from_journal`` reads them as a ledger).
- ``runs`` / ``run_errors``: the job rows and error rows of each run, in the companion API's field names
  (BC's Integration Synch. Job / Errors), as ``health.history(jobs, runs)`` takes them; ``written`` says
  whether the companion API has them too.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from d365kit.couplings import JOURNAL_DDL, LEDGER_COLUMNS
from d365kit.sync.model import Operation
from d365kit.timestamps import now

JOB_COUNTS = ("inserted", "modified", "deleted", "unchanged", "skipped", "failed", "coupled", "uncoupled")
_DDL = (
    JOURNAL_DDL,
    """
    CREATE TABLE IF NOT EXISTS run_state (
        run_id TEXT PRIMARY KEY,
        profile TEXT,
        created_at TEXT NOT NULL,
        finished_at TEXT,
        state TEXT NOT NULL DEFAULT 'running',  -- running, finished
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


def default_path(profile: str = "sandbox") -> Path:
    """``$D365KIT_JOURNAL``, else ``$XDG_DATA_HOME/d365kit/journal/<profile>.sqlite``."""
    env = os.environ.get("D365KIT_JOURNAL")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "d365kit" / "journal" / f"{profile}.sqlite"


class Journal:
    """One journal file. Not shared between threads: the apply loop writes it from one thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL + NORMAL: committed rows survive a killed process
        with self.tx():
            for ddl in _DDL:
                self.conn.execute(ddl)

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
        self, run_id: str, profile: str | None, operations: list[Operation], options: dict[str, Any]
    ) -> None:
        """Record a run and all its operations (state ``planned``) in one transaction."""
        stamp = now()
        with self.tx() as c:
            c.execute(
                "INSERT INTO run_state (run_id, profile, created_at, options) VALUES (?, ?, ?, ?)",
                (run_id, profile, stamp, json.dumps(options, default=str)),
            )
            c.executemany(
                "INSERT INTO operations (run_id, seq, op_id, mapping, kind, op, state, coupling_state, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        i,
                        op.op_id,
                        op.mapping,
                        op.kind,
                        op.to_json(),
                        "skipped" if op.kind == "skip" else "planned",
                        "pending" if op.coupling_action else "none",
                        stamp,
                    )
                    for i, op in enumerate(operations)
                ],
            )

    def run(self, run_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT run_id, profile, created_at, finished_at, state, options FROM run_state WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("run_id", "profile", "created_at", "finished_at", "state", "options")
        out = dict(zip(keys, row, strict=True))
        out["options"] = json.loads(out["options"] or "{}")
        return out

    def finish_run(self, run_id: str) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE run_state SET state = 'finished', finished_at = ? WHERE run_id = ?", (now(), run_id)
            )

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
            " SUM(o.state IN ('planned', 'sent')) AS pending"
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
