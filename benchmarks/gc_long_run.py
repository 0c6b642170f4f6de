"""Where a long run's growing cost per decision went: the garbage collector.

    .venv/bin/python benchmarks/gc_long_run.py [decisions]   # default 50,000

One open run of ``decisions`` decisions (``decide`` + ``record_outcome``, the long-run
scenario's workload), in tenths. For each tenth: the caller's CPU per decision
(``time.thread_time``), the objects the collector tracks at its end, and the caller's
CPU per decision spent in collections of each generation (``gc.callbacks``, timed with
``time.thread_time``). A full collection (generation 2) scans every tracked object, so
if an open run keeps tracked objects per decision, each costs more than the last.
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from workload import OPTIONS, NoopExporter

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore


def main() -> int:
    decisions = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    tenth = decisions // 10
    store = SQLiteStore(Path(tempfile.mkdtemp(prefix="decisiontrace-gc-")) / "gc.db")
    processor = dt.RunRecordProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(NoopExporter()))
    tracker = dt.DecisionTracker("gc", tracer_provider=provider)

    def decide() -> None:
        decision_id = tracker.decide(
            intent="Classify ticket", options=OPTIONS, chosen="howto", reasoning="matches",
            node_id="classifier", decision_type="path_choice",
        )  # fmt: skip
        tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=10)

    for _ in range(100):  # warm up
        with tracker.run("warm-up"):
            for _ in range(10):
                decide()
    processor.force_flush()

    spent: dict[int, float] = {}
    started = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:  # the writer's collections count on its own thread's clock, not here
            generation = info["generation"]
            spent[generation] = spent.get(generation, 0.0) + time.thread_time() - started[0]

    gc.collect()
    gc.callbacks.append(timed)
    print(f"one run of {decisions:,} decisions, by tenth (µs per decision, caller's CPU)")
    print(f"{'tenth':>5s} {'total':>7s} {'gen0':>6s} {'gen1':>6s} {'gen2':>6s} {'tracked':>8s}")
    try:
        with tracker.run("long"):
            for index in range(10):
                spent.clear()
                begun = time.thread_time()
                for _ in range(tenth):
                    decide()
                total = (time.thread_time() - begun) / tenth * 1e6
                per = [spent.get(g, 0.0) / tenth * 1e6 for g in range(3)]
                print(
                    f"{index:5d} {total:7.1f} {per[0]:6.1f} {per[1]:6.1f} {per[2]:6.1f} "
                    f"{len(gc.get_objects()):8d}"
                )
    finally:
        gc.callbacks.remove(timed)
        processor.force_flush()
        provider.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
