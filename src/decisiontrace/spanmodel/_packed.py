"""Attributes of ended spans held compactly while their run stays open.

An open run keeps every decision it made until it ends: the tracker for its live view,
the processor until it assembles the run. As a dict of ~15 attributes inside an object,
a decision costs ~500 bytes and two or three objects the garbage collector tracks; a
full collection scans them all, so in a run of 100,000 decisions each collection took
longer than the last and the cost per decision grew with the run's length.

Packed, a decision is one tuple: its attribute values, then the layout (the keys,
one tuple shared by every span with the same keys) and whatever the holder adds
(times, ids). Its items are atoms (str, int, float, bool, None, tuples of those), so
the collector stops tracking it after its first collection.

Untracked tuples still cost the collector: every one of them and its strings and ints
are small objects in the same memory pools as the agent's short-lived ones, so the
young collections got slower as an open run grew (a gen-0 collection ~100 µs at the
start of a run of 50,000 decisions, ~150-260 µs at its end, measured with
``benchmarks/gc_long_run.py``), and the dicts holding them are scanned entry by entry
in every full collection. A :class:`PackedLog` therefore keeps packed spans in chunks
of :data:`CHUNK`, each frozen into one ``bytes`` object (``marshal``, ~0.4 µs a
decision): a long open run holds a few hundred objects, none of which the collector
tracks, instead of several per decision.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterator, Mapping
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


#: Packed spans per frozen chunk of a :class:`PackedLog`.
CHUNK = 256

#: A chunk of a :class:`PackedLog`: its packed spans frozen into bytes, or as a tuple
#: when a value is one ``marshal`` cannot write (a subclass of str, say).
Chunk = bytes | tuple[Packed, ...]
#: What :meth:`PackedLog.snapshot` takes: the frozen chunks, then the latest spans.
Snapshot = tuple[tuple[Chunk, ...], tuple[Packed, ...]]


class PackedLog:
    """Packed spans in the order they came: the latest in a list, the others frozen in
    chunks of :data:`CHUNK` (see the module docstring for why).

    Not thread-safe: its holder appends and snapshots under its own lock (the tracker's
    run) or on one thread (the processor's writer). Reading a snapshot
    (:func:`unpacked`) needs no lock: chunks never change once frozen.
    """

    __slots__ = ("chunks", "latest")

    def __init__(self) -> None:
        self.chunks: list[Chunk] = []
        self.latest: list[Packed] = []

    def __len__(self) -> int:
        return len(self.chunks) * CHUNK + len(self.latest)

    def append(self, packed: Packed) -> None:
        """Keep ``packed`` (a tuple of atoms, see :func:`pack`)."""
        latest = self.latest
        latest.append(packed)
        if len(latest) >= CHUNK:
            self.chunks.append(_frozen(tuple(latest)))
            self.latest = []

    def snapshot(self) -> Snapshot:
        """What is kept now, cheaply (take it under the holder's lock, read it outside)."""
        return tuple(self.chunks), tuple(self.latest)


def unpacked(snapshot: Snapshot) -> Iterator[Packed]:
    """The packed spans of a :meth:`PackedLog.snapshot`, in the order they came."""
    chunks, latest = snapshot
    for chunk in chunks:
        if isinstance(chunk, bytes):
            chunk = marshal.loads(chunk)
        yield from chunk
    yield from latest


def _frozen(chunk: tuple[Packed, ...]) -> Chunk:
    try:
        return marshal.dumps(chunk)
    except ValueError:  # expected: a value marshal cannot write; kept as it is
        return chunk


def attributes_of(packed: Packed, field_count: int) -> dict[str, Any]:
    """The attributes of a span packed with ``field_count`` fields, as a new dict."""
    layout: Layout = packed[-1 - field_count]
    return dict(zip(layout, packed, strict=False))  # the layout is the shorter


def fields_of(packed: Packed, field_count: int) -> tuple[Any, ...]:
    """The ``field_count`` fields a span was packed with."""
    return packed[-field_count:]


#: The fields of a packed span (:func:`pack_span`), after its attributes: trace id,
#: span id, start and end time.
SPAN_FIELDS = 4


def pack_span(span: SpanData) -> Packed:
    """An ended span packed with what assembling its run reads: ids, times, attributes
    (not its name, parent or events, which no run record takes from a decision span)."""
    return pack(span.attributes, span.trace_id, span.span_id, span.start_ns, span.end_ns)


def unpack_span(packed: Packed) -> SpanData:
    """A span packed by :func:`pack_span`, without its name, parent and events."""
    trace_id, span_id, start_ns, end_ns = fields_of(packed, SPAN_FIELDS)
    attributes = attributes_of(packed, SPAN_FIELDS)
    return SpanData(trace_id, span_id, None, "", start_ns, end_ns, attributes)


__all__ = [
    "CHUNK",
    "PACK_AFTER",
    "SPAN_FIELDS",
    "Chunk",
    "Layout",
    "Packed",
    "PackedLog",
    "Snapshot",
    "attributes_of",
    "fields_of",
    "pack",
    "pack_span",
    "unpack_span",
    "unpacked",
]
