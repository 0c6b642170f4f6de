"""PostgreSQL with 4 writers, this checkout against another commit, beside SQLite with 1.

    .venv/bin/python benchmarks/stores_ab.py HEAD~1              # 500 runs a writer, 5 repeats
    .venv/bin/python benchmarks/stores_ab.py main --runs 300 --repeats 3

The ``store`` scenario of ``stores.py`` (runs assembled first, then only
``save_assembled`` timed, in batches of 100): SQLite with one writer process and this
checkout's code; PostgreSQL with four writer processes, once with this checkout's code
and once with the given revision's (its ``src/`` exported with ``git archive`` and put
first on the writers' ``PYTHONPATH``). The three are interleaved, in rotated order, each
repeat, so the machine's load drifts over all alike; medians and min–max are printed
with the ratios, and written to ``results/stores_ab.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import secrets
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import stores

ROOT = Path(__file__).resolve().parent.parent


def export(revision: str, into: Path) -> Path:
    """The ``src/`` of ``revision``, written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("revision", help="the commit to compare this checkout with")
    parser.add_argument("--runs", type=int, default=500, help="runs per PostgreSQL writer")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    args.decisions = 10
    # As the tests and stores.py: the server on 127.0.0.1 unless the variable names one.
    args.postgres = os.environ.get("DECISIONTRACE_TEST_POSTGRES_URL", stores.LOCAL_POSTGRES)
    names = ["sqlite_1", "postgres_4", "postgres_4_other"]
    rounds: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as folder:
        other = export(args.revision, Path(folder))
        for repeat in range(args.repeats):
            for name in names[repeat % 3 :] + names[: repeat % 3]:
                os.environ.pop("PYTHONPATH", None)
                if name == "postgres_4_other":
                    os.environ["PYTHONPATH"] = str(other)
                if name == "sqlite_1":
                    with tempfile.TemporaryDirectory() as db:
                        url = f"sqlite:///{Path(db) / 'bench.db'}"
                        result = stores.measure(url, 1, args.runs * 4, args.decisions, "store")
                else:
                    schema = f"dt_ab_{secrets.token_hex(4)}"
                    try:
                        url = stores._postgres_url(args.postgres, schema)
                        result = stores.measure(url, 4, args.runs, args.decisions, "store")
                    finally:
                        stores._drop(args.postgres, schema)
                assert result["stored"] == result["expected"], result
                rounds[name].append(result["runs_per_s"])
                print(f"{name:18s} {result['runs_per_s']:8,.0f} runs/s", flush=True)
        os.environ.pop("PYTHONPATH", None)
    median = {name: statistics.median(values) for name, values in rounds.items()}
    output = {
        "machine": f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "other_revision": args.revision,
        "runs_per_process": {"sqlite_1": args.runs * 4, "postgres_4": args.runs},
        "runs_per_s": {
            name: {"median": median[name], "min": min(v), "max": max(v), "rounds": v}
            for name, v in rounds.items()
        },
        "ratio_to_sqlite_1": {
            "postgres_4": median["postgres_4"] / median["sqlite_1"],
            "postgres_4_other": median["postgres_4_other"] / median["sqlite_1"],
        },
        "this_over_other_per_round": [
            this / other
            for this, other in zip(rounds["postgres_4"], rounds["postgres_4_other"], strict=True)
        ],
    }
    (stores.RESULTS / "stores_ab.json").write_text(json.dumps(output, indent=2) + "\n")
    for name in names:
        values = rounds[name]
        print(f"{name:18s} median {median[name]:7,.0f}  ({min(values):,.0f}-{max(values):,.0f})")
    for name, ratio in output["ratio_to_sqlite_1"].items():
        print(f"{name} / sqlite_1 = {ratio:.2f}x")


if __name__ == "__main__":
    main()
