"""Two source trees' long runs side by side: ``gc_long_run.py`` in fresh interpreters.

    git archive main src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/ab_gc.py --before /tmp/before/src --after src [--rounds 4]

Each round runs ``gc_long_run.py --json`` once per tree, in rotated order, with the tree
first on ``PYTHONPATH`` (as ``ab.py``). Reported per tree, median (min–max) over rounds:
the long run's last tenth against the runs of 10 before it (caller CPU per decision),
its collections' share, and what one young collection costs in the last tenth against
the first (1.0: flat as the run grows).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def measure(tree: str, decisions: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, str(HERE / "gc_long_run.py"), str(decisions), "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    rows = json.loads(done.stdout.splitlines()[-1])["rows"]
    short, first, last = rows[0], rows[1], rows[-1]

    def young(row: dict[str, Any], generation: int) -> float:
        return float(row["us_per_collection"][generation] or 0.0)

    return {
        "last_tenth_to_runs_of_10": last["us_per_decision"] / short["us_per_decision"],
        "gc_us_runs_of_10": sum(short["gc_us_per_decision"]),
        "gc_us_last_tenth": sum(last["gc_us_per_decision"]),
        "gen0_last_to_first": young(last, 0) / young(first, 0),
        "gen1_last_to_first": young(last, 1) / young(first, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    trees = {"before": args.before, "after": args.after}
    samples: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for index in range(args.rounds):
        for name in ("before", "after") if index % 2 == 0 else ("after", "before"):
            result = measure(trees[name], args.decisions)
            samples[name].append(result)
            shown = " ".join(f"{k} {v:.2f}" for k, v in result.items())
            print(f"{name:6s} {shown}  (load {os.getloadavg()[0]:.1f})", flush=True)
    summary: dict[str, Any] = {"rounds": args.rounds, "load_average": os.getloadavg()}
    for key in samples["before"][0]:
        summary[key] = {}
        for name in trees:
            values = [s[key] for s in samples[name]]
            summary[key][name] = {
                "median": statistics.median(values), "min": min(values), "max": max(values)
            }  # fmt: skip
            print(
                f"{key:26s} {name:6s} {statistics.median(values):7.2f}"
                f" ({min(values):.2f}–{max(values):.2f})"
            )
    if args.out is not None:
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
