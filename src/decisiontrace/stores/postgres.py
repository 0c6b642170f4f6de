"""Runs in PostgreSQL, shared by the processes of many hosts.

Needs the ``postgres`` extra (``pip install 'decisiontrace[postgres]'``: psycopg 3 and
psycopg_pool). Connections come from a bounded pool per process
(:mod:`decisiontrace.stores._postgres_pool`, which the store composes), so a server
restart or a killed backend costs one failed write, which the processor keeps and
retries (see ``RunRecordProcessor``'s ``max_unwritten_runs``).

Fragments of a run (see :mod:`decisiontrace.stores._fragments`) written by processes on
different hosts are merged as on SQLite: each transaction that writes a fragment locks
the run's row first, so two hosts writing fragments of one run at once serialize and
the second sees the first.

A batch of runs is written by :mod:`decisiontrace.stores._postgres_writes`, and the
journal (``RunRecordProcessor(journal=True)``) kept by
:mod:`decisiontrace.stores._postgres_journal`; the store composes both.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg

from decisiontrace.spanmodel import _judgements, _records
from decisiontrace.stores import _aggregates, _analytics
from decisiontrace.stores import _postgres_schema as _schema
from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores._filters import since_text
from decisiontrace.stores._postgres_journal import PostgreSQLJournal
from decisiontrace.stores._postgres_pool import PostgreSQLConnections, redact, split_url
from decisiontrace.stores._postgres_schema import key as _key
from decisiontrace.stores._postgres_schema import text as _text
from decisiontrace.stores._postgres_writes import PostgreSQLWrites, load_merged
from decisiontrace.stores._sqlite_fragments import decode
from decisiontrace.stores.base import AssembledRun, JournalEntry, Record, RunStore, StoreError

logger = logging.getLogger("decisiontrace")

_Row = tuple[Any, ...]


class PostgreSQLStore(RunStore):
    """Runs stored in a PostgreSQL database, shared by any number of hosts.

    Args:
        url: a libpq URL, ``postgresql://user@host:5432/db`` (``postgres://`` too); a
            ``schema`` query parameter names the PostgreSQL schema to use.
        schema: the PostgreSQL schema holding the tables (created if missing);
            overrides the URL's, default ``decisiontrace``.
        max_connections: the most connections this process's pool opens.
        timeout: seconds to wait for a connection from the pool before a write fails
            (the processor keeps the runs and retries).
        connect_timeout: seconds to wait for the server when opening.

    Raises:
        StoreError: the server cannot be reached or refuses the credentials (the
            message names the URL without its password), or the schema cannot be set up.
        ValueError: a bad argument.

    Example:
        >>> store = PostgreSQLStore("postgresql://app@db:5432/agents")  # doctest: +SKIP
        >>> store.list_runs(status="failed", limit=10)  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        max_connections: int = 4,
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeout and connect_timeout must be > 0 seconds")
        conninfo, url_schema = split_url(url)
        self.schema = schema or url_schema or _schema.DEFAULT_SCHEMA
        self.sql = _schema.Statements(self.schema)  # ValueError for an impossible name
        s = self.sql.schema
        self._dialect = _analytics.Dialect(
            mark="%s", runs=f"{s}.runs", decisions=f"{s}.decisions",
            evaluations=f"{s}.evaluations", has_node="r.nodes @> ARRAY[%s::bytea]",
            contains="strpos({text}, %s) > 0",
            aggregates=_aggregates.Statements(
                f"{s}.", "d.run_id = ANY({marks})", "CAST(trunc({number}) AS INTEGER)"
            ),
            lateral=True, key=_key, text=_text,
        )  # fmt: skip
        self.url = redact(url)
        self.timeout = timeout
        self._connections = PostgreSQLConnections(
            conninfo, self.url, f"decisiontrace:{self.schema}",
            max_connections=max_connections, timeout=timeout, connect_timeout=connect_timeout,
        )  # fmt: skip
        self._connection = self._connections.connection
        self._read = self._connections.read
        self._scrub = self._connections.scrub
        self._journal = PostgreSQLJournal(self.sql, self.url)
        self._writes = PostgreSQLWrites(
            self.sql, self._dialect.aggregates, self._journal, self._connection
        )
        # Connect now: a wrong URL or password is reported at construction, once.
        try:
            with self._connections.connect_once() as connection:
                _schema.migrate(connection, self.schema, self.url, self._writes.rewrite_rows)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot use PostgreSQL at {self.url}: {self._scrub(exc)}; check that the "
                "server is running and the user, password and database are right"
            ) from exc

    # -- writing -------------------------------------------------------------------------

    def save_records(self, records: Sequence[Record]) -> None:
        """Insert or replace these records in one transaction: all or nothing.

        Raises:
            TypeError: a record holds a value JSON cannot represent (nothing is saved).
            psycopg.Error, StoreError: the write failed (nothing is saved).
        """
        if records:
            self._writes.write([_rows.record_part(record) for record in records])

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        """Insert or replace runs assembled from spans, kept in compact span form."""
        if runs:
            self._writes.write(
                [_rows.assembled_part(run) for run in runs], clear_journal=self._journal.in_use
            )

    # -- reading -------------------------------------------------------------------------

    def load_record(self, run_id: str) -> Record | None:
        """The stored (merged) record of ``run_id`` with its judgements, or None.

        Raises:
            StoreError: the database cannot be read or the stored record is corrupt.
        """
        key = _key(_rows.valid_text(run_id))
        try:
            record: Record | None = self._read(
                lambda connection: self._read_record(connection.cursor(), key)
            )
        except (ValueError, TypeError, KeyError, zlib.error) as exc:
            raise StoreError(
                f"run {run_id!r} in {self.url} is corrupt ({exc}); save it again"
            ) from exc
        return record

    def load_fragments(self, run_id: str) -> list[Record]:
        """The run's fragments as stored, ordered by fragment id (see RunStore)."""
        key = _key(_rows.valid_text(run_id))
        rows = self._read(
            lambda connection: connection.execute(self.sql.fragments_in_order, (key,)).fetchall()
        )
        return [decode(bytes(data), version) for data, version in rows]

    def _read_record(self, cursor: psycopg.Cursor[Any], key: bytes) -> Record | None:
        cursor.execute(self.sql.load_root, (key,))
        row = cursor.fetchone()
        if row is None:
            return None
        if row[2]:  # written by several processes: merge its fragments
            merged = load_merged(cursor, self.sql, key)
            if merged is None:
                return None
            record = merged[0]
        elif row[0] is None:
            return None
        else:
            record = decode(bytes(row[0]), row[1])
        cursor.execute(self.sql.evaluations_of_run, (key,))
        judgements = [(_text(decision), json.loads(text)) for decision, text in cursor.fetchall()]
        if judgements:
            _judgements.apply(record, judgements)
        return record

    def update_evaluations(
        self, run_id: str, judgements: Sequence[tuple[str, Record]]
    ) -> list[str] | None:
        """Merge judgements into a stored run in one transaction (see RunStore).

        They are kept in the ``evaluations`` table, so saving the run again keeps them.

        Raises:
            StoreError: the stored record is corrupt or the database unreachable.
            psycopg.Error: the write failed (nothing is recorded).
        """
        key = _key(_rows.valid_text(run_id))
        with self._connection() as connection, connection.transaction():
            cursor = connection.cursor()
            cursor.execute(self.sql.lock_existing, (key,))
            record = self._read_record(cursor, key)
            if record is None:
                return None
            known = _judgements.decision_ids(record)
            accepted = [(d, j) for d, j in judgements if d in known]
            if accepted:
                cursor.executemany(
                    self.sql.upsert_evaluation,
                    [
                        (key, _key(decision_id), _key(judgement["evaluator"]),
                         str(judgement.get("evaluated_at") or ""),
                         _rows.dumps(_rows.valid_text(judgement)))
                        for decision_id, judgement in accepted
                    ],
                )  # fmt: skip
                _judgements.apply(record, accepted)
                summary = _rows.dumps(_records.summary_from_record(record))
                cursor.execute(self.sql.update_summary, (summary, key))
            return [decision_id for decision_id, _ in judgements if decision_id not in known]

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
        conditions = ["summary IS NOT NULL"]
        parameters: list[Any] = []
        if goal_id is not None:
            conditions.append("goal_id = %s")
            parameters.append(_key(goal_id))
        if status is not None:
            conditions.append("status = %s")
            parameters.append(_key(status))
        if since is not None:
            conditions.append("started_at >= %s")
            parameters.append(since_text(since))
        if node_id is not None:
            conditions.append("nodes @> ARRAY[%s::bytea]")
            parameters.append(_key(node_id))
        query = self.sql.list_summaries + " WHERE " + " AND ".join(conditions)
        query += " ORDER BY started_at DESC, run_id DESC"
        if limit is not None:
            query += " LIMIT %s"
            parameters.append(max(limit, 0))
        rows = self._read(lambda connection: connection.execute(query, parameters).fetchall())
        return [json.loads(summary) for (summary,) in rows]

    # -- analytics -----------------------------------------------------------------------

    def decision_tallies(self, **filters: Any) -> _analytics.DecisionTallies | None:
        """Counts over the matching runs' decisions, from the ``decisions`` table (see
        RunStore).

        Raises:
            StoreError: the database cannot be read.
        """
        runs = _analytics.RunFilters(**filters)

        def work(connection: psycopg.Connection[Any]) -> _analytics.DecisionTallies:
            def execute(query: str, parameters: list[Any]) -> Iterable[tuple[Any, ...]]:
                return connection.execute(query, parameters).fetchall()

            return _analytics.tallies(execute, self._dialect, runs)

        tallies: _analytics.DecisionTallies = self._read(work)
        return tallies

    def search_decisions(self, **filters: Any) -> Generator[tuple[str, str], None, None] | None:
        """Decisions that may match, from the ``decisions`` table (see RunStore)."""
        if filters.get("text"):  # as the column keeps it (see _postgres_writes._decision_rows)
            filters["text"] = _rows.valid_text(filters["text"]).replace("\x00", " ")
        runs, wanted = _analytics.split_filters(filters)
        return self._searching(runs, wanted)

    def _searching(
        self, runs: _analytics.RunFilters, wanted: _analytics.DecisionFilters
    ) -> Generator[tuple[str, str], None, None]:
        try:
            with (
                self._connection() as connection,
                connection.transaction(),
                # Server-side: rows come as they are read, and the search may stop early.
                connection.cursor(name="decisiontrace_search") as cursor,
            ):
                # The caller stops after a page of matches: plan for the first rows, and
                # compile nothing (a plan that may read every decision crosses the JIT
                # thresholds, and compiling it costs more than the rows read early).
                connection.execute("SET LOCAL cursor_tuple_fraction = 0.001")
                connection.execute("SET LOCAL jit = off")

                def execute(query: str, parameters: list[Any]) -> Iterator[tuple[Any, ...]]:
                    cursor.execute(query, parameters)
                    while rows := cursor.fetchmany(500):
                        yield from rows

                yield from _analytics.search(execute, self._dialect, runs, wanted)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read PostgreSQL at {self.url}: {self._scrub(exc)}") from exc

    # -- the journal ---------------------------------------------------------------------

    supports_journal = True

    def journal_append(self, entries: Sequence[JournalEntry]) -> None:
        """Append journal entries in one transaction, tagged with this host and process."""
        self._journal.append(entries, self._connection)

    def journal_take_orphans(self) -> list[JournalEntry]:
        """Entries, oldest first, of unsaved runs whose process (on this host) is gone."""
        return self._journal.take_orphans(self._connection)

    def journal_clear(self, run_ids: Sequence[str]) -> None:
        """Delete the journal entries of these runs, in one transaction."""
        self._journal.clear(run_ids, self._connection)

    def journal_release(self) -> None:
        """Hand this process's entries over as orphans (see RunStore.journal_release)."""
        self._journal.release(self._connection)

    def close(self) -> None:
        """Close this process's pool; a later use opens a new one."""
        self._connections.close()

    def __repr__(self) -> str:
        return f"PostgreSQLStore({self.url!r})"


__all__ = ["PostgreSQLStore", "redact", "split_url"]
