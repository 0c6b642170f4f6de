"""A decision in flight, and the packed form an ended one is kept in.

Part of the live run (:mod:`decisiontrace.tracking._live`), which holds its decisions
as :class:`LiveDecision` objects while they are open and packed once they have ended
(beyond a run's first decisions, see ``LiveRun.keep_ended``).
"""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, Span

from decisiontrace.spanmodel import _codec, _decode, _packed
from decisiontrace.spanmodel import semconv as sc

#: The span of an ended decision in the live view: its id is kept in ``span_id``.
ENDED_SPAN: Span = NonRecordingSpan(INVALID_SPAN_CONTEXT)


#: The fields a packed ended decision keeps beside its attributes (see :func:`pack`).
_PACKED_FIELDS = 3


def pack(decision: LiveDecision) -> _packed.Packed:
    """An ended decision with its outcome, as the run keeps it from then on.

    One tuple of atoms (:mod:`decisiontrace.spanmodel._packed`): its attributes, start
    and end time and span id. The SDK span is the processors' then; the tuple is a
    third of the decision's size and nothing the garbage collector keeps scanning.
    """
    return _packed.pack(decision.attributes, decision.start_ns, decision.end_ns, decision.span_id)


def packed_attributes(packed: _packed.Packed) -> _codec.Attributes:
    """The attributes of a packed decision (outcome included), as a new dict."""
    return _packed.attributes_of(packed, _PACKED_FIELDS)


def unpack(packed: _packed.Packed) -> LiveDecision:
    """A packed decision as an ended :class:`LiveDecision` (a new one, for reading)."""
    attributes = _packed.attributes_of(packed, _PACKED_FIELDS)
    start_ns, end_ns, span_id = _packed.fields_of(packed, _PACKED_FIELDS)
    decision = LiveDecision(str(attributes[sc.DECISION_ID]), ENDED_SPAN, attributes, start_ns)
    decision.span_id = span_id
    decision.end_ns = end_ns
    decision.outcome = attributes
    return decision


class LiveDecision:
    """A decision in flight: its span while open, and the attributes it was given.

    Once ended with its outcome, the run keeps it packed (:func:`pack`), unless the
    tracker keeps ended SDK spans (compat). An ended decision that is not packed keeps
    the span's id only (``span`` is then :data:`ENDED_SPAN`). ``span_id`` is set when
    the span has started (0 before, and in a run nobody records).
    """

    __slots__ = (
        "attributes",
        "decision_id",
        "end_ns",
        "options",
        "outcome",
        "pending_choice",
        "span",
        "span_id",
        "start_ns",
    )

    def __init__(
        self,
        decision_id: str,
        span: Span,
        attributes: _codec.Attributes,
        start_ns: int,
        options: list[dict[str, Any]] | None = None,
    ):
        self.decision_id = decision_id
        self.span = span
        self.span_id = 0
        self.attributes = attributes
        self.start_ns = start_ns
        self.options = options  # normalized, so a late choice needs no JSON decoding
        self.end_ns: int | None = None
        # The outcome's attributes; for a recorded decision, once ended, merged into
        # ``attributes`` (one dict held per decision, not two).
        self.outcome: _codec.Attributes | None = None
        # (chosen, reasoning) declared with decisiontrace.choose() before the outcome
        self.pending_choice: tuple[str, str | None] | None = None

    def record(self) -> _codec.Record:
        """The decision as a stored-form dict."""
        attributes = self.attributes
        outcome = self.outcome
        if outcome is not None and outcome is not attributes:
            attributes = {**attributes, **outcome}
        # No span id in a run nobody records: no decision span exists to lead to.
        return _decode.decision_record(attributes, self.start_ns, self.end_ns, span_id=self.span_id)


__all__ = ["ENDED_SPAN", "LiveDecision", "pack", "packed_attributes", "unpack"]
