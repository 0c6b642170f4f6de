"""What the processor's span-processor side hands to its writer thread.

``on_start`` and ``on_end`` run inside the agent's ``span.start()``/``span.end()``, so
they queue objects as they are (SDK spans, or the small records below, which hold SDK
spans too) and the writer decodes them with :func:`span_data` and
:func:`abandoned_spans`, off the agent's thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, StatusCode

from decisiontrace.pipeline._tokens import Tokens
from decisiontrace.spanmodel import _decode
from decisiontrace.spanmodel import semconv as sc


def attributes_of(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a plain dict.

    ``span.attributes`` is a read-only proxy over the SDK's ``BoundedAttributes``, whose
    every lookup runs Python code (~0.7 µs); decoding a decision does about twenty. Once
    a span has ended its attributes no longer change, so the writer reads the dict
    underneath when the SDK has one, and copies through the public API otherwise.
    """
    return plain(getattr(span, "_attributes", None) or span.attributes)


def plain(attributes: Any) -> dict[str, Any]:
    """A plain dict of an SDK attributes mapping (``BoundedAttributes`` or a proxy)."""
    inner = getattr(attributes, "_dict", None)
    if type(inner) is dict:
        return inner
    return dict(attributes or {})


def span_data(span: ReadableSpan) -> _decode.SpanData:
    """An SDK span in the source-neutral form the codec decodes.

    The writer calls this for every span it takes in, so it builds the span form
    positionally (keywords cost twice as much here), and for the SDK's own span classes
    reads their fields directly rather than through a property each (a third of the
    time); other span types, or an SDK whose fields are named otherwise, go through
    the public properties.
    """
    if type(span) in _SDK_SPANS:
        try:
            return _sdk_span_data(span)
        except AttributeError:  # expected: an SDK release with other private names
            pass
    context = span.context
    assert context is not None  # an SDK span always has one
    parent = span.parent
    return _decode.SpanData(
        context.trace_id,
        context.span_id,
        None if parent is None else parent.span_id,
        span.name,
        span.start_time or 0,
        span.end_time,
        attributes_of(span),
        # Decision spans have no events: skip building the SDK's event tuple for them.
        [
            _decode.EventData(event.name, event.timestamp, plain(event.attributes))
            for event in span.events
        ]
        if getattr(span, "_events", True)
        else (),
        span.status.status_code is StatusCode.ERROR,
        _service_name(span.resource),
    )


#: The SDK's span classes, whose fields :func:`_sdk_span_data` reads.
_SDK_SPANS = (Span, ReadableSpan)


def _sdk_span_data(span: Any) -> _decode.SpanData:
    """:func:`span_data` of an SDK span, read from its fields (the properties return
    them as they are, except ``attributes`` and ``events``: see :func:`attributes_of`)."""
    context = span._context
    parent = span._parent
    events = span._events
    attributes = span._attributes
    last_service = _last_service
    if type(context) is not SpanContext or not (parent is None or type(parent) is SpanContext):
        raise AttributeError("not the API's span contexts")  # the public path, then
    return _decode.SpanData(
        context[0],  # SpanContext is a tuple: its trace_id and span_id properties read it
        context[1],
        None if parent is None else parent[1],
        span._name,
        span._start_time or 0,
        span._end_time,
        # Emptiness read from the containers underneath: the SDK's __len__ is Python.
        plain(attributes) if type(attributes) is not BoundedAttributes else attributes._dict,
        [_decode.EventData(e.name, e.timestamp, plain(e.attributes)) for e in events]
        if (events._dq if type(events) is BoundedList else events)  # type: ignore[attr-defined]
        else (),
        span._status.status_code is StatusCode.ERROR,
        last_service[1] if span._resource is last_service[0] else _service_name(span._resource),
    )


#: The last resource seen and its service name: a process has one or a few resources,
#: and reading the name through the resource's attribute mapping costs more than the
#: rest of a span's conversion. One tuple, replaced whole: safe across writer threads.
_last_service: tuple[Resource | None, str | None] = (None, None)


def _service_name(resource: Resource | None) -> str | None:
    global _last_service
    last, name = _last_service
    if resource is last and resource is not None:
        return name
    value = resource.attributes.get(SERVICE_NAME) if resource is not None else None
    name = value if isinstance(value, str) else None
    _last_service = (resource, name)
    return name


class Abandoned:
    """A run span still open that is to be stored now, with the given status and reason
    (``stuck``: too many open runs or ``run_timeout``; ``cancelled``: shutdown), and
    the decision spans of its run still open. Holds the SDK spans as they are."""

    __slots__ = ("decisions", "end_ns", "reason", "run", "status")

    def __init__(self, run: Span, decisions: Sequence[Span], status: str, reason: str) -> None:
        self.run = run
        self.decisions = decisions
        self.status = status
        self.reason = reason
        self.end_ns = time.time_ns()


def abandoned_spans(item: Abandoned) -> list[_decode.SpanData]:
    """The decision spans and then the run span of an abandoned run, as the assembler
    takes them: the run ended now with its status and reason, and not waiting for more
    decisions; attributes copied, as spans still open may change on the agent's thread."""
    spans = []
    for decision in item.decisions:
        snapshot = span_data(decision)
        snapshot.attributes = dict(snapshot.attributes)
        spans.append(snapshot)
    run = span_data(item.run)
    run.end_ns = item.end_ns
    attributes = dict(run.attributes)
    attributes[sc.RUN_STATUS] = item.status
    attributes[sc.RUN_END_REASON] = item.reason
    attributes.pop(sc.RUN_DECISION_COUNT, None)
    run.attributes = attributes
    spans.append(run)
    return spans


class OpenRun:
    """A span already decoded to be assembled again (not journaled): a run a compat
    storage amended after the processor had it."""

    __slots__ = ("data",)

    def __init__(self, data: _decode.SpanData) -> None:
        self.data = data


class Started:
    """A run or decision span that just started, for the journal."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span


class Received:
    """An ended span that arrived decoded already (the ingest service's OTLP spans)."""

    __slots__ = ("data",)

    def __init__(self, data: _decode.SpanData) -> None:
        self.data = data


class PassMark:
    """Set once the writer pass that takes it has taken everything queued before it in
    and written what was ready; ``store_failing`` then tells whether the store took it."""

    __slots__ = ("done", "store_failing")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.store_failing = False


__all__ = [
    "Abandoned",
    "OpenRun",
    "PassMark",
    "Received",
    "Started",
    "Tokens",
    "abandoned_spans",
    "attributes_of",
    "plain",
    "span_data",
]
