"""``decisiontrace export --format otlp-json`` (``export/_otlp_export.py``): a stored run's
spans, encoded by the tracker's own span-model functions, carry the totals and statuses
the store holds, and ``rebuild`` of them gives the stored run back."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry import trace

import decisiontrace as dt
from decisiontrace import rebuild
from decisiontrace.export._otlp_export import otlp_json_line
from decisiontrace.models import Run
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore
from tests.conftest import Pipeline

STATUS_ERROR = 2


def exported_spans(run: Run) -> list[dict[str, Any]]:
    line = json.loads(otlp_json_line(run))
    return [s for r in line["resourceSpans"] for g in r["scopeSpans"] for s in g["spans"]]


def attributes_of(span: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in span.get("attributes", []):
        value = item["value"]
        if "intValue" in value:
            values[item["key"]] = int(value["intValue"])
        else:
            values[item["key"]] = next(iter(value.values()))
    return values


def rebuilt(run: Run) -> Run:
    store = MemoryStore()
    result = rebuild([otlp_json_line(run)], store)
    assert result.errors == [] and result.run_ids == [run.id]
    loaded = store.load_run(run.id)
    assert loaded is not None
    return loaded


def stored(pipeline: Pipeline, run_id: str) -> Run:
    pipeline.flush()
    run = pipeline.store.load_run(run_id)
    assert run is not None
    return run


def test_the_exported_run_span_says_the_stored_totals_and_rebuilds_them(
    pipeline: Pipeline,
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    llm = pipeline.provider.get_tracer("llm-instrumentation")
    usage = (sc.GEN_AI_USAGE_INPUT_TOKENS, sc.GEN_AI_USAGE_OUTPUT_TOKENS)
    with tracker.run("g") as run:
        decision_id = tracker.decide(intent="answer", options=[], chosen="", reasoning="")
        decision_span = run._live.decisions[decision_id].span
        with (
            trace.use_span(decision_span, end_on_exit=False),
            llm.start_as_current_span("chat", attributes=dict(zip(usage, (15, 5), strict=True))),
        ):
            pass
        tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=100)
        # An LLM call outside every decision: the run's tokens, in no decision's.
        with llm.start_as_current_span("chat", attributes=dict(zip(usage, (30, 12), strict=True))):
            pass
    run_record = stored(pipeline, run.run_id)
    assert run_record.metrics.total_tokens == 100 + 20 + 42
    spans = exported_spans(run_record)
    [run_span] = [attributes_of(s) for s in spans if not s.get("parentSpanId")]
    [decision] = [attributes_of(s) for s in spans if s.get("parentSpanId")]
    assert run_span[sc.RUN_TOTAL_TOKENS] == run_record.metrics.total_tokens
    assert run_span[sc.RUN_LLM_TOKENS] == 42
    assert decision[sc.OUTCOME_TOKENS] == 120
    # The very attributes the tracker's run span had, totals included.
    [live_run_span] = [dict(s.attributes or {}) for s in pipeline.spans() if s.parent is None]
    for key in (sc.RUN_TOTAL_TOKENS, sc.RUN_LLM_TOKENS, sc.RUN_DECISION_COUNT, sc.RUN_STATUS):
        assert run_span[key] == live_run_span[key], key
    assert rebuilt(run_record) == run_record


def test_failed_and_stuck_runs_and_failed_decisions_export_with_status_error(
    pipeline: Pipeline,
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    run_ids = {}
    for status in ("failed", "stuck", "cancelled", "completed"):
        run_ids[status] = tracker.start_run(goal_id=status)
        decision_id = tracker.decide(intent="try", options=[], chosen="", reasoning="")
        tracker.record_outcome(decision_id=decision_id, success=False, error="boom")
        tracker.end_run(success=status == "completed", status=status)
    for status, run_id in run_ids.items():
        spans = exported_spans(stored(pipeline, run_id))
        [run_span] = [s for s in spans if not s.get("parentSpanId")]
        [decision] = [s for s in spans if s.get("parentSpanId")]
        expected = STATUS_ERROR if status in ("failed", "stuck") else 0
        assert run_span.get("status", {}).get("code", 0) == expected, status
        assert decision["status"] == {"code": STATUS_ERROR, "message": "boom"}
        live = [s for s in pipeline.spans() if (s.attributes or {}).get(sc.RUN_ID) == run_id]
        [live_run] = [s for s in live if s.parent is None]
        assert live_run.status.status_code.value == expected, status


def test_langgraph_and_fragment_extras_survive_export_and_rebuild() -> None:
    run = Run.model_validate(
        {
            "id": "run_graph_20251201_120000_0123abcd",
            "goal_id": "g",
            "started_at": "2025-12-01T12:00:00.250000",
            "completed_at": "2025-12-01T12:00:01.500000",
            "status": "completed",
            "narrative": "Run paused, resumable.",
            "decisions": [
                {
                    "id": "dec_0",
                    "timestamp": "2025-12-01T12:00:00.500000",
                    "node_id": "ask",
                    "intent": "ask the user",
                    "paused": True,
                    "span_id": "00000000000000b1",
                },
                {
                    "id": "dec_0@worker:7:0000abcd",
                    "timestamp": "2025-12-01T12:00:00.750000",
                    "node_id": "lookup",
                    "intent": "look up",
                    "service": "worker",
                    "span_id": "00000000000000b2",
                    "outcome": {
                        "success": True,
                        "tokens_used": 9,
                        "timestamp": "2025-12-01T12:00:00.800000",
                    },
                },
            ],
            "metrics": {
                "total_decisions": 2,
                "successful_decisions": 1,
                "total_tokens": 9,
                "nodes_executed": ["ask", "lookup"],
                "edges_traversed": ["ask->lookup"],
            },
            "output_data": {"answer": "later"},
            "paused": True,
            "thread_id": "thread-1",
            "resumed_from": "run_graph_20251201_115900_89abcdef",
            "end_reason": "interrupted",
            "trace_id": "0123456789abcdef0123456789abcdef",
            "span_id": "00000000000000a1",
            "service_name": "graph-agent",
        }
    )
    [run_span] = [attributes_of(s) for s in exported_spans(run) if not s.get("parentSpanId")]
    assert run_span[sc.RUN_PAUSED] is True
    assert (run_span[sc.RUN_THREAD_ID], run_span[sc.RUN_RESUMED_FROM]) == (
        "thread-1",
        "run_graph_20251201_115900_89abcdef",
    )
    assert run_span[sc.GEN_AI_AGENT_NAME] == "graph"  # the stream, from the run id
    assert rebuilt(run) == run
