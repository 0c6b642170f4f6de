"""Assembling ended spans into run records, whatever order they arrive in.

Used by the processor's writer thread (spans from the SDK) and by ``rebuild`` (spans
read from OTLP JSON). Spans are grouped by trace: a run is a root span, so all of its
decision spans (and the LLM spans under them) share its trace id.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterable

from decisiontrace._internal.errors import internal_error
from decisiontrace.pipeline._pending import PendingRun
from decisiontrace.pipeline._tokens import attribute_tree
from decisiontrace.spanmodel import _codec, _decode
from decisiontrace.spanmodel import semconv as sc

#: Pending runs are keyed by trace id; fragments (what another process recorded into
#: a run, see ``decisiontrace.tracking._remote``) by trace id and the spans' fragment id.
Key = int | tuple[int, str]


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
