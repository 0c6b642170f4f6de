"""Where finished runs are kept: SQLite (the default), JSON files, memory, or PostgreSQL.

:func:`open_store` turns a URL or path into a store; with no argument it reads
``$DECISIONTRACE_STORE`` and falls back to :func:`default_store_url`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from decisiontrace.stores.base import RunStore, StoreError

if TYPE_CHECKING:  # imported on first use (``import decisiontrace`` stays light)
    from decisiontrace.stores.jsonfiles import JSONFilesStore
    from decisiontrace.stores.memory import MemoryStore
    from decisiontrace.stores.null import NullStore
    from decisiontrace.stores.postgres import PostgreSQLStore  # needs the postgres extra
    from decisiontrace.stores.sqlite import SQLiteStore

#: Environment variable naming the store when none is passed to :func:`open_store`.
STORE_ENV_VAR = "DECISIONTRACE_STORE"

_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")

_ACCEPTED_FORMS = (
    "accepted forms: 'sqlite:///relative/path.db', 'sqlite:////absolute/path.db', "
    "'file:///absolute/folder', 'memory://', 'postgresql://user@host:5432/db', or a plain "
    "path (ending in .db, .sqlite or .sqlite3 for SQLite, otherwise a JSON folder)"
)


def default_store_url() -> str:
    """The URL of the default store: ``$XDG_DATA_HOME/decisiontrace/runs.db``.

    ``XDG_DATA_HOME`` defaults to ``~/.local/share``; a relative value is ignored, as the
    XDG Base Directory specification asks. Nothing is created until the store is opened.

    Returns:
        An absolute ``sqlite:////...`` URL.
    """
    data_home = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data_home):
        data_home = os.path.join(os.path.expanduser("~"), ".local", "share")
    return "sqlite:///" + os.path.abspath(os.path.join(data_home, "decisiontrace", "runs.db"))


def open_store(
    url: str | os.PathLike[str] | RunStore | None = None, *, read_only: bool = False
) -> RunStore:
    """Open the store that ``url`` names.

    URLs follow the SQLAlchemy convention for SQLite:

    - ``sqlite:///runs.db``: a SQLite file relative to the current directory;
    - ``sqlite:////var/lib/app/runs.db``: an absolute path (four slashes);
    - ``file:///var/lib/app/runs``: a JSON-files folder (a standard file URL, absolute,
      percent-encoding decoded; the host must be empty or ``localhost``);
    - ``memory://``: a new, empty :class:`MemoryStore`;
    - ``none``: a :class:`NullStore`, which keeps nothing (agents whose spans an
      ingest service stores);
    - ``postgresql://user@host:5432/db`` (or ``postgres://``): a
      :class:`~decisiontrace.stores.postgres.PostgreSQLStore`, with the ``postgres``
      extra installed; a ``?schema=name`` parameter picks the PostgreSQL schema;
    - a plain path (``str`` or ``os.PathLike``, ``~`` expanded): SQLite if it ends in
      ``.db``, ``.sqlite`` or ``.sqlite3``, otherwise a JSON-files folder.

    ``sqlite:///:memory:`` is refused: other processes could never read it.

    Args:
        url: a URL, a path, an open store (returned as is), or None for
            ``$DECISIONTRACE_STORE`` if set and non-empty, else :func:`default_store_url`.
        read_only: for reading only: a SQLite file is never created, changed or
            upgraded (opened with ``mode=ro``; an empty file reads as an empty store, an
            older one from an upgraded copy).

    Returns:
        The store.

    Raises:
        ValueError: the URL is empty, has an unknown scheme, or names no usable path.
        TypeError: ``url`` is none of the types above.
        StoreError: the store exists but cannot be opened (e.g. not a SQLite file, or
            PostgreSQL unreachable), or the PostgreSQL driver is not installed.
    """
    if isinstance(url, RunStore):
        return url
    if url is None:
        url = os.environ.get(STORE_ENV_VAR) or default_store_url()
    if isinstance(url, os.PathLike):
        return _store_at_path(os.fspath(url), read_only)
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, os.PathLike or RunStore, got {type(url).__name__}")
    if not url:
        raise ValueError(f"store URL is empty; {_ACCEPTED_FORMS}")
    if url.lower() in ("none", "none://"):
        from decisiontrace.stores.null import NullStore

        return NullStore()
    if "://" not in url:
        return _store_at_path(url, read_only)
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return _sqlite_store(url, rest, read_only)
    if scheme == "file":
        from decisiontrace.stores.jsonfiles import JSONFilesStore

        return JSONFilesStore(_file_url_path(url))
    if scheme in ("postgresql", "postgres"):
        return _postgres_store(url)
    if scheme == "memory":
        if rest:
            raise ValueError(f"memory store URL takes no path, got {url!r}; use 'memory://'")
        from decisiontrace.stores.memory import MemoryStore

        return MemoryStore()
    raise ValueError(f"unknown store URL scheme {scheme!r} in {url!r}; {_ACCEPTED_FORMS}")


def _sqlite_store(url: str, rest: str, read_only: bool = False) -> RunStore:
    """``sqlite:///path``: everything after the third slash is the path, as SQLAlchemy reads it."""
    if not rest:
        raise ValueError(f"sqlite URL {url!r} names no file; {_ACCEPTED_FORMS}")
    if not rest.startswith("/"):
        raise ValueError(
            f"sqlite URL {url!r} names a host; use 'sqlite:///relative.db' or "
            "'sqlite:////absolute/path.db'"
        )
    path = rest[1:]
    if not path:
        raise ValueError(f"sqlite URL {url!r} names no file; {_ACCEPTED_FORMS}")
    if path == ":memory:":
        raise ValueError(
            "sqlite:///:memory: is not supported: an in-memory database cannot be shared "
            "with readers; use 'memory://' for a throwaway store"
        )
    return _sqlite(path, read_only)


def _postgres_store(url: str) -> RunStore:
    """A PostgreSQLStore, or a StoreError saying which extra provides the driver."""
    try:
        from decisiontrace.stores.postgres import PostgreSQLStore
    except ImportError as exc:
        raise StoreError(
            f"the PostgreSQL store needs psycopg 3 and psycopg_pool ({exc}); install them "
            "with: pip install 'decisiontrace[postgres]'"
        ) from exc
    return PostgreSQLStore(url)


def _file_url_path(url: str) -> str:
    """The local path of a ``file://`` URL."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(
            f"file URL {url!r} names host {parts.netloc!r}; file URLs are absolute "
            "('file:///absolute/folder'); for a relative folder pass a plain path"
        )
    # Imported here: urllib.request pulls in http.client, email and ssl (~30 ms).
    from urllib.request import url2pathname

    path = url2pathname(parts.path)
    if not path:
        raise ValueError(f"file URL {url!r} names no folder; {_ACCEPTED_FORMS}")
    return path


def _sqlite(path: str, read_only: bool) -> RunStore:
    if read_only:
        from decisiontrace.stores._sqlite_reading import sqlite_for_reading

        return sqlite_for_reading(path)
    from decisiontrace.stores.sqlite import SQLiteStore

    return SQLiteStore(path)


def _store_at_path(path: str, read_only: bool = False) -> RunStore:
    """SQLite for a database-looking file name, otherwise a JSON-files folder."""
    if not path:
        raise ValueError(f"store path is empty; {_ACCEPTED_FORMS}")
    path = os.path.expanduser(path)
    if path.lower().endswith(_SQLITE_SUFFIXES):
        return _sqlite(path, read_only)
    from decisiontrace.stores.jsonfiles import JSONFilesStore

    return JSONFilesStore(path, read_only=read_only)


# The stores, each imported on first use (PostgreSQLStore needs the ``postgres`` extra).
_LAZY = {
    "JSONFilesStore": "decisiontrace.stores.jsonfiles",
    "MemoryStore": "decisiontrace.stores.memory",
    "NullStore": "decisiontrace.stores.null",
    "PostgreSQLStore": "decisiontrace.stores.postgres",
    "SQLiteStore": "decisiontrace.stores.sqlite",
}


def __getattr__(name: str) -> object:
    """A store class, imported on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "STORE_ENV_VAR",
    "JSONFilesStore",
    "MemoryStore",
    "NullStore",
    "PostgreSQLStore",
    "RunStore",
    "SQLiteStore",
    "StoreError",
    "default_store_url",
    "open_store",
]
