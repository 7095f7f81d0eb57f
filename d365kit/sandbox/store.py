"""SQLite (WAL) state of the sandbox: one table per entity set, a global row-version counter, tombstones.

Identifiers in SQL come only from ``schema.py`` (whitelisted names, quoted); every value is a bound
parameter, so a ``$filter`` literal holding quotes or SQL text stays data.

Storage conventions (the API layers convert to and from the wire):
- Edm.Guid/String/Date/DateTimeOffset are TEXT. DateTimeOffset is stored as ``YYYY-MM-DDTHH:MM:SS.fffZ``
  (UTC, fixed width) so that text order is time order; Edm.Date as ``YYYY-MM-DD``.
- Edm.Boolean is INTEGER 0/1 (returned as bool); Int32/Int64 INTEGER; Decimal/Double REAL.
- Hidden columns: ``__version`` (row version, from one counter for the whole store: Dataverse
  ``versionnumber`` and the source of both services' ETags), ``__company`` (BC company id of
  company-scoped rows), ``__lk_<column>`` (target entity logical name of a Dataverse lookup).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from d365kit.sandbox.schema import EntitySet, all_entity_sets

_SQL_TYPE = {
    "Edm.Guid": "TEXT",
    "Edm.String": "TEXT",
    "Edm.Date": "TEXT",
    "Edm.DateTimeOffset": "TEXT",
    "Edm.Boolean": "INTEGER",
    "Edm.Int32": "INTEGER",
    "Edm.Int64": "INTEGER",
    "Edm.Decimal": "REAL",
    "Edm.Double": "REAL",
}

VERSION = "__version"
COMPANY = "__company"


class StoreError(Exception):
    """Base of the store's domain errors; the API layers turn them into each service's error body."""


class NotFound(StoreError):
    pass


class DuplicateKey(StoreError):
    pass


class VersionMismatch(StoreError):
    def __init__(self, current: dict[str, Any]):
        super().__init__("row version does not match")
        self.current = current


def utc_now() -> str:
    """Now as stored: ISO 8601 UTC with milliseconds and ``Z``."""
    return format_datetime(datetime.now(UTC))


def format_datetime(value: datetime) -> str:
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def q(name: str) -> str:
    """Quote a schema identifier for SQL. Names come from schema.py only, never from a request."""
    return '"' + name.replace('"', '""') + '"'


def table_name(es: EntitySet) -> str:
    return f"{es.service}__{es.name}"


def lookup_type_column(column: str) -> str:
    return f"__lk_{column}"


class Store:
    """Thread-safe access to the sandbox database (one connection per thread, WAL, writes serialized)."""

    def __init__(self, path: Path | str, entity_sets: Iterable[EntitySet] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.entity_sets = {(es.service, es.name): es for es in (entity_sets or all_entity_sets())}
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._create_schema()

    # -- connections and transactions ----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            self._local.depth = 0
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit; nests (inner blocks join the outer one). Used for $batch changesets."""
        conn = self._conn()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            return
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            self._local.depth = 1
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
            finally:
                self._local.depth = 0

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- schema ------------------------------------------------------------------------------------

    def _columns(self, es: EntitySet) -> list[tuple[str, str]]:
        cols = [(p.name, _SQL_TYPE[p.edm]) for p in es.props]
        cols.append((VERSION, "INTEGER NOT NULL"))
        if es.company_scoped:
            cols.append((COMPANY, "TEXT"))
        for column in sorted({lk.column for lk in es.lookups}):
            cols.append((lookup_type_column(column), "TEXT"))
        return cols

    def _create_schema(self) -> None:
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS __meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO __meta VALUES ('version', 1000)")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS __deleted (service TEXT, entity_set TEXT, key TEXT, "
                "company TEXT, version INTEGER, deleted_at TEXT)"
            )
            conn.execute("CREATE INDEX IF NOT EXISTS __deleted_v ON __deleted (service, entity_set, version)")
            for es in self.entity_sets.values():
                t = table_name(es)
                cols = ", ".join(
                    f"{q(n)} {ty}{' PRIMARY KEY' if n == es.key else ''}" for n, ty in self._columns(es)
                )
                conn.execute(f"CREATE TABLE IF NOT EXISTS {q(t)} ({cols})")
                conn.execute(f"CREATE INDEX IF NOT EXISTS {q(t + '__v')} ON {q(t)} ({q(VERSION)})")
                if es.company_scoped:
                    conn.execute(
                        f"CREATE INDEX IF NOT EXISTS {q(t + '__c')} ON {q(t)} ({q(COMPANY)}, {q(es.key)})"
                    )
                for stamp in {es.created_prop, es.modified_prop} - {
                    None
                }:  # incremental and partitioned reads
                    conn.execute(f"CREATE INDEX IF NOT EXISTS {q(t + '__' + stamp)} ON {q(t)} ({q(stamp)})")

    def reset(self) -> None:
        """Delete every row (the schema stays)."""
        with self.transaction() as conn:
            for es in self.entity_sets.values():
                conn.execute(f"DELETE FROM {q(table_name(es))}")
            conn.execute("DELETE FROM __deleted")
            conn.execute("UPDATE __meta SET value = 1000 WHERE key = 'version'")

    # -- helpers -----------------------------------------------------------------------------------

    def entity(self, service: str, name: str) -> EntitySet:
        return self.entity_sets[(service, name)]

    def _next_version(self, conn: sqlite3.Connection) -> int:
        return conn.execute(
            "UPDATE __meta SET value = value + 1 WHERE key = 'version' RETURNING value"
        ).fetchone()[0]

    def current_version(self) -> int:
        return self._conn().execute("SELECT value FROM __meta WHERE key = 'version'").fetchone()[0]

    @staticmethod
    def _to_sql(es: EntitySet, name: str, value: Any) -> Any:
        prop = es.prop(name)
        if prop is not None and prop.edm == "Edm.Boolean" and value is not None:
            return 1 if value else 0
        return value

    @staticmethod
    def _from_row(es: EntitySet, row: sqlite3.Row) -> dict[str, Any]:
        out = dict(row)
        for p in es.props:
            if p.edm == "Edm.Boolean" and out.get(p.name) is not None:
                out[p.name] = bool(out[p.name])
        return out

    def _scope(self, es: EntitySet, company: str | None) -> tuple[str, list[Any]]:
        if es.company_scoped:
            if company is None:
                raise ValueError(f"{es.name} is company-scoped: a company id is required")
            return f"{q(COMPANY)} = ?", [company]
        return "1=1", []

    # -- reads -------------------------------------------------------------------------------------

    def get(self, es: EntitySet, key: str, company: str | None = None) -> dict[str, Any] | None:
        where, params = self._scope(es, company)
        row = (
            self._conn()
            .execute(f"SELECT * FROM {q(table_name(es))} WHERE {q(es.key)} = ? AND {where}", [key, *params])
            .fetchone()
        )
        return self._from_row(es, row) if row else None

    def query(
        self,
        es: EntitySet,
        *,
        where: str = "",
        params: Sequence[Any] = (),
        order: Sequence[tuple[str, bool]] = (),
        limit: int | None = None,
        after_key: str | None = None,
        offset: int = 0,
        company: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows matching ``where`` (SQL from odata.compile_filter: quoted schema names, ``?`` params).

        ``order`` is ``[(property, descending)]``; the key is always the last tie-breaker. ``after_key``
        pages by key (only valid when ``order`` is empty); ``offset`` pages any other ordering.
        """
        scope, sparams = self._scope(es, company)
        clauses = [scope]
        args: list[Any] = [*sparams]
        if where:
            clauses.append(f"({where})")
            args.extend(params)
        if after_key is not None:
            if order:
                raise ValueError("after_key paging requires key order")
            clauses.append(f"{q(es.key)} > ?")
            args.append(after_key)
        order_sql = ", ".join(f"{q(c)} {'DESC' if desc else 'ASC'}" for c, desc in order)
        order_sql = f"{order_sql}, {q(es.key)} ASC" if order_sql else f"{q(es.key)} ASC"
        sql = f"SELECT * FROM {q(table_name(es))} WHERE {' AND '.join(clauses)} ORDER BY {order_sql}"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args.extend([limit, offset])
        elif offset:
            sql += " LIMIT -1 OFFSET ?"
            args.append(offset)
        return [self._from_row(es, r) for r in self._conn().execute(sql, args)]

    def count(
        self, es: EntitySet, *, where: str = "", params: Sequence[Any] = (), company: str | None = None
    ) -> int:
        scope, sparams = self._scope(es, company)
        sql = f"SELECT COUNT(*) FROM {q(table_name(es))} WHERE {scope}"
        args = [*sparams]
        if where:
            sql += f" AND ({where})"
            args.extend(params)
        return self._conn().execute(sql, args).fetchone()[0]

    def changes_since(
        self, es: EntitySet, version: int, company: str | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Rows written after ``version`` (by version) and tombstones of rows deleted after it."""
        scope, sparams = self._scope(es, company)
        conn = self._conn()
        rows = conn.execute(
            f"SELECT * FROM {q(table_name(es))} WHERE {scope} AND {q(VERSION)} > ? ORDER BY {q(VERSION)}",
            [*sparams, version],
        ).fetchall()
        deleted = conn.execute(
            "SELECT key, version, deleted_at FROM __deleted WHERE service = ? AND entity_set = ? AND version > ?"
            + (" AND company = ?" if es.company_scoped else "")
            + " ORDER BY version",
            [es.service, es.name, version, *([company] if es.company_scoped else [])],
        ).fetchall()
        return [self._from_row(es, r) for r in rows], [dict(r) for r in deleted]

    # -- writes ------------------------------------------------------------------------------------

    @staticmethod
    def _mirror_version(es: EntitySet, values: dict[str, Any]) -> None:
        """Dataverse ``versionnumber`` is the row version itself."""
        if "versionnumber" in es._by_name:
            values["versionnumber"] = values[VERSION]

    def _stamp(self, es: EntitySet, values: dict[str, Any], created: bool) -> None:
        now = utc_now()
        if es.modified_prop:
            values[es.modified_prop] = now
        if created and es.created_prop:
            values[es.created_prop] = now

    def insert(
        self,
        es: EntitySet,
        values: Mapping[str, Any],
        *,
        company: str | None = None,
        hidden: Mapping[str, Any] | None = None,
        stamp: bool = True,
    ) -> dict[str, Any]:
        """Insert one row (``values`` keyed by property name, the key included). Raises DuplicateKey."""
        row = {p.name: p.default for p in es.props}
        row.update(values)
        if stamp:
            self._stamp(es, row, created=True)
        with self.transaction() as conn:
            row[VERSION] = self._next_version(conn)
            self._mirror_version(es, row)
            if es.company_scoped:
                row[COMPANY] = company
            row.update(hidden or {})
            names = list(row)
            try:
                conn.execute(
                    f"INSERT INTO {q(table_name(es))} ({', '.join(map(q, names))}) "
                    f"VALUES ({', '.join('?' * len(names))})",
                    [self._to_sql(es, n, row[n]) for n in names],
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateKey(str(row[es.key])) from exc
            return self.get(es, row[es.key], company)  # type: ignore[return-value]

    def bulk_insert(
        self, es: EntitySet, rows: Sequence[Mapping[str, Any]], *, company: str | None = None
    ) -> None:
        """Seed path: many rows in one transaction, each with its own version, timestamps as given."""
        if not rows:
            return
        defaults = {p.name: p.default for p in es.props}
        names = list(defaults) + [VERSION] + ([COMPANY] if es.company_scoped else [])
        extra = sorted({k for r in rows for k in r if k not in defaults})
        names += extra
        with self.transaction() as conn:
            first = conn.execute(
                "UPDATE __meta SET value = value + ? WHERE key = 'version' RETURNING value", [len(rows)]
            ).fetchone()[0] - len(rows)
            data = []
            for i, r in enumerate(rows):
                merged = {**defaults, **r, VERSION: first + i + 1}
                self._mirror_version(es, merged)
                if es.company_scoped:
                    merged[COMPANY] = company
                data.append([self._to_sql(es, n, merged.get(n)) for n in names])
            conn.executemany(
                f"INSERT INTO {q(table_name(es))} ({', '.join(map(q, names))}) "
                f"VALUES ({', '.join('?' * len(names))})",
                data,
            )

    def update(
        self,
        es: EntitySet,
        key: str,
        changes: Mapping[str, Any],
        *,
        company: str | None = None,
        expected_version: int | None = None,
        hidden: Mapping[str, Any] | None = None,
        stamp: bool = True,
    ) -> dict[str, Any]:
        """Apply ``changes``; raises NotFound, or VersionMismatch when ``expected_version`` is stale."""
        with self.transaction() as conn:
            current = self.get(es, key, company)
            if current is None:
                raise NotFound(key)
            if expected_version is not None and current[VERSION] != expected_version:
                raise VersionMismatch(current)
            values = dict(changes)
            if stamp:
                self._stamp(es, values, created=False)
            values.update(hidden or {})
            values[VERSION] = self._next_version(conn)
            self._mirror_version(es, values)
            names = list(values)
            conn.execute(
                f"UPDATE {q(table_name(es))} SET {', '.join(f'{q(n)} = ?' for n in names)} WHERE {q(es.key)} = ?",
                [*(self._to_sql(es, n, values[n]) for n in names), key],
            )
            return self.get(es, key, company)  # type: ignore[return-value]

    def delete(
        self, es: EntitySet, key: str, *, company: str | None = None, expected_version: int | None = None
    ) -> dict[str, Any]:
        """Delete one row and leave a tombstone (for Dataverse change tracking)."""
        with self.transaction() as conn:
            current = self.get(es, key, company)
            if current is None:
                raise NotFound(key)
            if expected_version is not None and current[VERSION] != expected_version:
                raise VersionMismatch(current)
            conn.execute(f"DELETE FROM {q(table_name(es))} WHERE {q(es.key)} = ?", [key])
            conn.execute(
                "INSERT INTO __deleted VALUES (?, ?, ?, ?, ?, ?)",
                [es.service, es.name, key, current.get(COMPANY), self._next_version(conn), utc_now()],
            )
            return current
