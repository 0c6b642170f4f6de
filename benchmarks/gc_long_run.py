"""Where a long run's growing cost per decision went: the garbage collector.

    .venv/bin/python benchmarks/gc_long_run.py [decisions] [--json]   # default 50,000

First runs of 10 decisions (as many decisions as a tenth), then one open run of
``decisions`` decisions (``decide`` + ``record_outcome``, the long-run scenario's
workload), in tenths. For each: the caller's CPU per decision (``time.thread_time``),
the objects the collector tracks at its end, the caller's CPU per decision spent in
collections of each generation, and what one collection of each generation cost
(``gc.callbacks``, timed with ``time.thread_time``, on the caller's thread only). A full
collection (generation 2) scans every tracked object, so if an open run keeps tracked
objects per decision, each costs more than the last; young collections (0 and 1) that
cost more as the run grows mean what the run keeps slows them down without being
tracked (many small objects among the agent's short-lived ones).

With ``--json`` the last line is the result as JSON (``ab_gc.py`` compares two trees).
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from workload import OPTIONS, NoopExporter

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore


def main() -> int:
    args = [a for a in sys.argv[1:] if a != "--json"]
    decisions = int(args[0]) if args else 50_000
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

    caller = threading.get_ident()
    spent = [0.0, 0.0, 0.0]
    count = [0, 0, 0]
    started = [0.0]

    def timed(phase: str, info: dict[str, Any]) -> None:
        if threading.get_ident() != caller:  # the writer's collections: its own clock
            return
        if phase == "start":
            started[0] = time.thread_time()
        else:
            generation = info["generation"]
            spent[generation] += time.thread_time() - started[0]
            count[generation] += 1

    rows: list[dict[str, Any]] = []

    def row(label: str, begun: float) -> None:
        total = (time.thread_time() - begun) / tenth * 1e6
        rows.append(
            {
                "tenth": label,
                "us_per_decision": total,
                "gc_us_per_decision": [s / tenth * 1e6 for s in spent],
                "us_per_collection": [
                    s / c * 1e6 if c else None for s, c in zip(spent, count, strict=False)
                ],
                "collections": list(count),
                "tracked": len(gc.get_objects()),
            }
        )
        for g in range(3):
            spent[g], count[g] = 0.0, 0

    gc.collect()
    gc.callbacks.append(timed)
    try:
        begun = time.thread_time()
        for _ in range(tenth // 10):
            with tracker.run("short"):
                for _ in range(10):
                    decide()
        row("runs of 10", begun)
        processor.force_flush()
        with tracker.run("long"):
            for index in range(10):
                begun = time.thread_time()
                for _ in range(tenth):
                    decide()
                row(str(index), begun)
    finally:
        gc.callbacks.remove(timed)
        processor.force_flush()
        provider.shutdown()
    print(f"one run of {decisions:,} decisions, by tenth, after runs of 10 (caller's CPU)")
    print(
        f"{'tenth':>10s} {'µs/dec':>7s} {'gc0':>5s} {'gc1':>5s} {'gc2':>5s}"
        f" {'µs/gen0':>8s} {'µs/gen1':>8s} {'µs/gen2':>8s} {'tracked':>8s}"
    )
    for r in rows:
        per = " ".join(f"{v:5.1f}" for v in r["gc_us_per_decision"])
        each = " ".join("       -" if v is None else f"{v:8.0f}" for v in r["us_per_collection"])
        print(f"{r['tenth']:>10s} {r['us_per_decision']:7.1f} {per} {each} {r['tracked']:8d}")
    if "--json" in sys.argv:
        print(json.dumps({"decisions": decisions, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
