"""Runs and decisions stored per second: PostgreSQL with 4 writer processes, SQLite with 1.

Each writer process records runs through the real pipeline (``DecisionTracker`` ->
SDK -> ``RunRecordProcessor`` -> store), each run a root span with ``--decisions``
decisions of 3 options, and flushes until every run is stored. The writers start
together on a signal; the rate is the runs (and decisions) found in the store divided
by the wall time from that signal until the last writer has flushed. Every run is
checked to be in the store once.

    .venv/bin/python benchmarks/stores.py                 # writes results/stores.json
    .venv/bin/python benchmarks/stores.py --quick

PostgreSQL comes from ``--postgres`` or ``DECISIONTRACE_TEST_POSTGRES_URL``; the
benchmark works in a schema of its own and drops it afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

CHILD = """
import json, sys, time
from opentelemetry.sdk.trace import TracerProvider
import decisiontrace as dt
from decisiontrace.stores import open_store

url, runs, decisions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = open_store(url)
processor = dt.RunRecordProcessor(store, handle_sigterm=False)
provider = TracerProvider()
provider.add_span_processor(processor)
tracker = dt.DecisionTracker("bench", tracer_provider=provider)
options = [{"id": f"o{i}", "description": f"option {i}", "confidence": 0.3} for i in range(3)]
print("ready", flush=True)
sys.stdin.readline()  # the go signal
for index in range(runs):
    with tracker.run("bench-goal", input_data={"index": index}):
        for step in range(decisions):
            decision = tracker.decide(intent=f"step {step}", options=options, chosen="o1",
                                      reasoning="benchmark")
            tracker.record_outcome(decision_id=decision, success=True, tokens_used=5)
assert processor.force_flush(600_000), "not flushed"
print(json.dumps({"written": processor.written_runs, "dropped": processor.dropped_runs}),
      flush=True)
provider.shutdown()
"""


def measure(url: str, processes: int, runs: int, decisions: int) -> dict[str, Any]:
    """One round: ``processes`` writers of ``runs`` runs each on the store at ``url``."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(runs), str(decisions)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    start = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    reports = []
    for child in children:
        assert child.stdout is not None
        reports.append(json.loads(child.stdout.readline()))
    elapsed = time.perf_counter() - start
    for child in children:
        child.communicate(timeout=120)
    from decisiontrace.stores import open_store

    store = open_store(url)
    stored = len(store.list_runs())
    store.close()
    total = processes * runs
    assert sum(r["dropped"] for r in reports) == 0, reports
    return {
        "seconds": elapsed,
        "runs_per_s": total / elapsed,
        "decisions_per_s": total * decisions / elapsed,
        "stored": stored,
        "expected": total,
    }


def _postgres_url(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}schema={schema}"


def _drop(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1500, help="runs per writer process")
    parser.add_argument("--decisions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 runs, 1 repeat")
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "DECISIONTRACE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeats = 300, 1

    rounds: dict[str, list[dict[str, Any]]] = {"sqlite_1": [], "postgres_4": []}
    for _ in range(args.repeats):
        # Interleaved, so machine load drifts over both alike.
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            rounds["sqlite_1"].append(measure(url, 1, args.runs * 4, args.decisions))
        schema = f"dt_bench_{secrets.token_hex(4)}"
        try:
            rounds["postgres_4"].append(
                measure(_postgres_url(args.postgres, schema), 4, args.runs, args.decisions)
            )
        finally:
            _drop(args.postgres, schema)

    summary: dict[str, Any] = {}
    for name, results in rounds.items():
        assert all(r["stored"] == r["expected"] for r in results), results
        summary[name] = {
            "runs_per_s": statistics.median(r["runs_per_s"] for r in results),
            "decisions_per_s": statistics.median(r["decisions_per_s"] for r in results),
            "rounds": results,
        }
    ratio = summary["postgres_4"]["runs_per_s"] / summary["sqlite_1"]["runs_per_s"]
    output = {
        "machine": f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs_per_process": {"sqlite_1": args.runs * 4, "postgres_4": args.runs},
        "decisions_per_run": args.decisions,
        "ratio_postgres_4_to_sqlite_1": ratio,
        **summary,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stores.json").write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    print(f"{'store':<26}{'runs/s':>10}{'decisions/s':>14}")
    for name, label in (
        ("sqlite_1", "SQLite, 1 process"),
        ("postgres_4", "PostgreSQL, 4 processes"),
    ):
        print(
            f"{label:<26}{summary[name]['runs_per_s']:>10,.0f}"
            f"{summary[name]['decisions_per_s']:>14,.0f}"
        )
    print(f"ratio: {ratio:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
