"""Runs and decisions stored per second: PostgreSQL with 4 writer processes, SQLite with 1.

Each writer process records runs through the real pipeline (``DecisionTracker`` ->
SDK -> ``RunRecordProcessor``), each run a root span with ``--decisions`` decisions of
3 options. Two scenarios:

- ``store``: the runs are assembled first; then only their writes are timed, in
  batches of 100 through ``save_assembled`` as the writer thread calls it: the rate
  the store itself sustains;
- ``pipeline``: recording and storing together, until every run is flushed: what an
  agent host sees (mostly recording cost, the same for every store).

The writers start together on a signal; a rate is the runs (and decisions) written
divided by the wall time from that signal until the last writer is done. SQLite's one
writer writes as many runs as the four PostgreSQL writers together, and every run is
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
#: ``store``: runs assembled first, then only their writes timed (the store's rate);
#: ``pipeline``: recording and storing together (what an agent host sees).
MODES = ("store", "pipeline")
#: The PostgreSQL server of this project's machines (trust auth, database ``test``).
LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

CHILD = """
import json, sys, time
from opentelemetry.sdk.trace import TracerProvider
import decisiontrace as dt
from decisiontrace.stores import MemoryStore, open_store

url, runs, decisions, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
store = open_store(url)

class Capture(MemoryStore):
    # Keeps the runs the processor assembles, to write them to the store later.
    def __init__(self):
        super().__init__()
        self.runs = []
    def save_assembled(self, runs):
        self.runs.extend(runs)

capture = Capture()
processor = dt.RunRecordProcessor(store if mode == "pipeline" else capture,
                                  handle_sigterm=False)
provider = TracerProvider()
provider.add_span_processor(processor)
tracker = dt.DecisionTracker("bench", tracer_provider=provider)
options = [{"id": f"o{i}", "description": f"option {i}", "confidence": 0.3} for i in range(3)]

def record():
    for index in range(runs):
        with tracker.run("bench-goal", input_data={"index": index}):
            for step in range(decisions):
                decision = tracker.decide(intent=f"step {step}", options=options, chosen="o1",
                                          reasoning="benchmark")
                tracker.record_outcome(decision_id=decision, success=True, tokens_used=5)
    assert processor.force_flush(600_000), "not flushed"

if mode == "store":
    record()  # before the clock starts: only the writes are timed
print("ready", flush=True)
sys.stdin.readline()  # the go signal
if mode == "pipeline":
    record()
else:
    for start in range(0, len(capture.runs), 100):  # batches, as the writer thread writes
        store.save_assembled(capture.runs[start:start + 100])
print(json.dumps({"dropped": processor.dropped_runs}), flush=True)
provider.shutdown()
"""


def measure(url: str, processes: int, runs: int, decisions: int, mode: str) -> dict[str, Any]:
    """One round: ``processes`` writers of ``runs`` runs each on the store at ``url``."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(runs), str(decisions), mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", "a writer failed to start"
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
        default=os.environ.get("DECISIONTRACE_TEST_POSTGRES_URL", LOCAL_POSTGRES),
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeats = 300, 1

    rounds: dict[str, list[dict[str, Any]]] = {
        f"{mode}/{store}": [] for mode in MODES for store in ("sqlite_1", "postgres_4")
    }
    for _ in range(args.repeats):
        # Interleaved, so machine load drifts over every scenario alike.
        for mode in MODES:
            with tempfile.TemporaryDirectory() as folder:
                url = f"sqlite:///{Path(folder) / 'bench.db'}"
                rounds[f"{mode}/sqlite_1"].append(
                    measure(url, 1, args.runs * 4, args.decisions, mode)
                )
            schema = f"dt_bench_{secrets.token_hex(4)}"
            try:
                url = _postgres_url(args.postgres, schema)
                rounds[f"{mode}/postgres_4"].append(
                    measure(url, 4, args.runs, args.decisions, mode)
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
    ratios = {
        mode: summary[f"{mode}/postgres_4"]["runs_per_s"]
        / summary[f"{mode}/sqlite_1"]["runs_per_s"]
        for mode in MODES
    }
    output = {
        "machine": f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs_per_process": {"sqlite_1": args.runs * 4, "postgres_4": args.runs},
        "decisions_per_run": args.decisions,
        "ratio_postgres_4_to_sqlite_1": ratios,
        **summary,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stores.json").write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    print(f"{'scenario':<24}{'runs/s':>10}{'decisions/s':>14}")
    for name in rounds:
        print(
            f"{name:<24}{summary[name]['runs_per_s']:>10,.0f}"
            f"{summary[name]['decisions_per_s']:>14,.0f}"
        )
    for mode, ratio in ratios.items():
        print(f"{mode}: PostgreSQL x4 / SQLite x1 = {ratio:.2f}x (target >= 1.0x)")


if __name__ == "__main__":
    main()
