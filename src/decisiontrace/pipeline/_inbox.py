"""What the processor's span-processor side hands to its writer thread.

``on_end`` runs inside the agent's ``span.end()``, so it queues objects as they are
(SDK spans, or the small records below) and the writer decodes them with
:func:`span_data`, off the agent's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan, Span
from opentelemetry.trace import StatusCode

from decisiontrace.pipeline._tokens import Tokens
from decisiontrace.spanmodel import _decode


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
    """An SDK span in the source-neutral form the codec decodes."""
    context = span.context
    assert context is not None  # an SDK span always has one
    parent = span.parent
    return _decode.SpanData(
        trace_id=context.trace_id,
        span_id=context.span_id,
        parent_id=parent.span_id if parent is not None else None,
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time,
        attributes=attributes_of(span),
        # Decision spans have no events: skip building the SDK's event tuple for them.
        events=[
            _decode.EventData(event.name, event.timestamp, plain(event.attributes))
            for event in span.events
        ]
        if getattr(span, "_events", True)
        else (),
        error=span.status.status_code is StatusCode.ERROR,
        service_name=_service_name(span),
    )


def _service_name(span: ReadableSpan) -> str | None:
    resource = span.resource
    name = resource.attributes.get(SERVICE_NAME) if resource is not None else None
    return name if isinstance(name, str) else None


class OpenRun:
    """A run span that never ended, captured with its final status (not an SDK span)."""

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


class TakeOrphans:
    """Store the decisions whose run span has not arrived as ``stuck`` runs now (the
    ingest service shutting down: what it holds is stored)."""

    __slots__ = ()


__all__ = [
    "OpenRun",
    "PassMark",
    "Received",
    "Started",
    "TakeOrphans",
    "Tokens",
    "attributes_of",
    "plain",
    "span_data",
]
