"""The PostgreSQL store's journal (``RunRecordProcessor(journal=True)``).

Entries are tagged with the host name and the writing process: its pid and start
(:mod:`decisiontrace.stores._journal_writers`), so a later process with the same pid
is not taken for it. A process recovers only the entries of processes of its own host
that are gone, as it cannot tell whether a process elsewhere is alive. It takes them by
re-tagging them as its own in one transaction, under an advisory lock per host (the
processes of a host take orphans one at a time, so no entry is taken twice), and
deletes its own entries in the transaction that saves their run
(:meth:`PostgreSQLJournal.clearing`).

The store owns the connection pool; it passes its connection factory in on each call.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from decisiontrace.stores._journal_rows import decode_entries, encode_data
from decisiontrace.stores._journal_writers import WRITERS
from decisiontrace.stores._postgres_schema import Statements, key, text
from decisiontrace.stores.base import JournalEntry

logger = logging.getLogger("decisiontrace")

#: Lends one of the store's pooled connections for the ``with`` block.
Connect = Callable[[], AbstractContextManager[psycopg.Connection[Any]]]


class PostgreSQLJournal:
    """The journal of one PostgreSQL store, for the processes of this host."""

    def __init__(self, sql: Statements, url: str) -> None:
        self._sql = sql
        self._url = url
        self._host = socket.gethostname()
        #: True once this process appended or recovered: saving a run then clears it.
        self.in_use = False

    def clearing(self, run_ids: Iterable[bytes]) -> tuple[str, list[tuple[Any, ...]]]:
        """The statement and rows deleting these runs' entries as their save commits.

        Only this process's entries (those it took from processes that are gone are
        its own too): a run's other fragments may still be in flight in other processes.
        """
        pid, start = WRITERS.me()
        return self._sql.journal_delete_of, [(run_id, self._host, pid, start) for run_id in run_ids]

    def append(self, entries: Sequence[JournalEntry], connect: Connect) -> None:
        """Append entries in one transaction, tagged with this host and process."""
        self.in_use = True
        if not entries:
            return
        pid, start = WRITERS.me()
        rows = []
        for run_id, trace_id, data in entries:
            rows.append((key(run_id), trace_id, self._host, pid, start, encode_data(data)))
        with connect() as connection, connection.transaction():
            connection.cursor().executemany(self._sql.journal_insert, rows)

    def take_orphans(self, connect: Connect) -> list[JournalEntry]:
        """Entries, oldest first, of unsaved runs whose process (on this host) is gone.

        They become this process's entries in the transaction that reads them, so no
        other process takes them too. Entries of runs saved since are deleted, and so
        are unreadable entries (with a warning).
        """
        self.in_use = True
        with connect() as connection, connection.transaction():
            connection.execute(
                self._sql.journal_take_lock, (self._sql.journal_take_lock_key + self._host,)
            )
            connection.execute(self._sql.journal_delete_saved)
            writers = connection.execute(self._sql.journal_writers, (self._host,)).fetchall()
            gone = [(pid, start) for pid, start in writers if not WRITERS.alive(pid, start)]
            if not gone:
                return []
            pid, start = WRITERS.me()
            rows = connection.execute(
                self._sql.journal_take,
                (pid, start, [p for p, _ in gone], [s for _, s in gone], self._host),
            ).fetchall()
            rows.sort(key=lambda row: int(row[0]))
            entries, unreadable = decode_entries(
                (seq, text(run_id), trace_id, bytes(data)) for seq, run_id, trace_id, data in rows
            )
            if unreadable:
                connection.execute(self._sql.journal_delete_seq, (unreadable,))
        if unreadable:
            logger.warning(
                "decisiontrace: %d unreadable journal entries in %s were deleted",
                len(unreadable),
                self._url,
            )
        return entries

    def release(self, connect: Connect) -> None:
        """Hand this process's entries to whichever process of this host recovers next."""
        if self.in_use:
            pid, start = WRITERS.me()
            with connect() as connection, connection.transaction():
                connection.execute(self._sql.journal_release, (self._host, pid, start))

    def clear(self, run_ids: Sequence[str], connect: Connect) -> None:
        """Delete the entries of these runs, in one transaction."""
        if run_ids:
            with connect() as connection, connection.transaction():
                connection.cursor().executemany(
                    self._sql.journal_delete, [(key(run_id),) for run_id in run_ids]
                )
