"""The registry of a tracker's live runs: starting them, finding them, keeping them bounded.

:class:`RunRegistry` holds the runs of this process by execution id (oldest first, so the
limits only ever look at the head) and the *fragments* this process records into runs
started elsewhere. When a recording call finds no run of this process but the current
OpenTelemetry context carries a run's baggage entry (see :mod:`decisiontrace.tracking.
_remote`), it records into that run as a fragment: a :class:`~decisiontrace.tracking.
_live.LiveRun` with a ``fragment_id``, whose decision spans are children of the remote
parent span. One fragment is kept per remote run; the least recently used beyond
``max_active_runs`` and those idle longer than ``run_timeout`` are forgotten (their open
decisions closed); the run itself is ended only by the process that started it.

Spans are the :class:`~decisiontrace.tracking._emitter.SpanEmitter`'s: the registry asks
it to start runs and end the ones the limits end, and hears of every ended run through
its ``ended_hooks``.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link

from decisiontrace._internal.errors import Once, warn_once
from decisiontrace.spanmodel import _codec
from decisiontrace.spanmodel._kinds import RunStatus
from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking import _normalize, _remote
from decisiontrace.tracking._emitter import SpanEmitter
from decisiontrace.tracking._live import LiveRun

_get_current_span = trace.get_current_span
_get_current_context = otel_context.get_current
_get_value = _remote.current_value
_get_run = ctx.current_run.get


class RunRegistry:
    """The live runs of one tracker (this process's and fragments of others').

    Args:
        emitter: the tracker's span emitter (starts and ends the runs' spans).
        max_active_runs: runs kept open at once; one more ends the oldest as ``stuck``.
        run_timeout_ns: a run older than this is ended as ``stuck`` when the next starts.
    """

    def __init__(self, emitter: SpanEmitter, max_active_runs: int, run_timeout_ns: int) -> None:
        self.emitter = emitter
        self.max_active_runs = max_active_runs
        self.run_timeout_ns = run_timeout_ns
        # Insertion-ordered, oldest run first: the limits below only ever look at the head.
        self._runs: dict[str, LiveRun] = {}
        # Runs of other processes recorded into here, by the value of the baggage entry
        # naming the run, least recently used first.
        self._fragments: OrderedDict[str, LiveRun] = OrderedDict()
        self._limit_warned = Once()  # the limits this tracker has warned about
        self._service: str | None = None
        emitter.ended_hooks.append(self._forget)

    # --- this process's runs -----------------------------------------------------------------

    def start(
        self,
        execution_id: Any,
        goal_id: Any,
        goal_description: Any = "",
        input_data: Any = None,
        *,
        links: Sequence[Link] = (),
        extra_attributes: _codec.Attributes | None = None,
    ) -> LiveRun:
        """Start a run (not made current: the caller does that) and register it.

        A run still open for the same execution is ended as cancelled; runs over the
        limits are ended as stuck. ``execution_id`` None: a new one is generated.
        """
        live = self.emitter.start_run(
            execution_id, goal_id, goal_description, input_data,
            links=links, extra_attributes=extra_attributes,
        )  # fmt: skip
        execution_id = live.execution_id
        # pop, then insert: a reused execution id moves to the end, keeping the order by age.
        previous = self._runs.pop(execution_id, None)
        self._runs[execution_id] = live
        if previous is not None:
            _normalize.warn(
                f"start_run: execution {execution_id!r} already has run {previous.run_id}; "
                "that run is ended as cancelled"
            )
            previous.end(
                False, "", None, RunStatus.CANCELLED, end_reason="its execution started a new run"
            )
        self._enforce_limits(live.start_ns)
        return live

    def lookup(self, execution_id: Any) -> LiveRun | None:
        """The open run of an execution, or None (whatever ``execution_id`` is)."""
        try:
            return self._runs.get(execution_id)
        except Exception:  # expected: the agent's id, unhashable or a __hash__ that raises
            return None

    def current(self) -> LiveRun | None:
        """This context's current run if it is one of this registry's and still open."""
        live = _get_run()
        if live is not None and live.writer is self.emitter and live.end_ns is None:
            return live
        return None

    def for_call(self) -> LiveRun | None:
        """The run a recording call without ``execution_id`` is for: ``in_context(current())``
        in one call, the run's own block (the common case) answered first."""
        live = _get_run()
        if live is not None and live.writer is self.emitter and live.end_ns is None:
            if _get_current_context() is live.context:
                return live
            return self.in_context(live)
        return self.in_context(None)

    def active(self) -> list[LiveRun]:
        """The open runs of this process, oldest first (a copy)."""
        return list(self._runs.values())

    def execution_ids(self) -> list[str]:
        """Execution ids with a run in progress, oldest first."""
        return list(self._runs)

    def _forget(self, live: LiveRun) -> None:
        """An ended run leaves the registry (unless its execution has a newer one)."""
        if self._runs.get(live.execution_id) is live:
            with contextlib.suppress(KeyError):  # removed meanwhile by another thread
                del self._runs[live.execution_id]

    def _enforce_limits(self, now_ns: int) -> None:
        """End the oldest runs as stuck while there are too many or they are too old.

        O(1) amortized: only the head of the insertion-ordered runs is examined, and
        every run is ended at most once.
        """
        runs = self._runs
        oldest_allowed = now_ns - self.run_timeout_ns
        while runs:
            try:
                oldest = next(iter(runs.values()))
            except (StopIteration, RuntimeError):  # another thread changed runs: next time
                return
            if len(runs) > self.max_active_runs:
                reason = f"too many active runs (max_active_runs={self.max_active_runs})"
            elif oldest.start_ns < oldest_allowed:
                reason = "run did not end within run_timeout"
            else:
                return
            if runs.get(oldest.execution_id) is oldest:
                del runs[oldest.execution_id]
            else:  # ended meanwhile by its own thread
                continue
            warn_once(  # once per tracker and limit: no log storm
                reason.split(" ", 1)[0],
                "decisiontrace: run %s ended as stuck: %s",
                oldest.run_id,
                reason,
                once=self._limit_warned,
            )
            oldest.end(False, "", None, RunStatus.STUCK, end_reason=reason)

    # --- runs of other processes -------------------------------------------------------------

    def in_context(self, live: LiveRun | None) -> LiveRun | None:
        """The run to record into: ``live`` (this process's current run, or None) unless
        the current context names another run, then that one (see :meth:`remote_run`)."""
        if live is not None and _get_current_context() is live.context:
            return live  # inside the run's own block: nothing else can be named
        value = _get_value()
        if value is None or (live is not None and value == live.baggage):
            return live
        if live is None:
            current = _get_run()
            if current is not None and value == current.baggage:
                return None  # another tracker's run of this process: not this tracker's
        return self.remote_run(value) or live

    def remote_run(self, value: str) -> LiveRun | None:
        """The run the baggage ``value`` names: a run of this registry if it is one,
        else this process's fragment of it, started if need be.

        None when ``value`` names no run or the context carries no valid span context.
        """
        fragments = self._fragments
        live = fragments.get(value)
        if live is not None and live.end_ns is None:
            with contextlib.suppress(KeyError):  # forgotten meanwhile by another thread
                fragments.move_to_end(value)
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
            service = self._service = _remote.service_name(self.emitter.tracer)
        created = LiveRun(
            self.emitter,
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
        live = fragments.setdefault(value, created)
        if live is not created and live.end_ns is not None:
            fragments[value] = live = created
        self._forget_fragments(now)
        return live

    def fragments(self) -> list[LiveRun]:
        """The fragments of remote runs kept now, least recently used first (a copy)."""
        return list(self._fragments.values())

    def _forget_fragments(self, now_ns: int) -> None:
        """Forget the least recently used fragments beyond the limits (O(1) amortized)."""
        fragments = self._fragments
        idle_before = now_ns - self.run_timeout_ns
        while fragments:
            try:
                key, oldest = next(iter(fragments.items()))
            except (StopIteration, RuntimeError):  # changed by another thread: next time
                return
            if len(fragments) <= self.max_active_runs and oldest.last_used_ns >= idle_before:
                return
            if fragments.pop(key, None) is oldest:
                self.emitter.close_fragment(oldest)


__all__ = ["RunRegistry"]
