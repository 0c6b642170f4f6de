"""One home for the token rules: which LLM span's tokens count, and for what.

Other instrumentations (OpenAI's, OpenLLMetry's, OpenInference's, LangChain callback
handlers) report a call's token usage on their own spans. Each call must count exactly
once, for the right decision, wherever its span sits (docs/span-model.md says the rules
for users):

(a) One layer over another: a token-bearing span counts only when no span under it
    reports tokens (an agent span summing the calls under it is not counted again); and
    of two token-bearing spans of one trace reporting the same input and output tokens,
    one lying within the other's lifetime, only the first to end counts: LangChain's
    callback handlers do not make their span current, so the client call's span (the
    OpenAI instrumentation's) is its sibling, not its child, yet the same call.
(b) Spans outside the decision's subtree (callback-based instrumentations parent to
    their own spans): a span counts for a decision when it lies within that decision's
    lifetime, in the same run, and that decision was the run's only open one the whole
    time; otherwise it counts for the run only.
(c) A span that ends after its run was stored updates the stored run (the assembler
    keeps written runs for a bounded time).
(d) Tokens of spans that end before their decision does are put on the decision span
    and the run span when they end, so exported spans carry the store's totals.

:class:`TokenAttribution` applies (a) and (b) as spans start and end, on the agent's
thread, with dict operations only; :data:`LEDGER` holds the counts of decisions and runs
still open for (d); :func:`attribute_tree` applies the same rules to whole traces read
back from OTLP.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from decisiontrace.spanmodel import _decode
from decisiontrace.spanmodel import semconv as sc

_TOKEN_KEYS = (
    (sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS),
    (sc.GEN_AI_USAGE_PROMPT_TOKENS, sc.GEN_AI_USAGE_COMPLETION_TOKENS),
    (sc.LLM_TOKEN_COUNT_PROMPT, sc.LLM_TOKEN_COUNT_COMPLETION),
)
_MAX_DEPTH = 256


def token_pair(attributes: Mapping[str, Any] | None) -> tuple[int, int]:
    """(input, output) tokens an LLM span reports (GenAI names, older ones, OpenInference's)."""
    if not attributes:
        return 0, 0
    for input_key, output_key in _TOKEN_KEYS:
        if input_key in attributes or output_key in attributes:
            try:
                return int(attributes.get(input_key) or 0), int(attributes.get(output_key) or 0)
            except (TypeError, ValueError):
                return 0, 0
    return 0, 0


def token_usage(attributes: Mapping[str, Any] | None) -> int:
    """Tokens an LLM span reports, input and output together."""
    pair = token_pair(attributes)
    return pair[0] + pair[1]


#: A counted token span: start and end times, input and output tokens.
_Counted = tuple[int, int, int, int]
_MAX_COUNTED_PER_TRACE = 32


def _same_call(start: int, end: int, pair: tuple[int, int], counted: list[_Counted]) -> bool:
    """Whether a counted span reported the same tokens, one lying within the other."""
    for c_start, c_end, c_in, c_out in counted:
        if (
            c_in == pair[0]
            and c_out == pair[1]
            and ((start <= c_start and c_end <= end) or (c_start <= start and end <= c_end))
        ):
            return True
    return False


def _remember_counted(counted: list[_Counted], start: int, end: int, pair: tuple[int, int]) -> None:
    counted.append((start, end, pair[0], pair[1]))
    if len(counted) > _MAX_COUNTED_PER_TRACE:
        del counted[0]


class Tokens:
    """An LLM span's token count, for a decision span of a run, or for the run only."""

    __slots__ = ("decision_span_id", "tokens", "trace_id")

    def __init__(self, trace_id: int, decision_span_id: int | None, tokens: int) -> None:
        self.trace_id = trace_id
        self.decision_span_id = decision_span_id  # None: the run's only
        self.tokens = tokens


class TokenLedger:
    """Tokens counted for decisions and runs still open, for their spans' end attributes.

    The processor adds (on the agent's thread, as LLM spans end); the tracker takes a
    decision's count when it records the outcome and a run's when it ends the run, so
    the exported spans carry what the store will. Entries of spans that end otherwise
    are discarded by the processor when they end, so the ledger stays small.
    """

    __slots__ = ("_counted", "_lock", "_runs", "decisions")

    def __init__(self) -> None:
        #: decision span id -> tokens counted for it (read-only outside: empty, nothing to do)
        self.decisions: dict[int, int] = {}
        self._runs: dict[int, int] = {}
        # LLM spans already added: two processors on one provider must not count twice.
        self._counted: dict[int, None] = {}
        self._lock = threading.Lock()

    def add(
        self, llm_span_id: int, decision_span_id: int | None, trace_id: int, tokens: int
    ) -> None:
        """Count an LLM span's tokens for an open decision (or, with None, its run)."""
        with self._lock:
            counted = self._counted
            if llm_span_id in counted:
                return
            counted[llm_span_id] = None
            if len(counted) > 10_000:
                del counted[next(iter(counted))]
            if decision_span_id is None:
                self._runs[trace_id] = self._runs.get(trace_id, 0) + tokens
            else:
                self.decisions[decision_span_id] = self.decisions.get(decision_span_id, 0) + tokens

    def take_decision(self, decision_span_id: int) -> int:
        """The tokens counted so far for a decision, forgetting them."""
        if not self.decisions:  # the common case, without a lock
            return 0
        with self._lock:
            return self.decisions.pop(decision_span_id, 0)

    def take_run(self, trace_id: int) -> int:
        """The tokens counted so far for a run and none of its decisions, forgetting them."""
        if not self._runs:
            return 0
        with self._lock:
            return self._runs.pop(trace_id, 0)

    def discard_decision(self, decision_span_id: int) -> None:
        if self.decisions:
            with self._lock:
                self.decisions.pop(decision_span_id, None)

    def discard_run(self, trace_id: int) -> None:
        if self._runs:
            with self._lock:
                self._runs.pop(trace_id, None)

    def _after_fork_in_child(self) -> None:
        # The parent's open decisions and runs are not the child's; a lock another
        # thread held at fork time would never be released here.
        self.decisions = {}
        self._runs = {}
        self._counted = {}
        self._lock = threading.Lock()


#: The process's ledger: fed by every RunRecordProcessor, read by every tracker.
LEDGER = TokenLedger()
os.register_at_fork(after_in_child=LEDGER._after_fork_in_child)


def _forget_oldest(entries: dict[Any, Any]) -> None:
    """Drop the oldest entry of a bounded dict; another thread may be changing it."""
    with contextlib.suppress(StopIteration, RuntimeError, KeyError):
        del entries[next(iter(entries))]


class TokenAttribution:
    """Rules (a) and (b) applied as spans start and end, on the agent's thread.

    Only spans of traces with an open run or decision are noted, each with its parent,
    the decision whose subtree it is in, and how many decisions of its run had started
    or ended when it started (which tells, when it ends, whether the run's open
    decisions changed meanwhile). Every structure is a dict bounded by ``max_entries``.

    A trace where no span of another instrumentation is open costs a decision nothing
    here (the processor looks at ``notes`` and ``open_in_trace`` first): a decision is
    noted when the first span under it starts, and decisions are counted only in traces
    where such spans are open (the count matters only between such a span's start and
    end).

    Args:
        max_entries: the most spans noted (spans that never end leave entries).
        on_full: called when the oldest noted span had to be forgotten.
    """

    __slots__ = (
        "_counted", "_epochs", "_on_full", "_token_below", "_traced_counts", "max_entries",
        "notes", "open_in_trace",
    )  # fmt: skip

    def __init__(self, max_entries: int, on_full: Any = None) -> None:
        self.max_entries = max_entries
        # span id -> (parent span id, decision span id or 0, decision epoch of its trace)
        self.notes: dict[int, tuple[int, int, int]] = {}
        # spans with a token-bearing span under them that has ended: rule (a)
        self._token_below: dict[int, None] = {}
        # token spans counted, for an inner span that ends after its outer one
        self._counted: dict[int, None] = {}
        # trace id -> decisions started or ended in it while spans in open_in_trace were open
        self._epochs: dict[int, int] = {}
        # trace id -> noted spans of other instrumentations still open in it
        self.open_in_trace: dict[int, int] = {}
        # trace id -> the token spans counted in it lately (rule (a), layers side by side)
        self._traced_counts: dict[int, list[_Counted]] = {}
        self._on_full = on_full

    def _note(self, span_id: int, note: tuple[int, int, int]) -> None:
        notes = self.notes
        if len(notes) >= self.max_entries:
            with contextlib.suppress(StopIteration, RuntimeError, KeyError):  # another thread
                del notes[next(iter(notes))]
            if self._on_full is not None:
                self._on_full()
        notes[span_id] = note

    def decision_started(self, trace_id: int) -> None:
        """A decision of the trace started (it is noted when a span under it starts)."""
        self._count_decision(trace_id)

    def decision_ended(self, trace_id: int, span_id: int) -> None:
        self._count_decision(trace_id)
        self.notes.pop(span_id, None)
        self._token_below.pop(span_id, None)

    def _count_decision(self, trace_id: int) -> None:
        """Count a decision started or ended, in a trace with spans open that look at it."""
        if trace_id in self.open_in_trace:
            epochs = self._epochs
            epochs[trace_id] = epochs.get(trace_id, 0) + 1
            if len(epochs) > self.max_entries:
                _forget_oldest(epochs)

    def run_ended(self, trace_id: int) -> bool:
        """Forget a run's decision epochs; True if spans noted in its trace are still open
        (their tokens may come after the run is stored: rule (c))."""
        self._epochs.pop(trace_id, None)
        return self.open_in_trace.get(trace_id, 0) > 0

    def span_started(
        self,
        trace_id: int,
        span_id: int,
        parent_id: int,
        in_run: bool,
        open_decisions: Mapping[int, Any] | None = None,
    ) -> None:
        """Note a span of another instrumentation if its trace holds a run or decision.

        ``open_decisions``: the trace's open decision spans (SDK spans) by span id; a
        decision is noted when the first span under it starts.
        """
        parent = self.notes.get(parent_id) if parent_id else None
        if parent is None and open_decisions:
            decision_span = open_decisions.get(parent_id)
            if decision_span is not None:
                above = decision_span.parent
                parent = (0 if above is None else above.span_id, parent_id, 0)
                self._note(parent_id, parent)
        if parent is not None:
            decision = parent[1]
        elif in_run:
            decision = 0
        else:
            return
        # Counted open first: a decision starting or ending from now on changes the epoch.
        open_in_trace = self.open_in_trace
        open_in_trace[trace_id] = open_in_trace.get(trace_id, 0) + 1
        if len(open_in_trace) > self.max_entries:
            _forget_oldest(open_in_trace)
        self._note(span_id, (parent_id, decision, 0 if decision else self._epochs.get(trace_id, 0)))

    def span_ended(
        self,
        trace_id: int,
        span_id: int,
        attributes: Mapping[str, Any] | None,
        open_decisions: Mapping[int, Any] | None,
        start_ns: int = 0,
        end_ns: int = 0,
    ) -> Tokens | None:
        """The tokens an ended span counts for, or None (not ours to count, or none)."""
        note = self.notes.pop(span_id, None)
        if note is None:
            return None
        open_in_trace = self.open_in_trace
        still_open = open_in_trace.get(trace_id, 0) - 1
        if still_open > 0:
            open_in_trace[trace_id] = still_open
        else:
            open_in_trace.pop(trace_id, None)
        below = self._token_below
        has_tokens_below = span_id in below
        if has_tokens_below:
            del below[span_id]
        pair = token_pair(attributes)
        tokens = pair[0] + pair[1]
        if not tokens:
            return None
        parent_id, decision, epoch = note
        # (a): mark the ancestors still open; one already marked has its own marked.
        ancestor = parent_id
        notes = self.notes
        for _ in range(_MAX_DEPTH):
            if ancestor in below:
                break
            up = notes.get(ancestor)
            if up is None:
                break
            below[ancestor] = None
            ancestor = up[0]
        if has_tokens_below or parent_id in self._counted:
            return None  # a span under it (or the one over it, ended first) counted
        traced = self._traced_counts.get(trace_id)
        if traced is None:
            traced = self._traced_counts[trace_id] = []
            if len(self._traced_counts) > self.max_entries:
                with contextlib.suppress(StopIteration, RuntimeError, KeyError):
                    del self._traced_counts[next(iter(self._traced_counts))]
        elif _same_call(start_ns, end_ns, pair, traced):
            return None  # another layer's span of the same call counted
        _remember_counted(traced, start_ns, end_ns, pair)
        counted = self._counted
        counted[span_id] = None
        if len(counted) > self.max_entries:
            _forget_oldest(counted)
        if (
            not decision
            and open_decisions is not None
            and len(open_decisions) == 1
            and self._epochs.get(trace_id, 0) == epoch
        ):
            # (b): the run's only open decision, unchanged since this span started
            decision = next(iter(open_decisions))
        return Tokens(trace_id, decision or None, tokens)


def attribute_tree(spans: Iterable[_decode.SpanData]) -> list[Tokens]:
    """Rules (a) and (b) over whole traces (spans read back from OTLP)."""
    spans = list(spans)
    by_key = {(s.trace_id, s.span_id): s for s in spans}
    traced = {s.trace_id for s in spans if sc.SPAN_KIND in s.attributes}
    decisions: dict[int, list[_decode.SpanData]] = {}
    for span in spans:
        if span.attributes.get(sc.SPAN_KIND) == sc.KIND_DECISION:
            decisions.setdefault(span.trace_id, []).append(span)
    llm: dict[tuple[int, int], tuple[int, int]] = {}
    for span in spans:
        if span.trace_id in traced and sc.SPAN_KIND not in span.attributes:
            pair = token_pair(span.attributes)
            if pair[0] or pair[1]:
                llm[(span.trace_id, span.span_id)] = pair
    ancestors: dict[tuple[int, int], list[int]] = {}
    covered: set[tuple[int, int]] = set()  # token spans with a token span under them
    for key in llm:
        chain = []
        parent = by_key[key].parent_id
        for _ in range(_MAX_DEPTH):
            if parent is None:
                break
            chain.append(parent)
            if (key[0], parent) in llm:
                covered.add((key[0], parent))
            above = by_key.get((key[0], parent))
            parent = None if above is None else above.parent_id
        ancestors[key] = chain
    counted: list[Tokens] = []
    counted_in: dict[int, list[_Counted]] = {}
    # In the order the spans ended, as the processor meets them.
    for key in sorted(llm, key=lambda k: _end_of(by_key[k])):
        if key in covered:
            continue
        span = by_key[key]
        pair = llm[key]
        trace_counted = counted_in.setdefault(key[0], [])
        if _same_call(span.start_ns, _end_of(span), pair, trace_counted):
            continue
        _remember_counted(trace_counted, span.start_ns, _end_of(span), pair)
        trace_id = key[0]
        decision: int | None = None
        for ancestor in ancestors[key]:
            above = by_key.get((trace_id, ancestor))
            if above is not None and above.attributes.get(sc.SPAN_KIND) == sc.KIND_DECISION:
                decision = ancestor
                break
        if decision is None:
            decision = _only_open_decision(span, decisions.get(trace_id, ()))
        counted.append(Tokens(trace_id, decision, pair[0] + pair[1]))
    return counted


def _end_of(span: _decode.SpanData) -> int:
    return span.end_ns if span.end_ns is not None else span.start_ns


def _only_open_decision(
    span: _decode.SpanData, decisions: Iterable[_decode.SpanData]
) -> int | None:
    """Rule (b): the one decision open for all of ``span``, when no other was open then."""
    start, end = span.start_ns, span.end_ns if span.end_ns is not None else span.start_ns
    overlapping = [
        d for d in decisions if d.start_ns <= end and (d.end_ns is None or d.end_ns >= start)
    ]
    if len(overlapping) != 1:
        return None
    only = overlapping[0]
    if only.start_ns <= start and (only.end_ns is None or only.end_ns >= end):
        return only.span_id
    return None
