"""Where a decision's microseconds go on the caller's thread.

    .venv/bin/python benchmarks/profile_caller.py [--runs 300] [--repeats 5]

Runs of 10 decisions through ``decide`` + ``record_outcome`` and through ``@decision``
(RunRecordProcessor on SQLite plus a BatchSpanProcessor with a no-op exporter, as
run.py's ``manual`` and ``decorated_sync``), and the ``raw_light`` floor, profiled with
cProfile on ``time.thread_time`` (the caller's CPU only: the writer thread and other
processes are not counted). Each part is an inclusive time, scaled so that the parts
add up to the unprofiled per-decision CPU time (cProfile's own overhead is spread
proportionally: read the shares). The profile is taken ``--repeats`` times; each part
is given as its median with the min–max spread.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from scenarios import raw_light_run
from workload import DECISIONS_PER_RUN, OPTIONS, batch_processor, make_decorated, manual_run

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

_SDK = "opentelemetry/sdk/trace/__init__.py"
_ATTRIBUTES = "opentelemetry/attributes/__init__.py"
_CONTEXT = "opentelemetry/context/__init__.py"
_ARGUMENTS = "tracking/_arguments.py"
# (label, function, file suffix, only when called from (function, file suffix) or None).
# Inclusive times; a part listed under another ("  ") is part of it, not added again.
PARTS: list[tuple[str, str, str, tuple[str, str] | None]] = [
    ("SDK start_span (all of it)", "start_span", _SDK, None),
    ("  attribute validation (one pass over the mapping)", "__init__", _ATTRIBUTES, None),
    ("  sampler", "should_sample", "sdk/trace/sampling.py", None),
    ("  processors' on_start", "on_start", _SDK, None),
    ("    of which RunRecordProcessor.on_start", "on_start", "pipeline/processor.py", None),
    ("SDK set_attributes (outcome, one pass)", "set_attributes", _SDK, None),
    ("SDK set_attribute (one call per attribute)", "set_attribute", _SDK, None),
    ("SDK span.end (all of it)", "end", _SDK, None),
    ("  of which RunRecordProcessor.on_end", "on_end", "pipeline/processor.py", None),
    ("  of which BatchSpanProcessor.on_end", "on_end", "sdk/trace/export/__init__.py", None),
    ("current span lookups", "get_current_span", "trace/propagation/__init__.py", None),
    ("context attach (the decision span made current)", "attach", _CONTEXT, None),
    ("context detach", "detach", _CONTEXT, None),
    ("json.dumps of the options (raw_light)", "dumps", "json/__init__.py", None),
    ("decision attributes (checks, redaction)", "decision_attributes", _ARGUMENTS, None),
    ("  the option list (once per list)", "prepare_options", "tracking/_normalize.py", None),
    ("outcome attributes (result, summary, tokens)", "outcome_attributes", _ARGUMENTS, None),
    ("run resolution (_resolve: the current run)", "_resolve", "tracking/tracker.py", None),
    ("LLM tokens under the decision (LEDGER)", "take_decision", "pipeline/_tokens.py", None),
]  # fmt: skip


def caller_cpu(fn: Callable[[], None], runs: int) -> float:
    started = time.thread_time()
    for _ in range(runs):
        fn()
    return (time.thread_time() - started) / (runs * DECISIONS_PER_RUN) * 1e6


def breakdown(fn: Callable[[], None], runs: int) -> tuple[float, dict[str, float]]:
    """Unprofiled µs per decision, and each part's scaled inclusive µs per decision."""
    plain = caller_cpu(fn, runs)
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    for _ in range(runs):
        fn()
    profile.disable()
    stats = pstats.Stats(profile)
    total = stats.total_tt  # type: ignore[attr-defined]
    scale = plain / (total / (runs * DECISIONS_PER_RUN) * 1e6)
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    parts: dict[str, float] = {}
    for label, name, suffix, _ in PARTS:
        cumulative = sum(
            value[3]
            for (file, _, func), value in entries.items()
            if func == name and file.endswith(suffix)
        )
        parts[label] = cumulative / (runs * DECISIONS_PER_RUN) * 1e6 * scale
    return plain, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="decisiontrace-profile-"))
    processor = dt.RunRecordProcessor(SQLiteStore(workdir / "profile.db"))
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(batch_processor())
    tracker = dt.DecisionTracker("profile", tracer_provider=provider)
    decorated, _ = make_decorated(tracker)
    raw_provider = TracerProvider()
    raw_provider.add_span_processor(batch_processor())
    raw_tracer = raw_provider.get_tracer("raw")
    scenarios = {
        "raw_light (the floor)": lambda: raw_light_run(raw_tracer, OPTIONS),
        "decide + record_outcome": lambda: manual_run(tracker),
        "@decision": decorated,
    }
    for fn in scenarios.values():
        for _ in range(30):
            fn()
    totals: dict[str, list[float]] = {name: [] for name in scenarios}
    parts: dict[str, dict[str, list[float]]] = {name: {} for name in scenarios}
    for _ in range(args.repeats):  # interleaved, as run.py does
        for name, fn in scenarios.items():
            plain, rows = breakdown(fn, args.runs)
            processor.force_flush()
            raw_provider.force_flush()
            totals[name].append(plain)
            for label, value in rows.items():
                parts[name].setdefault(label, []).append(value)
    for name in scenarios:
        values = totals[name]
        print(
            f"{name}: {statistics.median(values):.1f} µs ({min(values):.1f}–{max(values):.1f}) "
            "of caller CPU per decision, incl. its share of the run"
        )
        for label, samples in parts[name].items():
            median = statistics.median(samples)
            if median >= 0.05:
                print(f"  {median:6.1f}  ({min(samples):.1f}–{max(samples):.1f})  {label}")
    provider.shutdown()
    raw_provider.shutdown()


if __name__ == "__main__":
    main()
