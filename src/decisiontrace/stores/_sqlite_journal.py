"""The SQLite store's journal: the ``journal`` table (``RunRecordProcessor(journal=True)``).

Entries are zlib-compressed JSON tagged with the writing process's pid. A process takes
the entries of dead processes to recover them, and deletes its own and those it
recovered in the transaction that saves their run (:meth:`SQLiteJournal.clearing`).

The store owns the connections and transactions; it passes them in on each call.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores import _sqlite_schema as _schema
from decisiontrace.stores._journal_rows import decode_entries, encode_data
from decisiontrace.stores._locks import process_alive
from decisiontrace.stores.base import JournalEntry

logger = logging.getLogger("decisiontrace")

#: Runs ``executemany`` for each (statement, rows) in one write transaction.
Transaction = Callable[[list[tuple[str, Sequence[tuple[Any, ...]]]]], None]


class SQLiteJournal:
    """The journal of one SQLite store, for the processes that share its file."""

    def __init__(self, path: str) -> None:
        self._path = path
        #: True once this process appended or recovered: saving a run then clears it.
        self.in_use = False
        # Pids of dead processes whose journal entries this process took to recover.
        self._recovered_pids: set[int] = set()

    def clearing(self, run_ids: Iterable[str]) -> tuple[str, list[tuple[Any, ...]]]:
        """The statement and rows deleting these runs' entries as their save commits.

        Only this process's entries, and those of dead processes it recovered: a run's
        other fragments may still be in flight in other processes.
        """
        pids = {os.getpid(), *self._recovered_pids}
        return _schema.JOURNAL_DELETE_OF, [
            (run_id, pid) for run_id in dict.fromkeys(run_ids) for pid in pids
        ]

    def append(self, entries: Sequence[JournalEntry], transaction: Transaction) -> None:
        """Append entries in one transaction, tagged with this process's pid."""
        self.in_use = True
        if not entries:
            return
        pid = os.getpid()
        rows = []
        for run_id, trace_id, data in entries:
            try:
                run = _rows.checked_text(run_id)
            except ValueError:  # lone surrogates: see _stored_form.encode
                run = _rows.valid_text(run_id)
            rows.append((run, trace_id, pid, encode_data(data)))
        transaction([(_schema.JOURNAL_INSERT, rows)])

    def take_orphans(
        self, connection: sqlite3.Connection, transaction: Transaction
    ) -> list[JournalEntry]:
        """Entries, oldest first, of unsaved runs whose writing process is gone.

        Entries of runs saved since are deleted, and so are unreadable entries (with a
        warning). The orphans' entries stay until their runs are saved.
        """
        self.in_use = True
        transaction([(_schema.JOURNAL_DELETE_SAVED, [()])])
        pids = [pid for (pid,) in connection.execute("SELECT DISTINCT pid FROM journal")]
        gone = [pid for pid in pids if not process_alive(pid)]
        if not gone:
            return []
        self._recovered_pids.update(gone)
        rows = connection.execute(
            f"SELECT seq, run_id, trace_id, data FROM journal "
            f"WHERE pid IN ({','.join('?' * len(gone))}) ORDER BY seq",
            gone,
        ).fetchall()
        entries, unreadable = decode_entries(
            (seq, str(run_id), trace_id, data) for seq, run_id, trace_id, data in rows
        )
        if unreadable:
            logger.warning(
                "decisiontrace: %d unreadable journal entries in %s were deleted",
                len(unreadable),
                self._path,
            )
            transaction([("DELETE FROM journal WHERE seq = ?", [(s,) for s in unreadable])])
        return entries

    def release(self, transaction: Transaction) -> None:
        """Hand this process's entries to whichever process recovers orphans next."""
        if self.in_use:
            transaction([(_schema.JOURNAL_RELEASE, [(os.getpid(),)])])

    @staticmethod
    def clear(run_ids: Sequence[str], transaction: Transaction) -> None:
        """Delete the entries of these runs, in one transaction."""
        if run_ids:
            transaction([(_schema.JOURNAL_DELETE, [(run_id,) for run_id in run_ids])])
