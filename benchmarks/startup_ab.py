"""Start-up of two source trees side by side: ``import decisiontrace`` (or any code).

Each round runs the code once from each tree, in rotated order, in fresh interpreters
with the same Python and packages (the tree is put first on ``PYTHONPATH``), so load on
the shared machine hits both alike. Reports, per tree, ``-X importtime``'s total for
``decisiontrace``, the child's CPU time (user + system) and its wall time, as medians
with min–max, and the after/before ratio of each round's pair::

    git archive main src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/startup_ab.py --before /tmp/before/src --after src
    .venv/bin/python benchmarks/startup_ab.py --before ... --after ... \\
        --code "from decisiontrace.cli.app import main; main(['runs', 'list'])"
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scenarios import _importtime


def _one(tree: str, code: str, env: dict[str, str]) -> dict[str, float]:
    child_env = dict(env, PYTHONPATH=os.path.abspath(tree), PYTHONDONTWRITEBYTECODE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        env=child_env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"importtime_s": _importtime(done.stderr)[0], "cpu_s": cpu, "wall_s": wall}


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def compare(
    before: str, after: str, code: str, repeats: int, env: dict[str, str]
) -> dict[str, Any]:
    trees = {"before": before, "after": after}
    samples: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for name in trees:  # warm the file cache
        _one(trees[name], code, env)
    for repeat in range(repeats):
        order = ["before", "after"] if repeat % 2 == 0 else ["after", "before"]
        for name in order:
            samples[name].append(_one(trees[name], code, env))
    result: dict[str, Any] = {"code": code, "repeats": repeats, "load_average": os.getloadavg()}
    for measure in ("importtime_s", "cpu_s", "wall_s"):
        result[measure] = {name: _spread([s[measure] for s in samples[name]]) for name in trees} | {
            "ratio": _spread(
                [
                    a[measure] / b[measure]
                    for a, b in zip(samples["after"], samples["before"], strict=True)
                ]
            )
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the src directory of the old tree")
    parser.add_argument("--after", required=True, help="the src directory of the new tree")
    parser.add_argument("--code", default="import decisiontrace")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--plugins", action="store_true", help="leave pydantic plugins on")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    env = dict(os.environ)
    if not args.plugins:
        env["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    result = compare(args.before, args.after, args.code, args.repeats, env)
    result["pydantic_plugins"] = "on" if args.plugins else "off"
    for measure in ("importtime_s", "cpu_s", "wall_s"):
        row = result[measure]
        print(
            f"{measure:13s} before {row['before']['median']:.3f} s "
            f"({row['before']['min']:.3f}–{row['before']['max']:.3f})  "
            f"after {row['after']['median']:.3f} s "
            f"({row['after']['min']:.3f}–{row['after']['max']:.3f})  "
            f"after/before {row['ratio']['median']:.2f} "
            f"({row['ratio']['min']:.2f}–{row['ratio']['max']:.2f})"
        )
    print("load average", " ".join(f"{x:.2f}" for x in result["load_average"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
