"""The SQLite store's journal: the ``journal`` table (``RunRecordProcessor(journal=True)``).

Entries are zlib-compressed JSON tagged with the writing process: its pid and start
(:mod:`decisiontrace.stores._journal_writers`), so a later process with the same pid
is not taken for it. A process takes the entries of processes that are gone by
re-tagging them as its own, in one write transaction (``BEGIN IMMEDIATE``: processes
take orphans one at a time, so no entry is taken twice), and deletes its own entries
in the transaction that saves their run (:meth:`SQLiteJournal.clearing`).

The store owns the connections and transactions; it passes them in on each call.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores import _sqlite_schema as _schema
from decisiontrace.stores._journal_rows import decode_entries, encode_data
from decisiontrace.stores._journal_writers import WRITERS
from decisiontrace.stores.base import JournalEntry

logger = logging.getLogger("decisiontrace")

#: Writers whose entries one statement takes: two parameters each, well under
#: SQLite's oldest limit of 999.
_WRITERS_PER_STATEMENT = 200


class Transaction(Protocol):
    """Runs ``executemany`` for each (statement, rows), then ``then``, in one write
    transaction."""

    def __call__(
        self,
        statements: list[tuple[str, Sequence[tuple[Any, ...]]]],
        then: Callable[[sqlite3.Connection], None] | None = None,
        /,
    ) -> None: ...


class SQLiteJournal:
    """The journal of one SQLite store, for the processes that share its file."""

    def __init__(self, path: str) -> None:
        self._path = path
        #: True once this process appended or recovered: saving a run then clears it.
        self.in_use = False

    def clearing(self, run_ids: Iterable[str]) -> tuple[str, list[tuple[Any, ...]]]:
        """The statement and rows deleting these runs' entries as their save commits.

        Only this process's entries (those it took from processes that are gone are
        its own too): a run's other fragments may still be in flight in other processes.
        """
        pid, start = WRITERS.me()
        return _schema.JOURNAL_DELETE_OF, [
            (run_id, pid, start) for run_id in dict.fromkeys(run_ids)
        ]

    def append(self, entries: Sequence[JournalEntry], transaction: Transaction) -> None:
        """Append entries in one transaction, tagged with this process."""
        self.in_use = True
        if not entries:
            return
        pid, start = WRITERS.me()
        rows = []
        for run_id, trace_id, data in entries:
            try:
                run = _rows.checked_text(run_id)
            except ValueError:  # lone surrogates: see _stored_form.encode
                run = _rows.valid_text(run_id)
            rows.append((run, trace_id, pid, start, encode_data(data)))
        transaction([(_schema.JOURNAL_INSERT, rows)])

    def take_orphans(self, transaction: Transaction) -> list[JournalEntry]:
        """Entries, oldest first, of unsaved runs whose writing process is gone.

        They become this process's entries in the transaction that reads them, so no
        other process takes them too. Entries of runs saved since are deleted, and so
        are unreadable entries (with a warning). The orphans' entries stay until their
        runs are saved.
        """
        self.in_use = True
        entries: list[JournalEntry] = []
        unreadable: list[int] = []

        def take(connection: sqlite3.Connection) -> None:
            writers = connection.execute(_schema.JOURNAL_WRITERS).fetchall()
            gone = [(pid, start) for pid, start in writers if not WRITERS.alive(pid, start)]
            me = WRITERS.me()
            rows: list[tuple[int, str, Any, bytes]] = []
            for first in range(0, len(gone), _WRITERS_PER_STATEMENT):
                chunk = gone[first : first + _WRITERS_PER_STATEMENT]
                of = " OR ".join(["(pid = ? AND pid_start IS ?)"] * len(chunk))
                values = [value for writer in chunk for value in writer]
                rows.extend(connection.execute(_schema.JOURNAL_OF_WRITERS.format(of=of), values))
                connection.execute(_schema.JOURNAL_RETAG.format(of=of), [*me, *values])
            rows.sort(key=lambda row: row[0])
            entries[:], unreadable[:] = decode_entries(
                (seq, str(run_id), trace_id, data) for seq, run_id, trace_id, data in rows
            )
            connection.executemany(_schema.JOURNAL_DELETE_SEQ, [(seq,) for seq in unreadable])

        transaction([(_schema.JOURNAL_DELETE_SAVED, [()])], take)
        if unreadable:
            logger.warning(
                "decisiontrace: %d unreadable journal entries in %s were deleted",
                len(unreadable),
                self._path,
            )
        return entries

    def release(self, transaction: Transaction) -> None:
        """Hand this process's entries to whichever process recovers orphans next."""
        if self.in_use:
            transaction([(_schema.JOURNAL_RELEASE, [WRITERS.me()])])

    @staticmethod
    def clear(run_ids: Sequence[str], transaction: Transaction) -> None:
        """Delete the entries of these runs, in one transaction."""
        if run_ids:
            transaction([(_schema.JOURNAL_DELETE, [(run_id,) for run_id in run_ids])])
