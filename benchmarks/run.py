"""decisiontrace benchmarks: what recording a decision costs, against a bare SDK span.

    make bench                       # full run, writes benchmarks/results/latest.json
    python benchmarks/run.py --quick # a shorter run for a quick look

Everything is measured in one process. The per-decision scenarios run interleaved:
each repeat runs a batch of every scenario, in rotated order, and the report gives
medians over repeats and ratios of medians, so drift and noise hit all alike.

Scenarios (each run has one root span and 10 decisions with 3 options each):
- raw: the floor. The same run written by hand against the SDK: the same typed
  attributes and the options as one JSON string, a BatchSpanProcessor, no-op exporter.
- manual: tracker.run / decide / record_outcome, with the RunRecordProcessor on a
  SQLite store, plus the same batch export.
- decorated_sync / decorated_async: the same through @decisiontrace.decision.
- disabled: a decorated function with no SDK installed (no-op tracer), outside and
  inside a run, against the bare function: overhead per call.
- end_to_end: N runs recorded, then force_flush until all are in SQLite: decisions
  recorded and persisted per second, and as a ratio to raw recording alone.
- memory: RSS and tracemalloc growth over 100,000 decisions in finished runs (after
  they are stored), and the bytes held per active (unfinished) run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import decisiontrace as dt
from decisiontrace import semconv as sc
from decisiontrace.stores import SQLiteStore

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


# --- measuring -----------------------------------------------------------------------


def per_decision_us(fn: Callable[[], None], runs: int) -> float:
    started = time.perf_counter()
    for _ in range(runs):
        fn()
    return (time.perf_counter() - started) / (runs * DECISIONS_PER_RUN) * 1e6


def interleaved(
    scenarios: dict[str, Callable[[], None]],
    repeats: int,
    runs: int,
    between: Callable[[], None],
) -> dict[str, list[float]]:
    """Per-decision µs of each scenario, per repeat, in rotated order."""
    samples: dict[str, list[float]] = {name: [] for name in scenarios}
    names = list(scenarios)
    for name in names:  # warm up caches, JIT-free but allocator and import warm
        per_decision_us(scenarios[name], max(1, runs // 10))
    between()
    for repeat in range(repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            gc.collect()
            samples[name].append(per_decision_us(scenarios[name], runs))
            between()
    return samples


def disabled_overhead(calls: int, repeats: int) -> dict[str, float]:
    """µs per call a decorated function costs over the bare one, with no SDK installed."""
    tracker = dt.DecisionTracker("bench-disabled")  # the global no-op tracer

    def bare(ticket: int) -> str:
        return "howto"

    decorated = dt.decision("Classify ticket", options=OPTIONS, tracker=tracker)(bare)

    def loop(fn: Callable[[int], str]) -> float:
        started = time.perf_counter()
        for index in range(calls):
            fn(index)
        return (time.perf_counter() - started) / calls * 1e6

    def inside_run() -> float:
        with tracker.run("support"):
            return loop(decorated)

    bare_samples, outside, inside = [], [], []
    for _ in range(repeats):
        bare_samples.append(loop(bare))
        outside.append(loop(decorated))
        inside.append(inside_run())
    bare_us = statistics.median(bare_samples)
    return {
        "bare_call_us": bare_us,
        "outside_run_overhead_us": statistics.median(outside) - bare_us,
        "inside_run_overhead_us": statistics.median(inside) - bare_us,
    }


def end_to_end(runs: int, repeats: int, workdir: Path) -> dict[str, float]:
    """Decisions recorded and persisted per second, against raw recording alone.

    Raw and persisted batches alternate over ``repeats``, and medians are compared, so
    both see the same machine.
    """
    raw_rates: list[float] = []
    rates: list[float] = []
    stored = 0
    decisions = runs * DECISIONS_PER_RUN
    for repeat in range(repeats):
        raw_provider = TracerProvider()
        raw_provider.add_span_processor(batch_processor())
        raw_tracer = raw_provider.get_tracer("raw")
        started = time.perf_counter()
        for _ in range(runs):
            raw_run(raw_tracer)
        raw_provider.force_flush()
        raw_rates.append(decisions / (time.perf_counter() - started))
        raw_provider.shutdown()

        store = SQLiteStore(workdir / f"e2e-{repeat}.db")
        processor = dt.RunRecordProcessor(store)
        provider = TracerProvider()
        provider.add_span_processor(processor)
        provider.add_span_processor(batch_processor())
        tracker = dt.DecisionTracker("bench", tracer_provider=provider)
        started = time.perf_counter()
        for _ in range(runs):
            manual_run(tracker)
        while not processor.force_flush(60_000):
            pass
        rates.append(decisions / (time.perf_counter() - started))
        stored = len(store.list_runs())
        provider.shutdown()
    raw_rate, rate = statistics.median(raw_rates), statistics.median(rates)
    return {
        "runs": runs,
        "repeats": repeats,
        "runs_stored": stored,
        "raw_decisions_per_s": raw_rate,
        "persisted_decisions_per_s": rate,
        "ratio_to_raw": rate / raw_rate,
    }


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def memory(decisions: int, active_runs: int, workdir: Path) -> dict[str, float]:
    """Growth over many decisions in finished runs, and the cost of an active run."""
    store = SQLiteStore(workdir / "memory.db")
    processor = dt.RunRecordProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(batch_processor())
    tracker = dt.DecisionTracker("bench", tracer_provider=provider)
    for _ in range(200):  # warm up: caches, connections, the writer thread
        manual_run(tracker)
    processor.force_flush()
    provider.force_flush()
    gc.collect()
    tracemalloc.start()
    rss_before = rss_bytes()
    traced_before = tracemalloc.get_traced_memory()[0]
    for _ in range(decisions // DECISIONS_PER_RUN):
        manual_run(tracker)
    processor.force_flush()
    provider.force_flush()
    gc.collect()
    traced_after = tracemalloc.get_traced_memory()[0]
    rss_after = rss_bytes()

    traced_open_before = tracemalloc.get_traced_memory()[0]
    for index in range(active_runs):
        execution_id = f"open-{index}"
        tracker.start_run(execution_id=execution_id, goal_id="support", input_data={"t": index})
        for _ in range(DECISIONS_PER_RUN):
            decision_id = tracker.decide(
                execution_id=execution_id,
                intent="Classify ticket",
                options=OPTIONS,
                chosen="howto",
                reasoning="matches",
            )
            tracker.record_outcome(execution_id=execution_id, decision_id=decision_id, success=True)
    gc.collect()
    per_active_run = (tracemalloc.get_traced_memory()[0] - traced_open_before) / active_runs
    tracemalloc.stop()
    for index in range(active_runs):
        tracker.end_run(execution_id=f"open-{index}", success=True)
    provider.shutdown()
    return {
        "decisions": decisions,
        "traced_growth_bytes": traced_after - traced_before,
        "rss_growth_bytes": rss_after - rss_before,
        "bytes_per_active_run": per_active_run,
    }


# --- report --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    repeats, runs = (5, 50) if args.quick else (15, 200)
    e2e_runs, memory_decisions = (500, 20_000) if args.quick else (3000, 100_000)

    workdir = Path(tempfile.mkdtemp(prefix="decisiontrace-bench-"))
    raw_provider = TracerProvider()
    raw_provider.add_span_processor(batch_processor())
    raw_tracer = raw_provider.get_tracer("raw")

    store = SQLiteStore(workdir / "manual.db")
    processor = dt.RunRecordProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(batch_processor())
    tracker = dt.DecisionTracker("bench", tracer_provider=provider)
    decorated_sync, decorated_async = make_decorated(tracker)

    def between() -> None:
        # Drain the queues outside the timed batches, so each batch starts alike.
        raw_provider.force_flush()
        provider.force_flush()

    samples = interleaved(
        {
            "raw": lambda: raw_run(raw_tracer),
            "manual": lambda: manual_run(tracker),
            "decorated_sync": decorated_sync,
            "decorated_async": decorated_async,
        },
        repeats,
        runs,
        between,
    )
    provider.shutdown()
    raw_provider.shutdown()

    medians = {name: statistics.median(values) for name, values in samples.items()}
    raw = medians["raw"]
    disabled = disabled_overhead(calls=20_000, repeats=repeats)
    e2e = end_to_end(e2e_runs, 3 if args.quick else 5, workdir)
    mem = memory(memory_decisions, active_runs=500, workdir=workdir)

    targets = {
        "manual <= 1.3x raw": medians["manual"] / raw <= 1.3,
        "decorated_sync <= 1.4x raw": medians["decorated_sync"] / raw <= 1.4,
        "decorated_async <= 1.4x raw": medians["decorated_async"] / raw <= 1.4,
        "disabled <= 3 us per call": max(
            disabled["outside_run_overhead_us"], disabled["inside_run_overhead_us"]
        )
        <= 3.0,
        "end_to_end >= 0.6x raw": e2e["ratio_to_raw"] >= 0.6,
        "memory growth <= 1 MiB": mem["traced_growth_bytes"] <= 1 << 20,
    }
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "repeats": repeats,
        "runs_per_batch": runs,
        "per_decision_us": {
            name: {
                "median": medians[name],
                "min": min(values),
                "max": max(values),
                "ratio_to_raw": medians[name] / raw,
            }
            for name, values in samples.items()
        },
        "disabled": disabled,
        "end_to_end": e2e,
        "memory": mem,
        "targets_met": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"decisiontrace benchmarks ({repeats} interleaved repeats x {runs} runs x 10 decisions)")
    print(f"{'scenario':18s} {'µs/decision':>12s} {'ratio':>7s}")
    for name in samples:
        print(f"{name:18s} {medians[name]:12.1f} {medians[name] / raw:6.2f}x")
    print(
        f"{'disabled':18s} outside a run +{disabled['outside_run_overhead_us']:.2f} µs/call, "
        f"inside +{disabled['inside_run_overhead_us']:.2f} µs/call "
        f"(bare call {disabled['bare_call_us']:.2f} µs)"
    )
    print(
        f"{'end to end':18s} {e2e['persisted_decisions_per_s']:,.0f} decisions/s persisted "
        f"vs {e2e['raw_decisions_per_s']:,.0f}/s raw = {e2e['ratio_to_raw']:.2f}x "
        f"({e2e['runs_stored']:.0f}/{e2e['runs']:.0f} runs stored)"
    )
    print(
        f"{'memory':18s} +{mem['traced_growth_bytes'] / 1024:.0f} KiB traced, "
        f"+{mem['rss_growth_bytes'] / 1024:.0f} KiB RSS after {mem['decisions']:,.0f} decisions; "
        f"{mem['bytes_per_active_run'] / 1024:.1f} KiB per active run"
    )
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
