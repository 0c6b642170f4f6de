"""Where a decision's microseconds go on the caller's thread.

    .venv/bin/python benchmarks/profile_caller.py [--runs 300]

Runs of 10 decisions through ``decide`` + ``record_outcome`` and through ``@decision``
(RunRecordProcessor on SQLite plus a BatchSpanProcessor with a no-op exporter, as
run.py's ``manual`` and ``decorated_sync``), profiled with cProfile on
``time.thread_time`` (the caller's CPU only: the writer thread and other processes are
not counted). Prints the µs per decision of each part, inclusive, scaled so that the
parts add up to the unprofiled per-decision CPU time (cProfile's own overhead is spread
proportionally, so read the shares, not the absolute values).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider
from workload import DECISIONS_PER_RUN, batch_processor, make_decorated, manual_run

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

# (label, function name as cProfile reports it, file suffix): inclusive times.
PARTS = [
    (
        "SDK start_span (validation of the attributes, sampler, on_start)",
        "start_span",
        "trace/__init__.py",
    ),
    ("  of which RunRecordProcessor.on_start", "on_start", "decisiontrace/processor.py"),
    ("SDK set_attributes of the outcome", "set_attributes", "trace/__init__.py"),
    ("SDK span.end (processors' on_end)", "end", "trace/__init__.py"),
    ("  of which RunRecordProcessor.on_end", "on_end", "decisiontrace/processor.py"),
    ("  of which BatchSpanProcessor.on_end", "on_end", "export/__init__.py"),
    (
        "decision attributes (ids, redaction of reasoning, context)",
        "decision_attributes",
        "_codec.py",
    ),
    (
        "option list prepared (normalize, encode; cached by identity)",
        "prepare_options",
        "_normalize.py",
    ),
    ("outcome attributes (result, summary, tokens)", "outcome_attributes", "_codec.py"),
    ("LEDGER.take_decision (LLM tokens under the decision)", "take_decision", "_tokens.py"),
    ("current span lookups", "get_current_span", "propagation/__init__.py"),
    ("run resolution (_resolve)", "_resolve", "tracker.py"),
]


def caller_cpu(fn: Callable[[], None], runs: int) -> float:
    started = time.thread_time()
    for _ in range(runs):
        fn()
    return (time.thread_time() - started) / (runs * DECISIONS_PER_RUN) * 1e6


def breakdown(fn: Callable[[], None], runs: int) -> tuple[float, list[tuple[str, float]]]:
    plain = caller_cpu(fn, runs)
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    for _ in range(runs):
        fn()
    profile.disable()
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    scale = plain / (total / (runs * DECISIONS_PER_RUN) * 1e6)
    rows = []
    entries = stats.stats  # type: ignore[attr-defined]
    for label, name, suffix in PARTS:
        cumulative = sum(
            value[3]
            for (file, _, func), value in entries.items()
            if func == name and file.endswith(suffix)
        )
        rows.append((label, cumulative / (runs * DECISIONS_PER_RUN) * 1e6 * scale))
    return plain, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="decisiontrace-profile-"))
    processor = dt.RunRecordProcessor(SQLiteStore(workdir / "profile.db"))
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(batch_processor())
    tracker = dt.DecisionTracker("profile", tracer_provider=provider)
    decorated, _ = make_decorated(tracker)
    for title, fn in (
        ("decide + record_outcome", lambda: manual_run(tracker)),
        ("@decision", decorated),
    ):
        for _ in range(30):
            fn()
        processor.force_flush()
        plain, rows = breakdown(fn, args.runs)
        processor.force_flush()
        print(f"{title}: {plain:.1f} µs of caller CPU per decision (incl. its share of the run)")
        for label, value in rows:
            if value >= 0.05:
                print(f"  {value:6.1f}  {label}")
    provider.shutdown()


if __name__ == "__main__":
    main()
