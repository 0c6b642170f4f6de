"""The writer's pass and its parts against another commit's, in one process.

    .venv/bin/python benchmarks/writer_ab.py main            # 1,000 runs of 10, 7 repeats
    .venv/bin/python benchmarks/writer_ab.py HEAD~1 --runs 300 --repeats 3

The whole ``decisiontrace`` package of the given git revision is loaded beside the
installed one, renamed ``decisiontrace_ab`` (its imports and module paths rewritten; the
span attribute names stay as they are), so each side runs its own span decoding,
assembly, stored form, analytics facts and SQLite writes. Both decode the same recorded
SDK spans (the workload of ``run.py``: runs of 10 decisions with 3 options), alternating
which goes first each repeat.

First the stored rows of both are compared on the workload: what ``load_record`` reads
back, the analytics rows and the listing columns must be equal (the bytes of the
stored form may differ when the form changed).
Then, each repeat, µs per decision of:

- ``decode``: ``run.record()``, 100 runs at a time as a pass takes them, collector off
  (its share depends on the heap, not on this code);
- ``rows``: the store's rows of those records (stored form, summary, analytics facts),
  collector off;
- ``writer pass``: a whole writer pass (``writer.pass_us``, collector on), SQLite
  transaction included. Median (min–max).

With ``--e2e``, also end to end as ``throughput.py`` measures it (``--e2e-runs`` runs
recorded through each side's tracker and ``RunRecordProcessor`` on SQLite, with a
``BatchSpanProcessor`` and a no-op exporter beside it, until ``force_flush`` returns),
interleaved with ``raw_light`` (the same decisions written by hand with the SDK) and
reported as decisions per second and the ratio to ``raw_light`` of the same repeat;
and the process's CPU per decision (all threads, ``time.process_time``), which a
loaded machine disturbs far less than the wall clock, against ``raw_light``'s.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import writer
from opentelemetry.sdk.trace import TracerProvider
from scenarios import raw_light_run
from workload import DECISIONS_PER_RUN, OPTIONS, batch_processor, manual_run

import decisiontrace

#: The span attribute namespaces, which must not be renamed.
_ATTRIBUTE_NAMESPACES = (
    "decision", "execution", "fragment", "goal", "node", "outcome", "problem", "run",
    "span_kind", "stream",
)  # fmt: skip


def package_at(revision: str) -> ModuleType:
    """``decisiontrace`` at ``revision``, importable as ``decisiontrace_ab``."""
    archive = subprocess.check_output(
        ["git", "archive", revision, "src/decisiontrace"],
        cwd=Path(__file__).resolve().parent.parent,
    )
    root = Path(tempfile.mkdtemp(prefix="decisiontrace-ab-"))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(root, filter="data")
    source = root / "src" / "decisiontrace"
    target = root / "decisiontrace_ab"
    source.rename(target)
    namespaces = "|".join(_ATTRIBUTE_NAMESPACES)
    rename = re.compile(rf"\bdecisiontrace(?=(\.(?!(?:{namespaces})\b)\w|\s+import|\b(?![.\w])))")
    for path in target.rglob("*.py"):
        text = path.read_text("utf-8")
        lines = []
        for line in text.splitlines(keepends=True):
            stripped = line.lstrip()
            if stripped.startswith(("from decisiontrace", "import decisiontrace")) or re.search(
                r"[\"']decisiontrace\.(?!(?:" + namespaces + r")\b)\w", line
            ):
                line = rename.sub("decisiontrace_ab", line)
            lines.append(line)
        path.write_text("".join(lines), "utf-8")
    sys.path.insert(0, str(root))
    return importlib.import_module("decisiontrace_ab")


def side(package: ModuleType) -> dict[str, Any]:
    name = package.__name__
    importlib.import_module(f"{name}.pipeline.processor")
    return {
        "package": package,
        "assembly": importlib.import_module(f"{name}.pipeline._assembly"),
        "inbox": importlib.import_module(f"{name}.pipeline._inbox"),
        "rows": importlib.import_module(f"{name}.stores._sqlite_rows"),
        "stores": importlib.import_module(f"{name}.stores"),
    }


def end_to_end(package: Any, runs: int, path: Path) -> tuple[float, float]:
    """Decisions per second recorded and persisted through ``package``, and the
    process's CPU (every thread: agent, writer, span export) µs per decision."""
    store = package.stores.SQLiteStore(path)
    processor = package.RunRecordProcessor(store, handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(batch_processor())
    tracker = package.DecisionTracker("bench", tracer_provider=provider)
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        manual_run(tracker)
    while not processor.force_flush(60_000):
        pass
    decisions = runs * DECISIONS_PER_RUN
    rate = decisions / (time.perf_counter() - started)
    cpu_us = (time.process_time() - cpu) / decisions * 1e6
    stored = len(store.list_summaries())
    if stored != runs:
        print(f"  ({package.__name__}: {stored} of {runs} runs stored)")
    provider.shutdown()
    return rate, cpu_us


def raw_light(runs: int) -> tuple[float, float]:
    """Decisions per second written by hand with the SDK (``raw_light``), and the
    process's CPU µs per decision."""
    provider = TracerProvider()
    provider.add_span_processor(batch_processor())
    tracer = provider.get_tracer("raw")
    gc.collect()
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        raw_light_run(tracer, OPTIONS)
    provider.force_flush()
    decisions = runs * DECISIONS_PER_RUN
    rate = decisions / (time.perf_counter() - started)
    cpu_us = (time.process_time() - cpu) / decisions * 1e6
    provider.shutdown()
    return rate, cpu_us


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--e2e", action="store_true", help="and end to end, interleaved")
    parser.add_argument("--e2e-runs", type=int, default=1000)
    args = parser.parse_args()
    sides = {args.revision: side(package_at(args.revision)), "this tree": side(decisiontrace)}
    calls = writer.recorded_calls(args.runs)
    ended = [span for started, span in calls if not started]
    decisions = args.runs * DECISIONS_PER_RUN
    workdir = Path(tempfile.mkdtemp(prefix="decisiontrace-writer-ab-"))

    def ready(parts: dict[str, Any]) -> list[Any]:
        assembler = parts["assembly"].RunAssembler()
        for data in [parts["inbox"].span_data(span) for span in ended]:
            assembler.add(data, 0.0)
        return assembler.take_ready_runs(force=True, now=0.0)

    loaded = []
    for parts in sides.values():
        store = parts["stores"].SQLiteStore(workdir / f"check-{len(loaded)}.db")
        runs = ready(parts)
        store.save_assembled(runs)
        ids = sorted(run.record()["id"] for run in runs)
        connection = store._connection()
        loaded.append(
            (
                json.dumps([store.load_record(run_id) for run_id in ids]),
                [
                    connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                    for table in ("decisions", "decision_counts", "decision_offers")
                ],
                connection.execute(
                    "SELECT run_id, goal_id, status, started_at, completed_at, nodes, summary "
                    "FROM runs ORDER BY run_id"
                ).fetchall(),
            )
        )
        store.close()
    assert loaded[0] == loaded[1], "the stored records, analytics rows or listings differ"
    print("stored records read back, analytics rows and listing columns identical")

    samples: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for name in list(sides)[:: 1 if repeat % 2 == 0 else -1]:
            parts = sides[name]
            assembled = ready(parts)
            decode_s = rows_s = 0.0
            gc.collect()
            gc.disable()  # the code's own CPU: the collector's share depends on the heap
            for first in range(0, len(assembled), writer.RUNS_PER_PASS):  # as a pass
                before = time.thread_time()
                made = [run.record() for run in assembled[first : first + writer.RUNS_PER_PASS]]
                middle = time.thread_time()
                for record in made:
                    parts["rows"].record_part(record)
                decode_s += middle - before
                rows_s += time.thread_time() - middle
            gc.enable()
            samples.setdefault(f"decode, {name}", []).append(decode_s / decisions * 1e6)
            samples.setdefault(f"rows, {name}", []).append(rows_s / decisions * 1e6)
            pass_us = writer.pass_us(
                workdir, calls, args.runs, f"{len(samples)}-{repeat}", parts["package"]
            )
            samples.setdefault(f"writer pass, {name}", []).append(pass_us)
            if args.e2e:
                light, light_cpu = raw_light(args.e2e_runs)
                rate, cpu = end_to_end(
                    parts["package"],
                    args.e2e_runs,
                    workdir / f"e2e-{name.replace(' ', '-')}-{repeat}.db",
                )
                samples.setdefault(f"e2e decisions/s, {name}", []).append(rate)
                samples.setdefault(f"e2e /raw_light, {name}", []).append(rate / light)
                samples.setdefault(f"e2e CPU µs, {name}", []).append(cpu)
                samples.setdefault(f"e2e CPU /raw_light, {name}", []).append(cpu / light_cpu)
    print(f"µs per decision, {args.runs} runs of {DECISIONS_PER_RUN}, {args.repeats} repeats:")
    width = max(len(label) for label in samples)
    for label in sorted(samples):
        values = samples[label]
        if label.startswith("e2e"):
            digits = 0 if "/s" in label else 1 if "µs" in label else 2
            low, high = min(values), max(values)
            median = statistics.median(values)
            print(f"  {label:{width}s} {median:,.{digits}f} ({low:,.{digits}f}–{high:,.{digits}f})")
        else:
            print(f"  {label:{width}s} {writer.spread(values)}")
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
