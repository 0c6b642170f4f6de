"""JSON text for arbitrary agent values, never raising, always valid and bounded.

Agent code hands us whatever it has: results with datetimes, bytes, NaN, cycles, objects
whose ``__repr__`` raises, 10 MB strings. Span attributes and stored records need valid
JSON of a bounded size, so every structured value goes through :func:`dumps`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time
from enum import Enum
from typing import Any

from pydantic_core import to_json

#: Longest JSON text kept for one value; longer text is replaced by a truncation marker.
DEFAULT_MAX_CHARS = 64 * 1024
#: Longest single string kept inside a value before it is cut (with a marker suffix).
MAX_STRING_CHARS = 16 * 1024
MAX_DEPTH = 32
TRUNCATED_KEY = "_decisiontrace_truncated"

_encode_fast = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=True
).encode


class Unserializable(Exception):
    """The value needed sanitizing; carries the sanitized JSON and why."""


def dumps(value: Any, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, str | None]:
    """Encode ``value`` as compact JSON text.

    Returns:
        ``(text, problem)``: ``text`` is always valid JSON of at most about
        ``max_chars`` characters; ``problem`` says what had to be changed (sanitized,
        truncated), or is None when the value was encoded as given.
    """
    problem: str | None = None
    text: str | None
    try:
        # pydantic-core's encoder is ~3x faster than json's on the agent's thread. It
        # writes NaN/Infinity as bare (invalid) literals, so output that may hold one
        # goes through the strict encoder below, which rejects them.
        raw = to_json(value)
        if b"NaN" in raw or b"Infinity" in raw:
            raise ValueError("maybe not finite")
        text = raw.decode()
    except Exception:  # anything the fast encoder refuses gets the careful treatment
        text = _strict(value)
    if text is None:
        text, problem = _sanitized(value)
    if len(text) > max_chars:
        marker = {TRUNCATED_KEY: True, "original_chars": len(text), "preview": text[:1024]}
        text = _encode_fast(marker)
        problem = f"value was larger than {max_chars} characters and was truncated"
    return text, problem


def _strict(value: Any) -> str | None:
    """JSON text by the standard encoder, or None if the value is not plain JSON."""
    try:
        return _encode_fast(value)
    except (TypeError, ValueError, RecursionError, OverflowError):
        return None


def _sanitized(value: Any) -> tuple[str, str]:
    """JSON text of a sanitized copy, with what had to change."""
    try:
        return (
            _encode_fast(sanitize(value)),
            "value is not plain JSON; unsupported parts were converted",
        )
    except Exception:  # the sanitizer itself must never take the caller down
        return (
            _encode_fast({TRUNCATED_KEY: True, "reason": "unencodable value"}),
            "value could not be encoded and was dropped",
        )


def sanitize(value: Any, _depth: int = 0, _seen: frozenset[int] = frozenset()) -> Any:
    """A JSON-compatible copy of ``value`` (dict keys as str, finite numbers, no cycles)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if _depth >= MAX_DEPTH:
        return "<max depth reached>"
    if isinstance(value, Enum):
        return sanitize(value.value, _depth + 1, _seen)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return _cut(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return "base64:" + _cut(base64.b64encode(raw[:MAX_STRING_CHARS]).decode("ascii"))
    marker = id(value)
    if marker in _seen:
        return "<cycle>"
    seen = _seen | {marker}
    if isinstance(value, Mapping):
        return {_key(k): sanitize(v, _depth + 1, seen) for k, v in _items(value)}
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitize(v, _depth + 1, seen) for v in value]
    dump = getattr(value, "model_dump", None)  # pydantic models
    if callable(dump):
        try:
            return sanitize(dump(mode="json"), _depth + 1, seen)
        except Exception:
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        except Exception:
            fields = None
        if fields is not None:
            return sanitize(fields, _depth + 1, seen)
    return safe_repr(value)


def safe_repr(value: Any) -> str:
    """``repr(value)``, cut to size, or a placeholder when repr itself raises."""
    try:
        return _cut(repr(value))
    except Exception:
        try:
            return f"<unrepresentable {type(value).__qualname__}>"
        except Exception:
            return "<unrepresentable>"


def safe_str(value: Any) -> str:
    """``str(value)`` cut to size, falling back to :func:`safe_repr`."""
    if isinstance(value, str):
        return _cut(value)
    try:
        return _cut(str(value))
    except Exception:
        return safe_repr(value)


def _items(mapping: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    try:
        return list(mapping.items())
    except Exception:
        return []


def _key(key: Any) -> str:
    return key if isinstance(key, str) else safe_str(key)


def _cut(text: str) -> str:
    if len(text) <= MAX_STRING_CHARS:
        return text
    return f"{text[:MAX_STRING_CHARS]}…[truncated {len(text) - MAX_STRING_CHARS} chars]"
