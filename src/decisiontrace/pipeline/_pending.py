"""A run being assembled: the spans of one trace seen so far, and its record.

:class:`PendingRun` is what :mod:`decisiontrace.pipeline._assembly` groups spans
into; once complete it gives the run's full record, a light one, or its compact span
form (the journal's and the stores' earliest rows), which :func:`record_from_compact`
turns back into the record.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from decisiontrace.spanmodel import _codec, _decode, _packed
from decisiontrace.spanmodel import semconv as sc


class PendingRun:
    """The spans of one trace seen so far; once complete, an assembled run.

    An assembled run can be turned into its full record (:meth:`record`), a light
    record for indexes and summaries (:meth:`record` with ``light``), or its compact
    span form (:meth:`compact`), which a store may keep instead of the record and turn
    back into exactly the same record with :func:`record_from_compact`.

    Decision spans are in ``decisions`` by span id, beyond ``_packed.PACK_AFTER`` packed
    in ``packed`` (a :class:`~decisiontrace.spanmodel._packed.PackedLog`: a long run's
    wait costs no object per decision that the garbage collector keeps meeting), their
    span ids in ``packed_ids``: add one with :meth:`add_decision`, read with
    :meth:`decision_items`.

    A *fragment* (``fragment`` set) holds the decisions and problems one process
    recorded into a run started elsewhere; its record is a Run with the same id, a
    ``fragment_id`` and status ``running``, which stores merge with the run's record.
    """

    __slots__ = (
        "decisions", "first_seen", "fragment", "fragment_attributes", "last_added",
        "options_cache", "packed", "packed_ids", "problems", "reason", "run", "run_seen",
        "run_tokens", "status", "tokens",
    )  # fmt: skip

    def __init__(self, now: float, options_cache: _decode.OptionsCache | None = None) -> None:
        self.run: _decode.SpanData | None = None
        self.decisions: dict[int, _decode.SpanData] = {}
        self.packed: _packed.PackedLog | None = None  # see the class docstring
        self.packed_ids: set[int] = set()
        # LLM tokens by the decision span they count for, and for the run only
        # (docs/span-model.md, "Tokens from LLM spans"; decided in _tokens).
        self.tokens: dict[int, int] = {}
        self.run_tokens = 0
        self.first_seen = now
        self.run_seen = 0.0
        self.status: str | None = None  # overrides the span's (stuck runs)
        self.reason: str | None = None
        self.fragment: str | None = None
        self.fragment_attributes: dict[str, Any] = {}
        self.problems: list[_decode.EventData] = []  # a fragment's problem events
        self.last_added = now
        # The assembler's: decisions offering the same options share their decoding.
        self.options_cache = options_cache

    def add_decision(self, span: _decode.SpanData) -> None:
        """Take a decision span (again: the later copy replaces the earlier)."""
        decisions = self.decisions
        span_id = span.span_id
        if len(decisions) < _packed.PACK_AFTER or span_id in decisions:
            decisions[span_id] = span
            return
        packed = self.packed
        if packed is None:
            packed = self.packed = _packed.PackedLog()
        packed.append(_packed.pack_span(span))
        if span_id in self.packed_ids:
            self._drop_earlier_copy(span_id)
        else:
            self.packed_ids.add(span_id)

    def _drop_earlier_copy(self, span_id: int) -> None:
        """Keep only the latest copy of a packed span that came again (a resent span:
        rare, so the whole log is rebuilt)."""
        assert self.packed is not None
        spans = list(_packed.unpacked(self.packed.snapshot()))
        latest = spans.pop()
        self.packed = rebuilt = _packed.PackedLog()
        for packed in spans:
            if _packed.fields_of(packed, _packed.SPAN_FIELDS)[1] != span_id:
                rebuilt.append(packed)
        rebuilt.append(latest)

    def decision_items(self) -> Iterable[tuple[int, _decode.SpanData]]:
        """The decision spans by span id, in arrival order (packed ones unpacked)."""
        if self.packed is None:
            return self.decisions.items()
        unpack = _packed.unpack_span
        return [
            *self.decisions.items(),
            *((s.span_id, s) for s in map(unpack, _packed.unpacked(self.packed.snapshot()))),
        ]

    def decision_count(self) -> int:
        """How many decision spans have arrived."""
        return len(self.decisions) + (0 if self.packed is None else len(self.packed))

    def complete(self) -> bool:
        """The run span has ended and every decision it counted has arrived."""
        run = self.run
        if run is None:
            return False
        expected = run.attributes.get(sc.RUN_DECISION_COUNT)
        if expected is None:
            return True
        try:
            return self.decision_count() >= int(expected)
        except (TypeError, ValueError):
            return True

    def counted(self) -> bool:
        """The run span says how many decisions it had (spans from the tracker do)."""
        return self.run is not None and sc.RUN_DECISION_COUNT in self.run.attributes

    def record(self, *, light: bool = False) -> _codec.Record:
        """The run record from what has arrived (see :func:`_decode.decision_record`)."""
        decisions = []
        run_tokens = self.run_tokens
        cache = self.options_cache
        counted = self.tokens
        for key, d in self.decision_items():
            extra = self._extra_tokens(key, d) if counted else 0
            if extra and sc.OUTCOME_SUCCESS not in d.attributes:
                run_tokens += extra  # a decision without an outcome has no token count
                extra = 0
            decisions.append(
                _decode.decision_record(
                    d.attributes,
                    d.start_ns,
                    d.end_ns,
                    extra,
                    light=light,
                    span_id=d.span_id,
                    options_cache=cache,
                )
            )
        if self.fragment is not None:
            return self._fragment_record(decisions)
        run = self.run
        if run is None:
            # The root span was lost: rebuild what the decisions say about their run.
            first = min((d for _, d in self.decision_items()), key=lambda d: d.start_ns)
            attributes: dict[str, Any] = {sc.RUN_ID: first.attributes.get(sc.RUN_ID, "")}
            record = _decode.run_record(
                attributes,
                first.start_ns,
                None,
                decisions,
                [],
                status=self.status or "stuck",
                run_tokens=run_tokens,
                trace_id=first.trace_id,
            )
        else:
            record = _decode.run_record(
                run.attributes,
                run.start_ns,
                run.end_ns,
                decisions,
                _decode.problems_of(run.events),
                status=self.status,
                error=run.error,
                run_tokens=run_tokens,
                trace_id=run.trace_id,
                span_id=run.span_id,
                service_name=run.service_name,
            )
        if self.reason is not None:
            record["end_reason"] = self.reason
        return record

    def _extra_tokens(self, key: int, decision: _decode.SpanData) -> int:
        """LLM tokens of a decision not yet in its span's ``tokens_used``.

        The tracker puts the tokens of LLM spans that ended before the decision on its
        span (and says how many); only those counted after that are added here.
        """
        counted = self.tokens.get(key, 0)
        if not counted:
            return 0
        on_span = decision.attributes.get(sc.OUTCOME_LLM_TOKENS, 0)
        return max(0, counted - on_span) if type(on_span) is int else counted

    def _fragment_record(self, decisions: list[_codec.Record]) -> _codec.Record:
        starts = [d.start_ns for _, d in self.decision_items()]
        starts.extend(e.time_ns for e in self.problems)
        record = _decode.run_record(
            self.fragment_attributes,
            min(starts) if starts else 0,
            None,
            decisions,
            _decode.problems_of(self.problems),
            status="running",
        )
        record["fragment_id"] = self.fragment
        return record

    def compact(self) -> dict[str, Any]:
        """The run's spans as JSON-ready data: cheap to write, decoded again on read."""
        run = self.run
        any_span = run if run is not None else next(iter(self.decisions.values()), None)
        # Hex: JSON readers need not handle 128-bit integers.
        trace_hex = None if any_span is None else _decode.trace_id_hex(any_span.trace_id)
        if self.fragment is not None:
            return {
                "format": COMPACT_FORMAT,
                "run": None,
                "decisions": [
                    [d.start_ns, d.end_ns, d.attributes, self.tokens.get(key, 0), d.span_id]
                    for key, d in self.decision_items()
                ],
                "trace_id": trace_hex,
                "status": None,
                "reason": None,
                "fragment": [
                    self.fragment,
                    self.fragment_attributes,
                    [[e.name, e.time_ns, e.attributes] for e in self.problems],
                ],
            }
        return {
            "format": COMPACT_FORMAT,
            "run": None
            if run is None
            else [
                run.start_ns,
                run.end_ns,
                run.attributes,
                [[e.name, e.time_ns, e.attributes] for e in run.events],
                run.error,
                run.span_id,
                run.service_name,
            ],
            "decisions": [
                [d.start_ns, d.end_ns, d.attributes, self.tokens.get(key, 0), d.span_id]
                for key, d in self.decision_items()
            ],
            "trace_id": trace_hex,
            "status": self.status,
            "reason": self.reason,
            "run_tokens": self.run_tokens,
        }


#: Marks the compact span form of a run (see :meth:`PendingRun.compact`).
COMPACT_FORMAT = "decisiontrace.spans/1"


def record_from_compact(data: Mapping[str, Any]) -> _codec.Record:
    """The full run record of a run kept in compact span form.

    Rows written before trace identity was kept (no ``trace_id``, shorter span lists)
    decode as before, without the ``trace_id``/``span_id`` extras.
    """
    pending = PendingRun(0.0)
    trace_id = _hex_int(data.get("trace_id"))
    run = data.get("run")
    if run is not None:
        start, end, attributes, events, error = run[:5]
        pending.run = _decode.SpanData(
            trace_id, run[5] if len(run) > 5 else 0, None, "", start, end, attributes,
            [_decode.EventData(name, time_ns, attrs) for name, time_ns, attrs in events],
            bool(error), run[6] if len(run) > 6 else None,
        )  # fmt: skip
    for index, decision in enumerate(data.get("decisions", ())):
        start, end, attributes, tokens = decision[:4]
        span_id = decision[4] if len(decision) > 4 else 0
        # Keyed by position: old rows have no span ids, and keys only need to be unique.
        pending.decisions[index] = _decode.SpanData(
            trace_id, span_id, None, "", start, end, attributes
        )
        if tokens:
            pending.tokens[index] = tokens
    pending.status = data.get("status")
    pending.reason = data.get("reason")
    pending.run_tokens = int(data.get("run_tokens") or 0)
    fragment = data.get("fragment")
    if fragment is not None:
        pending.fragment, pending.fragment_attributes, problems = fragment
        pending.problems = [_decode.EventData(n, t, a) for n, t, a in problems]
    return pending.record()


def _hex_int(value: Any) -> int:
    try:
        return int(value, 16) if isinstance(value, str) else 0
    except ValueError:
        return 0


__all__ = ["COMPACT_FORMAT", "PendingRun", "record_from_compact"]
