"""Where a span's microseconds go in the ingest service and in the in-process processor.

    .venv/bin/python benchmarks/profile_ingest.py [--runs 2000] [--repeat 5] [--unique]

The spans of ``benchmarks/ingest.py`` go through each stage by hand, in this process,
on one thread, timed with ``time.thread_time`` (CPU of this thread only); each stage
runs ``--repeat`` times on fresh state and the median is reported, in µs per span:

- ingest: the OTLP/protobuf requests (512 spans each) parsed (``_wire.parse_request``),
  their spans read (``from_protobuf`` less the parse: ids, attributes, token rules),
  handed to the processor's queue (``RunRecordProcessor.receive``), assembled into runs
  (``RunAssembler.add`` and ``take_ready_runs``), and stored (``save_assembled`` in
  batches of 100 runs: records, their encoding, SQLite);
- in-process: the same spans through ``on_start``/``on_end`` (the agent's thread), read
  off the SDK spans (``span_data``), then the same assembly and store.

What is not here is the server: the HTTP or gRPC request handling, threads and the
collector, which ``benchmarks/ingest.py`` measures with the rest (the service's whole
CPU time); the difference is in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import decisiontrace as dt
from decisiontrace.ingest import _spans, _wire
from decisiontrace.pipeline._assembly import RunAssembler
from decisiontrace.pipeline._inbox import Received, span_data
from decisiontrace.stores import open_store
from ingest import _bodies, make_spans


def _timed(work: Callable[[], Any]) -> tuple[Any, float]:
    start = time.thread_time()
    result = work()
    return result, time.thread_time() - start


def _assemble(datas: list[Any]) -> list[Any]:
    assembler = RunAssembler()
    now = time.monotonic()
    for data in datas:
        assembler.add(data, now)
    return assembler.take_ready_runs(force=True, now=now)


def _store(folder: str, name: str, runs: list[Any]) -> None:
    with open_store(f"sqlite:///{folder}/{name}.db") as store:
        for index in range(0, len(runs), 100):
            store.save_assembled(runs[index : index + 100])


def one_round(
    spans: list[Any], bodies: list[bytes], warm_up: bytes, folder: str, round_: int
) -> dict[str, float]:
    """Seconds of each stage, for all the spans."""
    seconds: dict[str, float] = {}
    _wire._pairs.clear()  # as in a new service: these spans' attributes not read yet
    _spans.from_protobuf(warm_up, _spans.TokenLinks())  # but other runs' were
    _, seconds["ingest: parse the request"] = _timed(
        lambda: [_wire.parse_request(body) for body in bodies]
    )
    links = _spans.TokenLinks()
    decoded, read = _timed(lambda: [_spans.from_protobuf(body, links) for body in bodies])
    seconds["ingest: read the spans"] = read - seconds["ingest: parse the request"]
    receiver = dt.RunRecordProcessor(
        f"sqlite:///{folder}/queue-{round_}.db", handle_sigterm=False, flush_interval=3600
    )
    _, seconds["ingest: hand over to the queue"] = _timed(
        lambda: [receiver.receive(d.items) for d in decoded]
    )
    receiver._writer._inbox.clear()  # taken by hand below, not by its writer
    receiver.shutdown(1000)
    datas = [item.data for d in decoded for item in d.items if type(item) is Received]
    runs, seconds["ingest: assemble"] = _timed(lambda: _assemble(datas))
    _, seconds["ingest: store"] = _timed(lambda: _store(folder, f"ingest-{round_}", runs))

    processor = dt.RunRecordProcessor(
        f"sqlite:///{folder}/agent-{round_}.db", handle_sigterm=False, flush_interval=3600
    )

    def hooks() -> None:
        for span in spans:
            processor.on_start(span)
            processor.on_end(span)

    _, seconds["in-process: on_start + on_end"] = _timed(hooks)
    processor._writer._inbox.clear()
    processor.shutdown(1000)
    datas, seconds["in-process: read the SDK spans"] = _timed(
        lambda: [span_data(span) for span in spans]
    )
    runs, seconds["in-process: assemble"] = _timed(lambda: _assemble(datas))
    _, seconds["in-process: store"] = _timed(lambda: _store(folder, f"agent-{round_}", runs))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--unique", action="store_true", help="every decision's values differ")
    args = parser.parse_args()
    spans = make_spans(args.runs, unique=args.unique)
    bodies = _bodies(spans)
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        warm_up = make_spans(80, unique=args.unique, first=args.runs)
        other = _bodies(warm_up)[0]
        one_round(warm_up, _bodies(warm_up), other, folder, -1)  # imports, first connections
        gc.collect()
        gc.freeze()  # the spans made up front, as benchmarks/ingest.py does
        for round_ in range(args.repeat):
            rounds.append(one_round(spans, bodies, other, folder, round_))
    print(f"{args.runs} runs, {len(spans)} spans, median of {args.repeat}"
          f"{', unique values' if args.unique else ''}; µs per span (min-max)")  # fmt: skip
    totals: dict[str, float] = {}
    for stage in rounds[0]:
        values = [r[stage] / len(spans) * 1e6 for r in rounds]
        median = statistics.median(values)
        side = stage.split(":", 1)[0]
        totals[side] = totals.get(side, 0.0) + median
        print(f"  {stage:36} {median:6.1f}  ({min(values):.1f}-{max(values):.1f})")
    for side, total in totals.items():
        print(f"  {side + ': total':36} {total:6.1f}")


if __name__ == "__main__":
    main()
