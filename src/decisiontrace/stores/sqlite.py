"""Runs in one SQLite file, shared by the processes and threads of one machine.

The database runs in WAL mode, so readers (the CLI, a dashboard) never block the
writer thread and the writer never blocks them. Each (process, thread) pair gets its
own connection: SQLite connections must not cross a ``fork()``, and one connection
per thread avoids serializing readers behind the writer.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import weakref
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json

from decisiontrace import _records
from decisiontrace._assembly import record_from_compact
from decisiontrace.stores._filters import record_node_ids, since_text
from decisiontrace.stores.base import AssembledRun, Record, RunStore, StoreError

logger = logging.getLogger("decisiontrace")

#: Version of the table layout this module writes; stored in ``meta`` so a later
#: version knows what it is opening.
SCHEMA_VERSION = 2
#: Per row, ``schema_version`` says what the ``record`` column holds: 1, the run record
#: as JSON text; 2, the run's spans in compact form (what the processor writes, several
#: times cheaper to produce) as zlib-compressed JSON, decoded on read by the same code
#: the processor uses. Compression costs ~25 µs a run and saves SQLite ~10x that in
#: page writes (a 10-decision run: 14 KB -> 1.2 KB).
_ROW_RECORD = 1
_ROW_SPANS = 2

# Every column of ``runs`` after the primary key, with its type. Opening a database
# written by an older version adds whichever of these are missing.
_RUN_COLUMNS: dict[str, str] = {
    "goal_id": "TEXT",
    "status": "TEXT",
    "started_at": "TEXT",
    "completed_at": "TEXT",
    "nodes": "TEXT",
    "record": "TEXT",
    "summary": "TEXT",
    "schema_version": "INTEGER",
}

_INDEXES = {
    "runs_goal_id": "goal_id",
    "runs_status": "status",
    "runs_started_at": "started_at",
}

_UPSERT = """
INSERT INTO runs (
    run_id, goal_id, status, started_at, completed_at, nodes, record, summary, schema_version
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(run_id) DO UPDATE SET
    goal_id = excluded.goal_id,
    status = excluded.status,
    started_at = excluded.started_at,
    completed_at = excluded.completed_at,
    nodes = excluded.nodes,
    record = excluded.record,
    summary = excluded.summary,
    schema_version = excluded.schema_version
"""

_ConnectionKey = tuple[int, int]


def _dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is.

    pydantic-core's encoder writes the same text as ``json.dumps`` with compact
    separators for these records, about three times faster; records are JSON-ready
    (no NaN, str keys), and anything else raises TypeError as json.dumps would.
    """
    try:
        return to_json(value).decode()
    except PydanticSerializationError as error:
        raise TypeError(str(error)) from error


def _row(record: Record) -> tuple[Any, ...]:
    """The ``runs`` row of one record."""
    return (
        record["id"],
        record["goal_id"],
        record.get("status", "running"),
        record.get("started_at"),
        record.get("completed_at"),
        _dumps(record_node_ids(record)),
        _dumps(record),
        _dumps(_records.summary_from_record(record)),
        _ROW_RECORD,
    )


def _spans_row(run: AssembledRun) -> tuple[Any, ...]:
    """The ``runs`` row of a run assembled from spans, kept in compact span form."""
    light = run.record(light=True)
    return (
        light["id"],
        light["goal_id"],
        light["status"],
        light["started_at"],
        light["completed_at"],
        _dumps(record_node_ids(light)),
        zlib.compress(to_json(run.compact()), 1),
        _dumps(_records.summary_from_record(light)),
        _ROW_SPANS,
    )


def _close_own_connections(
    connections: dict[_ConnectionKey, sqlite3.Connection], lock: threading.Lock
) -> None:
    """Close the connections this process opened; never those inherited through fork."""
    pid = os.getpid()
    with lock:
        own = [key for key in connections if key[0] == pid]
        for key in own:
            connections.pop(key).close()


class SQLiteStore(RunStore):
    """Runs stored in one SQLite database file.

    Safe for several processes and threads on one machine (not for network file
    systems, where SQLite's locks are unreliable). Parent directories are created.

    Args:
        path: the database file; created if missing.
        timeout: seconds to wait for another writer's lock before giving up.

    Raises:
        StoreError: the file is not a SQLite database or cannot be opened.
        ValueError: ``path`` is empty or ``":memory:"``, or ``timeout`` is negative.

    Example:
        >>> store = SQLiteStore(tmp_path / "runs.db")  # doctest: +SKIP
        >>> store.list_runs(status="failed", limit=10)  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        given = os.fspath(path)
        if not given or given == ":memory:":
            raise ValueError(
                f"path must name a database file, got {given!r}: an in-memory database "
                "cannot be shared with readers; use MemoryStore() instead"
            )
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
        self.path = given
        self.url = "sqlite:///" + given
        self.timeout = timeout
        # Connections are opened by absolute path so a later chdir() cannot point a
        # new thread's connection at a different file.
        self._file = os.path.abspath(given)
        self._lock = threading.Lock()
        self._connections: dict[_ConnectionKey, sqlite3.Connection] = {}
        self._schema_ready_in: int | None = None
        # Close this process's connections when the store is garbage collected.
        self._finalizer = weakref.finalize(
            self, _close_own_connections, self._connections, self._lock
        )
        try:
            os.makedirs(os.path.dirname(self._file), exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory of {given}: {exc.strerror or exc}; "
                "choose a writable location"
            ) from exc
        # Open now so that a bad file is reported at construction, not by the writer thread.
        self._connection()

    # -- connections -------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection in this process, opened on first use."""
        key = (os.getpid(), threading.get_ident())
        connection = self._connections.get(key)
        if connection is not None:
            return connection
        connection = self._open()
        with self._lock:
            self._prune_dead_threads(key[0])
            self._connections[key] = connection
        return connection

    def _prune_dead_threads(self, pid: int) -> None:
        """Close this process's connections whose thread has ended (lock held)."""
        alive = {thread.ident for thread in threading.enumerate()}
        for key in [key for key in self._connections if key[0] == pid and key[1] not in alive]:
            self._connections.pop(key).close()

    def _open(self) -> sqlite3.Connection:
        """A new configured connection; StoreError if the file is not a usable database."""
        # Registers a thread started outside ``threading`` so pruning sees it alive.
        threading.current_thread()
        try:
            # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE),
            # check_same_thread=False: close() and pruning may run on another thread.
            connection = sqlite3.connect(
                self._file, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._configure(connection)
                return connection
            except sqlite3.OperationalError as exc:
                # Switching to WAL while other processes open the same new file can report
                # "locked" at once, without SQLite's busy handler waiting: retry until the
                # timeout, as the busy handler would have.
                if "locked" in str(exc) and time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                connection.close()
                raise self._open_error(exc) from exc
            except sqlite3.Error as exc:
                connection.close()
                raise self._open_error(exc) from exc

    def _configure(self, connection: sqlite3.Connection) -> None:
        connection.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        if str(mode).lower() != "wal":
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        if self._schema_ready_in != os.getpid():
            self._ensure_schema(connection)
            self._schema_ready_in = os.getpid()

    def _open_error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(
            f"cannot use {self.path} as a run database ({exc}); if it is not a SQLite "
            "file, move it away or point DECISIONTRACE_STORE at another path"
        )

    def _ensure_schema(self, connection: sqlite3.Connection) -> None:
        """Create or upgrade the tables; one writer at a time thanks to BEGIN IMMEDIATE."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT)"
            )
            connection.execute("CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY NOT NULL)")
            present = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
            for column, column_type in _RUN_COLUMNS.items():
                if column not in present:
                    # Names come from _RUN_COLUMNS, never from data.
                    connection.execute(f"ALTER TABLE runs ADD COLUMN {column} {column_type}")
            for index, column in _INDEXES.items():
                connection.execute(f"CREATE INDEX IF NOT EXISTS {index} ON runs ({column})")
            row = connection.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            stored = int(row[0]) if row is not None else 0
            if stored > SCHEMA_VERSION:
                logger.warning(
                    "%s was written by a newer decisiontrace (schema %d, this one knows %d); "
                    "reading it as schema %d",
                    self.path,
                    stored,
                    SCHEMA_VERSION,
                    SCHEMA_VERSION,
                )
            else:
                self._backfill(connection)
                connection.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    @staticmethod
    def _backfill(connection: sqlite3.Connection) -> None:
        """Fill the derived columns of rows written before those columns existed."""
        stale = connection.execute(
            "SELECT record FROM runs WHERE record IS NOT NULL AND "
            "(summary IS NULL OR nodes IS NULL OR goal_id IS NULL OR status IS NULL "
            "OR started_at IS NULL OR schema_version IS NULL) "
            "AND (schema_version IS NULL OR schema_version = 1)"
        ).fetchall()
        if stale:
            connection.executemany(_UPSERT, [_row(json.loads(text)) for (text,) in stale])

    # -- RunStore ------------------------------------------------------------------------

    def save_records(self, records: Sequence[Record]) -> None:
        """Insert or replace these records in one transaction: all or nothing.

        Raises:
            TypeError: a record holds a value JSON cannot represent (nothing is saved).
            sqlite3.Error: the write failed, e.g. the lock wait timed out (nothing is saved).
        """
        if not records:
            return
        # Serialize before the transaction: a bad record then costs no lock time.
        self._write([_row(record) for record in records])

    def _write(self, rows: list[tuple[Any, ...]]) -> None:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(_UPSERT, rows)
            connection.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself after some errors; a second ROLLBACK would raise.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        """Insert or replace runs assembled from spans, kept in compact span form.

        All or nothing, like :meth:`save_records`.
        """
        if runs:
            self._write([_spans_row(run) for run in runs])

    def load_record(self, run_id: str) -> Record | None:
        """The stored record of ``run_id``, or None.

        Raises:
            StoreError: the database cannot be read or the stored record is corrupt.
        """
        try:
            row = (
                self._connection()
                .execute("SELECT record, schema_version FROM runs WHERE run_id = ?", (run_id,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc
        if row is None or row[0] is None:
            return None
        try:
            if row[1] == _ROW_SPANS:
                return record_from_compact(from_json(zlib.decompress(row[0])))
            record: Record = json.loads(row[0])
        except (ValueError, TypeError, KeyError, zlib.error) as exc:
            raise StoreError(
                f"run {run_id!r} in {self.path} is corrupt ({exc}); save it again"
            ) from exc
        return record

    def list_summaries(
        self,
        *,
        goal_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        node_id: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Summary dicts of matching runs, newest first (by ``started_at``).

        Raises:
            StoreError: the database cannot be read.
        """
        conditions: list[str] = []
        parameters: list[Any] = []
        if goal_id is not None:
            conditions.append("goal_id = ?")
            parameters.append(goal_id)
        if status is not None:
            conditions.append("status = ?")
            parameters.append(status)
        if since is not None:
            conditions.append("started_at >= ?")
            parameters.append(since_text(since))
        if node_id is not None:
            conditions.append("EXISTS (SELECT 1 FROM json_each(runs.nodes) WHERE value = ?)")
            parameters.append(node_id)
        # The record is only fetched for a row whose summary is missing.
        query = "SELECT summary, CASE WHEN summary IS NULL THEN record END FROM runs"
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY started_at DESC, run_id DESC"
        if limit is not None:
            query += " LIMIT ?"
            parameters.append(max(limit, 0))
        try:
            rows = self._connection().execute(query, parameters).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc
        summaries: list[Record] = []
        for summary_text, record_text in rows:
            if summary_text is not None:
                summaries.append(json.loads(summary_text))
            elif record_text is not None:
                summaries.append(_records.summary_from_record(json.loads(record_text)))
        return summaries

    def close(self) -> None:
        """Close the connections this process opened; a later call reopens one."""
        _close_own_connections(self._connections, self._lock)

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
