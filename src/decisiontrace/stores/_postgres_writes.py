"""How the PostgreSQL store writes a batch of runs, a component of
:class:`~decisiontrace.stores.postgres.PostgreSQLStore`.

One transaction a batch, pipelined (libpq sends the statements without waiting for
each answer): the runs' rows are upserted (and locked), fragments merged, the
``decisions`` rows (``stores._facts``) replaced by one ``COPY``, and the aggregate
tables (``stores._aggregates``) updated by one statement each way. Counts are taken
out only for runs that had rows before; the aggregate rows, which every writer
updates, are locked last, from the counts' statement to the commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import psycopg

from decisiontrace._internal.memo import remember
from decisiontrace.spanmodel import _records
from decisiontrace.stores import _fragments
from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores import _stored_form as _form
from decisiontrace.stores._aggregates import Statements as AggregateStatements
from decisiontrace.stores._filters import record_node_ids
from decisiontrace.stores._postgres_journal import PostgreSQLJournal
from decisiontrace.stores._postgres_pool import Pipeline
from decisiontrace.stores._postgres_schema import Statements
from decisiontrace.stores._postgres_schema import key as _key
from decisiontrace.stores._postgres_schema import text as _text
from decisiontrace.stores._sqlite_fragments import decode
from decisiontrace.stores.base import Record

_Row = tuple[Any, ...]


class PostgreSQLWrites:
    """Writes batches of runs to one schema.

    Args:
        sql: the schema's statements.
        aggregates: the aggregate tables' statements.
        journal: the store's journal (whose entries a batch of roots clears).
        connection: a connection from the store's pool, as a context manager.
    """

    def __init__(
        self,
        sql: Statements,
        aggregates: AggregateStatements,
        journal: PostgreSQLJournal,
        connection: Callable[[], AbstractContextManager[psycopg.Connection[Any]]],
    ) -> None:
        self.sql = sql
        self._journal = journal
        self._connection = connection
        # One statement each way, reading the runs' decisions rows once.
        self._take_out = aggregates.combined("-1", "%b")
        self._put_in = aggregates.combined("1", "%b")

    def write(
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
                decisions[run_id] = _decision_rows(run_id, decision_rows)
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
                # Read on a cursor of its own: in a pipeline, psycopg (3.3) can hand this
                # cursor's fetch the answer of a statement the batch's executemany sent.
                state = connection.cursor()
                state.execute(self.sql.run_state, (ordered,))
                stored_before = []
                for run_id, fragmented, had_rows in state.fetchall():
                    if fragmented:
                        touched.add(bytes(run_id))  # merged with its fragments below
                    elif had_rows:
                        stored_before.append(bytes(run_id))
                whole = [key for key in ordered if key not in touched]
                self.replace_decisions(
                    cursor,
                    whole,
                    [row for key in whole for row in decisions[key]],
                    pipeline,
                    stored_before=stored_before,
                )
            for run_id in sorted(touched):
                self.refresh(cursor, run_id, pipeline)

    def refresh(
        self, cursor: psycopg.Cursor[Any], run_id: bytes, pipeline: Pipeline | None = None
    ) -> None:
        """Recompute the listing columns of a run with fragments (row locked)."""
        loaded = load_merged(cursor, self.sql, run_id)
        if loaded is None:
            return
        record, count = loaded
        self.replace_decisions(
            cursor,
            [run_id],
            _decision_rows(run_id, _rows.decision_rows(run_id, record)),
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

    def replace_decisions(
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

    def rewrite_rows(self, connection: psycopg.Connection[Any]) -> None:
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
            self.replace_decisions(
                cursor,
                [key for key, _ in records],
                [
                    row
                    for key, record in records
                    for row in _decision_rows(
                        key, _rows.decision_rows(_text(key), _rows.valid_text(record))
                    )
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
            self.refresh(cursor, bytes(key))


def load_merged(
    cursor: psycopg.Cursor[Any], sql: Statements, run_id: bytes
) -> tuple[Record, int] | None:
    """A run written by several processes: its fragments and root merged, and how many
    fragments it has; None if it has none. Read on a cursor of its own (see
    :meth:`PostgreSQLWrites.write`), on ``cursor``'s connection."""
    reader = cursor.connection.cursor()
    reader.execute(sql.load_fragments, (run_id,))
    parts = [decode(bytes(data), version) for data, version in reader.fetchall()]
    if not parts:
        return None
    count = len(parts)
    reader.execute(sql.load_root, (run_id,))
    row = reader.fetchone()
    if row is not None and row[0] is not None:
        parts.append(decode(bytes(row[0]), row[1]))
    return _fragments.merge(parts), count


#: Ids and names as bytes, by their text: node ids, decision types, option ids and the
#: run-local decision ids repeat from run to run. Emptied when full.
_KEYS: dict[str, bytes] = {}
_MAX_KEYS = 4096


def _cached_key(value: str) -> bytes:
    """``_key(value)``, remembered (see :data:`_KEYS`)."""
    return remember(_KEYS, _MAX_KEYS, value, _key(value))


def _decision_rows(run_id: bytes, rows: Sequence[_Row]) -> list[_Row]:
    """``_facts`` rows as PostgreSQL keeps them: ids as bytes, text without NUL."""
    keys = _KEYS
    out = []
    for (_, seq, decision_id, node_id, kind, chosen, listed, confidence, option_ids, outcome,
         tokens, latency, judged, text) in rows:  # fmt: skip
        out.append((
            run_id, seq,
            keys.get(decision_id) or _cached_key(decision_id),
            keys.get(node_id) or _cached_key(node_id),
            keys.get(kind) or _cached_key(kind),
            keys.get(chosen) or _cached_key(chosen),
            listed, confidence, option_ids, outcome, tokens, latency, judged,
            (text if text.isascii() else _rows.valid_text(text)).replace("\x00", " "),
        ))  # fmt: skip
    return out


def _stored_record(row: _Row) -> tuple[bytes, int]:
    """The record column of a ``_sqlite_rows`` row as bytes, with its format."""
    data = row[6]
    return (data.encode("utf-8") if isinstance(data, str) else bytes(data)), row[8]


__all__ = ["PostgreSQLWrites", "load_merged"]
