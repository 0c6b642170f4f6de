"""Rows of SQLiteStore's ``runs`` table: a record, or a run assembled from spans, as columns.

Also text that SQLite cannot take: a lone surrogate (half an emoji from a cut-off
stream, a file name decoded with surrogateescape) cannot be encoded as UTF-8, and would
otherwise cost the whole run; it is stored as U+FFFD instead.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from pydantic_core import PydanticSerializationError, to_json

from decisiontrace import _records
from decisiontrace._assembly import record_from_compact
from decisiontrace.stores._filters import record_node_ids
from decisiontrace.stores._fragments import fragment_key
from decisiontrace.stores.base import AssembledRun, Record

#: Per row, ``schema_version`` says what the ``record`` column holds: 1, the run record
#: as JSON text; 2, the run's spans in compact form (what the processor writes, several
#: times cheaper to produce) as zlib-compressed JSON, decoded on read by the same code
#: the processor uses. Compression costs ~25 µs a run and saves SQLite ~10x that in
#: page writes (a 10-decision run: 14 KB -> 1.2 KB).
ROW_RECORD = 1
ROW_SPANS = 2

_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(value: Any) -> str:
    """Compact JSON text, non-ASCII kept as is.

    pydantic-core's encoder writes the same text as ``json.dumps`` with compact
    separators for these records, about three times faster; records are JSON-ready
    (no NaN, str keys), and anything else raises TypeError as json.dumps would.
    """
    try:
        return to_json(value).decode()
    except PydanticSerializationError as error:
        raise TypeError(str(error)) from error


def json_bytes(value: Any) -> bytes:
    """Compact JSON of JSON-ready data; TypeError for anything else."""
    try:
        return to_json(value)
    except PydanticSerializationError as error:
        raise TypeError(str(error)) from error


def record_row(record: Record) -> tuple[Any, ...]:
    """The ``runs`` row of one record."""
    return (
        record["id"],
        record["goal_id"],
        record.get("status", "running"),
        record.get("started_at"),
        record.get("completed_at"),
        dumps(record_node_ids(record)),
        dumps(record),
        dumps(_records.summary_from_record(record)),
        ROW_RECORD,
    )


def record_part(record: Record) -> tuple[str, tuple[Any, ...]]:
    """``(fragment_id, row)`` of one record (``""`` for a run's root record)."""
    return fragment_key(record), record_row(record)


def spans_row(run: AssembledRun) -> tuple[str, tuple[Any, ...]]:
    """``(fragment_id, row)`` of a run assembled from spans, kept in compact span form."""
    try:
        return _spans_row_of(run.record(light=True), run.compact())
    except (TypeError, ValueError):  # text UTF-8 cannot hold: store U+FFFD in its place
        compact = valid_text(run.compact())
        return _spans_row_of(record_from_compact(compact), compact)


def _spans_row_of(light: Record, compact: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    return fragment_key(light), (
        checked_text(light["id"]),
        checked_text(light["goal_id"]),
        checked_text(light["status"]),
        light["started_at"],
        light["completed_at"],
        dumps(record_node_ids(light)),
        zlib.compress(json_bytes(compact), 1),
        dumps(_records.summary_from_record(light)),
        ROW_SPANS,
    )


def checked_text(value: Any) -> Any:
    """``value``; ValueError if it is text SQLite cannot store as UTF-8."""
    if type(value) is str and not value.isascii() and _SURROGATE.search(value):
        raise ValueError("lone surrogate in text")
    return value


def valid_text(value: Any) -> Any:
    """A copy of ``value`` with lone surrogates replaced by U+FFFD in every string."""
    if isinstance(value, str):
        return value if value.isascii() else _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {valid_text(key): valid_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [valid_text(item) for item in value]
    return value


__all__ = [
    "ROW_RECORD",
    "ROW_SPANS",
    "checked_text",
    "dumps",
    "json_bytes",
    "record_part",
    "record_row",
    "spans_row",
    "valid_text",
]
