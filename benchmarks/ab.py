"""Two source trees side by side: start-up, or the disabled cost (issue #16, 5 and 6).

Each round measures each tree once, in rotated order, in fresh interpreters with the
tree first on ``PYTHONPATH`` (same Python, same packages), so load on the shared machine
hits both alike. Reports per tree the median over rounds with min–max, and the
after/before ratio of each round's pair (median, min–max)::

    git archive main src | tar -x -C /tmp/before
    .venv/bin/python benchmarks/ab.py startup --before /tmp/before/src --after src
    .venv/bin/python benchmarks/ab.py startup --before ... --after ... \\
        --code "from decisiontrace.cli.app import main; main(['runs', 'list'])"
    .venv/bin/python benchmarks/ab.py disabled --before /tmp/before/src --after src

``startup``: ``-X importtime``'s total for ``decisiontrace``, the child's CPU time
(user + system) and wall time of running ``--code`` (default ``import decisiontrace``),
pydantic plugins off unless ``--plugins``. ``disabled``: ``throughput.disabled_overhead``
in the child (a decorated function with no SDK installed, outside and inside a run,
minus the bare function: caller CPU µs per call).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scenarios import _importtime

HERE = Path(__file__).resolve().parent
_DISABLED = (
    "import json, sys; sys.path.insert(0, {here!r})\n"
    "from throughput import disabled_overhead\n"
    "print(json.dumps(disabled_overhead(calls={calls}, repeats={repeats})))\n"
)


def _child(tree: str, command: list[str], env: dict[str, str]) -> tuple[float, float, str, str]:
    """Run ``command`` with ``tree`` first on the path: CPU s, wall s, stdout, stderr."""
    child_env = dict(env, PYTHONPATH=os.path.abspath(tree), PYTHONDONTWRITEBYTECODE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=child_env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, done.stdout, done.stderr


def startup_measure(code: str, env: dict[str, str]) -> Callable[[str], dict[str, float]]:
    def measure(tree: str) -> dict[str, float]:
        command = [sys.executable, "-X", "importtime", "-c", code]
        cpu, wall, _, stderr = _child(tree, command, env)
        return {"importtime_s": _importtime(stderr)[0], "cpu_s": cpu, "wall_s": wall}

    return measure


def disabled_measure(calls: int, repeats: int) -> Callable[[str], dict[str, float]]:
    code = _DISABLED.format(here=str(HERE), calls=calls, repeats=repeats)

    def measure(tree: str) -> dict[str, float]:
        stdout = _child(tree, [sys.executable, "-c", code], dict(os.environ))[2]
        result: dict[str, float] = json.loads(stdout.splitlines()[-1])
        return result

    return measure


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def compare(
    measure: Callable[[str], dict[str, float]], before: str, after: str, rounds: int
) -> dict[str, Any]:
    """Every measure per tree over ``rounds`` interleaved rounds, and its ratio."""
    trees = {"before": before, "after": after}
    samples: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for name in trees:  # warm the file cache
        measure(trees[name])
    for index in range(rounds):
        for name in ("before", "after") if index % 2 == 0 else ("after", "before"):
            samples[name].append(measure(trees[name]))
    result: dict[str, Any] = {"rounds": rounds, "load_average": os.getloadavg()}
    for key in samples["before"][0]:
        pairs = zip(samples["after"], samples["before"], strict=True)
        result[key] = {name: _spread([s[key] for s in samples[name]]) for name in trees} | {
            "ratio": _spread([a[key] / b[key] for a, b in pairs if b[key]])
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("what", choices=("startup", "disabled"))
    parser.add_argument("--before", required=True, help="the src directory of the old tree")
    parser.add_argument("--after", required=True, help="the src directory of the new tree")
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--code", default="import decisiontrace", help="startup: what to run")
    parser.add_argument("--plugins", action="store_true", help="startup: pydantic plugins on")
    parser.add_argument("--calls", type=int, default=20_000, help="disabled: calls per loop")
    parser.add_argument("--repeats", type=int, default=3, help="disabled: loops per child")
    parser.add_argument("--out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    if args.what == "startup":
        env = dict(os.environ)
        if not args.plugins:
            env["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
        measure = startup_measure(args.code, env)
        settings: dict[str, Any] = {"code": args.code, "pydantic_plugins": args.plugins}
    else:
        measure = disabled_measure(args.calls, args.repeats)
        settings = {"calls": args.calls, "repeats_per_round": args.repeats}
    result = {
        "what": args.what,
        **settings,
        **compare(measure, args.before, args.after, args.rounds),
    }
    for key, row in result.items():
        if isinstance(row, dict) and "ratio" in row:
            b, a, r = row["before"], row["after"], row["ratio"]
            print(
                f"{key:24s} before {b['median']:.3f} ({b['min']:.3f}–{b['max']:.3f})  "
                f"after {a['median']:.3f} ({a['min']:.3f}–{a['max']:.3f})  "
                f"after/before {r['median']:.2f} ({r['min']:.2f}–{r['max']:.2f})"
            )
    print("load average", " ".join(f"{x:.2f}" for x in result["load_average"]))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
