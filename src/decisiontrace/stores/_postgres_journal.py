"""The PostgreSQL store's journal (``RunRecordProcessor(journal=True)``).

Entries are tagged with the host name and pid; a process recovers only the entries of
dead processes of its own host, as it cannot tell whether a process elsewhere is alive.
It deletes its own entries and those it recovered in the transaction that saves their
run (:meth:`PostgreSQLJournal.clearing`).

The store owns the connection pool; it passes its connection factory in on each call.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import psycopg

from decisiontrace.stores._journal_rows import decode_entries, encode_data
from decisiontrace.stores._locks import process_alive
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
        # Pids of dead processes (of this host) whose entries this process took.
        self._recovered_pids: set[int] = set()

    def clearing(self, run_ids: Iterable[bytes]) -> tuple[str, list[tuple[Any, ...]]]:
        """The statement and rows deleting these runs' entries as their save commits.

        Only this process's entries, and those of dead processes it recovered: a run's
        other fragments may still be in flight in other processes.
        """
        pids = {os.getpid(), *self._recovered_pids}
        return self._sql.journal_delete_of, [
            (run_id, self._host, pid) for run_id in run_ids for pid in pids
        ]

    def append(self, entries: Sequence[JournalEntry], connect: Connect) -> None:
        """Append entries in one transaction, tagged with this host and pid."""
        self.in_use = True
        if not entries:
            return
        pid = os.getpid()
        rows = []
        for run_id, trace_id, data in entries:
            rows.append((key(run_id), trace_id, self._host, pid, encode_data(data)))
        with connect() as connection, connection.transaction():
            connection.cursor().executemany(self._sql.journal_insert, rows)

    def take_orphans(self, connect: Connect) -> list[JournalEntry]:
        """Entries, oldest first, of unsaved runs whose process (on this host) is gone."""
        self.in_use = True
        with connect() as connection:
            connection.execute(self._sql.journal_delete_saved)
            pids = [pid for (pid,) in connection.execute(self._sql.journal_pids, (self._host,))]
            gone = [pid for pid in pids if not process_alive(pid)]
            if not gone:
                return []
            self._recovered_pids.update(gone)
            rows = connection.execute(self._sql.journal_orphans, (self._host, gone)).fetchall()
            entries, unreadable = decode_entries(
                (seq, text(run_id), trace_id, bytes(data)) for seq, run_id, trace_id, data in rows
            )
            if unreadable:
                logger.warning(
                    "decisiontrace: %d unreadable journal entries in %s were deleted",
                    len(unreadable),
                    self._url,
                )
                connection.execute(self._sql.journal_delete_seq, (unreadable,))
        return entries

    def release(self, connect: Connect) -> None:
        """Hand this process's entries to whichever process of this host recovers next."""
        if self.in_use:
            with connect() as connection, connection.transaction():
                connection.execute(self._sql.journal_release, (self._host, os.getpid()))

    def clear(self, run_ids: Sequence[str], connect: Connect) -> None:
        """Delete the entries of these runs, in one transaction."""
        if run_ids:
            with connect() as connection, connection.transaction():
                connection.cursor().executemany(
                    self._sql.journal_delete, [(key(run_id),) for run_id in run_ids]
                )
