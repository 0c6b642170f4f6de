"""Ingest service against the in-process processor: spans assembled and stored per CPU second.

The same spans (the tracker's runs: a run span and decision spans, with options,
contexts and outcomes) are stored twice into fresh SQLite files:

- in-process: handed to a ``RunRecordProcessor`` as the SDK hands them (``on_start``
  and ``on_end``), then flushed; CPU time of this process (agent thread and writer);
- ingest: sent as OTLP/protobuf requests of 512 spans (what a BatchSpanProcessor sends)
  over HTTP, and over gRPC, to ``decisiontrace serve`` in its own process; CPU time of
  that process only (read from /proc), from the first request until every run is in.

Both sides first store a few hundred other runs (start-up, first connections, caches),
which are not measured; the spans made up front are frozen for the garbage collector
(``gc.freeze``) while the processor works, as the service freezes what it made at
start-up. Spans per CPU second is spans per core. The scenarios are
interleaved over the repeats (rotated order), and the median, min and max are reported.
Target: the service at least 0.8x the processor.

``--unique`` makes every value of every decision unique (intent, reasoning, options,
result), as no agent's are: the worst case for the service's cache of attributes
already read (``ingest/_wire.py``).

Run: ``.venv/bin/python benchmarks/ingest.py [--runs 4000] [--repeat 5] [--unique]``;
results in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import decisiontrace as dt
from decisiontrace.stores import open_store

_BATCH = 512
_LISTENING = re.compile(r"OTLP/gRPC on [\d.]+:(\d+), OTLP/HTTP on [\d.]+:(\d+)")


def make_spans(runs: int, *, unique: bool = False, first: int = 0) -> list[ReadableSpan]:
    """The spans of ``runs`` runs of five decisions each, in the order they ended.

    With ``unique``, every decision's intent, reasoning, options and result differ.
    """
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = dt.DecisionTracker("bench", tracer_provider=provider)
    options = [
        {"id": "kb", "description": "Knowledge base", "confidence": 0.7, "pros": ["fast"]},
        {"id": "web", "description": "Web search", "confidence": 0.2, "cons": ["slow"]},
        {"id": "ask", "description": "Ask the user", "confidence": 0.1},
    ]
    for number in range(first, first + runs):
        with tracker.run("bench-goal", "Benchmark", {"ticket": number}):
            for step in range(5):
                tag = f" {number}.{step}" if unique else ""
                decision_id = tracker.decide(
                    intent=f"Step {step}{tag}",
                    options=[{**o, "description": o["description"] + tag} for o in options]
                    if unique
                    else options,
                    chosen="kb", reasoning=f"the knowledge base covers it{tag}",
                    node_id=f"node-{step}", context={"step": step, "ticket": number},
                )  # fmt: skip
                tracker.record_outcome(
                    decision_id=decision_id, success=step != 3,
                    result={"answer": f"ok{tag}"}, tokens_used=100 + step, latency_ms=12,
                )  # fmt: skip
    provider.shutdown()
    return list(exporter.get_finished_spans())


def in_process(spans: Sequence[ReadableSpan], warm_up: Sequence[ReadableSpan], url: str) -> float:
    """CPU seconds the processor takes to store ``spans`` (after ``warm_up``)."""
    processor = dt.RunRecordProcessor(url, handle_sigterm=False)
    for span in warm_up:
        processor.on_start(span)  # type: ignore[arg-type]  # an ended SDK span
        processor.on_end(span)
    assert processor.force_flush(600_000)
    # The spans made up front are this benchmark's, not the agent's: the collector
    # should not rescan them while the processor works (the service freezes what its
    # start-up made too; see ingest/service.py).
    gc.collect()
    gc.freeze()
    start = time.process_time()
    for span in spans:
        processor.on_start(span)  # type: ignore[arg-type]  # an ended SDK span
        processor.on_end(span)
    assert processor.force_flush(600_000)
    used = time.process_time() - start
    gc.unfreeze()
    processor.shutdown()
    return used


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _bodies(spans: Sequence[ReadableSpan]) -> list[bytes]:
    return [
        encode_spans(spans[i : i + _BATCH]).SerializeToString()
        for i in range(0, len(spans), _BATCH)
    ]


def _send(bodies: Sequence[bytes], protocol: str, http_port: int, grpc_port: int) -> None:
    if protocol == "http":
        connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
        for body in bodies:
            connection.request("POST", "/v1/traces", body,
                               {"Content-Type": "application/x-protobuf"})  # fmt: skip
            response = connection.getresponse()
            response.read()
            assert response.status == 200, response.status
        connection.close()
        return
    import grpc  # type: ignore[import-untyped]
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for body in bodies:
            stub.Export(ExportTraceServiceRequest.FromString(body), timeout=60)


def _wait_for_runs(url: str, runs: int) -> None:
    with open_store(url) as store:
        while len(store.list_runs(limit=runs + 1)) < runs:
            time.sleep(0.01)


def _wait_for_written(http_port: int, runs: int) -> None:
    """Until the service says it has written ``runs`` runs (its health endpoint): a
    reader polling the SQLite file meanwhile would hold back the writer's WAL
    checkpoints, a cost the in-process side does not pay."""
    while True:
        connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
        connection.request("GET", "/health")
        written = json.loads(connection.getresponse().read())["runs_written"]
        connection.close()
        if written >= runs:
            return
        time.sleep(0.05)


def through_service(
    spans: Sequence[ReadableSpan], warm_up: Sequence[ReadableSpan], url: str, protocol: str
) -> float:
    """CPU seconds ``decisiontrace serve`` takes to store ``spans`` sent over ``protocol``
    (after ``warm_up``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "decisiontrace", "serve", "--store", url,
         "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        found = _LISTENING.search(process.stderr.readline())
        assert found, "the service did not start"
        grpc_port, http_port = int(found.group(1)), int(found.group(2))
        warm_runs = _runs_of(warm_up)
        _send(_bodies(warm_up), protocol, http_port, grpc_port)
        _wait_for_runs(url, warm_runs)
        bodies = _bodies(spans)
        _wait_for_written(http_port, warm_runs)
        before = _cpu_seconds(process.pid)
        _send(bodies, protocol, http_port, grpc_port)
        _wait_for_written(http_port, warm_runs + _runs_of(spans))
        used = _cpu_seconds(process.pid) - before
        _wait_for_runs(url, warm_runs + _runs_of(spans))  # every run is in the store
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return used


def _runs_of(spans: Sequence[ReadableSpan]) -> int:
    return sum(1 for span in spans if span.parent is None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--warm-up", type=int, default=300, help="runs stored first, unmeasured")
    parser.add_argument("--unique", action="store_true", help="every decision's values differ")
    parser.add_argument(
        "--output", default=str(Path(__file__).with_name("results") / "ingest.json")
    )
    args = parser.parse_args()
    spans = make_spans(args.runs, unique=args.unique)
    warm_up = make_spans(args.warm_up, unique=args.unique, first=args.runs)
    names = ("in-process", "ingest http", "ingest grpc")
    print(f"{args.runs} runs, {len(spans)} spans; {args.repeat} repeats, interleaved"
          f"{'; unique values' if args.unique else ''}")  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as folder:
        for attempt in range(args.repeat):
            shift = attempt % len(names)
            for name in names[shift:] + names[:shift]:
                url = f"sqlite:///{folder}/{name.replace(' ', '-')}-{attempt}.db"
                if name == "in-process":
                    used = in_process(spans, warm_up, url)
                else:
                    used = through_service(spans, warm_up, url, name.split()[1])
                rates[name].append(len(spans) / used)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name in names:
        values = rates[name]
        print(f"{name:12} {medians[name]:10,.0f} spans per CPU second "
              f"(min {min(values):,.0f}, max {max(values):,.0f})")  # fmt: skip
    base = medians["in-process"]
    ratios = {name: round(medians[name] / base, 2) for name in names[1:]}
    # Each repeat's ratio to the in-process rate of the same repeat: the spread.
    paired = {
        name: [round(v / b, 2) for v, b in zip(rates[name], rates["in-process"], strict=True)]
        for name in names[1:]
    }
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x the in-process processor (repeats "
              f"{min(paired[name]):.2f}-{max(paired[name]):.2f}x; target 0.8x)")  # fmt: skip
    Path(args.output).write_text(
        json.dumps(
            {
                "runs": args.runs,
                "spans": len(spans),
                "repeat": args.repeat,
                "warm_up_runs": args.warm_up,
                "unique_values": args.unique,
                "spans_per_cpu_second": {
                    name: {
                        "median": round(medians[name]),
                        "min": round(min(rates[name])),
                        "max": round(max(rates[name])),
                    }
                    for name in names
                },
                "ratio_to_in_process": ratios,
                "ratio_per_repeat": paired,
                "target": 0.8,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
