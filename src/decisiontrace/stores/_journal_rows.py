"""Journal entries as the SQL stores keep them: zlib-compressed JSON, decoded on recovery."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from pydantic_core import from_json

from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores.base import JournalEntry


def encode_data(data: Any) -> bytes:
    """An entry's data as stored: compressed JSON (lone surrogates made valid first)."""
    try:
        payload = _rows.json_bytes(data)
    except (TypeError, ValueError):  # lone surrogates: see _stored_form.encode
        payload = _rows.json_bytes(_rows.valid_text(data))
    return zlib.compress(payload, 1)


def decode_entries(
    rows: Iterable[tuple[int, str, Any, bytes]],
) -> tuple[list[JournalEntry], list[int]]:
    """``(seq, run_id, trace_id, data)`` rows as journal entries, in the given order,
    and the ``seq`` of the rows that cannot be read (to be deleted)."""
    entries: list[JournalEntry] = []
    unreadable: list[int] = []
    for seq, run_id, trace_id, data in rows:
        try:
            decoded = from_json(zlib.decompress(data))
            if not isinstance(decoded, dict):
                raise ValueError("not an object")
        except (ValueError, TypeError, zlib.error):
            unreadable.append(seq)
            continue
        entries.append((run_id, str(trace_id), decoded))
    return entries, unreadable


__all__ = ["decode_entries"]
