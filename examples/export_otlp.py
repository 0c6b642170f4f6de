"""Export an agent's runs to an OTLP endpoint (a collector, Jaeger, Tempo) and store them.

The endpoint comes from the standard OpenTelemetry variables, so no code changes
between a laptop and production:

    # to a collector or Jaeger on this machine (OTLP/gRPC, the Python SDK's default)
    OTEL_SERVICE_NAME=support-agent OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 \\
        python examples/export_otlp.py

    # OTLP/HTTP instead
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \\
        python examples/export_otlp.py

    # no collector at hand: print spans and metrics to the console
    OTEL_TRACES_EXPORTER=console python examples/export_otlp.py

    # export 10% of runs (every run is still stored; failed ones are always exported)
    OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1 \\
        python examples/export_otlp.py

`collector-config/` has a collector, Jaeger, Tempo and Grafana ready to receive them.
Runs are stored too ($DECISIONTRACE_STORE, or the default store).
"""

from __future__ import annotations

import decisiontrace as dt
from decisiontrace.setup import configure

TICKETS = [
    ("T-1", "How do I reset my password?", True),
    ("T-2", "The export button crashes the app", True),
    ("T-3", "Refund my last invoice", False),  # this one goes wrong: always exported
]


def handle(tracker: dt.DecisionTracker, ticket_id: str, text: str, resolvable: bool) -> str:
    with tracker.run("support", "Resolve a support ticket", {"ticket": ticket_id}) as run:
        tracker.set_node("classifier")
        category = "bug" if "crash" in text else "billing" if "Refund" in text else "howto"
        decision_id = tracker.decide(
            intent="Classify ticket",
            options=[
                {"id": "howto", "description": "How-to answer", "action_type": "route"},
                {"id": "bug", "description": "Bug triage", "action_type": "route"},
                {"id": "billing", "description": "Billing desk", "action_type": "route"},
            ],
            chosen=category,
            reasoning=f"keywords point to {category}",
            decision_type=dt.DecisionType.PATH_CHOICE,
        )
        tracker.record_outcome(
            decision_id=decision_id, success=True, tokens_used=180, latency_ms=40
        )

        tracker.set_node("resolver")
        decision_id = tracker.decide(
            intent="Resolve",
            options=[{"id": "answer", "description": "Answer from the knowledge base"},
                     {"id": "escalate", "description": "Hand over to a person"}],
            chosen="answer",
            reasoning="the knowledge base covers it",
            decision_type=dt.DecisionType.TOOL_SELECTION,
        )  # fmt: skip
        tracker.record_outcome(
            decision_id=decision_id,
            success=resolvable,
            error=None if resolvable else "billing API unavailable",
            tokens_used=420,
            latency_ms=310,
        )
        if not resolvable:
            tracker.report_problem(severity="error", description="Billing API unavailable")
            run.success = False
    return run.run_id


def main() -> None:
    telemetry = configure()  # everything from the environment
    tracker = dt.DecisionTracker("support-agent")  # records through configure()'s provider
    run_ids = [handle(tracker, *ticket) for ticket in TICKETS]
    telemetry.shutdown()  # stores every run, exports what is queued, pushes metrics
    for run_id in run_ids:
        run = telemetry.store.load_run(run_id)
        print(f"{run_id}: {run.status.value if run else 'not stored'}")
    print(f"runs stored in {telemetry.store.url}")


if __name__ == "__main__":
    main()
