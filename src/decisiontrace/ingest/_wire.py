"""OTLP/protobuf trace requests read with message classes that keep attributes as bytes.

The generated OTLP classes hand every attribute over as a ``KeyValue`` and an
``AnyValue`` Python object; building the two and asking which value is set costs about
a microsecond an attribute, twenty for a decision span, which made the ingest service
half as fast per core as the processor in the agent's process. The classes here are
wire-compatible with ``ExportTraceServiceRequest`` but declare only the fields the
assembly reads, and declare each attribute as the bytes of its ``KeyValue``: protobuf's
C parser still checks the request's structure, and :func:`read_attributes` reads the
attributes we keep from those bytes.

What is kept: the ``decisiontrace.*`` attributes runs are decoded from (all but
:data:`UNREAD_KEYS`) and the LLM token counts (:data:`TOKEN_KEYS`). Values in the form
every OTLP encoder writes (one field per ``AnyValue``) are read here; anything else (a
key-value list, fields repeated or out of order) goes through the generated classes,
so the values are those protobuf itself reads (``tests/ingest/test_wire.py`` checks
both against each other). Reading bytes in Python costs about what the generated
classes cost, so attributes already read are remembered by their bytes (most of an
agent's repeat: span kinds, run ids, node and option ids, options, outcomes); a
look-up is a tenth of a read; ours that are not read (option ids and counts) are
remembered as skipped. Values are immutable (arrays are tuples, as in the SDK),
so spans can share them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any, Final

from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message_factory,
)
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from decisiontrace._internal.memo import remember
from decisiontrace.spanmodel import semconv as sc

#: Keys of LLM token counts, read on spans that are not ours (see ``_tokens``).
TOKEN_KEYS: Final = frozenset(
    {
        sc.GEN_AI_USAGE_INPUT_TOKENS,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS,
        sc.GEN_AI_USAGE_PROMPT_TOKENS,
        sc.GEN_AI_USAGE_COMPLETION_TOKENS,
        sc.LLM_TOKEN_COUNT_PROMPT,
        sc.LLM_TOKEN_COUNT_COMPLETION,
    }
)
#: Attributes of ours that no record is built from: counts and ids the tracker derives
#: from what it records (the options JSON holds the option ids; a run's totals are
#: summed from its decisions). Left out like other spans' attributes
#: (``tests/ingest/test_wire.py`` checks that records do not change without them).
UNREAD_KEYS: Final = frozenset(
    {
        sc.DECISION_OPTION_IDS,
        sc.DECISION_OPTION_COUNT,
        sc.DECISION_CHOSEN_CONFIDENCE,
        sc.RUN_SUCCESS_COUNT,
        sc.RUN_FAILURE_COUNT,
        sc.RUN_TOTAL_TOKENS,
        sc.RUN_LLM_TOKENS,
        sc.RUN_PROBLEM_COUNT,
        sc.EXECUTION_ID,
        sc.STREAM_ID,
        sc.OUTCOME_TIME,
    }
)
_OURS_TEXT: Final = sc.PREFIX + "."
_OURS: Final = _OURS_TEXT.encode()

# --- the message classes -----------------------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto
# (number, name, type, repeated, message type) of the fields each message declares; the
# numbers are those of opentelemetry/proto/trace/v1/trace.proto and its imports. What is
# not declared (trace state, span kind, links, scopes, flags, dropped counts) is skipped
# by the parser as an unknown field.
_MESSAGES: Final[dict[str, list[tuple[int, str, int, bool, str | None]]]] = {
    "Request": [(1, "resource_spans", _F.TYPE_MESSAGE, True, "ResourceSpans")],
    "ResourceSpans": [
        (1, "resource", _F.TYPE_MESSAGE, False, "Resource"),
        (2, "scope_spans", _F.TYPE_MESSAGE, True, "ScopeSpans"),
    ],
    "Resource": [(1, "attributes", _F.TYPE_BYTES, True, None)],
    "ScopeSpans": [(2, "spans", _F.TYPE_MESSAGE, True, "Span")],
    "Span": [
        (1, "trace_id", _F.TYPE_BYTES, False, None),
        (2, "span_id", _F.TYPE_BYTES, False, None),
        (4, "parent_span_id", _F.TYPE_BYTES, False, None),
        (5, "name", _F.TYPE_STRING, False, None),
        (7, "start_time_unix_nano", _F.TYPE_FIXED64, False, None),
        (8, "end_time_unix_nano", _F.TYPE_FIXED64, False, None),
        (9, "attributes", _F.TYPE_BYTES, True, None),
        (11, "events", _F.TYPE_MESSAGE, True, "Event"),
        (15, "status", _F.TYPE_MESSAGE, False, "Status"),
    ],
    "Event": [
        (1, "time_unix_nano", _F.TYPE_FIXED64, False, None),
        (2, "name", _F.TYPE_STRING, False, None),
        (3, "attributes", _F.TYPE_BYTES, True, None),
    ],
    "Status": [(3, "code", _F.TYPE_INT32, False, None)],
}
_PACKAGE: Final = "decisiontrace.ingest.wire"


def _request_class() -> Any:
    """The ``Request`` class, from a descriptor pool of its own (no name can clash)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="decisiontrace/ingest/wire.proto", package=_PACKAGE, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        message = file.message_type.add(name=name)
        for number, field_name, kind, repeated, type_name in fields:
            field = message.field.add(
                name=field_name,
                number=number,
                type=kind,
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            if type_name is not None:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Request"))


Request: Final = _request_class()


def parse_request(body: bytes) -> Any:
    """A binary ``ExportTraceServiceRequest`` as a :data:`Request`.

    Raises:
        DecodeError: (or RuntimeError from the C parser) the body is not such a message.
    """
    request = Request()
    request.ParseFromString(body)
    return request


# --- attribute bytes -----------------------------------------------------------------------

_UNSET: Final = object()
_DOUBLE = struct.Struct("<d").unpack_from
_INT64_SPAN = 1 << 64
_INT64_MAX = (1 << 63) - 1
# AnyValue's fields as tags (field number << 3 | wire type).
_STRING, _BOOL, _INT, _DOUBLE_TAG, _ARRAY, _BYTES = 0x0A, 0x10, 0x18, 0x21, 0x2A, 0x3A
#: Keys met so far, as bytes: their text, or None for keys that are not kept. Bounded
#: (emptied when full): the keys of a service's spans are few in practice.
_known_keys: dict[bytes, Any] = {}
_MAX_KNOWN_KEYS = 4096
_NEW: Final = object()
#: Attributes read so far, by their ``KeyValue`` bytes: key and (immutable) value, or
#: :data:`_SKIP` for one of ours that is not read (:data:`UNREAD_KEYS`: option ids and
#: counts repeat as the options do). Bounded in entries and entry size; emptied when full.
_pairs: dict[bytes, tuple[()] | tuple[str, Any]] = {}
_SKIP: Final = ()
_MAX_PAIRS = 4096
_MAX_PAIR_BYTES = 1024
_SCALARS: Final = frozenset({str, int, float, bool, bytes, type(None)})


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it (IndexError if cut short)."""
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ValueError("varint over 10 bytes")


def any_value(buf: bytes, pos: int, end: int) -> Any:
    """The value of the ``AnyValue`` in ``buf[pos:end]`` (``_UNSET`` if none is set).

    Strings, booleans, integers, doubles, bytes and arrays of them, each the only field
    of its message as encoders write them, are read here; anything else by protobuf.
    """
    if pos >= end:
        return _UNSET
    tag = buf[pos]
    if tag in (_STRING, _ARRAY, _BYTES):
        length = buf[pos + 1]
        start = pos + 2
        if length >= 0x80:
            length, start = _varint(buf, pos + 1)
        if start + length == end:
            if tag == _STRING:
                return buf[start:end].decode()
            if tag == _BYTES:
                return buf[start:end]
            return _array(buf, start, end)
    elif tag in (_BOOL, _INT):
        number, stop = _varint(buf, pos + 1)
        if stop == end:
            if tag == _BOOL:
                return number != 0
            number &= _INT64_SPAN - 1
            return number - _INT64_SPAN if number > _INT64_MAX else number
    elif tag == _DOUBLE_TAG and pos + 9 == end:
        return _DOUBLE(buf, pos + 1)[0]
    return _by_protobuf(buf[pos:end])


def _array(buf: bytes, start: int, end: int) -> tuple[Any, ...]:
    values = []
    pos = start
    while pos < end:
        if buf[pos] != 0x0A:  # not ArrayValue.values: let protobuf read the whole array
            return tuple(_by_protobuf(b"\x2a" + _length(end - start) + buf[start:end]))
        length, item = _varint(buf, pos + 1)
        pos = item + length
        if pos > end:
            raise ValueError("array element runs past its array")
        value = any_value(buf, item, pos)
        values.append(None if value is _UNSET else value)
    return tuple(values)


def _length(number: int) -> bytes:
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)


def _by_protobuf(raw: bytes) -> Any:
    """An ``AnyValue``'s bytes read by protobuf (the forms the fast path leaves alone)."""
    message = AnyValue()
    try:
        message.ParseFromString(raw)
    except (DecodeError, RuntimeError) as error:
        raise ValueError(f"an attribute value is not a valid AnyValue: {error}") from None
    return _UNSET if message.WhichOneof("value") is None else _message_value(message)


def _message_value(any_value: Any) -> Any:
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":  # a tuple, as the SDK keeps it: values are shared
        return tuple(_message_value(v) for v in any_value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _message_value(kv.value) for kv in any_value.kvlist_value.values}
    return getattr(any_value, which)


def read_attributes(key_values: Iterable[bytes]) -> dict[str, Any]:
    """The ``decisiontrace.*`` and token-count attributes among ``KeyValue`` bytes.

    Attributes with no value set are left out, as is every other key. Later duplicates
    win, as in a protobuf map.

    Raises:
        ValueError: a kept attribute is not a valid ``KeyValue`` (or not UTF-8).
    """
    result: dict[str, Any] = {}
    known = _pairs
    for kv in key_values:
        pair = known.get(kv)  # an attribute met before: the common case
        if pair is None:
            pair = _read_pair(kv)
            if pair is None:
                continue
        elif not pair:  # _SKIP
            continue
        result[pair[0]] = pair[1]
    return result


def _read_pair(kv: bytes) -> tuple[str, Any] | None:
    """One attribute's key and value; None when it is not kept or has no value."""
    try:
        # As every encoder writes it: 0x0A, key length (< 128), key, 0x12, length, value.
        length = kv[1]
        if kv[0] != 0x0A or length >= 0x80:
            raise IndexError
        end = 2 + length
        raw_key = kv[2:end]
        found = _known_keys.get(raw_key, _NEW)
        key = _new_key(raw_key) if found is _NEW else found
        if key is None or end == len(kv):
            if key is None and len(kv) <= _MAX_PAIR_BYTES and raw_key.startswith(_OURS):
                _remember(kv, _SKIP)
            return None  # not read, or no value
        if kv[end] != 0x12:
            raise IndexError
        value_length = kv[end + 1]
        start = end + 2
        if value_length >= 0x80:
            value_length, start = _varint(kv, end + 1)
        if start + value_length != len(kv):
            raise IndexError
        value = any_value(kv, start, len(kv))
    except IndexError:
        pair = _by_protobuf_pair(kv)
        if pair is None:
            return None
        key, value = pair
    except UnicodeDecodeError:
        raise ValueError("an attribute value is not valid UTF-8") from None
    if value is _UNSET:
        return None
    pair = (key, value)
    if len(kv) <= _MAX_PAIR_BYTES and _shareable(value):
        _remember(kv, pair)
    return pair


def _remember(kv: bytes, pair: tuple[()] | tuple[str, Any]) -> None:
    remember(_pairs, _MAX_PAIRS, kv, pair)


def _shareable(value: Any) -> bool:
    """Immutable all the way down, so that spans may share it."""
    if type(value) is tuple:
        return all(type(v) in _SCALARS for v in value)
    return type(value) in _SCALARS


def kept(key: str) -> bool:
    """Whether the service keeps an attribute: ours (but :data:`UNREAD_KEYS`), or an LLM
    token count."""
    if key.startswith(_OURS_TEXT):
        return key not in UNREAD_KEYS
    return key in TOKEN_KEYS


def _new_key(raw_key: bytes) -> str | None:
    """The text of a key not met before, when it is one we keep (None otherwise)."""
    try:
        text = raw_key.decode()
    except UnicodeDecodeError:
        raise ValueError("an attribute key is not valid UTF-8") from None
    key = text if kept(text) else None
    remember(_known_keys, _MAX_KNOWN_KEYS, raw_key, key)
    return key


def _by_protobuf_pair(kv: bytes) -> tuple[str, Any] | None:
    """A ``KeyValue`` in a form the fast path does not read, read by protobuf."""
    message = KeyValue()
    try:
        message.ParseFromString(kv)
    except (DecodeError, RuntimeError) as error:
        raise ValueError(f"an attribute is not a valid KeyValue: {error}") from None
    key = message.key
    if not kept(key):
        return None
    value = _message_value(message.value)
    return key, _UNSET if value is None else value


def service_name(key_values: Iterable[bytes]) -> str | None:
    """``service.name`` among a resource's attributes (None if absent or not a string)."""
    for kv in key_values:  # a few a request: read by protobuf
        message = KeyValue()
        try:
            message.ParseFromString(kv)
        except (DecodeError, RuntimeError) as error:
            raise ValueError(f"a resource attribute is not a valid KeyValue: {error}") from None
        if message.key == "service.name":
            value = message.value
            return value.string_value if value.WhichOneof("value") == "string_value" else None
    return None


__all__ = [
    "TOKEN_KEYS",
    "UNREAD_KEYS",
    "Request",
    "any_value",
    "kept",
    "parse_request",
    "read_attributes",
    "service_name",
]
