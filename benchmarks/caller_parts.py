"""Where a decision's microseconds go on the caller's thread, without a profiler.

    .venv/bin/python benchmarks/caller_parts.py [--runs 100] [--repeats 9]

cProfile (``profile_caller.py``) charges its own overhead per call, so code made of
many small calls looks dearer than it is. Here the parts are told apart by running
the same runs of 10 decisions with one part added at a time, interleaved in one
process (``time.thread_time``, the caller's CPU only), each as a difference of medians:

- ``raw_light``: the floor (scenarios.py).
- ``sdk_same_spans``: the very spans the tracker writes (their attributes captured
  from a tracked run) written by hand against the SDK, batch export only: what the
  SDK costs for what decisiontrace records.
- ``sdk_same_spans_rrp``: the same with the RunRecordProcessor added: its
  ``on_start``/``on_end`` on the agent's thread, and its writer thread running beside.
- ``manual`` / ``decorated``: ``decide`` + ``record_outcome`` and ``@decision``,
  RunRecordProcessor on SQLite plus the same export (run.py's scenarios).
- ``tracker_only_manual`` / ``tracker_only_decorated``: the tracker and decorators
  alone, on a tracer whose spans do nothing: decisiontrace's own Python per decision.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags
from scenarios import raw_light_run
from workload import DECISIONS_PER_RUN, OPTIONS, batch_processor, make_decorated, manual_run

import decisiontrace as dt
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import SQLiteStore

_ROOT = Context()


class _NullSpan:
    """A span that records nothing (for the tracker's own cost)."""

    def __init__(self) -> None:
        self._context = SpanContext(
            random.getrandbits(128), random.getrandbits(64), False, TraceFlags(1)
        )

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return True

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_status(self, status: Any) -> None:
        pass

    def end(self, end_time: int | None = None) -> None:
        pass


class _NullTracer:
    def start_span(self, name: str, *args: Any, **kwargs: Any) -> _NullSpan:
        return _NullSpan()


class _NullProvider:
    def get_tracer(self, *args: Any, **kwargs: Any) -> _NullTracer:
        return _NullTracer()


def captured_spans() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The attributes of a tracked run's spans: decision start and outcome, run start and end."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    manual_run(dt.DecisionTracker("bench", tracer_provider=provider))
    spans = exporter.get_finished_spans()
    decision = dict(next(s for s in spans if s.name.startswith("decision")).attributes or {})
    run = dict(next(s for s in spans if not s.name.startswith("decision")).attributes or {})
    outcome = {k: v for k, v in decision.items() if k.startswith("decisiontrace.outcome.")}
    start = {k: list(v) if isinstance(v, tuple) else v for k, v in decision.items()}
    for key in outcome:
        del start[key]
    ended = {
        sc.RUN_STATUS, sc.RUN_NARRATIVE, sc.RUN_DECISION_COUNT, sc.RUN_SUCCESS_COUNT,
        sc.RUN_FAILURE_COUNT, sc.RUN_TOTAL_TOKENS, sc.RUN_PROBLEM_COUNT, sc.RUN_NODES,
    }  # fmt: skip
    run_end = {k: list(v) if isinstance(v, tuple) else v for k, v in run.items() if k in ended}
    run_start = {k: v for k, v in run.items() if k not in ended}
    return start, outcome, run_start, run_end


def same_spans_run(tracer: trace.Tracer, spans: tuple[dict[str, Any], ...]) -> None:
    """One run of the tracker's spans, written by hand (one mapping each, as it does)."""
    start, outcome, run_start, run_end = spans
    root = tracer.start_span("invoke_agent bench", context=_ROOT, attributes=dict(run_start))
    context = trace.set_span_in_context(root)
    for index in range(DECISIONS_PER_RUN):
        attributes = dict(start)
        attributes[sc.DECISION_ID] = f"dec_{index}"
        span = tracer.start_span(
            "decision Classify ticket",
            context=context,
            attributes=attributes,
            start_time=time.time_ns(),
        )
        span.set_attributes(dict(outcome))
        span.end(end_time=time.time_ns())
    root.set_attributes(dict(run_end))
    root.end()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="decisiontrace-parts-"))
    spans = captured_spans()

    def provider(with_processor: bool) -> TracerProvider:
        built = TracerProvider()
        if with_processor:
            built.add_span_processor(
                dt.RunRecordProcessor(SQLiteStore(workdir / f"{len(providers)}.db"))
            )
        built.add_span_processor(batch_processor())
        providers.append(built)
        return built

    providers: list[TracerProvider] = []
    plain = provider(False).get_tracer("bench")
    with_processor = provider(True).get_tracer("bench")
    tracker = dt.DecisionTracker("bench", tracer_provider=provider(True))
    decorated, _ = make_decorated(tracker)
    null_tracker = dt.DecisionTracker("bench", tracer_provider=_NullProvider())  # type: ignore[arg-type]
    null_decorated, _ = make_decorated(null_tracker)
    scenarios: dict[str, Callable[[], None]] = {
        "raw_light": lambda: raw_light_run(plain, OPTIONS),
        "sdk_same_spans": lambda: same_spans_run(plain, spans),
        "sdk_same_spans_rrp": lambda: same_spans_run(with_processor, spans),
        "manual": lambda: manual_run(tracker),
        "decorated": decorated,
        "tracker_only_manual": lambda: manual_run(null_tracker),
        "tracker_only_decorated": null_decorated,
    }
    for fn in scenarios.values():
        for _ in range(20):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in scenarios}
    names = list(scenarios)
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            gc.collect()
            started = time.thread_time()
            for _ in range(args.runs):
                scenarios[name]()
            elapsed = time.thread_time() - started
            samples[name].append(elapsed / (args.runs * DECISIONS_PER_RUN) * 1e6)
            for built in providers:
                built.force_flush()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    light = medians["raw_light"]
    print(
        f"caller CPU per decision, median (min–max) of {args.repeats} interleaved repeats x "
        f"{args.runs} runs of {DECISIONS_PER_RUN}; load average {os.getloadavg()[0]:.1f}"
    )
    for name, values in samples.items():
        print(
            f"  {name:24s} {medians[name]:6.1f} ({min(values):.1f}–{max(values):.1f})"
            f"  {medians[name] / light:5.2f}x raw_light"
        )
    print("parts (differences of medians, µs per decision):")
    print(f"  SDK, for the spans decisiontrace writes  {medians['sdk_same_spans']:6.1f}")
    print(
        "  RunRecordProcessor (callbacks, writer)  "
        f"{medians['sdk_same_spans_rrp'] - medians['sdk_same_spans']:6.1f}"
    )
    print(
        "  tracker, decide + record_outcome        "
        f"{medians['manual'] - medians['sdk_same_spans_rrp']:6.1f}"
        f"  (alone on a null tracer: {medians['tracker_only_manual']:.1f})"
    )
    print(
        "  tracker and decorator, @decision        "
        f"{medians['decorated'] - medians['sdk_same_spans_rrp']:6.1f}"
        f"  (alone on a null tracer: {medians['tracker_only_decorated']:.1f})"
    )
    for built in providers:
        built.shutdown()


if __name__ == "__main__":
    main()
