"""Attributes of ended spans held compactly while their run stays open.

An open run keeps every decision it made until it ends: the tracker for its live view,
the processor until it assembles the run. As a dict of ~15 attributes inside an object,
a decision costs ~500 bytes and two or three objects the garbage collector tracks; a
full collection scans them all, so in a run of 100,000 decisions each collection took
longer than the last and the cost per decision grew with the run's length.

Packed, a decision is one tuple: its attribute values, then the layout (the keys,
one tuple shared by every span with the same keys) and whatever the holder adds
(times, ids). Its items are atoms (str, int, float, bool, None, tuples of those), so
the collector stops tracking it after its first collection: a long open run costs a
full collection nothing per decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from decisiontrace.spanmodel._decode import SpanData

#: A run's first decisions are kept as they are, those beyond packed: packing and
#: reading back cost ~1-2 µs a decision, which pays only once a run is long.
PACK_AFTER = 64

#: A packed span: its attribute values, its layout, then the holder's fields.
Packed = tuple[Any, ...]
#: Attribute keys in order: one tuple per distinct set of keys, shared.
Layout = tuple[str, ...]

#: Layouts seen, and where their first span had list values (converted to tuples: a
#: list is an object the collector tracks, and keeps its tuple tracked too). A program
#: has a handful of layouts; beyond the bound, layouts are not shared (still correct).
_LAYOUTS: dict[Layout, tuple[Layout, tuple[int, ...]]] = {}
_MAX_LAYOUTS = 1024


def pack(attributes: Mapping[str, Any], *fields: Any) -> Packed:
    """``attributes`` packed, followed by ``fields`` (atoms, for the tuple to be untracked).

    Read back with :func:`attributes_of` and :func:`fields_of`; a list value comes
    back as a tuple (what the OpenTelemetry SDK makes of it too, and what decoding
    reads alike).
    """
    keys = tuple(attributes)
    known = _LAYOUTS.get(keys)
    if known is None:
        known = keys, tuple(i for i, v in enumerate(attributes.values()) if type(v) is list)
        if len(_LAYOUTS) < _MAX_LAYOUTS:
            known = _LAYOUTS.setdefault(keys, known)
    layout, lists = known
    if lists:
        values = list(attributes.values())
        for index in lists:
            value = values[index]
            if type(value) is list:
                values[index] = tuple(value)
        return (*values, layout, *fields)
    return (*attributes.values(), layout, *fields)


def attributes_of(packed: Packed, field_count: int) -> dict[str, Any]:
    """The attributes of a span packed with ``field_count`` fields, as a new dict."""
    layout: Layout = packed[-1 - field_count]
    return dict(zip(layout, packed, strict=False))  # the layout is the shorter


def fields_of(packed: Packed, field_count: int) -> tuple[Any, ...]:
    """The ``field_count`` fields a span was packed with."""
    return packed[-field_count:]


#: The fields of a packed span (:func:`pack_span`), after its attributes.
_SPAN_FIELDS = 4


def pack_span(span: SpanData) -> Packed:
    """An ended span packed with what assembling its run reads: ids, times, attributes
    (not its name, parent or events, which no run record takes from a decision span)."""
    return pack(span.attributes, span.trace_id, span.span_id, span.start_ns, span.end_ns)


def unpack_span(packed: Packed) -> SpanData:
    """A span packed by :func:`pack_span`, without its name, parent and events."""
    trace_id, span_id, start_ns, end_ns = fields_of(packed, _SPAN_FIELDS)
    attributes = attributes_of(packed, _SPAN_FIELDS)
    return SpanData(trace_id, span_id, None, "", start_ns, end_ns, attributes)


__all__ = [
    "PACK_AFTER",
    "Layout",
    "Packed",
    "attributes_of",
    "fields_of",
    "pack",
    "pack_span",
    "unpack_span",
]
