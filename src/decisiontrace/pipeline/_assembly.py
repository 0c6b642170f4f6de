"""Assembling ended spans into run records, whatever order they arrive in.

Used by the processor's writer thread (spans from the SDK) and by ``rebuild`` (spans
read from OTLP JSON). Spans are grouped by trace: a run is a root span, so all of its
decision spans (and the LLM spans under them) share its trace id.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from decisiontrace._internal.errors import internal_error
from decisiontrace.pipeline._tokens import attribute_tree
from decisiontrace.spanmodel import _codec, _decode, _packed
from decisiontrace.spanmodel import semconv as sc

#: Pending runs are keyed by trace id; fragments (what another process recorded into
#: a run, see ``decisiontrace.tracking._remote``) by trace id and the spans' fragment id.
Key = int | tuple[int, str]


class PendingRun:
    """The spans of one trace seen so far; once complete, an assembled run.

    An assembled run can be turned into its full record (:meth:`record`), a light
    record for indexes and summaries (:meth:`record` with ``light``), or its compact
    span form (:meth:`compact`), which a store may keep instead of the record and turn
    back into exactly the same record with :func:`record_from_compact`.

    Decision spans are in ``decisions`` by span id, beyond ``_packed.PACK_AFTER`` packed
    in ``packed`` (a long run's wait costs a tuple per decision the garbage collector
    stops scanning): add one with :meth:`add_decision`, read with :meth:`decision_items`.

    A *fragment* (``fragment`` set) holds the decisions and problems one process
    recorded into a run started elsewhere; its record is a Run with the same id, a
    ``fragment_id`` and status ``running``, which stores merge with the run's record.
    """

    __slots__ = (
        "decisions", "first_seen", "fragment", "fragment_attributes", "last_added",
        "options_cache", "packed", "problems", "reason", "run", "run_seen", "run_tokens",
        "status", "tokens",
    )  # fmt: skip

    def __init__(self, now: float, options_cache: _decode.OptionsCache | None = None) -> None:
        self.run: _decode.SpanData | None = None
        self.decisions: dict[int, _decode.SpanData] = {}
        self.packed: dict[int, _packed.Packed] | None = None  # see the class docstring
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
        """Take a decision span (again: the later copy replaces the earlier, in place)."""
        decisions = self.decisions
        span_id = span.span_id
        if len(decisions) < _packed.PACK_AFTER or span_id in decisions:
            decisions[span_id] = span
            return
        packed = self.packed
        if packed is None:
            packed = self.packed = {}
        packed[span_id] = _packed.pack_span(span)

    def decision_items(self) -> Iterable[tuple[int, _decode.SpanData]]:
        """The decision spans by span id, in arrival order (packed ones unpacked)."""
        if self.packed is None:
            return self.decisions.items()
        unpack = _packed.unpack_span
        return [*self.decisions.items(), *((k, unpack(p)) for k, p in self.packed.items())]

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
        for key, d in self.decision_items():
            extra = self._extra_tokens(key, d)
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


class RunAssembler:
    """Collects spans per trace and hands back finished run records.

    Fragments (spans with ``decisiontrace.fragment.id``) are handed out once no span
    of theirs arrived for ``fragment_quiet`` seconds (or ``late_span_grace`` after their
    first unwritten span, under steady traffic), and kept for ``fragment_keep`` seconds
    after that: later spans of the same fragment are added and the whole fragment
    handed out again, so the store's copy grows with it.

    Args:
        late_span_grace: seconds to wait, once a run span has ended, for decision spans
            it counted but that have not arrived, and to keep a written run that was
            missing some so that late ones are merged in and the run written again.
        max_recent: how many such incomplete written runs are kept for late spans, how
            many runs for late tokens, and how many written fragments are kept for
            their later spans.
        fragment_quiet: see above.
        fragment_keep: see above.
        late_token_window: seconds a written run whose trace still had LLM spans open
            is kept (see :meth:`expect_late_tokens`), so that their tokens (a stream
            read once the run was over) are merged in and the run written again.
    """

    def __init__(
        self,
        late_span_grace: float = 5.0,
        max_recent: int = 1000,
        *,
        fragment_quiet: float = 0.5,
        fragment_keep: float = 600.0,
        late_token_window: float = 60.0,
    ) -> None:
        self.late_span_grace = late_span_grace
        self.late_token_window = late_token_window
        self.max_recent = max_recent
        self.fragment_quiet = fragment_quiet
        self.fragment_keep = fragment_keep
        self.pending: dict[Key, PendingRun] = {}
        self._recent: OrderedDict[int, tuple[float, PendingRun]] = OrderedDict()
        self._recent_fragments: OrderedDict[tuple[int, str], tuple[float, PendingRun]] = (
            OrderedDict()
        )
        self._late: OrderedDict[int, tuple[float, PendingRun]] = OrderedDict()
        # Traces whose run ended with spans still open: set by the agent's thread.
        self._expect_late: dict[int, None] = {}
        self._options = _decode.OptionsCache()

    def expect_late_tokens(self, trace_id: int) -> None:
        """The run of this trace ended with LLM spans still open: keep it once written."""
        expect = self._expect_late
        expect[trace_id] = None
        if len(expect) > self.max_recent:
            with contextlib.suppress(StopIteration, RuntimeError, KeyError):  # another thread
                del expect[next(iter(expect))]

    def _pending_for(self, trace_id: int, now: float) -> PendingRun:  # a root run's
        pending = self.pending.get(trace_id)
        if pending is None:
            recent = self._recent.pop(trace_id, None) or self._late.pop(trace_id, None)
            pending = recent[1] if recent is not None else PendingRun(now, self._options)
            self.pending[trace_id] = pending
        return pending

    def _fragment_for(self, key: tuple[int, str], span: _decode.SpanData, now: float) -> PendingRun:
        pending = self.pending.get(key)
        if pending is None:
            recent = self._recent_fragments.pop(key, None)
            if recent is not None:
                pending = recent[1]
                pending.first_seen = now
            else:
                pending = PendingRun(now, self._options)
                # The store's key: unique even if this assembler forgot the fragment
                # (or restarted) and meets later spans of it, so no copy replaces another.
                pending.fragment = f"{key[1]}/{span.span_id:016x}"
                attributes = span.attributes
                pending.fragment_attributes = {
                    sc.RUN_ID: str(attributes.get(sc.RUN_ID, "")),
                    sc.GOAL_ID: str(attributes.get(sc.GOAL_ID, "")),
                }
            self.pending[key] = pending
        pending.last_added = now
        return pending

    def add(self, span: _decode.SpanData, now: float | None = None) -> None:
        """Take one ended span of ours (a run, decision or problem span)."""
        now = time.monotonic() if now is None else now
        attributes = span.attributes
        kind = attributes.get(sc.SPAN_KIND)
        fragment = attributes.get(sc.FRAGMENT_ID)
        if fragment is not None and kind != sc.KIND_RUN:
            pending = self._fragment_for((span.trace_id, str(fragment)), span, now)
            if kind == sc.KIND_DECISION:
                pending.add_decision(span)
                root = self.pending.get(span.trace_id)
                if root is not None and span.span_id in root.tokens:
                    # LLM spans under it ended first, before anyone knew its fragment.
                    pending.tokens[span.span_id] = root.tokens.pop(span.span_id)
                    if root.run is None and not root.decisions and not root.tokens:
                        del self.pending[span.trace_id]
            elif kind == sc.KIND_PROBLEM:
                pending.problems.extend(e for e in span.events if e.name == sc.PROBLEM_EVENT)
            return
        pending = self._pending_for(span.trace_id, now)
        if kind == sc.KIND_RUN:
            pending.run = span
            pending.run_seen = now
        elif kind == sc.KIND_DECISION:
            pending.add_decision(span)

    def add_tokens(
        self, trace_id: int, decision_span_id: int | None, tokens: int, key: Key | None = None
    ) -> None:
        """Count an LLM span's tokens for a decision span (None: the trace's run only), in
        the pending run ``key`` when known (a fragment's)."""
        pending = self.pending.get(key) if key is not None else None
        if pending is None:
            pending = self._pending_for(trace_id, time.monotonic())
        if decision_span_id is None:
            pending.run_tokens += tokens
        else:
            pending.tokens[decision_span_id] = pending.tokens.get(decision_span_id, 0) + tokens

    def add_tree(self, spans: Iterable[_decode.SpanData]) -> None:
        """Take every span of some traces at once (OTLP JSON): ours, and LLM spans,
        whose tokens count by the rules of :mod:`decisiontrace.pipeline._tokens`."""
        spans = list(spans)
        fragments: dict[tuple[int, int], Key] = {}
        for span in spans:
            attributes = span.attributes
            if sc.SPAN_KIND in attributes:
                self.add(span)
                fragment = attributes.get(sc.FRAGMENT_ID)
                if fragment is not None and attributes.get(sc.SPAN_KIND) == sc.KIND_DECISION:
                    fragments[(span.trace_id, span.span_id)] = (span.trace_id, str(fragment))
        for counted in attribute_tree(spans):
            decision = counted.decision_span_id
            key = None if decision is None else fragments.get((counted.trace_id, decision))
            self.add_tokens(counted.trace_id, decision, counted.tokens, key)

    def take_ready(self, *, force: bool = False, now: float | None = None) -> list[_codec.Record]:
        """Records of the runs that can be written now (see :meth:`take_ready_runs`)."""
        return _records_of(self.take_ready_runs(force=force, now=now))

    def take_orphans(self, max_age: float, now: float | None = None) -> list[_codec.Record]:
        """Records of stuck runs (see :meth:`take_orphan_runs`)."""
        return _records_of(self.take_orphan_runs(max_age, now))

    def take_ready_runs(self, *, force: bool = False, now: float | None = None) -> list[PendingRun]:
        """The assembled runs that can be written now.

        A run is ready when its span has ended and its decisions are all in, or when
        the grace period for missing ones has passed, or when ``force`` is set.
        """
        now = time.monotonic() if now is None else now
        ready = self._take_fragments(force, now)
        for trace_id in [
            t for t, p in self.pending.items() if p.run is not None and type(t) is int
        ]:
            pending = self.pending[trace_id]
            complete = pending.complete()
            if not (complete or force or now - pending.run_seen >= self.late_span_grace):
                continue
            del self.pending[trace_id]
            ready.append(pending)
            if trace_id in self._expect_late:
                self._remember(self._late, trace_id, pending, now)
            elif not (complete and pending.counted()):
                self._remember(self._recent, trace_id, pending, now)
        self._expire_recent(now)
        return ready

    def _take_fragments(self, force: bool, now: float) -> list[PendingRun]:
        """Fragments to write now (see the class docstring), remembered for later spans."""
        ready: list[PendingRun] = []
        keys = [k for k in self.pending if type(k) is tuple]
        for key in keys:
            pending = self.pending[key]
            if not (
                force
                or now - pending.last_added >= self.fragment_quiet
                or now - pending.first_seen >= self.late_span_grace
            ):
                continue
            del self.pending[key]
            ready.append(pending)
            self._recent_fragments[key] = (now, pending)
            while len(self._recent_fragments) > self.max_recent:
                self._recent_fragments.popitem(last=False)
        recent = self._recent_fragments
        while recent:
            _, (seen, _) = next(iter(recent.items()))
            if now - seen < self.fragment_keep:
                break
            recent.popitem(last=False)
        return ready

    def take_orphan_runs(self, max_age: float, now: float | None = None) -> list[PendingRun]:
        """Decisions whose run span never arrived within ``max_age`` seconds: stuck runs."""
        now = time.monotonic() if now is None else now
        orphans = []
        for trace_id in [
            t
            for t, p in self.pending.items()
            if p.run is None and p.fragment is None and now - p.first_seen >= max_age
        ]:
            pending = self.pending.pop(trace_id)
            if pending.decisions:  # token counts alone are not a run: just forget them
                pending.status, pending.reason = "stuck", "run span never ended"
                orphans.append(pending)
        return orphans

    def _remember(
        self,
        kept: OrderedDict[int, tuple[float, PendingRun]],
        trace_id: int,
        pending: PendingRun,
        now: float,
    ) -> None:
        kept[trace_id] = (now, pending)
        while len(kept) > self.max_recent:
            dropped, _ = kept.popitem(last=False)
            self._expect_late.pop(dropped, None)

    def _expire_recent(self, now: float) -> None:
        for kept, keep_for in (
            (self._recent, self.late_span_grace),
            (self._late, self.late_token_window),
        ):
            while kept:
                trace_id, (seen, _) = next(iter(kept.items()))
                if now - seen < keep_for:
                    break
                del kept[trace_id]
                self._expect_late.pop(trace_id, None)


def _records_of(runs: list[PendingRun]) -> list[_codec.Record]:
    records = []
    for run in runs:
        try:
            records.append(run.record())
        except Exception as error:
            internal_error("run assembly", error)
    return records
