"""Problems reported on a live run: an event on the run span, or, in a fragment of a
run of another process (no run span here), a zero-length span of its own carrying it.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace

from decisiontrace.spanmodel import _codec
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.tracking import _arguments, _normalize
from decisiontrace.tracking._live import LiveRun

_time_ns = time.time_ns
_get_current_span = trace.get_current_span


def report(
    tracer: trace.Tracer,
    live: LiveRun,
    severity: Any,
    description: Any,
    decision_id: Any,
    root_cause: Any,
    suggested_fix: Any,
) -> str:
    """Record a problem: an event on the run span (a span of its own in a fragment).

    Returns its id, or "" (with a warning) if the run already ended.
    """
    time_ns = _time_ns()
    where = "report_problem()"
    with live.lock:
        problem_id = "" if live.end_ns is not None else live.next_problem_id()
    if not problem_id:
        _normalize.warn(f"{where} called for run {live.run_id} after it ended")
        return ""
    attributes = _arguments.problem_attributes(
        problem_id, severity, description, decision_id, root_cause, suggested_fix, where
    )
    fragment = live.fragment_id is not None
    with live.lock:
        ended = live.end_ns is not None
        if not ended:
            live.problems.append((attributes, time_ns))
            if not fragment:  # an event on the run span (no processor runs for it)
                live.span.add_event(sc.PROBLEM_EVENT, attributes, timestamp=time_ns)
    if ended:
        _normalize.warn(f"{where} called for run {live.run_id} after it ended")
        return ""
    if fragment:  # no run span here: the problem travels on a span of its own
        _problem_span(tracer, live, attributes, time_ns)
    return problem_id


def _problem_span(
    tracer: trace.Tracer, live: LiveRun, attributes: _codec.Attributes, time_ns: int
) -> None:
    """A problem of a fragment: a zero-length span carrying the problem event."""
    live.last_used_ns = time_ns
    current = _get_current_span().get_span_context()
    span = tracer.start_span(
        f"{sc.PROBLEM_SPAN_NAME_PREFIX} {attributes[sc.PROBLEM_SEVERITY]}",
        context=None if current.trace_id == live.trace_id else live.context,
        attributes={
            sc.SPAN_KIND: sc.KIND_PROBLEM,
            sc.RUN_ID: live.run_id,
            sc.GOAL_ID: live.goal_id,
            sc.FRAGMENT_ID: live.fragment_id or "",
            sc.FRAGMENT_SERVICE: live.service or "",
        },
        start_time=time_ns,
    )
    span.add_event(sc.PROBLEM_EVENT, attributes, timestamp=time_ns)
    span.end(end_time=time_ns)
