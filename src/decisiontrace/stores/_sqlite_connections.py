"""The SQLite store's connections: one per (process, thread), opened on first use.

SQLite connections must not cross a ``fork()``, and one connection per thread avoids
serializing readers behind the writer. A forked child opens its own connections and
never closes those it inherited (they belong to its parent); the lock guarding the map
is a :class:`~decisiontrace.stores._locks.ForkSafeLock`, renewed in the child. The
connections of ended threads are closed when a new thread opens one, and this
process's connections are closed when the component is garbage collected.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import weakref
from urllib.parse import quote

from decisiontrace.stores import _sqlite_schema as _schema
from decisiontrace.stores._locks import ForkSafeLock
from decisiontrace.stores.base import StoreError

#: Errors after which this thread's connection is reopened on the next use: it was
#: opened read-only or without access, and keeping it would keep the fault forever
#: (SQLite falls back to a read-only connection when the file is not writable).
_REOPEN_AFTER = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR")

_ConnectionKey = tuple[int, int]


def _close_own(connections: dict[_ConnectionKey, sqlite3.Connection], box: ForkSafeLock) -> None:
    """Close the connections this process opened; never those inherited through fork."""
    pid = os.getpid()
    with box.lock:
        own = [key for key in connections if key[0] == pid]
        for key in own:
            connections.pop(key).close()


class SQLiteConnections:
    """The connections of one SQLite store to its file.

    Args:
        file: the database file's absolute path (a later ``chdir()`` cannot move it).
        shown: the path as messages name it.
        timeout: seconds SQLite waits for another writer's lock.
        read_only: open with ``mode=ro``: never create, change or upgrade the file.
    """

    def __init__(self, file: str, *, shown: str, timeout: float, read_only: bool) -> None:
        self._file = file
        self._shown = shown
        self._timeout = timeout
        self._read_only = read_only
        self._box = ForkSafeLock()
        #: Held around each write transaction: a fork waits for it (see ForkSafeLock).
        self.writing = ForkSafeLock(fork_waits=True)
        self._connections: dict[_ConnectionKey, sqlite3.Connection] = {}
        # The process that checked (created or upgraded) the schema; once per process.
        self._schema_ready_in: int | None = None
        self._finalizer = weakref.finalize(self, _close_own, self._connections, self._box)

    @property
    def lock(self) -> threading.Lock:
        """The lock held while a connection is added to or removed from the map."""
        return self._box.lock

    def here(self) -> sqlite3.Connection:
        """This thread's connection in this process, opened on first use.

        Raises:
            StoreError: the file is not a usable database.
        """
        key = (os.getpid(), threading.get_ident())
        connection = self._connections.get(key)
        if connection is not None:
            return connection
        connection = self._open()
        with self._box.lock:
            self._prune_dead_threads(key[0])
            self._connections[key] = connection
        return connection

    def in_this_process(self) -> list[sqlite3.Connection]:
        """The connections this process opened and has not closed (all its threads')."""
        pid = os.getpid()
        with self._box.lock:
            return [connection for key, connection in self._connections.items() if key[0] == pid]

    def after_error(self, connection: sqlite3.Connection, error: sqlite3.Error) -> None:
        """Forget ``connection`` (this thread's) if ``error`` would stay with it forever,
        so the next use opens a fresh one."""
        if str(getattr(error, "sqlite_errorname", "")).startswith(_REOPEN_AFTER):
            self._discard(connection)

    def close(self) -> None:
        """Close the connections this process opened; a later use reopens one."""
        _close_own(self._connections, self._box)

    def _prune_dead_threads(self, pid: int) -> None:
        """Close this process's connections whose thread has ended (lock held)."""
        alive = {thread.ident for thread in threading.enumerate()}
        for key in [key for key in self._connections if key[0] == pid and key[1] not in alive]:
            self._connections.pop(key).close()

    def _discard(self, connection: sqlite3.Connection) -> None:
        key = (os.getpid(), threading.get_ident())
        with self._box.lock:
            if self._connections.get(key) is connection:
                del self._connections[key]
        with contextlib.suppress(sqlite3.Error):
            connection.close()

    def _open(self) -> sqlite3.Connection:
        """A new configured connection; StoreError if the file is not a usable database."""
        # Registers a thread started outside ``threading`` so pruning sees it alive.
        threading.current_thread()
        try:
            # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE),
            # check_same_thread=False: close() and pruning may run on another thread.
            connection = sqlite3.connect(
                f"file:{quote(self._file)}?mode=ro" if self._read_only else self._file,
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
                uri=self._read_only,
            )
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                with self.writing:  # it may create or upgrade the schema
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
        check = not self._read_only and self._schema_ready_in != os.getpid()
        _schema.prepare_connection(
            connection, self._timeout, read_only=self._read_only, path=self._shown, check=check
        )
        if check:
            self._schema_ready_in = os.getpid()

    def _open_error(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(
            f"cannot use {self._shown} as a run database ({exc}); if it is not a SQLite "
            "file, move it away or point DECISIONTRACE_STORE at another path"
        )
