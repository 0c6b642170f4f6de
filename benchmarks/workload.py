"""The workload every benchmark records: runs of 10 decisions with 3 options each."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import decisiontrace as dt
from decisiontrace.spanmodel import semconv as sc

DECISIONS_PER_RUN = 10
OPTIONS: list[dict[str, Any]] = [
    {
        "id": "howto",
        "description": "Route to how-to answer",
        "action_type": "route",
        "action_params": {"queue": "docs"},
        "pros": ["matches how-to pattern"],
        "cons": [],
        "confidence": 0.82,
    },
    {
        "id": "bug",
        "description": "Route to bug triage",
        "action_type": "route",
        "action_params": {},
        "pros": [],
        "cons": ["no error described"],
        "confidence": 0.12,
    },
    {
        "id": "billing",
        "description": "Route to billing",
        "action_type": "route",
        "action_params": {},
        "pros": [],
        "cons": [],
        "confidence": 0.06,
    },
]
OPTION_IDS = [o["id"] for o in OPTIONS]
RESULTS = Path(__file__).resolve().parent / "results"


class NoopExporter(SpanExporter):
    """Exports nothing, as fast as possible."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def batch_processor() -> BatchSpanProcessor:
    # A queue large enough that no scenario drops spans: dropping would flatter it.
    return BatchSpanProcessor(NoopExporter(), max_queue_size=200_000, max_export_batch_size=2048)


# --- the scenarios -----------------------------------------------------------------


def raw_run(tracer: trace.Tracer) -> None:
    """One run written by hand: the attributes the tracker writes, no tracker."""
    root = tracer.start_span(
        "invoke_agent bench",
        attributes={
            sc.SPAN_KIND: sc.KIND_RUN,
            sc.RUN_ID: "run_bench",
            sc.GOAL_ID: "support",
            sc.GOAL_DESCRIPTION: "",
            sc.STREAM_ID: "bench",
            sc.EXECUTION_ID: "e",
            sc.RUN_INPUT: json.dumps({"ticket": 1}),
            sc.GEN_AI_OPERATION_NAME: "invoke_agent",
            sc.GEN_AI_AGENT_NAME: "bench",
            sc.GEN_AI_AGENT_DESCRIPTION: "",
            sc.GEN_AI_CONVERSATION_ID: "e",
        },
    )
    context = trace.set_span_in_context(root)
    for index in range(DECISIONS_PER_RUN):
        span = tracer.start_span(
            "decision Classify ticket",
            context=context,
            attributes={
                sc.SPAN_KIND: sc.KIND_DECISION,
                sc.RUN_ID: "run_bench",
                sc.DECISION_ID: f"dec_{index}",
                sc.DECISION_INTENT: "Classify ticket",
                sc.DECISION_TYPE: "path_choice",
                sc.NODE_ID: "classifier",
                sc.DECISION_CHOSEN_ID: "howto",
                sc.DECISION_REASONING: "matches",
                sc.DECISION_CONSTRAINTS: [],
                sc.DECISION_INPUT_CONTEXT: "{}",
                sc.DECISION_OPTIONS: json.dumps(OPTIONS),
                sc.DECISION_OPTION_IDS: OPTION_IDS,
                sc.DECISION_OPTION_COUNT: 3,
                sc.DECISION_CHOSEN_CONFIDENCE: 0.82,
            },
        )
        span.set_attributes(
            {
                sc.OUTCOME_SUCCESS: True,
                sc.OUTCOME_SUMMARY: "",
                sc.OUTCOME_TOKENS: 10,
                sc.OUTCOME_LATENCY_MS: 1,
            }
        )
        span.end()
    root.set_attributes(
        {
            sc.RUN_STATUS: "completed",
            sc.RUN_NARRATIVE: "Run completed successfully.",
            sc.RUN_DECISION_COUNT: DECISIONS_PER_RUN,
            sc.RUN_SUCCESS_COUNT: DECISIONS_PER_RUN,
            sc.RUN_FAILURE_COUNT: 0,
            sc.RUN_TOTAL_TOKENS: 100,
            sc.RUN_PROBLEM_COUNT: 0,
            sc.RUN_NODES: ["classifier"],
        }
    )
    root.end()


def manual_run(tracker: dt.DecisionTracker) -> None:
    """The same run through the tracker API."""
    with tracker.run("support", input_data={"ticket": 1}):
        for _ in range(DECISIONS_PER_RUN):
            decision_id = tracker.decide(
                intent="Classify ticket",
                options=OPTIONS,
                chosen="howto",
                reasoning="matches",
                node_id="classifier",
                decision_type="path_choice",
            )
            tracker.record_outcome(
                decision_id=decision_id, success=True, tokens_used=10, latency_ms=1
            )


def make_decorated(tracker: dt.DecisionTracker) -> tuple[Callable[[], None], Callable[[], None]]:
    """Sync and async runs of 10 calls to a @decision function."""

    @dt.decision(
        "Classify ticket",
        options=OPTIONS,
        decision_type="path_choice",
        node_id="classifier",
        reasoning="matches",
        tracker=tracker,
    )
    def classify(ticket: int) -> str:
        return "howto"

    @dt.decision(
        "Classify ticket",
        options=OPTIONS,
        decision_type="path_choice",
        node_id="classifier",
        reasoning="matches",
        tracker=tracker,
    )
    async def classify_async(ticket: int) -> str:
        return "howto"

    def sync_run() -> None:
        with tracker.run("support", input_data={"ticket": 1}):
            for index in range(DECISIONS_PER_RUN):
                classify(index)

    async def async_run() -> None:
        async with tracker.run("support", input_data={"ticket": 1}):
            for index in range(DECISIONS_PER_RUN):
                await classify_async(index)

    loop = asyncio.new_event_loop()

    def async_runner() -> None:
        loop.run_until_complete(async_run())

    return sync_run, async_runner
