"""The core tracker as the original framework's runtime drives it.

The original's runtime starts a run twice for one execution (the execution manager,
then the orchestrator) and ends it twice (the orchestrator, then the execution manager
with the output). The original keeps one mutable ``Run`` per execution, so the first
run, still empty, is simply replaced, and the second ``end_run`` updates the run it
already handed to ``save_run``. The functions here give the same results with spans:

- a second ``start_run`` for an execution whose run has no decision yet re-opens that
  run under the new id, goal and input (its span is reused: nothing is stored for the
  first one, and problems reported meanwhile stay with the run);
- every run that ends is passed, with its ended spans, to a callback, which keeps it
  so that a later ``end_run`` for the same execution can amend it (:func:`amended`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from decisiontrace._internal.errors import internal_error
from decisiontrace.spanmodel import _codec
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._decode import SpanData
from decisiontrace.spanmodel._redact import redact_text
from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking import _normalize
from decisiontrace.tracking._arguments import new_run_id
from decisiontrace.tracking._live import LiveRun
from decisiontrace.tracking.tracker import DecisionTracker

logger = logging.getLogger("decisiontrace")


def compat_tracker(
    stream_id: str,
    *,
    tracer_provider: Any,
    outcome_aggregator: Any,
    run_id_prefix: str | None = None,
) -> DecisionTracker:
    """A tracker whose ended decisions keep their SDK spans (a run's record is
    assembled from its spans when it ends), naming runs ``{run_id_prefix}...``."""
    tracker = DecisionTracker(
        stream_id, tracer_provider=tracer_provider, outcome_aggregator=outcome_aggregator
    )
    tracker.emitter.keep_ended_spans = True
    if run_id_prefix is not None:
        tracker.emitter.run_id_prefix = run_id_prefix
    return tracker


def on_run_ended(tracker: DecisionTracker, callback: Callable[[LiveRun], None]) -> None:
    """Call ``callback`` with every run ``tracker`` ends (its errors are fenced off)."""

    def hook(live: LiveRun) -> None:
        try:
            callback(live)
        except Exception as error:
            internal_error("compat handing over a run", error)

    tracker.emitter.ended_hooks.append(hook)


def restart(
    tracker: DecisionTracker, live: LiveRun, goal_id: Any, goal_description: Any, input_data: Any
) -> str:
    """Re-open ``live`` (no decision yet) as a new run; "" if it no longer qualifies."""
    start_ns = time.time_ns()
    goal_id = _normalize.text(goal_id, "start_run(): goal_id")
    goal_description = _normalize.text(goal_description, "start_run(): goal_description")
    emitter = tracker.emitter
    run_id = new_run_id(emitter.run_id_prefix, start_ns)
    attributes = _codec.run_start_attributes(
        run_id=run_id,
        goal_id=goal_id,
        goal_description=goal_description,
        stream_id=emitter.stream_id,
        execution_id=live.execution_id,
        input_data=input_data,
    )
    if not live.reopen(run_id, goal_id, attributes):
        return ""
    ctx.current_run.set(live)
    return run_id


def amended(run: SpanData, success: Any, narrative: Any, output_data: Any) -> SpanData:
    """The run span as a second ``end_run`` leaves it: its status, narrative and output.

    As in the original, the output is replaced (by ``{}`` when none is given), the
    narrative is generated again when none is given, and the run completes again now.
    """
    status = _codec.ended_status(bool(success))
    attributes = dict(run.attributes)
    attributes[sc.RUN_STATUS] = status
    attributes.pop(sc.RUN_END_REASON, None)
    text = redact_text(_normalize.text(narrative, "end_run(): narrative"))
    if text:
        attributes[sc.RUN_NARRATIVE] = text
    else:  # generated from the record, as end_run generates it
        attributes.pop(sc.RUN_NARRATIVE, None)
    if output_data:
        attributes[sc.RUN_OUTPUT] = _normalize.json_object_attr(
            output_data, "end_run(): output_data"
        )
    else:
        attributes.pop(sc.RUN_OUTPUT, None)
    return SpanData(
        trace_id=run.trace_id,
        span_id=run.span_id,
        parent_id=run.parent_id,
        name=run.name,
        start_ns=run.start_ns,
        end_ns=time.time_ns(),
        attributes=attributes,
        events=run.events,
        error=_codec.is_error_status(status),
    )


__all__ = ["amended", "compat_tracker", "on_run_ended", "restart"]
