"""Throughput and memory measures of run.py: disabled cost, end to end, memory."""

from __future__ import annotations

import gc
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from scenarios import raw_light_run
from workload import DECISIONS_PER_RUN, OPTIONS, batch_processor, manual_run, raw_run

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore


def disabled_overhead(calls: int, repeats: int) -> dict[str, float]:
    """µs per call a decorated function costs over the bare one, with no SDK installed."""
    tracker = dt.DecisionTracker("bench-disabled")  # the global no-op tracer

    def bare(ticket: int) -> str:
        return "howto"

    decorated = dt.decision("Classify ticket", options=OPTIONS, tracker=tracker)(bare)

    def loop(fn: Callable[[int], str]) -> float:
        started = time.thread_time()
        for index in range(calls):
            fn(index)
        return (time.thread_time() - started) / calls * 1e6

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
    light_rates: list[float] = []
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
        started = time.perf_counter()
        for _ in range(runs):
            raw_light_run(raw_tracer, OPTIONS)
        raw_provider.force_flush()
        light_rates.append(decisions / (time.perf_counter() - started))
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
    light_rate = statistics.median(light_rates)
    return {
        "runs": runs,
        "repeats": repeats,
        "runs_stored": stored,
        "raw_decisions_per_s": raw_rate,
        "persisted_decisions_per_s": rate,
        "ratio_to_raw": rate / raw_rate,
        "raw_light_decisions_per_s": light_rate,
        "ratio_to_raw_light": rate / light_rate,
        "persisted_min_max_per_s": [min(rates), max(rates)],
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
