"""A stored Run back into OTLP JSON: the spans ``decisiontrace export --format otlp-json``
writes, as one line of the collector's file exporter, which ``rebuild`` reads back.

The spans are written by :func:`decisiontrace.export._otlp_json.request_line`; their attributes
are encoded by the same ``_codec`` functions the tracker uses.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, TraceFlags

from decisiontrace._version import __version__
from decisiontrace.export._otlp_json import request_line
from decisiontrace.models import Run
from decisiontrace.spanmodel import _codec, _ids, _records
from decisiontrace.spanmodel import semconv as sc

__all__ = ["otlp_json_line"]


def _epoch_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch of a record's naive local time, exact to the microsecond."""
    whole = int(moment.replace(microsecond=0).timestamp())
    return whole * 1_000_000_000 + moment.microsecond * 1000


def _span_id(run_id: str, part: str, size: int) -> int:
    # Ids derived from the run id, for records that keep none (written before trace
    # identity was stored, or by the original tracker): exporting a run twice gives
    # the same spans, which rebuild then counts once.
    digest = hashlib.sha256(f"{run_id}/{part}".encode()).digest()
    return int.from_bytes(digest[:size], "big") or 1


def _stored_id(value: object, size: int) -> int | None:
    """An id a record keeps (``trace_id``/``span_id`` extras, hex), or None if it has none."""
    if not isinstance(value, str) or len(value) != size * 2:
        return None
    try:
        number = int(value, 16)
    except ValueError:
        return None
    return number or None


def _run_end_attributes(run: Run, record: dict[str, Any]) -> _codec.Attributes:
    """The run span's end attributes, encoded as the tracker encodes them, with the
    stored totals: the tokens of no decision are the run's LLM tokens."""
    metrics = run.metrics
    decision_tokens = sum(d.outcome.tokens_used for d in run.decisions if d.outcome is not None)
    totals = _records.Totals(
        decisions=metrics.total_decisions,
        successful=metrics.successful_decisions,
        failed=metrics.failed_decisions,
        tokens=min(decision_tokens, metrics.total_tokens),
        latency_ms=metrics.total_latency_ms,
    )
    end_reason = record.get("end_reason")
    return _codec.run_end_attributes(
        status=run.status.value,
        narrative=run.narrative,
        totals=totals,
        problem_count=len(run.problems),
        nodes=metrics.nodes_executed,
        llm_tokens=metrics.total_tokens - totals.tokens,
        edges=metrics.edges_traversed,
        output_data=record["output_data"],
        end_reason=end_reason if isinstance(end_reason, str) else None,
        paused=record.get("paused") is True,
    )


def otlp_json_line(run: Run) -> str:
    """The run's spans as one OTLP JSON request (a line of the collector's file exporter).

    The spans carry the attributes of the span model, encoded by the same ``_codec``
    functions the tracker uses, so ``rebuild`` of the line gives back the same Run. What
    the record does not keep (stream and execution ids, LLM spans: their tokens are in
    the outcomes already) is not invented: the stream comes from the run id when it has
    the tracker's form. The trace and span ids are the ones the record keeps
    (``trace_id``/``span_id`` extras), so the exported spans are the run's real spans,
    and the resource carries the ``service.name`` it kept; records without them get
    ids derived from the run id.
    """
    record = run.model_dump(mode="json")
    trace_id = _stored_id(record.get("trace_id"), 16) or _span_id(run.id, "trace", 16)
    scope = InstrumentationScope("decisiontrace", __version__)
    service_name = record.get("service_name")
    resource = (
        Resource({SERVICE_NAME: service_name})
        if isinstance(service_name, str) and service_name
        else Resource.get_empty()
    )
    stream = _ids.stream_of_run_id(run.id)

    def context(span_id: int) -> SpanContext:
        return SpanContext(trace_id, span_id, False, TraceFlags(TraceFlags.SAMPLED))

    started = _epoch_ns(run.started_at)
    ended = _epoch_ns(run.completed_at) if run.completed_at else started
    run_context = context(_stored_id(record.get("span_id"), 8) or _span_id(run.id, "run", 8))
    spans = []
    for decision, stored in zip(run.decisions, record["decisions"], strict=True):
        attributes = _codec.decision_attributes(
            run_id=run.id,
            decision_id=decision.id,
            intent=decision.intent,
            options=stored["options"],
            chosen=decision.chosen_option_id,
            reasoning=decision.reasoning,
            node_id=decision.node_id,
            decision_type=decision.decision_type.value,
            constraints=decision.active_constraints,
            context=decision.input_context,
            where="export",
        )
        if decision.evaluation is not None:
            attributes[sc.DECISION_EVALUATION] = json.dumps(stored["evaluation"])
        if isinstance(stored.get("service"), str):  # recorded in another process
            attributes[sc.FRAGMENT_SERVICE] = stored["service"]
        if stored.get("paused") is True:
            attributes[sc.DECISION_PAUSED] = True
        outcome = decision.outcome
        status: Status | None = None
        end = ended
        if outcome is not None:
            attributes.update(
                _codec.outcome_attributes(
                    success=outcome.success,
                    result=outcome.result,
                    error=outcome.error,
                    summary=outcome.summary,
                    state_changes=outcome.state_changes,
                    tokens_used=outcome.tokens_used,
                    latency_ms=outcome.latency_ms,
                    where="export",
                )
            )
            end = _epoch_ns(outcome.timestamp)
            status = _codec.outcome_span_status(outcome.success, outcome.error)
        spans.append(
            ReadableSpan(
                name=f"{sc.DECISION_SPAN_NAME_PREFIX} {decision.intent}",
                context=context(
                    _stored_id(stored.get("span_id"), 8) or _span_id(run.id, decision.id, 8)
                ),
                parent=run_context,
                resource=resource,
                attributes=attributes,
                kind=SpanKind.INTERNAL,
                status=status or Status(),
                start_time=_epoch_ns(decision.timestamp),
                end_time=end,
                instrumentation_scope=scope,
            )
        )
    attributes = _codec.run_start_attributes(
        run_id=run.id,
        goal_id=run.goal_id,
        goal_description=run.goal_description,
        stream_id=stream or "",
        execution_id="",
        input_data=run.input_data,
    )
    for key, name in ((sc.RUN_THREAD_ID, "thread_id"), (sc.RUN_RESUMED_FROM, "resumed_from")):
        if isinstance(record.get(name), str):
            attributes[key] = record[name]
    attributes.update(_run_end_attributes(run, record))
    events = [
        Event(
            sc.PROBLEM_EVENT,
            _codec.problem_attributes(
                problem_id=problem.id,
                severity=problem.severity,
                description=problem.description,
                decision_id=problem.decision_id,
                root_cause=problem.root_cause,
                suggested_fix=problem.suggested_fix,
            ),
            _epoch_ns(problem.timestamp),
        )
        for problem in run.problems
    ]
    spans.insert(
        0,
        ReadableSpan(
            name=f"{sc.RUN_SPAN_NAME_PREFIX} {stream if stream is not None else run.goal_id}",
            context=run_context,
            resource=resource,
            attributes=attributes,
            events=events,
            kind=SpanKind.INTERNAL,
            status=_codec.run_span_status(run.status.value) or Status(),
            start_time=started,
            end_time=ended,
            instrumentation_scope=scope,
        ),
    )
    return request_line(spans)
