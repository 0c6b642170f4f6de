"""decisiontrace benchmarks: what recording a decision costs, against a bare SDK span.

    make bench                       # full run, writes benchmarks/results/latest.json
    python benchmarks/run.py --quick # a shorter run for a quick look
    python benchmarks/run.py --quick --only peers  # the per-decision scenarios and peers

Everything is measured in one process. The per-decision scenarios run interleaved:
each repeat runs a batch of every scenario, in rotated order, and the report gives
medians over repeats with their spread (min–max) and ratios of medians, so drift and
noise hit all alike. Per-decision costs are CPU time on the caller's thread.

Scenarios (each run has one root span and 10 decisions with 3 options each):
- raw: the heavier floor. The same run written by hand against the SDK: the very
  typed attributes the tracker writes and the options as one JSON string, in one
  mapping, a BatchSpanProcessor, no-op exporter.
- raw_light: the lighter floor (issue #16): the decision's fields as typed attributes
  set one by one, the options as one JSON string (see scenarios.py).
- manual: tracker.run / decide / record_outcome, with the RunRecordProcessor on a
  SQLite store, plus the same batch export.
- decorated_sync / decorated_async: the same through @decisiontrace.decision.
- disabled: a decorated function with no SDK installed (no-op tracer), outside and
  inside a run, against the bare function: overhead per call.
- end_to_end: N runs recorded, then force_flush until all are in SQLite: decisions
  recorded and persisted per second, and as a ratio to raw recording alone.
- memory: RSS and tracemalloc growth over 100,000 decisions in finished runs (after
  they are stored), and the bytes held per active (unfinished) run.
- peers, long runs, start-up: see scenarios.py.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from scenarios import long_runs, peers, raw_light_run, startup
from throughput import disabled_overhead, end_to_end, memory
from workload import (
    DECISIONS_PER_RUN,
    OPTIONS,
    RESULTS,
    NoopExporter,
    batch_processor,
    make_decorated,
    manual_run,
    raw_run,
)

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

# --- measuring -----------------------------------------------------------------------


def per_decision_us(fn: Callable[[], None], runs: int) -> float:
    """CPU µs per decision on the caller's thread (``time.thread_time``).

    The agent's cost, immune to the load of other processes on a shared machine (wall
    clock swung 2x between repeats there). Background threads (the batch exporters,
    the processor's writer) are not counted here; the end-to-end measure counts them.
    """
    started = time.thread_time()
    for _ in range(runs):
        fn()
    return (time.thread_time() - started) / (runs * DECISIONS_PER_RUN) * 1e6


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


# --- report --------------------------------------------------------------------------

#: What ``--only`` selects, besides the per-decision scenarios (which always run).
GROUPS = ("disabled", "end_to_end", "memory", "peers", "long_runs", "startup")


def _targets(medians: dict[str, float], groups: dict[str, Any]) -> dict[str, bool]:
    """Issue #16's targets, for the groups that ran."""
    raw, light = medians["raw"], medians["raw_light"]
    targets = {
        "manual <= 1.15x raw_light": medians["manual"] / light <= 1.15,
        "decorated_sync <= 1.15x raw_light": medians["decorated_sync"] / light <= 1.15,
        "manual <= 1.3x raw": medians["manual"] / raw <= 1.3,
        "decorated_sync <= 1.4x raw": medians["decorated_sync"] / raw <= 1.4,
        "decorated_async <= 1.4x raw": medians["decorated_async"] / raw <= 1.4,
    }
    if "disabled" in groups:
        disabled = groups["disabled"]
        targets["disabled <= 3 us per call"] = (
            max(disabled["outside_run_overhead_us"], disabled["inside_run_overhead_us"]) <= 3.0
        )
    if "end_to_end" in groups:
        targets["end_to_end >= 0.75x raw_light"] = (
            groups["end_to_end"]["ratio_to_raw_light"] >= 0.75
        )
    if "memory" in groups:
        targets["memory growth <= 1 MiB"] = groups["memory"]["traced_growth_bytes"] <= 1 << 20
    if "peers" in groups:
        pc = groups["peers"]["per_call_us"]
        targets["peers: @decision <= 2.0x bare span (1k, 10k)"] = (
            max(pc["dt_decorated_1k"]["ratio"], pc["dt_decorated_10k"]["ratio"]) <= 2.0
        )
        targets["peers: decide+record_outcome <= 2.0x bare span (1k, 10k)"] = (
            max(pc["dt_manual_1k"]["ratio"], pc["dt_manual_10k"]["ratio"]) <= 2.0
        )
    if "long_runs" in groups:
        long = groups["long_runs"]
        targets["long run: last tenth <= 1.1x runs of 10"] = (
            long["last_tenth_ratio_to_runs_of_10"] <= 1.1
        )
        targets["open run <= 1 KB per decision"] = long["open_run_bytes_per_decision"] <= 1024
    if "startup" in groups:
        start = groups["startup"]["pydantic_plugins_off"]["importtime_s"]["median"]
        targets["import decisiontrace < 0.15 s"] = start < 0.15
    return targets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    parser.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma-separated groups to run (default all): {', '.join(GROUPS)}; "
        "the per-decision scenarios always run (every ratio is to them)",
    )
    args = parser.parse_args(argv)
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = only - set(GROUPS)
    if unknown:
        parser.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    quick = args.quick
    repeats, runs = (5, 50) if quick else (15, 200)
    e2e_runs, memory_decisions = (500, 20_000) if quick else (3000, 100_000)

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
            "raw_light": lambda: raw_light_run(raw_tracer, OPTIONS),
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
    raw, light = medians["raw"], medians["raw_light"]
    noop = NoopExporter()
    groups: dict[str, Any] = {}
    if "disabled" in only:
        groups["disabled"] = disabled_overhead(calls=20_000, repeats=repeats)
    if "end_to_end" in only:
        groups["end_to_end"] = end_to_end(e2e_runs, 3 if quick else 5, workdir)
    if "memory" in only:
        groups["memory"] = memory(memory_decisions, active_runs=500, workdir=workdir)
    if "peers" in only:
        groups["peers"] = peers(noop, OPTIONS, workdir, repeats=3 if quick else 7, calls=10_000)
    if "long_runs" in only:
        groups["long_runs"] = long_runs(
            noop,
            OPTIONS,
            workdir,
            repeats=2 if quick else 3,
            long_decisions=20_000 if quick else 100_000,
            memory_decisions=2_000 if quick else 10_000,
        )
    if "startup" in only:
        groups["startup"] = startup(3 if quick else 7)
    targets = _targets(medians, groups)
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "quick": quick,
        "repeats": repeats,
        "runs_per_batch": runs,
        "per_decision_us": {
            name: {
                "median": medians[name],
                "min": min(values),
                "max": max(values),
                "ratio_to_raw": medians[name] / raw,
                "ratio_to_raw_light": medians[name] / light,
            }
            for name, values in samples.items()
        },
        **groups,
        "targets_met": targets,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    report(result)
    print(f"results written to {args.out}")
    return 0


def report(result: dict[str, Any]) -> None:
    """Print the results: medians with their spread (min–max over repeats)."""
    per = result["per_decision_us"]
    print(
        f"decisiontrace benchmarks ({result['repeats']} interleaved repeats x "
        f"{result['runs_per_batch']} runs x 10 decisions)"
    )
    print(f"{'scenario':18s} {'µs/decision':>12s} {'min–max':>15s} {'/raw':>6s} {'/light':>7s}")
    for name, row in per.items():
        spread = f"{row['min']:.1f}–{row['max']:.1f}"
        print(
            f"{name:18s} {row['median']:12.1f} {spread:>15s} "
            f"{row['ratio_to_raw']:5.2f}x {row['ratio_to_raw_light']:6.2f}x"
        )
    if "disabled" in result:
        disabled = result["disabled"]
        print(
            f"{'disabled':18s} outside a run +{disabled['outside_run_overhead_us']:.2f} µs/call, "
            f"inside +{disabled['inside_run_overhead_us']:.2f} µs/call "
            f"(bare call {disabled['bare_call_us']:.2f} µs)"
        )
    if "end_to_end" in result:
        e2e = result["end_to_end"]
        print(
            f"{'end to end':18s} {e2e['persisted_decisions_per_s']:,.0f} decisions/s persisted "
            f"vs {e2e['raw_decisions_per_s']:,.0f}/s raw = {e2e['ratio_to_raw']:.2f}x, "
            f"vs {e2e['raw_light_decisions_per_s']:,.0f}/s raw_light = "
            f"{e2e['ratio_to_raw_light']:.2f}x ({e2e['runs_stored']:.0f}/{e2e['runs']:.0f} stored)"
        )
    if "memory" in result:
        mem = result["memory"]
        print(
            f"{'memory':18s} +{mem['traced_growth_bytes'] / 1024:.0f} KiB traced, "
            f"+{mem['rss_growth_bytes'] / 1024:.0f} KiB RSS after {mem['decisions']:,.0f} "
            f"decisions; {mem['bytes_per_active_run'] / 1024:.1f} KiB per active run"
        )
    for title, key in (("peers", "peers"), ("long runs", "long_runs")):
        if key not in result:
            continue
        block = result[key]
        print(f"{title} (µs per call, against {block['floor']}):")
        for name, row in block["per_call_us"].items():
            spread = f"{row['min']:.1f}–{row['max']:.1f}"
            print(f"  {name:22s} {row['median']:8.1f} {spread:>15s} {row['ratio']:6.2f}x")
    if "long_runs" in result:
        long = result["long_runs"]
        print(
            f"  last tenth of the long run: {long['long_run_last_tenth_us']:.1f} µs/decision "
            f"({long['last_tenth_ratio_to_runs_of_10']:.2f}x runs of 10); open run holds "
            f"{long['open_run_bytes_per_decision']:.0f} bytes per decision"
        )
    for label, block in result.get("startup", {}).items():
        imp, cpu = block["importtime_s"], block["cpu_s"]
        print(
            f"import ({label}): -X importtime {imp['median']:.3f} s "
            f"({imp['min']:.3f}–{imp['max']:.3f}), CPU {cpu['median']:.3f} s "
            f"({cpu['min']:.3f}–{cpu['max']:.3f}); largest: "
            + ", ".join(f"{k} {v:.3f}" for k, v in block["largest_imports_s"].items())
        )
    targets = result["targets_met"]
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))


if __name__ == "__main__":
    sys.exit(main())
