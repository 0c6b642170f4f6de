"""configure() under logfire: runs are stored through logfire's provider, every one.

logfire installs a proxy around an SDK ``TracerProvider`` as the global provider, and
configures it once per process, so each case runs in its own interpreter, as an agent
would: logfire.configure(send_to_logfire=False) (no network), then dt.configure().
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("logfire", reason="logfire is not installed (the ecosystem extra)")

AGENT = textwrap.dedent(
    """
    import json, logging, sys
    import logfire
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import decisiontrace as dt

    store_url, head = sys.argv[1], float(sys.argv[2])
    warnings = []

    class Capture(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    logging.getLogger("decisiontrace").addHandler(Capture(logging.WARNING))

    class SeenRuns(SpanProcessor):
        # Sees every recorded span, sampled or not: the run spans and their flags.
        def __init__(self):
            self.runs = {}

        def on_end(self, span):
            if (span.attributes or {}).get("decisiontrace.span_kind") == "run":
                self.runs[span.attributes["decisiontrace.run.id"]] = {
                    "trace_id": span.context.trace_id,
                    "sampled": span.context.trace_flags.sampled,
                }

    exported = InMemorySpanExporter()
    seen = SeenRuns()
    logfire.configure(
        send_to_logfire=False,
        console=False,
        inspect_arguments=False,
        sampling=logfire.SamplingOptions(head=head),
        additional_span_processors=[SimpleSpanProcessor(exported), seen],
    )
    telemetry = dt.configure(store=store_url, metrics_exporter="none")
    tracker = dt.DecisionTracker("logfire-agent")
    for number in range(20):
        with tracker.run("answer", input_data={"number": number}):
            tracker.set_node("router")
            decision_id = tracker.decide(
                intent="Route", options=[{"id": "a", "description": "A"}], chosen="a",
                reasoning="only one",
            )
            tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=412)
    with logfire.span("outside any run"):
        pass
    telemetry.shutdown()
    store = dt.open_store(store_url)
    runs = [store.load_run(summary.run_id) for summary in store.list_runs()]
    print(json.dumps({
        "stored": [
            {"run_id": r.id, "decisions": r.metrics.total_decisions,
             "tokens": r.metrics.total_tokens, "status": r.status.value}
            for r in runs
        ],
        "seen": seen.runs,
        "exported_runs": sorted(
            s.attributes["decisiontrace.run.id"] for s in exported.get_finished_spans()
            if (s.attributes or {}).get("decisiontrace.span_kind") == "run"
        ),
        "exported_names": sorted({s.name for s in exported.get_finished_spans()}),
        "global_provider": type(__import__("opentelemetry").trace.get_tracer_provider()).__module__,
        "warnings": warnings,
    }))
    """
)


def run_agent(tmp_path: Path, head: float) -> dict[str, Any]:
    store_url = f"sqlite:///{tmp_path / 'runs.db'}"
    done = subprocess.run(
        [sys.executable, "-c", AGENT, store_url, str(head)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_every_run_is_stored_through_logfires_provider(tmp_path: Path) -> None:
    result = run_agent(tmp_path, head=1.0)
    assert result["global_provider"].startswith("logfire"), "logfire's proxy is global"
    stored = result["stored"]
    assert len(stored) == 20
    assert all(run["decisions"] == 1 and run["tokens"] == 412 for run in stored)
    assert {run["status"] for run in stored} == {"completed"}
    # Spans still go through logfire's pipeline: its processors export all 20 runs.
    assert sorted(run["run_id"] for run in stored) == result["exported_runs"]
    assert "outside any run" in result["exported_names"]
    assert result["warnings"] == []


def test_logfire_head_sampling_drops_no_run_from_the_store(tmp_path: Path) -> None:
    result = run_agent(tmp_path, head=0.5)
    stored = {run["run_id"] for run in result["stored"]}
    assert len(stored) == 20, "every run stored, whatever logfire samples"
    # What logfire exports is still logfire's choice: exactly the runs its sampler
    # sampled (a trace id ratio), the others recorded only.
    bound = round(0.5 * 2**64)
    sampled = {
        run_id for run_id, seen in result["seen"].items() if seen["trace_id"] & (2**64 - 1) < bound
    }
    assert {run_id for run_id, seen in result["seen"].items() if seen["sampled"]} == sampled
    assert set(result["exported_runs"]) == sampled
    assert 0 < len(sampled) < 20  # 20 fair coins: all alike once in 500 000 runs
    assert all(run["decisions"] == 1 and run["tokens"] == 412 for run in result["stored"])
    assert result["warnings"] == []
