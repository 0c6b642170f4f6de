"""OTLP trace requests (protobuf or JSON) in, the processor's inbox items out.

A span source, like ``_inbox.span_data`` for SDK spans and ``_otlp_json`` for OTLP
JSON: it only turns the wire form into :class:`~decisiontrace.spanmodel._decode.SpanData`; runs are
assembled and decoded by the processor's own code. Protobuf requests are read field by
field here (the generated message classes parse them); JSON requests go through
:func:`decisiontrace.export._otlp_json.request_spans`, the reader ``rebuild`` uses.

Spans that are not ours are counted and dropped, except LLM spans under one of our
decision spans, whose token counts are added to that decision: in the same request,
or (:class:`TokenLinks`) in a later one, as exporters that send each span alone do.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from decisiontrace.export import _otlp_json
from decisiontrace.ingest import _wire
from decisiontrace.pipeline._inbox import Received
from decisiontrace.pipeline._tokens import Tokens, attribute_tree, token_usage
from decisiontrace.spanmodel import _decode
from decisiontrace.spanmodel import semconv as sc

_KIND = sc.SPAN_KIND
#: Attribute keys that make a span worth keeping: ours, and LLM token counts.
_WANTED = _wire.TOKEN_KEYS | {_KIND}
_TOKEN_KEYS = _wire.TOKEN_KEYS


class MalformedRequest(ValueError):
    """The request as a whole cannot be read (not OTLP, not protobuf, not JSON)."""


@dataclass
class Decoded:
    """What one request held.

    Attributes:
        items: inbox items for the processor (token counts first, then our spans).
        ours: run, decision and problem spans.
        ignored: spans that are not ours (LLM spans included).
        rejected: spans that could not be read; ``errors`` says why (first few).
    """

    items: list[Received | Tokens] = field(default_factory=list)
    ours: int = 0
    ignored: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < 5:
            self.errors.append(message)


class TokenLinks:
    """LLM token counts waiting for the decision span they ran under to arrive.

    An LLM span ends (and is exported) before the decision span above it; when they
    come in different requests, its count waits here under its parent span, moves up
    when that parent arrives and is not ours, and is taken by the decision. Bounded:
    the oldest waiting counts are forgotten first.
    """

    def __init__(self, max_waiting: int = 10_000) -> None:
        self._waiting: OrderedDict[tuple[int, int], int] = OrderedDict()
        self._max = max_waiting
        self._lock = threading.Lock()

    def wait(self, trace_id: int, parent_id: int, tokens: int) -> None:
        """Keep ``tokens`` for span ``parent_id`` (not arrived yet)."""
        with self._lock:
            key = (trace_id, parent_id)
            self._waiting[key] = self._waiting.get(key, 0) + tokens
            while len(self._waiting) > self._max:
                self._waiting.popitem(last=False)

    def carry(self, spans: Sequence[_decode.SpanData]) -> None:
        """Spans that are not ours arrived: counts waiting for them wait for their parent."""
        if not self._waiting:
            return
        with self._lock:
            for span in spans:
                tokens = self._waiting.pop((span.trace_id, span.span_id), None)
                if tokens is not None and span.parent_id is not None:
                    key = (span.trace_id, span.parent_id)
                    self._waiting[key] = self._waiting.get(key, 0) + tokens

    def take(self, trace_id: int, span_id: int) -> int:
        """The count waiting for this decision span (0 if none)."""
        if not self._waiting:
            return 0
        with self._lock:
            return self._waiting.pop((trace_id, span_id), 0)


def _span(span: Any, service_name: str | None) -> _decode.SpanData:
    """One span of a :data:`_wire.Request` as SpanData (attributes and events only if
    it is ours or counts tokens)."""
    trace_id = span.trace_id
    span_id = span.span_id
    parent_id = span.parent_span_id
    if len(trace_id) != 16 or len(span_id) != 8 or len(parent_id) not in (0, 8):
        raise ValueError(_bad_ids(trace_id, span_id, parent_id))
    attributes = _wire.read_attributes(span.attributes)
    wanted = _KIND in attributes or not _WANTED.isdisjoint(attributes)
    events = span.events if wanted else None
    return _decode.SpanData(
        int.from_bytes(trace_id, "big"),
        int.from_bytes(span_id, "big"),
        int.from_bytes(parent_id, "big") or None,
        span.name,
        span.start_time_unix_nano,
        span.end_time_unix_nano or None,
        attributes if wanted else {},
        [
            _decode.EventData(e.name, e.time_unix_nano, _wire.read_attributes(e.attributes))
            for e in events
        ]
        if events
        else (),
        span.status.code == _otlp_json.STATUS_CODE_ERROR,
        service_name,
    )


def _bad_ids(trace_id: bytes, span_id: bytes, parent_id: bytes) -> str:
    for what, raw, size in (
        ("traceId", trace_id, 16),
        ("spanId", span_id, 8),
        ("parentSpanId", parent_id, 8),
    ):
        if len(raw) != size and (raw or what != "parentSpanId"):
            return f"{what} has {len(raw)} bytes, expected {size}"
    return "bad ids"  # not reached


def from_protobuf(body: bytes, links: TokenLinks | None = None) -> Decoded:
    """Read a binary ``ExportTraceServiceRequest`` (OTLP/HTTP, and gRPC's message bytes).

    Raises:
        MalformedRequest: the body is not such a message.
    """
    try:
        request = _wire.parse_request(body)
    except Exception as error:  # expected: a peer's bad body (DecodeError, C parser's errors)
        raise MalformedRequest(f"not an OTLP protobuf ExportTraceServiceRequest: {error}") from None
    spans: list[_decode.SpanData] = []
    decoded = Decoded()
    for r_index, resource_spans in enumerate(request.resource_spans):
        try:
            service_name = _wire.service_name(resource_spans.resource.attributes)
        except ValueError as error:
            raise MalformedRequest(f"resourceSpans[{r_index}].resource: {error}") from None
        for s_index, scope_spans in enumerate(resource_spans.scope_spans):
            for index, span in enumerate(scope_spans.spans):
                try:
                    spans.append(_span(span, service_name))
                except ValueError as error:
                    decoded.reject(
                        f"resourceSpans[{r_index}].scopeSpans[{s_index}].spans[{index}]: {error}"
                    )
    _sort(spans, decoded, links)
    return decoded


def from_json(document: Any, links: TokenLinks | None = None) -> Decoded:
    """Read a parsed OTLP/JSON ``ExportTraceServiceRequest``.

    Raises:
        MalformedRequest: the document is not such a request.
    """
    decoded = Decoded()
    try:
        _otlp_json.unwrap_request(document)
    except _otlp_json.FieldError as error:
        raise MalformedRequest(str(error)) from None

    def report(error: _otlp_json.FieldError) -> None:
        decoded.reject(str(error))

    spans = list(_otlp_json.request_spans(document, report))
    for span in spans:  # keep what the protobuf reader keeps
        attributes = span.attributes
        span.attributes = {k: v for k, v in attributes.items() if _wire.kept(k)}
        if span.events:
            span.events = [
                _decode.EventData(
                    e.name, e.time_ns, {k: v for k, v in e.attributes.items() if _wire.kept(k)}
                )
                for e in span.events
            ]
    _sort(spans, decoded, links)
    return decoded


def _sort(spans: Sequence[_decode.SpanData], decoded: Decoded, links: TokenLinks | None) -> None:
    """Our spans to the processor, with the token counts of LLM spans.

    Traces with spans of ours in the request get the token rules of ``_tokens`` (one
    home for them). An LLM span of a trace with none of ours here ran under a decision
    that comes in a later request: its count waits in ``links``.
    """
    ours: list[Received] = []
    decisions: list[_decode.SpanData] = []
    others: list[_decode.SpanData] = []
    traced: set[int] = set()
    counting = False  # some span that is not ours has a token count
    for span in spans:
        attributes = span.attributes
        kind = attributes.get(_KIND) if attributes else None
        if kind is not None:
            ours.append(Received(span))
            traced.add(span.trace_id)
            if kind == sc.KIND_DECISION:
                decisions.append(span)
        else:
            decoded.ignored += 1
            others.append(span)
            if attributes and not counting:
                counting = not _TOKEN_KEYS.isdisjoint(attributes)
    if traced and counting:  # without a token count the rules have nothing to count
        # Before the spans: the assembler hands them to the decision's fragment.
        decoded.items.extend(attribute_tree(s for s in spans if s.trace_id in traced))
    if links is not None:
        _link_tokens([s for s in others if s.trace_id not in traced], links)
        links.carry(others)
        for decision in decisions:
            waiting = links.take(decision.trace_id, decision.span_id)
            if waiting:
                decoded.items.append(Tokens(decision.trace_id, decision.span_id, waiting))
    decoded.items.extend(ours)
    decoded.ours = len(ours)


def _link_tokens(spans: Sequence[_decode.SpanData], links: TokenLinks) -> None:
    """Token counts of LLM spans whose decision has not arrived: wait above the request.

    A token span with another token span under it (one call reported at two layers)
    counts once, as ``_tokens`` rule (a) says.
    """
    by_key = {(s.trace_id, s.span_id): s for s in spans}
    llm = {key: tokens for key, s in by_key.items() if (tokens := token_usage(s.attributes))}
    if not llm:
        return
    covered: set[tuple[int, int]] = set()
    exits: dict[tuple[int, int], tuple[int, int]] = {}
    for key in llm:
        span = by_key[key]
        parent = span.parent_id
        for _ in range(256):
            if parent is None:
                break
            above = (key[0], parent)
            if above in llm:
                covered.add(above)
            node = by_key.get(above)
            if node is None:
                exits[key] = above  # the chain leaves the request here
                break
            parent = node.parent_id
    for key, tokens in llm.items():
        exit_key = exits.get(key)
        if key not in covered and exit_key is not None:
            links.wait(exit_key[0], exit_key[1], tokens)


__all__ = [
    "Decoded",
    "MalformedRequest",
    "TokenLinks",
    "from_json",
    "from_protobuf",
]
