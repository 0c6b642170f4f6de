"""Files of the JSON-files store: safe names, atomic replacement, durable renames, reads.

A reader sees the old file or the new one, never half of one: each file is written to a
temporary name in the same folder, fsynced, and renamed over the old one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from typing import Any

from decisiontrace.stores.base import StoreError

# A file name must fit in NAME_MAX (255 bytes) with ".json" and a temp-file affix.
_MAX_KEY_BYTES = 200


def unsafe_reason(key: object) -> str | None:
    """Why ``key`` cannot be a file name inside the store, or None if it can."""
    if not isinstance(key, str) or not key:
        return "empty or not a string"
    if "/" in key or "\\" in key or "\x00" in key:
        return "contains a path separator or NUL"
    # With separators excluded, ".." can only escape as the whole name, and a leading
    # dot would also hide the file from the framework's *.json globbing.
    if key.startswith("."):
        return "is '..' or starts with a dot"
    try:
        if len(os.fsencode(key)) > _MAX_KEY_BYTES:
            return "too long for a file name"
    except UnicodeError:
        return "not encodable as a file name"
    return None


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: temp file in the same folder, fsync, rename."""
    folder, name = os.path.split(path)
    # Not ending in .json, so readers globbing *.json never see a half-written file;
    # os.open with 0o666 lets the umask decide permissions, as a plain open() would.
    temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def fsync_directory(folder: str) -> None:
    """Make renames in ``folder`` durable (best effort: not every OS allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json(path: str) -> Any:
    """The parsed file, None if missing; StoreError naming the file if it is not JSON."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path} is not valid JSON ({exc}); repair or delete it") from exc


__all__ = ["fsync_directory", "read_json", "unsafe_reason", "write_atomically"]
