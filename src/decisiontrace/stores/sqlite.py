"""Runs in one SQLite file, shared by the processes and threads of one machine.

The database runs in WAL mode, so readers (the CLI, a dashboard) never block the
writer thread and the writer never blocks them. Each (process, thread) pair gets its
own connection, kept by :mod:`decisiontrace.stores._sqlite_connections` (fork-safe).

The optional journal (``RunRecordProcessor(journal=True)``) is the ``journal`` table,
kept by :mod:`decisiontrace.stores._sqlite_journal`; its entries are deleted in the
transaction that saves their run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import zlib
from collections.abc import Callable, Generator, Sequence
from datetime import datetime
from typing import Any

from decisiontrace.spanmodel import _judgements, _records
from decisiontrace.stores import _analytics
from decisiontrace.stores import _sqlite_fragments as _fragment_rows
from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores import _sqlite_schema as _schema
from decisiontrace.stores._filters import since_text
from decisiontrace.stores._sqlite_connections import SQLiteConnections
from decisiontrace.stores._sqlite_journal import SQLiteJournal
from decisiontrace.stores._sqlite_schema import SCHEMA_VERSION
from decisiontrace.stores.base import (
    AssembledRun,
    JournalEntry,
    Record,
    RunStore,
    StoreError,
)

_DIALECT = _analytics.Dialect(
    mark="?",
    runs="runs",
    decisions="decisions",
    evaluations="evaluations",
    has_node="EXISTS (SELECT 1 FROM json_each(r.nodes) WHERE value = ?)",
    contains="instr({text}, ?) > 0",
    aggregates=_fragment_rows.AGGREGATES,
    lateral=False,
    key=str,
    text=str,
)


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

    def __init__(
        self, path: str | os.PathLike[str], *, timeout: float = 30.0, read_only: bool = False
    ) -> None:
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
        # Read-only (mode=ro): the file is never created, changed or upgraded; see
        # stores/_sqlite_reading.py for the reading commands' way in.
        self.read_only = read_only
        # Connections are opened by absolute path so a later chdir() cannot point a
        # new thread's connection at a different file.
        file = os.path.abspath(given)
        self._connections = SQLiteConnections(
            file, shown=given, timeout=timeout, read_only=read_only
        )
        self._connection = self._connections.here
        self._journal = SQLiteJournal(given)
        try:
            if not read_only:
                os.makedirs(os.path.dirname(file), exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the directory of {given}: {exc.strerror or exc}; "
                "choose a writable location"
            ) from exc
        # Open now so that a bad file is reported at construction, not by the writer thread.
        self._connection()

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
        self._write([_rows.record_part(record) for record in records])

    def _write(
        self,
        rows: list[tuple[str, tuple[Any, ...], list[tuple[Any, ...]]]],
        *,
        clear_journal: bool = False,
    ) -> None:
        roots, decisions, parts = _fragment_rows.split(rows)
        statements: list[tuple[str, Sequence[tuple[Any, ...]]]] = [(_schema.UPSERT, roots)]
        if clear_journal:
            # Roots only: fragments are never journaled, and their run's root may still
            # be held (and journaled) by this process.
            statements.append(self._journal.clearing(row[0] for row in roots))

        def then(connection: sqlite3.Connection) -> None:
            _fragment_rows.replace_decisions(connection, [row[0] for row in roots], decisions)
            _fragment_rows.save(connection, roots, parts)

        self._transaction(statements, then=then)

    def _transaction(
        self,
        statements: list[tuple[str, Sequence[tuple[Any, ...]]]],
        then: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Run ``executemany`` for each (statement, rows), then ``then``, in one transaction."""
        connection = self._connection()
        try:
            with self._connections.writing:  # a fork must not cut the transaction in half
                connection.execute("BEGIN IMMEDIATE")
                try:
                    for statement, rows in statements:
                        connection.executemany(statement, rows)
                    if then is not None:
                        then(connection)
                    connection.execute("COMMIT")
                except BaseException:
                    # SQLite rolls back by itself after some errors; a second ROLLBACK
                    # would raise.
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            self._connections.after_error(connection, exc)
            raise

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        """Insert or replace runs assembled from spans, kept as their records.

        All or nothing, like :meth:`save_records`; when this store keeps a journal, the
        runs' journal entries are deleted in the same transaction.
        """
        if runs:
            self._write(
                [_rows.assembled_part(run) for run in runs], clear_journal=self._journal.in_use
            )

    # -- the journal ---------------------------------------------------------------------

    supports_journal = True

    def journal_append(self, entries: Sequence[JournalEntry]) -> None:
        """Append journal entries in one transaction, tagged with this process (its pid
        and start, see ``stores._journal_writers``).

        Raises:
            TypeError: an entry's data is not JSON-ready (nothing is appended).
            sqlite3.Error: the write failed (nothing is appended).
        """
        self._journal.append(entries, self._transaction)

    def journal_take_orphans(self) -> list[JournalEntry]:
        """Entries, oldest first, of unsaved runs whose writing process is gone.

        They become this process's entries in the transaction that reads them, so two
        processes never both take one. Entries of runs saved since are deleted, and so
        are unreadable entries (with a warning). The orphans' entries stay until their
        runs are saved.

        Raises:
            sqlite3.Error: the journal could not be read or re-tagged.
        """
        return self._journal.take_orphans(self._transaction)

    def journal_clear(self, run_ids: Sequence[str]) -> None:
        """Delete the journal entries of these runs, in one transaction."""
        self._journal.clear(run_ids, self._transaction)

    def journal_release(self) -> None:
        """Hand this process's entries over as orphans (see RunStore.journal_release)."""
        self._journal.release(self._transaction)

    def load_record(self, run_id: str) -> Record | None:
        """The stored record of ``run_id`` with its judgements, or None.

        Raises:
            StoreError: the database cannot be read or the stored record is corrupt.
        """
        try:
            return self._read_record(self._connection(), run_id)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc

    def load_fragments(self, run_id: str) -> list[Record]:
        """The run's fragments as stored, ordered by fragment id (see RunStore).

        Raises:
            StoreError: the database cannot be read or a fragment is corrupt.
        """
        try:
            return _fragment_rows.fragments_of(self._connection(), run_id)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc
        except (ValueError, TypeError, KeyError, zlib.error) as exc:
            raise StoreError(f"a fragment of run {run_id!r} in {self.path} is corrupt") from exc

    def _read_record(self, connection: sqlite3.Connection, run_id: str) -> Record | None:
        """The (merged) record with its judgements, read through ``connection``."""
        row = connection.execute(
            "SELECT record, schema_version, fragments FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        try:
            if row[2]:  # written by several processes: merge its fragments
                merged = _fragment_rows.load(connection, run_id)
                if merged is None:
                    return None
                record: Record = merged[0]
            elif row[0] is None:
                return None
            else:
                record = _fragment_rows.decode(row[0], row[1])
            judgements = [
                (str(decision_id), json.loads(text))
                for decision_id, text in connection.execute(_schema.EVALUATIONS_OF_RUN, (run_id,))
            ]
        except (ValueError, TypeError, KeyError, zlib.error) as exc:
            raise StoreError(
                f"run {run_id!r} in {self.path} is corrupt ({exc}); save it again"
            ) from exc
        if judgements:
            _judgements.apply(record, judgements)
        return record

    def update_evaluations(
        self, run_id: str, judgements: Sequence[tuple[str, Record]]
    ) -> list[str] | None:
        """Merge judgements into a stored run in one write transaction (see RunStore).

        They are kept in the ``evaluations`` table, so saving the run again keeps them.

        Raises:
            StoreError: the stored record is corrupt.
            sqlite3.Error: the write failed (nothing is recorded).
        """
        rows = [
            (run_id, decision_id, str(j["evaluator"]), str(j.get("evaluated_at") or ""),
             _rows.dumps(_rows.valid_text(j)))
            for decision_id, j in judgements
        ]  # fmt: skip
        unknown: list[list[str]] = []  # set inside the transaction: the run exists

        def merge(connection: sqlite3.Connection) -> None:
            record = self._read_record(connection, run_id)
            if record is None:
                return
            known = _judgements.decision_ids(record)
            unknown.append(
                [decision_id for decision_id, _ in judgements if decision_id not in known]
            )
            kept = [row for row in rows if row[1] in known]
            if kept:
                connection.executemany(_schema.EVALUATION_UPSERT, kept)
                _judgements.apply(record, [(d, j) for d, j in judgements if d in known])
                connection.execute(
                    "UPDATE runs SET summary = ? WHERE run_id = ?",
                    (_rows.dumps(_records.summary_from_record(record)), run_id),
                )

        self._transaction([], then=merge)
        return unknown[-1] if unknown else None

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
        exact_node = None
        if node_id is not None:
            if "\x00" in node_id:
                # SQLite's JSON functions end a string at a NUL: select on what comes
                # before it, and compare whole ids below.
                exact_node, node_id = node_id, node_id.split("\x00", 1)[0]
            conditions.append("EXISTS (SELECT 1 FROM json_each(runs.nodes) WHERE value = ?)")
            parameters.append(node_id)
        # The record is only fetched for a row whose summary is missing.
        query = (
            "SELECT summary, CASE WHEN summary IS NULL THEN record END, nodes, schema_version "
            "FROM runs"
        )
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY started_at DESC, run_id DESC"
        if limit is not None and exact_node is None:
            query += " LIMIT ?"
            parameters.append(max(limit, 0))
        try:
            rows = self._connection().execute(query, parameters).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc
        if exact_node is not None:
            rows = [row for row in rows if exact_node in json.loads(row[2] or "[]")]
            rows = rows if limit is None else rows[: max(limit, 0)]
        summaries: list[Record] = []
        for summary_text, record_data, _, form in rows:
            if summary_text is not None:
                summaries.append(json.loads(summary_text))
            elif record_data is not None:
                record = _fragment_rows.decode(record_data, form)
                summaries.append(_records.summary_from_record(record))
        return summaries

    def decision_tallies(self, **filters: Any) -> _analytics.DecisionTallies | None:
        """Counts over the matching runs' decisions, from the ``decisions`` table (see
        RunStore; None for a node id with NUL, which SQLite's JSON functions cut short).

        Raises:
            StoreError: the database cannot be read.
        """
        if "\x00" in (filters.get("node_id") or ""):
            return None
        try:
            return _analytics.tallies(self._execute, _DIALECT, _analytics.RunFilters(**filters))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc

    def search_decisions(self, **filters: Any) -> Generator[tuple[str, str], None, None] | None:
        """Decisions that may match, from the ``decisions`` table (see RunStore)."""
        if any("\x00" in value for value in filters.values() if isinstance(value, str)):
            return None
        runs, wanted = _analytics.split_filters(filters)
        return self._searching(_analytics.search(self._execute, _DIALECT, runs, wanted))

    def _searching(
        self, found: Generator[tuple[str, str], None, None]
    ) -> Generator[tuple[str, str], None, None]:
        try:
            yield from found
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc

    def _execute(self, query: str, parameters: list[Any]) -> sqlite3.Cursor:
        return self._connection().execute(query, parameters)

    def close(self) -> None:
        """Close the connections this process opened; a later call reopens one."""
        self._connections.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"


__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
