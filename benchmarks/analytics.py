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
    .venv/bin/python benchmarks/analytics.py --postgres URL --schema NAME --keep  # the same
    .venv/bin/python benchmarks/analytics.py ... --before /tmp/before/src --after src

On PostgreSQL the server's CPU time is reported beside the client's (see
:func:`server_ticks`): with the server on the same machine, the client's CPU alone hides
the queries' cost. ``--statistics analyze`` or ``forget`` sets the planner's statistics
first (a server without autovacuum never gathers them). ``--before`` times each command
from two source trees in rotated order, round after round (see :func:`side_by_side`).
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
        last = min(runs, first + batch)
        records = [make_run(rng, s, decisions, start) for s in range(first, last)]
        for attempt in range(3):
            try:
                store.save_records(records)  # all or nothing
                break
            except Exception as exc:
                # PostgreSQL, psycopg 3.3.9: now and then a batch's pipelined statements
                # answer out of step ("the last operation didn't produce records"):
                # said, and the batch written again, as the processor would retry it.
                print(f"batch at {first}: {exc!r}, attempt {attempt + 1}", file=sys.stderr)
                if attempt == 2:
                    raise
    seconds = time.perf_counter() - began
    store.close()
    return {"seconds": seconds, "decisions_per_s": runs * decisions / seconds}


def _postmaster() -> int | None:
    """The pid of a PostgreSQL postmaster on this machine readable in /proc, or None."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if command and command[0].endswith(b"/postgres") and parent == 1:
            return int(entry.name)
    return None


def server_ticks(postmaster: int) -> float:
    """CPU seconds the server has used: the postmaster's children that have ended
    (its cutime and cstime) plus those still running (backends, background workers).
    A delta around a command is that command's queries, plus whatever else the server
    did meanwhile (other clients of a shared server)."""
    tick = os.sysconf("SC_CLK_TCK")

    def fields(pid: int | str) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()

    # After ")": state ppid ... utime(12) stime(13) cutime(14) cstime(15) (0-based).
    own = fields(postmaster)
    total = int(own[13]) + int(own[14])
    for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        try:
            values = fields(child)
        except OSError:  # ended meanwhile: in the cutime read next time
            continue
        total += int(values[11]) + int(values[12])
    return total / tick


def _command(tree: str | None) -> tuple[list[str], dict[str, str]]:
    """How to run the CLI: the installed ``decisiontrace``, or this Python with ``tree``
    (a ``src`` directory) first on the path."""
    if tree is None:
        return [CLI], dict(os.environ)
    environment = dict(os.environ, PYTHONPATH=os.path.abspath(tree), PYTHONDONTWRITEBYTECODE="1")
    return [sys.executable, "-c", _FROM_TREE], environment


_FROM_TREE = (
    "import sys; from decisiontrace.cli.app import main; sys.argv[0] = 'decisiontrace'; main()"
)


def _once(
    arguments: list[str], url: str, postmaster: int | None, tree: str | None = None
) -> tuple[float, float, float | None, str]:
    """One run of ``decisiontrace ARGUMENTS --store URL``: wall s, the child's CPU s
    (user + system), the server's CPU s (None without a postmaster), its output."""
    command, environment = _command(tree)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    served = server_ticks(postmaster) if postmaster else 0.0
    began = time.perf_counter()
    result = subprocess.run(
        [*command, *arguments, "--store", url],
        capture_output=True, text=True, check=False, env=environment,
    )  # fmt: skip
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    server = None
    if postmaster:
        time.sleep(0.05)  # the ended backends reaped, their time in the cutime
        server = server_ticks(postmaster) - served
    if result.returncode != 0:
        raise RuntimeError(f"{arguments}: {result.stderr or result.stdout}")
    return wall, cpu, server, result.stdout


def _summary(times: list[float], cpu: list[float], server: list[float]) -> dict[str, Any]:
    summary = {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "cpu_median_s": round(statistics.median(cpu), 3),
        "cpu_min_s": round(min(cpu), 3),
        "cpu_max_s": round(max(cpu), 3),
    }
    if server:
        summary.update(
            server_cpu_median_s=round(statistics.median(server), 3),
            server_cpu_min_s=round(min(server), 3),
            server_cpu_max_s=round(max(server), 3),
        )
    return summary


def timed(
    arguments: list[str], url: str, repeats: int, postmaster: int | None = None
) -> dict[str, Any]:
    """Wall time and CPU time (user + system, the child's own: what a busy shared machine
    does not inflate much) of ``decisiontrace ARGUMENTS --store URL`` in fresh processes,
    and the server's CPU time if ``postmaster`` is given."""
    times, cpu, server = [], [], []
    output = ""
    for _ in range(repeats):
        wall, used, served, output = _once(arguments, url, postmaster)
        times.append(wall)
        cpu.append(used)
        if served is not None:
            server.append(served)
    return {**_summary(times, cpu, server), "output_bytes": len(output)}


def side_by_side(
    arguments: list[str], url: str, rounds: int, trees: dict[str, str], postmaster: int | None
) -> dict[str, Any]:
    """The command from each source tree, in rotated order each round (the machine's
    load hits both alike): per tree its summary, and the after/before ratio of each
    round's wall and total CPU (client + server)."""
    measured: dict[str, tuple[list[float], list[float], list[float]]] = {
        name: ([], [], []) for name in trees
    }
    names = list(trees)
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            wall, used, served, _ = _once(arguments, url, postmaster, trees[name])
            measured[name][0].append(wall)
            measured[name][1].append(used)
            if served is not None:
                measured[name][2].append(served)
    result: dict[str, Any] = {name: _summary(*values) for name, values in measured.items()}
    (before_wall, before_cpu, before_server), (after_wall, after_cpu, after_server) = (
        measured["before"], measured["after"]
    )  # fmt: skip
    walls = [a / b for a, b in zip(after_wall, before_wall, strict=True)]
    after_total = [c + s for c, s in zip(after_cpu, after_server or [0.0] * rounds, strict=True)]
    before_total = [c + s for c, s in zip(before_cpu, before_server or [0.0] * rounds, strict=True)]
    totals = [a / b for a, b in zip(after_total, before_total, strict=True)]
    result["wall_ratio"] = {
        "median": round(statistics.median(walls), 2), "min": round(min(walls), 2),
        "max": round(max(walls), 2),
    }  # fmt: skip
    result["cpu_ratio"] = {
        "median": round(statistics.median(totals), 2), "min": round(min(totals), 2),
        "max": round(max(totals), 2),
    }  # fmt: skip
    return result


def filled_runs(url: str) -> int:
    """How many runs the store at ``url`` holds (0 if it has no tables yet)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        path = url[len("sqlite:///") :]
        if not os.path.exists(path):
            return 0
        with sqlite3.connect(path) as connection:
            return int(connection.execute("SELECT count(*) FROM runs").fetchone()[0])
    import psycopg

    base, _, query = url.partition("?")
    schema = dict(part.split("=", 1) for part in query.split("&"))["schema"]
    with psycopg.connect(base) as connection:
        [(table,)] = connection.execute("SELECT to_regclass(%s)", (f'"{schema}".runs',))
        if table is None:
            return 0
        [(count,)] = connection.execute(f'SELECT count(*) FROM "{schema}".runs')
        return int(count)


def planner_statistics(url: str, what: str) -> None:
    """``analyze``: ``ANALYZE`` the schema's tables, as autovacuum would have after the
    fill (the test server runs with ``autovacuum = off``): the plans of a live store.
    ``forget``: delete their statistics (a superuser's catalog write), as if never
    analyzed: the plans of a store filled on a server without autovacuum."""
    import psycopg

    base, _, query = url.partition("?")
    schema = dict(part.split("=", 1) for part in query.split("&"))["schema"]
    with psycopg.connect(base, autocommit=True) as connection:
        tables = [
            table
            for (table,) in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)
            ).fetchall()
        ]
        for table in tables:
            name = f'"{schema}"."{table}"'
            if what == "analyze":
                connection.execute(f"ANALYZE {name}")
            else:
                connection.execute(
                    "DELETE FROM pg_statistic WHERE starelid = %s::regclass", (name,)
                )
                connection.execute(
                    "UPDATE pg_class SET reltuples = -1, relpages = 0 WHERE oid = %s::regclass",
                    (name,),
                )


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
    return int(row[0] or 0) if row else 0


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
    parser.add_argument("--schema", help="the PostgreSQL schema (with --keep: reuse it if full)")
    parser.add_argument(
        "--statistics", choices=("analyze", "forget"),
        help="PostgreSQL: ANALYZE the tables before timing, or forget their statistics",
    )  # fmt: skip
    parser.add_argument("--before", help="a src tree: time it and --after side by side")
    parser.add_argument("--after", default="src", help="the src tree compared with --before")
    parser.add_argument("--out", type=Path, help="write the JSON here")
    parser.add_argument("--only", action="append", help="time only this command (repeatable)")
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="dt-analytics-")
    schema = None
    postmaster = None
    if args.postgres:
        schema = args.schema or f"dt_analytics_{secrets.token_hex(4)}"
        postmaster = _postmaster()
        separator = "&" if "?" in args.postgres else "?"
        url = f"{args.postgres}{separator}schema={schema}"
    else:
        url = "sqlite:///" + os.path.abspath(args.store or os.path.join(folder, "runs.db"))
    try:
        reuse = args.keep and (args.store or args.schema) and filled_runs(url) == args.runs
        filled = None if reuse else fill(url, args.runs, args.decisions)
        if args.postgres and args.statistics:
            planner_statistics(url, args.statistics)
        size = store_size(url)
        load = os.getloadavg()[0]
        commands = {k: v for k, v in COMMANDS.items() if not args.only or k in args.only}
        if args.before:
            trees = {"before": args.before, "after": args.after}
            results = {
                name: side_by_side(command, url, args.repeats, trees, postmaster)
                for name, command in commands.items()
            }
        else:
            results = {
                name: timed(command, url, args.repeats, postmaster)
                for name, command in commands.items()
            }
    finally:
        if schema is not None and args.postgres and not args.keep:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as connection:
                connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if not args.keep:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
    output = {
        "machine": f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {load:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": "PYDANTIC_DISABLE_PLUGINS=" + os.environ.get("PYDANTIC_DISABLE_PLUGINS", ""),
        "store": "postgresql" if args.postgres else "sqlite",
        "runs": args.runs,
        "decisions": args.runs * args.decisions,
        "fill": filled,
        "statistics": args.statistics,
        "side_by_side": {"before": args.before, "after": args.after} if args.before else None,
        "server_cpu": "the PostgreSQL server's CPU time (postmaster's ended children and "
        "live backends), a delta around each command"
        if postmaster
        else None,
        "store_bytes": size,
        "bytes_per_decision": round(size / (args.runs * args.decisions)),
        "commands": results,
    }
    RESULTS.mkdir(exist_ok=True)
    name = "analytics-postgres.json" if args.postgres else "analytics.json"
    out = args.out or RESULTS / name
    out.write_text(json.dumps(output, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(output, indent=2))


if __name__ == "__main__":
    main()
