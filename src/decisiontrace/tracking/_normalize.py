"""Agent input made recordable: types checked cheaply, bad values fixed up with a warning.

Recording calls never raise into the agent. Every field goes through one of these
helpers on the agent's thread: well-formed input takes a fast path that only checks
types; anything else is converted, and one warning says what was wrong and what was
recorded instead. Structured values become bounded JSON text, redacted.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

from decisiontrace._internal.memo import remember
from decisiontrace.spanmodel._jsonsafe import describe_without_reading, is_plain, safe_str
from decisiontrace.spanmodel._redact import active as active_redactor

# The value rules are the span model's (spanmodel/_values.py); the tracker's checks
# below build on them, and callers keep reaching them here.
from decisiontrace.spanmodel._values import CONFIDENCE_DEFAULTED as CONFIDENCE_DEFAULTED
from decisiontrace.spanmodel._values import DEFAULT_CONFIDENCE as DEFAULT_CONFIDENCE
from decisiontrace.spanmodel._values import EMPTY_LIST as EMPTY_LIST
from decisiontrace.spanmodel._values import EMPTY_OBJECT as EMPTY_OBJECT
from decisiontrace.spanmodel._values import MAX_COUNT as MAX_COUNT
from decisiontrace.spanmodel._values import json_attr as json_attr
from decisiontrace.spanmodel._values import json_object_attr as json_object_attr
from decisiontrace.spanmodel._values import text as text
from decisiontrace.spanmodel._values import warn as warn

logger = logging.getLogger("decisiontrace")

#: The DecisionType values (a str among them needs no converting).
DECISION_TYPES = frozenset(
    (
        "tool_selection",
        "parameter_choice",
        "path_choice",
        "output_format",
        "retry_strategy",
        "delegation",
        "termination",
        "custom",
    )
)


def integer(value: Any, what: str) -> int:
    """An int field: ints pass, numbers are truncated, anything else becomes 0 (warned);
    a count beyond ``±MAX_COUNT`` is recorded as that bound (warned)."""
    if type(value) is int and -MAX_COUNT <= value <= MAX_COUNT:
        return value
    try:
        number = int(value)
    except Exception:  # expected: the agent's value is no number (warned)
        warn(f"{what} should be an int, got {safe_str(value)!r}; recorded as 0")
        return 0
    if -MAX_COUNT <= number <= MAX_COUNT:
        return number
    bound = MAX_COUNT if number > 0 else -MAX_COUNT
    # Not the value itself: a huge int may be too long to even print.
    warn(f"{what} is beyond ±2**53 - 1; recorded as {bound}")
    return bound


def string_list(values: Any, what: str) -> list[str]:
    if values is None:
        return []
    if type(values) is list and all(type(v) is str for v in values):
        return values
    if isinstance(values, str) or not isinstance(values, Sequence | set | frozenset):
        warn(f"{what} should be a list of str; recorded as a one-item list")
        return [text(values, what)]
    return [v if type(v) is str else text(v, what) for v in values]


_STR = str
_FLOAT = float
_isfinite = math.isfinite


def _all_str(values: list[Any]) -> bool:
    # A plain loop: all() over a generator costs more for these short lists.
    for value in values:  # noqa: SIM110
        if type(value) is not _STR:
            return False
    return True


def _option(raw: Any, index: int, where: str) -> dict[str, Any]:
    """One option dict in stored form, from a dict, an Option model or a plain id."""
    if type(raw) is dict:
        # Fast path: a well-formed option dict, the common case on the hot path.
        option_id = raw.get("id")
        description = raw.get("description", "")
        action_type = raw.get("action_type", "unknown")
        params = raw.get("action_params")
        pros = raw.get("pros")
        cons = raw.get("cons")
        confidence = raw.get("confidence")
        if (
            type(option_id) is _STR
            and type(description) is _STR
            and type(action_type) is _STR
            and (params is None or type(params) is dict)
            and (not pros or (type(pros) is list and _all_str(pros)))
            and (not cons or (type(cons) is list and _all_str(cons)))
            and type(confidence) is _FLOAT
            and _isfinite(confidence)
        ):
            return {
                "id": option_id,
                "description": description,
                "action_type": action_type,
                "action_params": {} if params is None else params,
                "pros": pros or [],
                "cons": cons or [],
                "confidence": confidence,
            }
    else:
        if isinstance(raw, str):
            return _option_dict(raw, raw, "unknown", {}, [], [], None)
        dump = getattr(raw, "model_dump", None)
        if callable(dump):
            try:
                raw = dump()
            except Exception:  # expected: the agent's model_dump raised (warned below)
                raw = None
        if not isinstance(raw, Mapping):
            option_id = safe_str(raw)
            warn(f"{where}: option {index} is a {type(raw).__name__}, not a dict or id")
            return _option_dict(option_id, option_id, "unknown", {}, [], [], None)
    option_id = raw.get("id")
    if option_id is None:
        option_id = f"option_{index}"
        warn(f"{where}: option {index} has no 'id'; recorded as {option_id!r}")
    elif type(option_id) is not str:
        option_id = text(option_id, f"{where}: option {index} id")
    confidence = raw.get("confidence")
    if confidence is not None and type(confidence) is not float:
        if isinstance(confidence, int) and not isinstance(confidence, bool):
            confidence = float(confidence)
        else:
            warn(
                f"{where}: option {option_id!r} confidence {safe_str(confidence)!r} is not a "
                "number; recorded as not given"
            )
            confidence = None
    if confidence is not None and not math.isfinite(confidence):
        warn(f"{where}: option {option_id!r} confidence is not finite; recorded as not given")
        confidence = None
    params = raw.get("action_params")
    if params is None:
        params = {}
    elif not isinstance(params, Mapping):
        warn(f"{where}: option {option_id!r} action_params should be a dict")
        params = {"value": params}
    return _option_dict(
        option_id,
        text(raw.get("description", ""), f"{where}: option {option_id!r} description"),
        text(raw.get("action_type", "unknown"), f"{where}: option {option_id!r} action_type"),
        params,
        string_list(raw.get("pros"), f"{where}: option {option_id!r} pros"),
        string_list(raw.get("cons"), f"{where}: option {option_id!r} cons"),
        confidence,
    )


def _option_dict(
    option_id: str,
    description: str,
    action_type: str,
    action_params: Any,
    pros: list[str],
    cons: list[str],
    confidence: float | None,
) -> dict[str, Any]:
    """``confidence`` None: the agent gave none. The schema requires a number, so the
    model's default (0.5) is stored, marked ``confidence_defaulted`` (an extra field the
    schema allows) so that statistics leave it out and displays show it as not given."""
    # Key order is the model's field order, so stored JSON matches a pydantic dump.
    option = {
        "id": option_id,
        "description": description,
        "action_type": action_type,
        "action_params": action_params,
        "pros": pros,
        "cons": cons,
        "confidence": DEFAULT_CONFIDENCE if confidence is None else confidence,
    }
    if confidence is None:
        option[CONFIDENCE_DEFAULTED] = True
    return option


def normalize_options(options: Any, where: str) -> list[dict[str, Any]]:
    """Options in stored form; bad entries are fixed up with one warning each."""
    if options is None:
        return []
    if isinstance(options, Mapping | str):
        warn(f"{where}: options should be a list; recorded as a one-item list")
        options = [options]
    elif isinstance(options, set | frozenset):
        options = list(options)
    elif not isinstance(options, Sequence):
        # An iterator or generator would be consumed by reading it: left alone.
        warn(
            f"{where}: options should be a list, got {describe_without_reading(options)}; "
            "it was not read"
        )
        return []
    return [_option(raw, index, where) for index, raw in enumerate(options)]


def decision_type_value(decision_type: Any, where: str) -> str:
    """The DecisionType value; unknown types become ``custom`` with a warning."""
    value = decision_type.value if isinstance(decision_type, Enum) else decision_type
    if type(value) is str and value in DECISION_TYPES:  # a list would not even hash
        return value
    warn(f"{where}: unknown decision_type {safe_str(decision_type)!r}; recorded as 'custom'")
    return "custom"


class PreparedOptions:
    """An option list normalized once and encoded once per set of redaction rules.

    Decorators with a static option list prepare it at decoration time, so each call
    skips normalizing and encoding it again (a few microseconds a decision).
    """

    __slots__ = ("_json", "_rules", "ids", "options")

    def __init__(self, options: Any, where: str) -> None:
        self.options = normalize_options(options, where)
        self.ids = [option["id"] for option in self.options]
        self._json: str | None = None
        self._rules: object = None

    def json(self) -> str:
        """The options' JSON text, redacted with the rules in force."""
        rules = active_redactor()
        if self._json is None or self._rules is not rules:
            self._json = json_attr(self.options, "options", EMPTY_LIST)
            self._rules = rules
        return self._json


#: Option lists seen lately, by identity: (a private copy of the list, its preparation).
_SEEN_OPTIONS: dict[int, tuple[list[Any], PreparedOptions]] = {}
_MAX_SEEN_OPTIONS = 256


def prepare_options(options: Any, where: str) -> PreparedOptions:
    """``options`` normalized and encoded, once per distinct list an agent passes.

    Agents pass the same list object again and again; normalizing and encoding it costs
    ~6 µs a decision. A list of plain values (exact built-in types) is remembered by
    identity with a deep copy taken when it was first prepared; it is reused while the
    list still equals that copy (a list changed in place, or a new list at a recycled
    address, is prepared afresh).
    """
    if type(options) is list:
        seen = _SEEN_OPTIONS.get(id(options))
        if seen is not None:
            try:
                same = seen[0] == options
            except Exception:  # expected: the agent's value put in since, comparing oddly
                same = False
            if same is True:
                return seen[1]
    prepared = PreparedOptions(options, where)
    if type(options) is list and is_plain(options):
        remember(_SEEN_OPTIONS, _MAX_SEEN_OPTIONS, id(options), (copy.deepcopy(options), prepared))
    return prepared
