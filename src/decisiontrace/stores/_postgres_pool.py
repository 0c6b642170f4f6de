"""The PostgreSQL store's way to its server: the URL, and a connection pool per process.

The pool is bounded and checks each connection before lending it, so a server restart
or a killed backend costs one failed write. A forked child opens its own pool: sockets
are not shared across ``fork()``. Messages name the URL without its password.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from decisiontrace.stores.base import StoreError


class Pipeline:
    """A libpq pipeline on one connection, that steps aside for a COPY (which a
    pipeline cannot carry). Where libpq has no pipelines (before 14) it does nothing.

    Statements sent in it go out without waiting for each other's answers; a result
    read (``fetchall``) and :meth:`paused` wait for every answer so far. Errors come
    at those points, as the statement's own exception.
    """

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection
        self._stack = ExitStack()

    def _start(self) -> None:
        if psycopg.Pipeline.is_supported():
            self._stack.enter_context(self._connection.pipeline())

    def __enter__(self) -> Pipeline:
        self._start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stack.__exit__(*exc_info)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Out of the pipeline for the ``with`` block (every answer so far is in)."""
        self._stack.close()
        yield
        self._start()


def redact(url: str) -> str:
    """``url`` without its password (for messages and ``store.url``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def split_url(url: str) -> tuple[str, str | None]:
    """The libpq URL without the ``schema`` parameter, and that parameter."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for name, value in query if name == "schema"), None)
    rest = urlencode([(name, value) for name, value in query if name != "schema"])
    scheme = "postgresql" if parts.scheme.lower() in ("postgres", "postgresql") else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme, query=rest)), schema


class PostgreSQLConnections:
    """Connections to one database for one store: this process's pool, opened on first use.

    Args:
        conninfo: the libpq URL (with its password, never shown).
        url: the URL as messages name it (without the password).
        name: the pool's name.
        max_connections, timeout, connect_timeout: as the store's.
    """

    def __init__(
        self,
        conninfo: str,
        url: str,
        name: str,
        *,
        max_connections: int,
        timeout: float,
        connect_timeout: float,
    ) -> None:
        self._conninfo = conninfo
        self._url = url
        self._name = name
        self._max_connections = max_connections
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._pool_lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._pool_pid = 0

    def scrub(self, error: BaseException) -> str:
        """An error's message on one line, without the URL's password."""
        message = " ".join(str(error).split())
        password = urlsplit(self._conninfo).password
        return message.replace(password, "***") if password else message

    def connect_once(self) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool (to set up the schema)."""
        return psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=max(1, round(self._connect_timeout))
        )

    def _pool_here(self) -> ConnectionPool:
        """This process's pool; a forked child opens its own (sockets are not shared)."""
        pid = os.getpid()
        pool = self._pool
        if pool is not None and self._pool_pid == pid:
            return pool
        with self._pool_lock:
            if self._pool is None or self._pool_pid != pid:
                # An inherited pool is abandoned, not closed: closing would end the
                # parent's sessions on the sockets the child shares with it.
                self._pool = ConnectionPool(
                    self._conninfo,
                    min_size=1,
                    max_size=self._max_connections,
                    kwargs={
                        "autocommit": True,
                        "connect_timeout": max(1, round(self._connect_timeout)),
                    },
                    check=ConnectionPool.check_connection,
                    timeout=self._timeout,
                    # Keep trying for a day: the server may come back after a long outage.
                    reconnect_timeout=86_400.0,
                    open=False,
                    name=self._name,
                )
                self._pool.open(wait=False)
                self._pool_pid = pid
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for the ``with`` block; StoreError if none comes in time."""
        try:
            with self._pool_here().connection() as connection:
                yield connection
        except PoolTimeout as exc:
            raise StoreError(
                f"no connection to PostgreSQL at {self._url} within {self._timeout} s"
            ) from exc

    def read(self, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """Run a read; StoreError naming the store if the database cannot be read."""
        try:
            with self.connection() as connection:
                return work(connection)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read PostgreSQL at {self._url}: {self.scrub(exc)}") from exc

    def close(self) -> None:
        """Close this process's pool; a later use opens a new one."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.close()
