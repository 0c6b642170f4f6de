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

The journal (``RunRecordProcessor(journal=True)``) is kept by
:mod:`decisiontrace.stores._postgres_journal`, which the store composes.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from contextlib import nullcontext
from datetime import datetime
from typing import Any

import psycopg

from decisiontrace.spanmodel import _judgements, _records
from decisiontrace.stores import _aggregates, _analytics, _fragments
from decisiontrace.stores import _postgres_schema as _schema
from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores import _stored_form as _form
from decisiontrace.stores._filters import record_node_ids, since_text
from decisiontrace.stores._postgres_journal import PostgreSQLJournal
from decisiontrace.stores._postgres_pool import Pipeline, PostgreSQLConnections, redact, split_url
from decisiontrace.stores._postgres_schema import key as _key
from decisiontrace.stores._postgres_schema import text as _text
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
            join="JOIN", key=_key, text=_text,
        )  # fmt: skip
        # One statement each way, reading the runs' decisions rows once.
        self._take_out = self._dialect.aggregates.combined("-1", "%b")
        self._put_in = self._dialect.aggregates.combined("1", "%b")
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
        # Connect now: a wrong URL or password is reported at construction, once.
        try:
            with self._connections.connect_once() as connection:
                _schema.migrate(connection, self.schema, self.url, self._rewrite_rows)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot use PostgreSQL at {self.url}: {self._scrub(exc)}; check that the "
                "server is running and the user, password and database are right"
            ) from exc

    def _rewrite_rows(self, connection: psycopg.Connection[Any]) -> None:
        """Rows of version 1 in the store's own form, with their analytics rows
        (migration 2, inside its transaction)."""
        cursor = connection.cursor()
        cursor.execute(f"SELECT run_id, record, record_format FROM {self.sql.schema}.runs "
                       "WHERE record IS NOT NULL")  # fmt: skip
        roots = cursor.fetchall()
        for start in range(0, len(roots), 500):
            chunk = roots[start : start + 500]
            records = [(bytes(key), _form.decode(bytes(data), form)) for key, data, form in chunk]
            cursor.executemany(
                f"UPDATE {self.sql.schema}.runs SET record = %s, record_format = %s "
                "WHERE run_id = %s",
                [(_form.encode(record), _form.CURRENT, key) for key, record in records],
            )
            self._replace_decisions(
                cursor,
                [key for key, _ in records],
                [
                    _decision_row(key, row)
                    for key, record in records
                    for row in _rows.decision_rows(_text(key), _rows.valid_text(record))
                ],
            )
        cursor.execute(f"SELECT run_id, fragment_id, record, record_format "
                       f"FROM {self.sql.schema}.run_fragments")  # fmt: skip
        for key, fragment, data, form in cursor.fetchall():
            cursor.execute(
                f"UPDATE {self.sql.schema}.run_fragments SET record = %s, record_format = %s "
                "WHERE run_id = %s AND fragment_id = %s",
                (_form.encode(_form.decode(bytes(data), form)), _form.CURRENT, key, fragment),
            )
        cursor.execute(f"SELECT run_id FROM {self.sql.schema}.runs WHERE fragments > 0")
        for (key,) in cursor.fetchall():
            self._refresh(cursor, bytes(key))

    # -- writing -------------------------------------------------------------------------

    def save_records(self, records: Sequence[Record]) -> None:
        """Insert or replace these records in one transaction: all or nothing.

        Raises:
            TypeError: a record holds a value JSON cannot represent (nothing is saved).
            psycopg.Error, StoreError: the write failed (nothing is saved).
        """
        if records:
            self._write([_rows.record_part(record) for record in records])

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        """Insert or replace runs assembled from spans, kept in compact span form."""
        if runs:
            self._write(
                [_rows.assembled_part(run) for run in runs], clear_journal=self._journal.in_use
            )

    def _write(
        self, rows: Sequence[tuple[str, _Row, list[_Row]]], *, clear_journal: bool = False
    ) -> None:
        roots: dict[bytes, _Row] = {}
        decisions: dict[bytes, list[_Row]] = {}
        parts: dict[tuple[bytes, bytes], _Row] = {}
        for fragment_id, row, decision_rows in rows:
            run_id = _key(row[0])
            stored = _stored_record(row)
            if fragment_id:
                parts[(run_id, _key(fragment_id))] = (run_id, _key(fragment_id), *stored)
            else:
                decisions[run_id] = [_decision_row(run_id, d) for d in decision_rows]
                roots[run_id] = (
                    run_id,
                    _key(row[1]),
                    _key(row[2]),
                    row[3],
                    row[4],
                    [_key(node) for node in json.loads(row[5])],
                    row[7],
                    *stored,
                )
        run_ids = sorted({*roots, *(run_id for run_id, _ in parts)})
        # Pipelined: the transaction waits for the server a few times, not at each of its
        # statements; the aggregate rows, which every writer updates, are locked last
        # (from the counts' statement to the commit).
        with (
            self._connection() as connection,
            connection.transaction(),
            Pipeline(connection) as pipeline,
        ):
            cursor = connection.cursor()
            # Every statement here finds rows by run id. A table that grew since it was
            # last analyzed (a new store) would otherwise get sequential scans.
            cursor.execute("SET LOCAL enable_seqscan = off")
            if parts:
                # Lock every run of the batch in id order (see Statements.lock_run).
                cursor.executemany(self.sql.lock_run, [(run_id,) for run_id in run_ids])
                cursor.executemany(self.sql.upsert_fragment, [parts[key] for key in sorted(parts)])
            touched = {run_id for run_id, _ in parts}
            if roots:
                ordered = sorted(roots)
                cursor.executemany(self.sql.upsert_root, [roots[key] for key in ordered])
                if clear_journal:
                    # Roots only: fragments are never journaled, and their run's root may
                    # still be held (and journaled) by this process.
                    cursor.executemany(*self._journal.clearing(ordered))
                # The run rows are locked now: no other writer changes their decisions.
                cursor.execute(self.sql.run_state, (ordered,))
                stored_before = []
                for run_id, fragmented, had_rows in cursor.fetchall():
                    if fragmented:
                        touched.add(bytes(run_id))  # merged with its fragments below
                    elif had_rows:
                        stored_before.append(bytes(run_id))
                whole = [key for key in ordered if key not in touched]
                self._replace_decisions(
                    cursor,
                    whole,
                    [row for key in whole for row in decisions[key]],
                    pipeline,
                    stored_before=stored_before,
                )
            for run_id in sorted(touched):
                self._refresh(cursor, run_id, pipeline)

    def _refresh(
        self, cursor: psycopg.Cursor[Any], run_id: bytes, pipeline: Pipeline | None = None
    ) -> None:
        """Recompute the listing columns of a run with fragments (row locked)."""
        loaded = self._load_merged(cursor, run_id)
        if loaded is None:
            return
        record, count = loaded
        self._replace_decisions(
            cursor,
            [run_id],
            [_decision_row(run_id, row) for row in _rows.decision_rows(run_id, record)],
            pipeline,
        )
        cursor.execute(
            self.sql.refresh,
            (
                _key(record.get("goal_id", "")),
                _key(record.get("status", "running")),
                record.get("started_at"),
                record.get("completed_at"),
                [_key(node) for node in record_node_ids(record)],
                _rows.dumps(_records.summary_from_record(record)),
                count,
                run_id,
            ),
        )

    def _replace_decisions(
        self,
        cursor: psycopg.Cursor[Any],
        run_ids: Sequence[bytes],
        rows: Sequence[_Row],
        pipeline: Pipeline | None = None,
        *,
        stored_before: Sequence[bytes] | None = None,
    ) -> None:
        """Replace the analytics rows of these runs (see ``stores._facts``) and their
        counts in the aggregate tables (``stores._aggregates``), in ``pipeline`` if any
        (which steps aside for the COPY). ``stored_before``: those of the runs that may
        have rows already (all of them if None); the others have no counts to take out.
        """
        old = list(run_ids if stored_before is None else stored_before)
        if old:
            cursor.execute(self._take_out, (old,))
            cursor.execute(self.sql.decisions_delete, (old,))
        if rows:
            with (
                pipeline.paused() if pipeline is not None else nullcontext(),
                cursor.copy(self.sql.decisions_copy) as copy,
            ):
                for row in rows:
                    copy.write_row(row)
            cursor.execute(self._put_in, (list(run_ids),))

    def _load_merged(self, cursor: psycopg.Cursor[Any], run_id: bytes) -> tuple[Record, int] | None:
        cursor.execute(self.sql.load_fragments, (run_id,))
        parts = [decode(bytes(data), version) for data, version in cursor.fetchall()]
        if not parts:
            return None
        count = len(parts)
        cursor.execute(self.sql.load_root, (run_id,))
        row = cursor.fetchone()
        if row is not None and row[0] is not None:
            parts.append(decode(bytes(row[0]), row[1]))
        return _fragments.merge(parts), count

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
            merged = self._load_merged(cursor, key)
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
        if filters.get("text"):  # as the column keeps it (see _decision_row)
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
                # The caller stops after a page of matches: plan for the first rows.
                connection.execute("SET LOCAL cursor_tuple_fraction = 0.001")

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


#: Ids and names as bytes, by their text: node ids, decision types, option ids and the
#: run-local decision ids repeat from run to run. Emptied when full.
_KEYS: dict[str, bytes] = {}
_MAX_KEYS = 4096


def _cached_key(value: str) -> bytes:
    """``_key(value)``, remembered (see :data:`_KEYS`)."""
    found = _KEYS.get(value)
    if found is None:
        if len(_KEYS) >= _MAX_KEYS:
            _KEYS.clear()
        found = _KEYS[value] = _key(value)
    return found


def _decision_row(run_id: bytes, row: _Row) -> _Row:
    """A ``_facts`` row as PostgreSQL keeps it: ids as bytes, text without NUL."""
    (_, seq, decision_id, node_id, kind, chosen, listed, confidence, option_ids, outcome,
     tokens, latency, judged, text) = row  # fmt: skip
    return (
        run_id, seq, _cached_key(decision_id), _cached_key(node_id), _cached_key(kind),
        _cached_key(chosen), listed, confidence, option_ids, outcome, tokens, latency, judged,
        _rows.valid_text(text).replace("\x00", " "),
    )  # fmt: skip


def _stored_record(row: _Row) -> tuple[bytes, int]:
    """The record column of a ``_sqlite_rows`` row as bytes, with its format."""
    data = row[6]
    return (data.encode("utf-8") if isinstance(data, str) else bytes(data)), row[8]


__all__ = ["PostgreSQLStore", "redact", "split_url"]
