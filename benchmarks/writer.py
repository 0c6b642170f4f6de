"""The processor's writer thread: CPU per decision, and where it goes.

    .venv/bin/python benchmarks/writer.py                 # CPU per decision, 7 repeats
    .venv/bin/python benchmarks/writer.py --parts         # and the parts of a pass
    .venv/bin/python benchmarks/writer.py --profile       # and cProfile of a pass
    .venv/bin/python benchmarks/writer.py --e2e           # and end to end (throughput.py)
    .venv/bin/python benchmarks/writer.py --parts --e2e --json   # results/writer.json

Persisting competes with the agent for the GIL, so every microsecond the writer spends
per decision lowers the end-to-end rate (issue #16, part 2: under ~10 µs).

Two measures, each a median over repeats with its min–max:

- ``pass``: the spans of runs of 10 decisions (3 options each, the workload of
  ``run.py``) are recorded once through a real tracker and SDK, then replayed into a
  fresh ``RunRecordProcessor`` on SQLite (``on_start``/``on_end`` as the SDK calls
  them) whose writer thread sleeps; the writer's passes are then run on this thread,
  100 runs a pass, and timed with ``time.thread_time``: the writer's own CPU, with no
  other thread competing for the GIL.
- ``in situ``: runs recorded through the tracker while the writer thread does its
  work as usual, then ``force_flush``; the writer thread's CPU clock
  (``time.pthread_getcpuclockid``) read before and after: the same work, plus what
  many small passes and the competition for the GIL cost it.

``--parts`` times the stages of a pass one by one on the same spans (each its own
``time.thread_time`` measure, median and min–max over repeats): the pipeline's
(decoding SDK spans, assembly) and the SQLite store's ``save_assembled`` (which
decodes the record, makes the rows and writes the transaction), with the store's
own stages read through its private helpers (``stores/_sqlite_rows.py``), 100 runs
at a time as a pass makes them.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import pstats
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from workload import DECISIONS_PER_RUN, manual_run

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

RUNS_PER_PASS = 100
RESULTS = Path(__file__).resolve().parent / "results"


class Recorder(SpanProcessor):
    """Keeps every start and end the SDK reports, in order, to replay them."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, Any]] = []

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        self.calls.append((True, span))

    def on_end(self, span: ReadableSpan) -> None:
        self.calls.append((False, span))


def recorded_calls(runs: int) -> list[tuple[bool, Any]]:
    recorder = Recorder()
    provider = TracerProvider()
    provider.add_span_processor(recorder)
    tracker = dt.DecisionTracker("bench", tracer_provider=provider)
    for _ in range(runs):
        manual_run(tracker)
    return recorder.calls


def run_pass(processor: dt.RunRecordProcessor) -> Callable[[], None]:
    """One writer pass of ``processor``, run on the calling thread."""
    writer = processor._writer
    return lambda: writer.run_pass(force=True)


def pass_us(
    workdir: Path, calls: list[tuple[bool, Any]], runs: int, name: str, package: Any = dt
) -> float:
    """Writer CPU µs per decision, its passes run on this thread (see the docstring);
    ``package``: the ``decisiontrace`` package to run (``writer_ab.py`` loads another)."""
    processor = package.RunRecordProcessor(
        package.stores.SQLiteStore(workdir / f"{name}.db"),
        flush_interval=3600,
        handle_sigterm=False,
    )
    one_pass = run_pass(processor)
    per_pass = len(calls) * RUNS_PER_PASS // runs
    # The first pass opens the connection and warms caches: not timed.
    warm = calls[:per_pass]
    for started, span in warm:
        processor.on_start(span) if started else processor.on_end(span)
    one_pass()
    gc.collect()
    spent = 0.0
    for offset in range(per_pass, len(calls), per_pass):
        for started, span in calls[offset : offset + per_pass]:
            processor.on_start(span) if started else processor.on_end(span)
        before = time.thread_time()
        one_pass()
        spent += time.thread_time() - before
    decisions = (runs - RUNS_PER_PASS) * DECISIONS_PER_RUN
    stored = len(processor.store.list_summaries())
    assert stored == runs, f"{stored} of {runs} runs stored"
    processor.shutdown()
    return spent / decisions * 1e6


def writer_thread() -> threading.Thread:
    for thread in threading.enumerate():
        if thread.name == "decisiontrace-writer" and thread.is_alive():
            return thread
    raise RuntimeError("no writer thread")


def in_situ_us(workdir: Path, runs: int, name: str) -> float:
    """Writer CPU µs per decision, on the writer thread while the agent records."""
    processor = dt.RunRecordProcessor(SQLiteStore(workdir / f"{name}.db"), handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("bench", tracer_provider=provider)
    for _ in range(20):  # starts the writer, opens the connection
        manual_run(tracker)
    processor.force_flush()
    clock = time.pthread_getcpuclockid(writer_thread().ident or 0)
    gc.collect()
    before = time.clock_gettime(clock)
    for _ in range(runs):
        manual_run(tracker)
    assert processor.force_flush(60_000)
    spent = time.clock_gettime(clock) - before
    provider.shutdown()
    return spent / (runs * DECISIONS_PER_RUN) * 1e6


def profile(workdir: Path, calls: list[tuple[bool, Any]], runs: int) -> None:
    processor = dt.RunRecordProcessor(
        SQLiteStore(workdir / "profile.db"), flush_interval=3600, handle_sigterm=False
    )
    one_pass = run_pass(processor)
    for started, span in calls[: len(calls) // 10]:
        processor.on_start(span) if started else processor.on_end(span)
    one_pass()
    for started, span in calls[len(calls) // 10 :]:
        processor.on_start(span) if started else processor.on_end(span)
    profiler = cProfile.Profile(time.thread_time)
    profiler.runcall(one_pass)
    processor.shutdown()
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(40)
    stats.sort_stats("tottime").print_stats(25)


def parts(
    workdir: Path, calls: list[tuple[bool, Any]], runs: int, repeats: int
) -> dict[str, list[float]]:
    """The stages of a pass, each timed alone (µs per decision, median and min–max).

    The store's stages run on the records of one pass (100 runs) at a time, as
    ``save_assembled`` makes them, with the collector on; ``SQL`` is the transaction
    of rows made beforehand (``SQLiteStore._write``).
    """
    import zlib

    from decisiontrace.pipeline._assembly import RunAssembler
    from decisiontrace.pipeline._inbox import span_data
    from decisiontrace.spanmodel import _records
    from decisiontrace.stores import _sqlite_rows as rows
    from decisiontrace.stores import _stored_form as form
    from decisiontrace.stores._facts import fact_rows
    from decisiontrace.stores._filters import record_node_ids

    ended = [span for started, span in calls if not started]
    decisions = runs * DECISIONS_PER_RUN
    samples: dict[str, list[float]] = {}
    offers: dict[Any, Any] = {}

    def timed(label: str, fn: Callable[[], Any]) -> Any:
        before = time.thread_time()
        result = fn()
        spent = (time.thread_time() - before) / decisions * 1e6
        samples.setdefault(label, []).append(spent)
        return result

    def one_batch(batch: list[Any], store: SQLiteStore, sql_store: SQLiteStore) -> None:
        timed("store: save_assembled, all of it", lambda: store.save_assembled(batch))
        made = timed("  run.record(): the span model's decode",
                     lambda: [run.record() for run in batch])  # fmt: skip
        timed("  record_part: the rows", lambda: [rows.record_part(r) for r in made])
        encoded = timed("    stored form: JSON", lambda: [form.json_bytes(r) for r in made])
        timed("    stored form: zlib", lambda: [zlib.compress(e, 1) for e in encoded])
        timed("    summary and nodes columns",
              lambda: [(form.dumps(_records.summary_from_record(r)),
                        form.dumps(record_node_ids(r))) for r in made])  # fmt: skip
        timed("    analytics facts (fact_rows, offers kept as the writer keeps them)",
              lambda: [fact_rows(r["id"], r, offers) for r in made])  # fmt: skip
        prepared = [rows.record_part(record) for record in made]
        timed("  SQL: the transaction of those rows", lambda: sql_store._write(prepared))

    def one_repeat(repeat: int) -> None:
        gc.collect()
        spans = timed("pipeline: SDK spans to span data (_inbox.span_data)",
                      lambda: [span_data(span) for span in ended])  # fmt: skip

        def assemble() -> list[Any]:
            assembler = RunAssembler()
            for data in spans:
                assembler.add(data, 0.0)
            return assembler.take_ready_runs(force=True, now=0.0)

        ready = timed("pipeline: assembly (add, take_ready_runs)", assemble)
        store = SQLiteStore(workdir / f"parts-{repeat}.db")
        sql_store = SQLiteStore(workdir / f"parts-sql-{repeat}.db")
        gc.collect()
        for first in range(0, len(ready), RUNS_PER_PASS):
            one_batch(ready[first : first + RUNS_PER_PASS], store, sql_store)
        store.close()
        sql_store.close()

    for repeat in range(repeats):
        one_repeat(repeat)
    # Each repeat's batches add up to one sample per label.
    batches = -(-runs // RUNS_PER_PASS)
    for label, values in samples.items():
        if len(values) > repeats:
            samples[label] = [sum(values[i : i + batches]) for i in range(0, len(values), batches)]
    width = max(len(label) for label in samples)
    for label, values in samples.items():
        print(f"  {label:{width}s} {spread(values)}")
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 2),
        "min": round(min(samples), 2),
        "max": round(max(samples), 2),
    }


def spread(samples: list[float]) -> str:
    return f"{statistics.median(samples):.1f} µs ({min(samples):.1f}–{max(samples):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--parts", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--e2e", action="store_true", help="end to end, --runs runs")
    parser.add_argument("--json", action="store_true", help="write results/writer.json")
    args = parser.parse_args(argv)
    load_before = [round(value, 1) for value in os.getloadavg()]
    workdir = Path(tempfile.mkdtemp(prefix="decisiontrace-writer-"))
    calls = recorded_calls(args.runs)
    passes, situ = [], []
    for repeat in range(args.repeats):
        passes.append(pass_us(workdir, calls, args.runs, f"pass-{repeat}"))
        situ.append(in_situ_us(workdir, args.runs, f"situ-{repeat}"))
    print(f"writer CPU per decision, {args.runs} runs of {DECISIONS_PER_RUN}, ", end="")
    print(f"{args.repeats} repeats, median (min–max):")
    print(f"  pass ({RUNS_PER_PASS} runs a pass, this thread): {spread(passes)}")
    print(f"  in situ (writer thread's CPU clock):       {spread(situ)}")
    output: dict[str, Any] = {
        "machine": f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average before {load_before}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": args.runs,
        "repeats": args.repeats,
        "decisions_per_run": DECISIONS_PER_RUN,
        "writer_cpu_us_per_decision": {"pass": summary(passes), "in_situ": summary(situ)},
    }
    if args.parts:
        print("the parts of a pass, µs per decision, median (min–max):")
        stages = parts(workdir, calls, args.runs, args.repeats)
        output["parts_us_per_decision"] = {
            label.strip(): summary(values) for label, values in stages.items()
        }
    if args.profile:
        profile(workdir, calls, args.runs)
    if args.e2e:
        from throughput import end_to_end

        result = end_to_end(args.runs, args.repeats, workdir)
        light = result["raw_light_decisions_per_s"]
        low, high = result["persisted_min_max_per_s"]
        print(
            f"end to end, {args.runs} runs: {result['persisted_decisions_per_s']:,.0f} "
            f"decisions/s persisted ({low:,.0f}–{high:,.0f}) against {light:,.0f}/s "
            f"raw_light: {result['ratio_to_raw_light']:.2f}x "
            f"(raw {result['ratio_to_raw']:.2f}x)"
        )
        output["end_to_end"] = result
    output["load_average_after"] = [round(value, 1) for value in os.getloadavg()]
    if args.json:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "writer.json").write_text(json.dumps(output, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
