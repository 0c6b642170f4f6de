"""Values as span attributes: bounded, redacted JSON text and plain strings.

The encoder's value rules (``docs/span-model.md``, "Values"): structured values become
JSON text of bounded size, redacted; a value that had to change is recorded with one
warning saying what was recorded instead. The tracker's argument checks
(:mod:`decisiontrace.tracking._normalize`) build on these.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from decisiontrace._internal.errors import warn_input
from decisiontrace.spanmodel._jsonsafe import dumps, safe_str
from decisiontrace.spanmodel._redact import redact_json

#: The JSON text of an empty object and list: the encoded defaults, decoded without parsing.
EMPTY_OBJECT = "{}"
EMPTY_LIST = "[]"
#: What the schema's Option.confidence defaults to; stored for options given none.
DEFAULT_CONFIDENCE = 0.5
#: Extra option field marking a confidence the agent did not give.
CONFIDENCE_DEFAULTED = "confidence_defaulted"
#: The largest count (tokens, milliseconds) recorded as given, either sign: 2**53 - 1,
#: which JSON readers keep exactly, OTLP's int64 holds, and sums of counts cannot
#: overflow. Larger counts are recorded as this bound, with a warning.
MAX_COUNT = 2**53 - 1


def warn(message: str) -> None:
    """Warn about bad input to a recording call, once per kind and call site (never
    raise); see :func:`decisiontrace._internal.errors.warn_input`."""
    warn_input(message)


def json_attr(value: Any, what: str, empty: str = EMPTY_OBJECT, *, quiet: bool = False) -> str:
    """JSON text of a structured value for an attribute, warning when it had to change."""
    if value is None:
        return empty
    text, problem = dumps(value)
    if problem is not None and not quiet:
        warn(f"{what}: {problem}")
    return redact_json(text)


def json_object_attr(value: Any, what: str) -> str:
    """Like :func:`json_attr` for fields the schema types as objects (dicts)."""
    if value is None or (type(value) is dict and not value):
        return EMPTY_OBJECT
    if not isinstance(value, Mapping):
        warn(f"{what} should be a dict, got {type(value).__name__}; recorded under 'value'")
        value = {"value": value}
    return json_attr(value, what)


def text(value: Any, what: str) -> str:
    """A str field: str values pass, others are converted with a warning."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    converted = safe_str(value.value if isinstance(value, Enum) else value)
    if not isinstance(value, Enum):
        warn(f"{what} should be a str, got {type(value).__name__}; recorded as {converted!r}")
    return converted


__all__ = [
    "CONFIDENCE_DEFAULTED",
    "DEFAULT_CONFIDENCE",
    "EMPTY_LIST",
    "EMPTY_OBJECT",
    "json_attr",
    "json_object_attr",
    "text",
    "warn",
]
