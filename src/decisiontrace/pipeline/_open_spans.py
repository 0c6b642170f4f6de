"""The run and decision spans that have started and not ended yet.

The processor's ``on_start``/``on_end`` keep them (dict operations on the agent's
thread); the writer reads them to store runs that never end (``run_timeout``, shutdown),
and the processor gives up the oldest when too many are open. Neither side decodes a
span here: what is taken out is handed to the writer as it is (see ``_inbox.Abandoned``).
"""

from __future__ import annotations

import contextlib

from opentelemetry.sdk.trace import Span


class OpenSpans:
    """Open run spans by trace id, in start order, and open decision spans by trace.

    Args:
        max_decision_traces: the most traces whose decisions are kept; decisions of runs
            whose span is not here (another process's, or lost) leave entries, so the
            oldest trace's are forgotten beyond it.
    """

    __slots__ = ("decisions", "max_decision_traces", "runs")

    def __init__(self, max_decision_traces: int) -> None:
        #: trace id -> open run span (to store runs that never end as stuck or cancelled)
        self.runs: dict[int, Span] = {}
        #: trace id -> span id -> open decision span (stored with such a run, unfinished)
        self.decisions: dict[int, dict[int, Span]] = {}
        self.max_decision_traces = max_decision_traces

    def decision_started(self, trace_id: int, span_id: int, span: Span) -> None:
        """Keep an open decision span."""
        open_decisions = self.decisions.get(trace_id)
        if open_decisions is None:
            if len(self.decisions) >= self.max_decision_traces:
                with contextlib.suppress(StopIteration, RuntimeError, KeyError):  # threads
                    del self.decisions[next(iter(self.decisions))]
            self.decisions[trace_id] = {span_id: span}
        else:
            open_decisions[span_id] = span

    def decision_ended(self, trace_id: int, span_id: int) -> None:
        """Forget a decision span that ended."""
        open_decisions = self.decisions.get(trace_id)
        if open_decisions is not None:
            open_decisions.pop(span_id, None)
            if not open_decisions:
                self.decisions.pop(trace_id, None)

    def run_ended(self, trace_id: int) -> None:
        """Forget a run span that ended, and its decisions still open."""
        self.runs.pop(trace_id, None)
        self.decisions.pop(trace_id, None)

    def oldest_run(self) -> tuple[int, Span] | None:
        """The run span open longest (None if none is), without taking it."""
        try:
            return next(iter(self.runs.items()))
        except (StopIteration, RuntimeError):  # changed by another thread meanwhile
            return None

    def take(self, trace_id: int) -> tuple[Span | None, list[Span]]:
        """Take the run span of a trace out, with its decisions still open."""
        run = self.runs.pop(trace_id, None)
        decisions = self.decisions.pop(trace_id, None)
        return run, [] if decisions is None else list(decisions.values())


__all__ = ["OpenSpans"]
