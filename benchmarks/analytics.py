"""The reading commands on a big store: 100,000 runs of 10 decisions (issue #16, part 3).

Fills a store with generated run records, written in bulk through the store's API
(``save_records``, batches of 1,000: the same rows the processor's writes produce, but
without recording spans first), then times the commands in fresh processes, as a user
runs them, start-up included:

- ``decisiontrace runs list`` (the newest 50), target under 0.3 s;
- ``decisiontrace stats --json``, target under 2 s;
- ``decisiontrace decisions --text WORD`` (a word in 1 decision of 5,000: the search
  reads far back) and ``decisions --node N --outcome failed``, target under 2 s;

and reports the store's size per decision. Prints one JSON object, also written to
``results/analytics.json`` (``results/analytics-postgres.json`` with ``--postgres``).

    .venv/bin/python benchmarks/analytics.py                      # SQLite, 100,000 runs
    .venv/bin/python benchmarks/analytics.py --runs 10000 --repeats 3
    .venv/bin/python benchmarks/analytics.py --postgres URL       # the same on PostgreSQL
    .venv/bin/python benchmarks/analytics.py --store PATH --keep  # fill PATH once, keep it
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
CLI = str(Path(sys.executable).with_name("decisiontrace"))

NODES = ("classifier", "retriever", "planner", "writer", "reviewer", "router")
TYPES = ("tool_selection", "path_choice", "parameter_choice", "delegation")
GOALS = ("support", "billing", "triage", "research", "onboarding")
WORDS = ("refund", "password", "invoice", "outage", "upgrade", "latency", "export", "login")
#: Appears in the reasoning of one decision in 5,000: a search that reads far back.
RARE = "zanzibar"


def _decision(rng: random.Random, index: int, at: datetime, serial: int) -> dict[str, Any]:
    node = NODES[rng.randrange(len(NODES))]
    kind = TYPES[index % len(TYPES)]
    word = WORDS[rng.randrange(len(WORDS))]
    options = [
        {
            "id": f"opt_{node}_{k}",
            "description": f"{word} option {k} for {node}",
            "action_type": "route",
            "action_params": {},
            "pros": [],
            "cons": [],
            "confidence": round(rng.uniform(0.05, 0.95), 2),
        }
        for k in range(3)
    ]
    chosen = options[rng.randrange(3)]
    success = rng.random() < 0.8
    outcome = {
        "success": success,
        "result": {"ok": success},
        "error": None if success else f"{word} failed",
        "state_changes": {},
        "tokens_used": rng.randrange(50, 900),
        "latency_ms": rng.randrange(20, 3000),
        "summary": f"{word} handled" if success else "",
        "timestamp": (at + timedelta(milliseconds=10)).isoformat(),
    }
    reasoning = f"the {word} case fits {chosen['id']}"
    if serial % 5000 == 0:
        reasoning += f" ({RARE})"
    return {
        "id": f"dec_{index}",
        "timestamp": at.isoformat(),
        "node_id": node,
        "intent": f"handle {word}",
        "decision_type": kind,
        "options": options,
        "chosen_option_id": chosen["id"],
        "reasoning": reasoning,
        "active_constraints": [],
        "input_context": {"step": index},
        "outcome": outcome,
        "evaluation": None,
        "chosen_option": copy.copy(chosen),
        "was_successful": success,
        "was_good_decision": success,
    }


def make_run(rng: random.Random, serial: int, decisions: int, start: datetime) -> dict[str, Any]:
    """One run record in ``Run.model_dump(mode="json")`` shape."""
    started = start + timedelta(seconds=serial * 7)
    made = [
        _decision(rng, i, started + timedelta(milliseconds=100 * i), serial * decisions + i)
        for i in range(decisions)
    ]
    successes = sum(d["was_successful"] for d in made)
    nodes = list(dict.fromkeys(d["node_id"] for d in made))
    status = "completed" if successes == decisions else "failed"
    return {
        "id": f"run_bench_{serial:07d}_{rng.getrandbits(32):08x}",
        "goal_id": GOALS[serial % len(GOALS)],
        "started_at": started.isoformat(),
        "status": status,
        "completed_at": (started + timedelta(seconds=2)).isoformat(),
        "decisions": made,
        "problems": [],
        "metrics": {
            "total_decisions": decisions,
            "successful_decisions": successes,
            "failed_decisions": decisions - successes,
            "total_tokens": sum(d["outcome"]["tokens_used"] for d in made),
            "total_latency_ms": sum(d["outcome"]["latency_ms"] for d in made),
            "nodes_executed": nodes,
            "edges_traversed": [],
            "success_rate": round(successes / decisions, 4),
        },
        "narrative": f"Run {status}.",
        "goal_description": "benchmark",
        "input_data": {"serial": serial},
        "output_data": {},
        "duration_ms": 2000,
    }


def fill(url: str, runs: int, decisions: int, batch: int = 1000) -> dict[str, float]:
    """Write ``runs`` generated runs to the store at ``url`` in batches; the time taken."""
    from decisiontrace.stores import open_store

    store = open_store(url)
    rng = random.Random(16)
    start = datetime(2026, 11, 1)
    began = time.perf_counter()
    for first in range(0, runs, batch):
        store.save_records(
            [make_run(rng, s, decisions, start) for s in range(first, min(runs, first + batch))]
        )
    seconds = time.perf_counter() - began
    store.close()
    return {"seconds": seconds, "decisions_per_s": runs * decisions / seconds}


def timed(arguments: list[str], url: str, repeats: int) -> dict[str, Any]:
    """Wall time and CPU time (user + system, the child's own: what a busy shared machine
    does not inflate much) of ``decisiontrace ARGUMENTS --store URL`` in fresh processes."""
    times, cpu = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        result = subprocess.run(
            [CLI, *arguments, "--store", url], capture_output=True, text=True, check=False
        )
        times.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            raise RuntimeError(f"{arguments}: {result.stderr or result.stdout}")
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "cpu_median_s": round(statistics.median(cpu), 3),
        "cpu_min_s": round(min(cpu), 3),
        "cpu_max_s": round(max(cpu), 3),
        "output_bytes": len(result.stdout),
    }


def store_size(url: str) -> int:
    """Bytes the store takes: the SQLite file (and its WAL), or the PostgreSQL schema."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))
    import psycopg

    base, _, query = url.partition("?")
    schema = dict(part.split("=", 1) for part in query.split("&"))["schema"]
    with psycopg.connect(base) as connection:
        row = connection.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()
    return int(row[0] or 0)


COMMANDS: dict[str, list[str]] = {
    "runs list": ["runs", "list"],
    "stats --json": ["stats", "--json"],
    f"decisions --text {RARE}": ["decisions", "--text", RARE, "--json"],
    "decisions --node retriever --outcome failed": (
        ["decisions", "--node", "retriever", "--outcome", "failed", "--json"]
    ),
}
TARGETS = {"runs list": 0.3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--decisions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--store", help="SQLite file to fill (or reuse with --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the store; reuse it if full")
    parser.add_argument("--postgres", help="a PostgreSQL URL: work in a schema of its own")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="dt-analytics-")
    schema = None
    if args.postgres:
        schema = f"dt_analytics_{secrets.token_hex(4)}"
        separator = "&" if "?" in args.postgres else "?"
        url = f"{args.postgres}{separator}schema={schema}"
    else:
        url = "sqlite:///" + os.path.abspath(args.store or os.path.join(folder, "runs.db"))
    try:
        reuse = args.keep and args.store and os.path.exists(args.store)
        filled = None if reuse else fill(url, args.runs, args.decisions)
        size = store_size(url)
        results = {name: timed(command, url, args.repeats) for name, command in COMMANDS.items()}
    finally:
        if schema is not None and args.postgres:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    output = {
        "machine": f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": "PYDANTIC_DISABLE_PLUGINS=" + os.environ.get("PYDANTIC_DISABLE_PLUGINS", ""),
        "store": "postgresql" if args.postgres else "sqlite",
        "runs": args.runs,
        "decisions": args.runs * args.decisions,
        "fill": filled,
        "store_bytes": size,
        "bytes_per_decision": round(size / (args.runs * args.decisions)),
        "commands": results,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "analytics-postgres.json" if args.postgres else "analytics.json"
    (RESULTS / name).write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
