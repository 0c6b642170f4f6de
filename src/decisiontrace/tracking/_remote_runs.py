"""The tracker's runs of other processes: found from the trace context, kept bounded.

When a recording call finds no run of this process but the current OpenTelemetry
context carries a run's baggage entry (see :mod:`decisiontrace.tracking._remote`), it records
into that run as a *fragment*: a :class:`~decisiontrace.tracking._live.LiveRun` with a
``fragment_id``, whose decision spans are children of the remote parent span. The
tracker keeps one such fragment per remote run, forgets the least recently used beyond
``max_active_runs`` and those idle longer than ``run_timeout`` (closing their open
decisions), and never ends the run itself: the process that started it does.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace

from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking import _remote
from decisiontrace.tracking._live import LiveRun

if TYPE_CHECKING:
    from decisiontrace.tracking.tracker import DecisionTracker

_get_current_span = trace.get_current_span
_get_value = _remote.current_value


class RemoteRuns:
    """The fragments a tracker records into runs started elsewhere."""

    _tracer: trace.Tracer
    _max_active_runs: int
    _run_timeout_ns: int
    _runs: dict[str, LiveRun]
    #: By the value of the baggage entry naming the run.
    _remote_runs: OrderedDict[str, LiveRun]
    _service: str | None

    def _in_context(self, live: LiveRun | None) -> LiveRun | None:
        """The run to record into: ``live`` (this process's current run, or None) unless
        the current context names another run, then that one (see :meth:`_remote_run`)."""
        value = _get_value()
        if value is None or (live is not None and value == live.baggage):
            return live
        if live is None:
            current = ctx.current_run.get()
            if current is not None and value == current.baggage:
                return None  # another tracker's run of this process: not this tracker's
        return self._remote_run(value) or live

    def _remote_run(self, value: str) -> LiveRun | None:
        """The run the baggage ``value`` names: a run of this tracker if it is one, else
        this process's fragment of it, started if need be.

        None when ``value`` names no run or the context carries no valid span context.
        """
        runs = self._remote_runs
        live = runs.get(value)
        if live is not None and live.end_ns is None:
            with contextlib.suppress(KeyError):  # forgotten meanwhile by another thread
                runs.move_to_end(value)
            return live
        ref = _remote.parse(value)
        if ref is None:
            return None
        local = self._runs.get(ref.execution_id)
        if local is not None and local.run_id == ref.run_id:  # our own run, come back
            return local if local.end_ns is None else None
        span = _get_current_span()
        if not span.get_span_context().is_valid:
            return None
        now = time.time_ns()
        service = self._service
        if service is None:
            service = self._service = _remote.service_name(self._tracer)
        tracker: DecisionTracker = self  # type: ignore[assignment]  # only a tracker's base
        created = LiveRun(
            tracker,
            ref.execution_id,
            ref.run_id,
            ref.goal_id,
            span,
            {},
            now,
            remote_context=otel_context.get_current(),
            fragment_id=_remote.new_fragment_id(service),
            service=service,
        )
        live = runs.setdefault(value, created)
        if live is not created and live.end_ns is not None:
            runs[value] = live = created
        self._forget_remote_runs(now)
        return live

    def _forget_remote_runs(self, now_ns: int) -> None:
        """Forget the least recently used fragments beyond the limits (O(1) amortized)."""
        runs = self._remote_runs
        idle_before = now_ns - self._run_timeout_ns
        while runs:
            try:
                key, oldest = next(iter(runs.items()))
            except (StopIteration, RuntimeError):  # changed by another thread: next time
                return
            if len(runs) <= self._max_active_runs and oldest.last_used_ns >= idle_before:
                return
            if runs.pop(key, None) is oldest:
                self._close_fragment(oldest)

    @staticmethod
    def _close_fragment(live: LiveRun) -> None:
        """End the fragment's open decisions (without outcome); later calls start anew."""
        end_ns = time.time_ns()
        with live.lock:
            if live.end_ns is not None:
                return
            live.end_ns = end_ns
            open_decisions = [d for d in live.decisions.values() if d.end_ns is None]
        for decision in open_decisions:
            decision.end_ns = end_ns
            decision.span.end(end_time=end_ns)


__all__ = ["RemoteRuns"]
