"""JSON text for arbitrary agent values: never raising, never consuming, always bounded.

Agent code hands us whatever it has: results with datetimes, bytes, NaN, cycles, objects
whose ``__repr__`` raises or hangs, 10 MB strings, and values that must not be touched
at all: an ``openai`` stream, a generator, an open file, an HTTP response, a lazy query.
Span attributes and stored records need valid JSON of a bounded size, so every
structured value goes through :func:`dumps`.

The rule, in one place: recording reads only plain data. Containers of the built-in
types (dict, list, tuple, set and their subclasses, read through the built-in methods so
an override never runs), scalars, dates, enums, bytes, pydantic models and dataclasses
(their stored fields) are recorded by value. Anything else is recorded by
:func:`describe_without_reading`: its type, and its length for the few built-in types
where that is cheap and safe. Such values are never iterated, read, awaited, closed,
``repr``-ed or mutated, so the caller gets them exactly as they were.
"""

from __future__ import annotations

import array
import base64
import collections
import dataclasses
import json
import math
import sys
from collections.abc import Sized
from datetime import date, datetime, time
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

from pydantic_core import from_json, to_json

if TYPE_CHECKING:
    from pydantic import BaseModel

# pydantic-core imports Python modules (pathlib) on its first encoding. pydantic used to
# import them with `import decisiontrace`; now that it loads later, the first encoding
# happens here, so an agent's first recording imports nothing (a process may lose the
# right to read its Python install after start-up, e.g. by switching user).
to_json(None)

#: Longest JSON text kept for one value; longer text is replaced by a truncation marker.
DEFAULT_MAX_CHARS = 64 * 1024
#: Longest single string kept inside a value before it is cut (with a marker suffix).
MAX_STRING_CHARS = 16 * 1024
MAX_DEPTH = 32
TRUNCATED_KEY = "_decisiontrace_truncated"

_encode_fast = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=True
).encode
_isfinite = math.isfinite
# Exact types pydantic-core encodes as JSON without calling into them (dates as ISO text).
_SCALARS = frozenset((str, int, bool, type(None), datetime, date, time))
_dict_items = dict.items
_list_iter = list.__iter__
_tuple_iter = tuple.__iter__
_set_iter = set.__iter__
_frozenset_iter = frozenset.__iter__
# Built-in types whose len() is a stored count: cheap, and it runs no user code.
_SIZED: frozenset[type] = frozenset(
    (
        collections.deque,
        range,
        array.array,
        type({}.keys()),
        type({}.values()),
        type({}.items()),
    )
)


def dumps(value: Any, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, str | None]:
    """Encode ``value`` as compact JSON text, without consuming any part of it.

    Returns:
        ``(text, problem)``: ``text`` is always valid JSON of at most about
        ``max_chars`` characters; ``problem`` says what had to be changed (sanitized,
        truncated), or is None when the value was encoded as given.
    """
    problem: str | None = None
    text: str | None = None
    budget = [max_chars]
    if _is_plain(value, 0, budget):
        # Exact built-in types with finite floats only, so pydantic-core's encoder (~3x
        # faster than json's on the agent's thread) sees nothing it could iterate or
        # call into, and writes valid JSON.
        try:
            text = to_json(value).decode()
        except Exception:  # expected: the agent's value is not plain JSON
            text = _strict(value)
    if text is None:
        text, problem = _sanitized(value, max_chars)
    if len(text) > max_chars:
        marker = {TRUNCATED_KEY: True, "original_chars": len(text), "preview": text[:1024]}
        text = _encode_fast(marker)
        problem = f"value was larger than {max_chars} characters and was truncated"
    return text, problem


def loads(text: str) -> Any:
    """The value of JSON text this module wrote. pydantic-core's parser (about twice as
    fast as json's) cannot read a str holding a lone surrogate, which agent text may carry
    and ``dumps`` keeps; json's parser reads it. Raises ValueError on text that is not JSON.
    """
    try:
        return from_json(text)
    except (ValueError, TypeError):
        return json.loads(text)


def is_plain(value: Any, max_chars: int = DEFAULT_MAX_CHARS) -> bool:
    """Whether ``value`` is made of exact built-in types only (read without user code)."""
    return _is_plain(value, 0, [max_chars])


def _is_plain(value: Any, depth: int, budget: list[int]) -> bool:
    """Whether ``value`` encodes as it stands: exact built-in types, str keys, finite floats.

    ``budget`` bounds the walk (a shared structure can be exponentially larger than its
    memory); a value that exhausts it goes to the sanitizer, which cuts it.
    """
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is float:
        return _isfinite(value)
    if depth >= MAX_DEPTH:
        return False
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _is_plain(item, depth + 1, budget):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110 (a plain loop is faster than all() here)
            if not _is_plain(item, depth + 1, budget):
                return False
        return True
    return False


def _strict(value: Any) -> str | None:
    """JSON text by the standard encoder, or None if the value is not plain JSON."""
    try:
        return _encode_fast(value)
    except (TypeError, ValueError, RecursionError, OverflowError):
        return None


def _sanitized(value: Any, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str, str]:
    """JSON text of a sanitized copy, with what had to change."""
    try:
        return (
            _encode_fast(sanitize(value, _budget=[max_chars])),
            "value is not plain JSON; other values were recorded as descriptions",
        )
    except Exception:  # expected: a hostile value beat the sanitizer; never raise
        return (
            _encode_fast({TRUNCATED_KEY: True, "reason": "unencodable value"}),
            "value could not be encoded and was dropped",
        )


def sanitize(
    value: Any,
    _depth: int = 0,
    _seen: frozenset[int] = frozenset(),
    _budget: list[int] | None = None,
) -> Any:
    """A JSON-compatible copy of ``value`` that reads only plain data (see the module doc).

    Dict keys become str, floats finite, cycles a ``"<cycle>"`` marker; values that are
    not plain data become :func:`describe_without_reading` text.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, Enum):
        value = value.__dict__.get("_value_")  # the stored value; .value may be overridden
    if isinstance(value, str):
        return _cut(str.__str__(value))
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        number = float.__float__(value)
        return number if _isfinite(number) else repr(number)
    if _depth >= MAX_DEPTH:
        return "<max depth reached>"
    if _budget is not None:
        _budget[0] -= 1
        if _budget[0] < 0:
            return "<cut>"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        raw = bytes(memoryview(value)[: MAX_STRING_CHARS * 4])  # the buffer, no overrides
        try:
            return _cut(raw.decode("utf-8"))
        except UnicodeDecodeError:
            return "base64:" + _cut(base64.b64encode(raw[:MAX_STRING_CHARS]).decode("ascii"))
    marker = id(value)
    if marker in _seen:
        return "<cycle>"
    seen = _seen | {marker}
    depth = _depth + 1
    # The built-in methods read the containers' own storage, so a subclass's overridden
    # (perhaps lazy or consuming) iteration never runs.
    if isinstance(value, dict):
        return {_key(k): sanitize(v, depth, seen, _budget) for k, v in list(_dict_items(value))}
    if isinstance(value, list):
        return [sanitize(v, depth, seen, _budget) for v in list(_list_iter(value))]
    if isinstance(value, tuple):
        return [sanitize(v, depth, seen, _budget) for v in _tuple_iter(value)]
    if isinstance(value, set):
        return [sanitize(v, depth, seen, _budget) for v in list(_set_iter(value))]
    if isinstance(value, frozenset):
        return [sanitize(v, depth, seen, _budget) for v in _frozenset_iter(value)]
    if _is_pydantic_model(value):
        return sanitize(_model_fields(value), depth, seen, _budget)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = _dataclass_fields(value)
        if fields is not None:
            return sanitize(fields, depth, seen, _budget)
    return describe_without_reading(value)


def _is_pydantic_model(value: Any) -> bool:
    """Whether ``value`` is a pydantic model. pydantic is not imported for the question
    (recording stays free of it): no model exists before its module ``pydantic.main`` is."""
    pydantic_main = sys.modules.get("pydantic.main")
    return pydantic_main is not None and isinstance(value, pydantic_main.BaseModel)


def _model_fields(model: BaseModel) -> dict[str, Any]:
    """A pydantic model's stored field values (no serializers or properties run)."""
    stored = object.__getattribute__(model, "__dict__")
    names = type(model).model_fields
    fields = {name: stored[name] for name in names if name in stored}
    extra = getattr(model, "__pydantic_extra__", None)
    if type(extra) is dict:
        fields.update(extra)
    return fields


def _dataclass_fields(value: Any) -> dict[str, Any] | None:
    try:
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    except Exception:  # expected: the agent's dataclass, a field that raises
        return None


def describe_without_reading(value: Any) -> str:
    """A short description of a value recording must not read, e.g. ``<openai.Stream>``.

    It names the value's type and, for the few built-in types whose length is a stored
    count (deque, range, array, dict views), its length. It never iterates, reads,
    awaits, closes or ``repr``-s the value, and runs none of its code, so a stream,
    generator, file or lazy object reaches the agent's caller untouched. Never raises.
    """
    try:
        kind = type(value)
        module = kind.__module__
        name = kind.__qualname__
        if type(module) is not str or type(name) is not str:
            return "<object>"
        if module != "builtins":
            name = f"{module}.{name}"
        if kind in _SIZED:  # exact types: a subclass may override __len__
            return f"<{name} of length {len(cast(Sized, value))}>"
        return f"<{name}>"
    except Exception:  # expected: the agent's value, hostile
        return "<object>"


def safe_repr(value: Any) -> str:
    """``repr(value)``, cut to size, or a placeholder when repr itself raises."""
    try:
        return _cut(repr(value))
    except Exception:  # expected: the agent's value, whose repr raised
        try:
            return f"<unrepresentable {type(value).__qualname__}>"
        except Exception:  # expected: its type's name too
            return "<unrepresentable>"


def safe_str(value: Any) -> str:
    """``str(value)`` cut to size, falling back to :func:`safe_repr`."""
    if isinstance(value, str):
        return _cut(value)
    try:
        return _cut(str(value))
    except Exception:  # expected: the agent's value, whose str raised
        return safe_repr(value)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return _cut(str.__str__(key))
    if key is None or isinstance(key, bool | int | float | Enum):
        return safe_str(key)
    return describe_without_reading(key)


def _cut(text: str) -> str:
    if len(text) <= MAX_STRING_CHARS:
        return text
    return f"{text[:MAX_STRING_CHARS]}…[truncated {len(text) - MAX_STRING_CHARS} chars]"
