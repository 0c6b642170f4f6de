"""The core tracker as the original framework's runtime drives it.

The original's runtime starts a run twice for one execution (the execution manager,
then the orchestrator) and ends it twice (the orchestrator, then the execution manager
with the output). The original keeps one mutable ``Run`` per execution, so the first
run, still empty, is simply replaced, and the second ``end_run`` updates the run it
already handed to ``save_run``. :class:`CompatCore` gives the same results with spans:

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
from decisiontrace.models import RunStatus
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


class CompatCore(DecisionTracker):
    """A DecisionTracker that reports each run it ends and can re-open an empty run."""

    run_ended: Callable[[LiveRun], None] | None = None
    _keep_ended_spans = True  # a run's record is assembled from its spans when it ends

    def _finish(
        self,
        live: LiveRun,
        success: Any,
        narrative: Any,
        output_data: Any,
        status: RunStatus | str | None,
        *,
        remove: bool = True,
        end_reason: str | None = None,
        paused: bool = False,
    ) -> None:
        open_before = live.end_ns is None
        super()._finish(
            live, success, narrative, output_data, status,
            remove=remove, end_reason=end_reason, paused=paused,
        )  # fmt: skip
        callback = self.run_ended
        if open_before and live.end_ns is not None and callback is not None:
            try:
                callback(live)
            except Exception as error:
                internal_error("compat handing over a run", error)

    def restart(self, live: LiveRun, goal_id: Any, goal_description: Any, input_data: Any) -> str:
        """Re-open ``live`` (no decision yet) as a new run; "" if it no longer qualifies."""
        start_ns = time.time_ns()
        goal_id = _normalize.text(goal_id, "start_run(): goal_id")
        goal_description = _normalize.text(goal_description, "start_run(): goal_description")
        run_id = new_run_id(self._run_id_prefix, start_ns)
        attributes = _codec.run_start_attributes(
            run_id=run_id,
            goal_id=goal_id,
            goal_description=goal_description,
            stream_id=self.stream_id,
            execution_id=live.execution_id,
            input_data=input_data,
        )
        with live.lock:
            if live.end_ns is not None or live.decisions:
                return ""
            live.run_id = run_id
            live.goal_id = goal_id
            live.attributes = attributes
            live.current_node = "unknown"  # the original resets the node on start_run
            live.span.set_attributes(attributes)
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


__all__ = ["CompatCore", "amended"]
