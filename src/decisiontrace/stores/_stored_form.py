"""The stored form of a run record in the SQL stores: versioned, and read by its version.

Each stored record (a ``runs`` or ``run_fragments`` row of SQLite or PostgreSQL) says
which form it is in, and :func:`decode` reads each form with the decoder of that form.
The current form, :data:`RECORD_ZLIB`, is the run record itself (the shape of
``Run.model_dump(mode="json")``), as compact JSON compressed with zlib: reading it
needs no span model, so a change to how spans are encoded never changes a stored run.

Forms written by decisiontrace 0.1 are still read:

- :data:`RECORD_JSON` (1): the run record as JSON text;
- :data:`SPANS` (2): the run's spans in compact form, decoded by the span model of the
  writing version (``_pending.record_from_compact``). Opening a store rewrites these
  rows in the current form once (see the stores' schema modules), so after that no
  stored run depends on the span model.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Callable
from typing import Any

from pydantic_core import PydanticSerializationError, from_json, to_json

Record = dict[str, Any]

#: decisiontrace 0.1: the run record as JSON text.
RECORD_JSON = 1
#: decisiontrace 0.1: the run's spans in compact form (zlib-compressed JSON).
SPANS = 2
#: The run record as compact JSON, zlib-compressed (level 1: ~10x smaller, ~1 µs a KB).
RECORD_ZLIB = 3
#: The form new rows are written in.
CURRENT = RECORD_ZLIB

_SURROGATE = re.compile("[\ud800-\udfff]")

#: orjson (~3x faster than pydantic-core's encoder on a run record, see
#: benchmarks/writer_ab.py) writes exact built-in types; anything else, and a value
#: orjson refuses, goes to pydantic-core's encoder, which writes the same bytes.
_orjson_dumps: Callable[..., bytes] | None
try:
    import orjson

    _orjson_dumps = orjson.dumps
    _ORJSON_OPTIONS = (
        orjson.OPT_PASSTHROUGH_DATACLASS
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_SUBCLASS
    )
except ImportError:  # expected: an installation without it writes with pydantic-core
    _orjson_dumps = None
    _ORJSON_OPTIONS = 0


class UnknownForm(ValueError):
    """A stored row in a form this version cannot read (written by a newer one)."""


def json_bytes(value: Any) -> bytes:
    """Compact JSON of JSON-ready data (non-ASCII kept); TypeError for anything else.

    The same bytes whichever encoder writes them, except a non-finite float: JSON has
    none, and orjson writes ``null`` where pydantic-core writes ``NaN`` or ``Infinity``.
    decisiontrace's own span encoding never holds one (it writes them as text).
    """
    if _orjson_dumps is not None:
        try:
            return _orjson_dumps(value, option=_ORJSON_OPTIONS)
        except TypeError:  # expected: a subclass, an int beyond 64 bits, a lone surrogate
            pass
    try:
        return to_json(value)
    except PydanticSerializationError as error:
        raise TypeError(str(error)) from error


def dumps(value: Any) -> str:
    """Compact JSON text, as ``json.dumps`` with compact separators writes it, faster."""
    return json_bytes(value).decode()


def encode(record: Record) -> bytes:
    """``record`` in the current form (:data:`CURRENT`).

    Text UTF-8 cannot hold (a lone surrogate: half an emoji from a cut-off stream) is
    stored as U+FFFD rather than costing the whole run.

    Raises:
        TypeError: the record holds a value JSON cannot represent.
    """
    try:
        payload = json_bytes(record)
    except (TypeError, ValueError):
        payload = json_bytes(valid_text(record))
    return encoded(payload)


def encoded(payload: bytes) -> bytes:
    """The current form (:data:`CURRENT`) of a record whose :func:`json_bytes` are
    ``payload``."""
    return zlib.compress(payload, 1)


def decode(data: bytes | str, form: Any) -> Record:
    """The record a stored row holds, read by the decoder of its ``form``.

    Raises:
        UnknownForm: a form this version does not know.
        ValueError, TypeError, KeyError, zlib.error: the row is corrupt.
    """
    if form == RECORD_ZLIB:
        record = from_json(zlib.decompress(data.encode() if isinstance(data, str) else data))
    elif form == RECORD_JSON or form is None:
        record = json.loads(data)
    elif form == SPANS:
        record = _legacy_spans(data)
    else:
        raise UnknownForm(f"stored in form {form!r}, which this version cannot read")
    if not isinstance(record, dict):
        raise ValueError("a stored run is not a JSON object")
    return record


def _legacy_spans(data: bytes | str) -> Record:
    """A 0.1 row in compact span form, read once by the span model (then rewritten)."""
    # Imported here: only old rows need the span model, and the stores do not otherwise.
    from decisiontrace.pipeline._pending import record_from_compact

    raw = data.encode() if isinstance(data, str) else data
    return record_from_compact(from_json(zlib.decompress(raw)))


def has_surrogate(text: str) -> bool:
    """``text`` holds a lone surrogate (which UTF-8 cannot hold)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def checked_text(value: Any) -> Any:
    """``value``; ValueError if it is text that cannot be stored as UTF-8."""
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
    "CURRENT",
    "RECORD_JSON",
    "RECORD_ZLIB",
    "SPANS",
    "UnknownForm",
    "checked_text",
    "decode",
    "dumps",
    "encode",
    "encoded",
    "has_surrogate",
    "json_bytes",
    "valid_text",
]
