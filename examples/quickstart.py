"""Quickstart: record one agent run, synchronously, and read it back from the store.

    python examples/quickstart.py

Runs go to the default store ($DECISIONTRACE_STORE, or
~/.local/share/decisiontrace/runs.db); spans also print to the console when
DECISIONTRACE_CONSOLE=1.
"""

from __future__ import annotations

import os

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

import decisiontrace as dt


def main() -> None:
    store = dt.open_store()
    provider = TracerProvider()
    provider.add_span_processor(dt.RunRecordProcessor(store))
    if os.environ.get("DECISIONTRACE_CONSOLE") == "1":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))

    tracker = dt.DecisionTracker("quickstart", tracer_provider=provider)
    with tracker.run(
        "support-goal", "Handle a support ticket", {"ticket": "How do I reset my password?"}
    ) as run:
        tracker.set_node("classifier")
        decision_id = tracker.decide(
            intent="Classify ticket",
            options=[
                {"id": "howto", "description": "How-to answer", "action_type": "route",
                 "pros": ["asks how to do something"], "confidence": 0.82},
                {"id": "bug", "description": "Bug triage", "action_type": "route",
                 "cons": ["no error described"], "confidence": 0.12},
            ],
            chosen="howto",
            reasoning="The question asks how to do something",
            decision_type=dt.DecisionType.PATH_CHOICE,
        )  # fmt: skip
        tracker.record_outcome(
            decision_id=decision_id,
            success=True,
            result={"category": "howto"},
            summary="Classified as how-to",
            tokens_used=412,
            latency_ms=230,
        )
        tracker.set_node("responder")
        decision_id = tracker.quick_decision(
            intent="Answer from the help center", action="search kb", reasoning="KB has it"
        )
        tracker.report_problem(
            severity="warning", description="Knowledge base slow", decision_id=decision_id
        )
        tracker.record_outcome(decision_id=decision_id, success=True, latency_ms=900)
        run.output_data = {"answer": "Use the 'Forgot password' link."}

    provider.shutdown()  # flushes the run-record processor
    stored = store.load_run(run.run_id)
    assert stored is not None
    print(f"stored {stored.id} in {store.url}")
    print(f"  status:    {stored.status.value}")
    print(f"  decisions: {stored.metrics.total_decisions} ({stored.metrics.success_rate:.0%} ok)")
    print(f"  nodes:     {', '.join(stored.metrics.nodes_executed)}")
    print(f"  narrative: {stored.narrative}")


if __name__ == "__main__":
    main()
