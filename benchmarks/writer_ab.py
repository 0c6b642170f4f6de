"""The writer's decode and analytics facts against those of another commit, in one process.

    .venv/bin/python benchmarks/writer_ab.py main            # 1,000 runs of 10, 7 repeats
    .venv/bin/python benchmarks/writer_ab.py HEAD~1 --runs 300 --repeats 3

``spanmodel/_decode.py``, ``spanmodel/_records.py`` and ``stores/_facts.py`` of the given
git revision are loaded beside the installed ones, and the two sets are swapped in turn
(the module attributes the writer calls), alternating which goes first. First the
records and analytics rows of both are checked to be identical on the workload; then,
each repeat, µs per decision of ``run.record()`` (the decode) and of ``decision_facts`` on
those records, 100 runs at a time as a pass takes them and with the garbage collector
off (its share depends on the heap, not on this code), and of a whole writer pass
(``writer.pass_us``, collector on). Median (min–max).
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import writer
from workload import DECISIONS_PER_RUN

from decisiontrace.pipeline._assembly import RunAssembler
from decisiontrace.pipeline._inbox import span_data
from decisiontrace.spanmodel import _decode
from decisiontrace.stores import _facts
from decisiontrace.stores import _sqlite_rows as rows


def module_at(revision: str, path: str, name: str, **replace: Any) -> types.ModuleType:
    source = subprocess.check_output(["git", "show", f"{revision}:{path}"], text=True)
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(source, path, "exec"), module.__dict__)
    for key, value in replace.items():
        setattr(module, key, value)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    src = "src/decisiontrace/"
    records = module_at(args.revision, src + "spanmodel/_records.py", "ab_records")
    decode = module_at(args.revision, src + "spanmodel/_decode.py", "ab_decode", _records=records)
    facts = module_at(
        args.revision, src + "stores/_facts.py", "ab_facts",
        stated_confidence=records.stated_confidence,
    )  # fmt: skip
    sets = {
        args.revision: (decode.decision_record, decode.run_record, facts.decision_facts),
        "this tree": (_decode.decision_record, _decode.run_record, _facts.decision_facts),
    }

    def use(name: str) -> None:
        _decode.decision_record, _decode.run_record, rows.decision_facts = sets[name]

    calls = writer.recorded_calls(args.runs)
    ended = [span for started, span in calls if not started]
    decisions = args.runs * DECISIONS_PER_RUN

    def ready() -> list[Any]:
        assembler = RunAssembler()
        for data in [span_data(span) for span in ended]:
            assembler.add(data, 0.0)
        return assembler.take_ready_runs(force=True, now=0.0)

    outputs = []
    for name in sets:
        use(name)
        made = [run.record() for run in ready()]
        outputs.append((json.dumps(made), repr([rows.decision_facts(r) for r in made])))
    assert outputs[0] == outputs[1], "records or facts differ"
    print("records and facts identical")
    workdir = Path(tempfile.mkdtemp(prefix="decisiontrace-writer-ab-"))
    samples: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for name in list(sets)[:: 1 if repeat % 2 == 0 else -1]:
            use(name)
            assembled = ready()
            decode_s = facts_s = 0.0
            gc.collect()
            gc.disable()  # the code's own CPU: the collector's share depends on the heap
            for first in range(0, len(assembled), writer.RUNS_PER_PASS):  # as a pass
                before = time.thread_time()
                made = [run.record() for run in assembled[first : first + writer.RUNS_PER_PASS]]
                middle = time.thread_time()
                for record in made:
                    rows.decision_facts(record)
                decode_s += middle - before
                facts_s += time.thread_time() - middle
            gc.enable()
            samples.setdefault(f"decode, {name}", []).append(decode_s / decisions * 1e6)
            samples.setdefault(f"facts, {name}", []).append(facts_s / decisions * 1e6)
            pass_us = writer.pass_us(workdir, calls, args.runs, f"{name}-{repeat}")
            samples.setdefault(f"writer pass, {name}", []).append(pass_us)
    use("this tree")
    print(f"µs per decision, {args.runs} runs of {DECISIONS_PER_RUN}, {args.repeats} repeats:")
    width = max(len(label) for label in samples)
    for label in sorted(samples):
        print(f"  {label:{width}s} {writer.spread(samples[label])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
