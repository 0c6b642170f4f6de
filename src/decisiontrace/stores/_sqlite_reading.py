"""A SQLite store opened for reading only: what the reading commands use.

Reading must never create or change the file: a 0-byte or schema-less file is read as
an empty store, a database at this version's schema is opened with ``mode=ro``, and one
written by an older version (which opening would upgrade) is read from an upgraded
temporary copy, so the original stays as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import weakref
from urllib.parse import quote

from decisiontrace.stores import _sqlite_schema as _schema
from decisiontrace.stores.base import RunStore, StoreError
from decisiontrace.stores.memory import MemoryStore
from decisiontrace.stores.sqlite import SQLiteStore

__all__ = ["sqlite_for_reading"]


def sqlite_for_reading(path: str, *, timeout: float = 30.0) -> RunStore:
    """The store in SQLite file ``path``, for reading only (see the module docstring).

    Raises:
        StoreError: the file does not exist, or is not a SQLite database.
    """
    if not os.path.exists(path):
        raise StoreError(f"no store at {path}")
    url = "sqlite:///" + path
    try:
        probe = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read {path} as a run database ({exc})") from exc
    try:
        names = {name for (name,) in probe.execute("SELECT name FROM sqlite_master")}
        current = _schema.schema_is_current(probe)
    except sqlite3.Error as exc:
        raise StoreError(
            f"cannot use {path} as a run database ({exc}); if it is not a SQLite file, "
            "point --store at another path"
        ) from exc
    finally:
        probe.close()
    if "runs" not in names:  # an empty file, or a database nothing was stored in yet
        empty = MemoryStore()
        empty.url = url
        return empty
    if current:
        return SQLiteStore(path, timeout=timeout, read_only=True)
    return _upgraded_copy(path, url, timeout)


def _upgraded_copy(path: str, url: str, timeout: float) -> RunStore:
    """An older database, copied aside and upgraded there: the original is not touched."""
    folder = tempfile.mkdtemp(prefix="decisiontrace-read-")
    copy = os.path.join(folder, "runs.db")
    source = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()
    store = SQLiteStore(copy, timeout=timeout)
    store.url = url
    weakref.finalize(store, _remove, folder)
    return store


def _remove(folder: str) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(folder)
