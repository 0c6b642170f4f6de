"""The writer thread's CPU per decision on the store side (issue #16, part 2).

Runs are recorded through the real pipeline (tracker -> SDK -> ``RunRecordProcessor``)
into a capturing store first; then the writer's call to the store,
``save_assembled(batch)`` in batches of 100 runs as the writer thread makes it, is
timed with ``time.thread_time`` (CPU of this thread only: what competes with the agent
for the GIL), repeated and interleaved over the stores. The parts are timed the same
way: decoding the run from its spans (``record()``), turning it into rows (form,
summary, analytics columns), and the database's share (the rest).

    .venv/bin/python benchmarks/store_writes.py            # 2,000 runs of 10, 5 repeats
    .venv/bin/python benchmarks/store_writes.py --runs 500 --repeats 3

Prints one JSON object, also written to ``results/store_writes.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider

import decisiontrace as dt
from decisiontrace.stores import MemoryStore, open_store
from decisiontrace.stores import _sqlite_rows as rows

RESULTS = Path(__file__).resolve().parent / "results"


class _Capture(MemoryStore):
    """Keeps the runs the processor assembles, to hand them to the stores later."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[Any] = []

    def save_assembled(self, runs: Any) -> None:
        self.runs.extend(runs)


def assembled_runs(count: int, decisions: int) -> list[Any]:
    capture = _Capture()
    processor = dt.RunRecordProcessor(capture, handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("bench", tracer_provider=provider)
    options = [{"id": f"o{i}", "description": f"option {i}", "confidence": 0.3} for i in range(3)]
    for index in range(count):
        with tracker.run("bench-goal", input_data={"index": index}):
            for step in range(decisions):
                decision = tracker.decide(
                    intent=f"step {step}", options=options, chosen="o1", reasoning="benchmark"
                )
                tracker.record_outcome(decision_id=decision, success=True, tokens_used=5)
    assert processor.force_flush(600_000)
    provider.shutdown()
    return capture.runs


def cpu_per_decision(work: Any, decisions: int) -> float:
    began = time.thread_time()
    work()
    return (time.thread_time() - began) / decisions * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--decisions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "DECISIONTRACE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    runs = assembled_runs(args.runs, args.decisions)
    total = args.runs * args.decisions
    folder = tempfile.mkdtemp(prefix="dt-writes-")
    schema = f"dt_writes_{secrets.token_hex(4)}"
    separator = "&" if "?" in args.postgres else "?"
    samples: dict[str, list[float]] = {
        "sqlite": [], "postgres": [], "record()": [], "rows (record() included)": [],
    }  # fmt: skip
    try:
        for repeat in range(args.repeats):
            stores = {
                "sqlite": open_store(f"sqlite:///{folder}/writes{repeat}.db"),
                "postgres": open_store(f"{args.postgres}{separator}schema={schema}_{repeat}"),
            }
            for name, store in stores.items():

                def write(store: Any = store) -> None:
                    for start in range(0, len(runs), 100):
                        store.save_assembled(runs[start : start + 100])

                samples[name].append(cpu_per_decision(write, total))
                store.close()
            samples["record()"].append(
                cpu_per_decision(lambda: [run.record() for run in runs], total)
            )
            samples["rows (record() included)"].append(
                cpu_per_decision(lambda: [rows.assembled_part(run) for run in runs], total)
            )
    finally:
        import psycopg

        with psycopg.connect(args.postgres, autocommit=True) as connection:
            for repeat in range(args.repeats):
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}_{repeat}" CASCADE')
    output = {
        "machine": f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": args.runs,
        "decisions_per_run": args.decisions,
        "cpu_us_per_decision": {
            name: {
                "median": round(statistics.median(values), 2),
                "min": round(min(values), 2),
                "max": round(max(values), 2),
            }
            for name, values in samples.items()
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store_writes.json").write_text(json.dumps(output, indent=2) + "\n", "utf-8")
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
