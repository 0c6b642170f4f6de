"""Ingest service against the in-process processor: spans assembled and stored per CPU second.

The same spans (the tracker's runs: a run span and decision spans, with options,
contexts and outcomes) are stored twice into fresh SQLite files:

- in-process: handed to a ``RunRecordProcessor`` as the SDK hands them (``on_start``
  and ``on_end``), then flushed; CPU time of this process (agent thread and writer);
- ingest: sent as OTLP/protobuf requests of 512 spans (what a BatchSpanProcessor sends)
  over HTTP, and over gRPC, to ``decisiontrace serve`` in its own process; CPU time of
  that process only (read from /proc), from the first request until every run is in.

Spans per CPU second is spans per core. Target: the service at least 0.8x the
processor. Run: ``.venv/bin/python benchmarks/ingest.py [--runs 4000]``; results in
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
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


def make_spans(runs: int) -> list[ReadableSpan]:
    """The spans of ``runs`` runs of five decisions each, in the order they ended."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = dt.DecisionTracker("bench", tracer_provider=provider)
    options = [
        {"id": "kb", "description": "Knowledge base", "confidence": 0.7, "pros": ["fast"]},
        {"id": "web", "description": "Web search", "confidence": 0.2, "cons": ["slow"]},
        {"id": "ask", "description": "Ask the user", "confidence": 0.1},
    ]
    for number in range(runs):
        with tracker.run("bench-goal", "Benchmark", {"ticket": number}):
            for step in range(5):
                decision_id = tracker.decide(
                    intent=f"Step {step}", options=options, chosen="kb",
                    reasoning="the knowledge base covers it", node_id=f"node-{step}",
                    context={"step": step, "ticket": number},
                )  # fmt: skip
                tracker.record_outcome(
                    decision_id=decision_id, success=step != 3, result={"answer": "ok"},
                    tokens_used=100 + step, latency_ms=12,
                )  # fmt: skip
    provider.shutdown()
    return list(exporter.get_finished_spans())


def in_process(spans: Sequence[ReadableSpan], url: str) -> float:
    """CPU seconds the processor takes to store ``spans``."""
    processor = dt.RunRecordProcessor(url, handle_sigterm=False)
    start = time.process_time()
    for span in spans:
        processor.on_start(span)  # type: ignore[arg-type]  # an ended SDK span
        processor.on_end(span)
    assert processor.force_flush(600_000)
    used = time.process_time() - start
    processor.shutdown()
    return used


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def through_service(spans: Sequence[ReadableSpan], url: str, protocol: str, runs: int) -> float:
    """CPU seconds ``decisiontrace serve`` takes to store ``spans`` sent over ``protocol``."""
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
        bodies = [
            encode_spans(spans[i : i + _BATCH]).SerializeToString()
            for i in range(0, len(spans), _BATCH)
        ]
        before = _cpu_seconds(process.pid)
        if protocol == "http":
            connection = http.client.HTTPConnection("127.0.0.1", http_port, timeout=60)
            for body in bodies:
                connection.request("POST", "/v1/traces", body,
                                   {"Content-Type": "application/x-protobuf"})  # fmt: skip
                response = connection.getresponse()
                response.read()
                assert response.status == 200, response.status
            connection.close()
        else:
            import grpc  # type: ignore[import-untyped]
            from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceRequest,
            )

            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = trace_service_pb2_grpc.TraceServiceStub(channel)
                for body in bodies:
                    stub.Export(ExportTraceServiceRequest.FromString(body), timeout=60)
        with open_store(url) as store:
            while len(store.list_runs(limit=runs + 1)) < runs:
                time.sleep(0.01)
        used = _cpu_seconds(process.pid) - before
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--output", default=str(Path(__file__).with_name("results") / "ingest.json")
    )
    args = parser.parse_args()
    spans = make_spans(args.runs)
    print(f"{args.runs} runs, {len(spans)} spans; best of {args.repeat}")
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in ("in-process", "ingest http", "ingest grpc"):
            best = float("inf")
            for attempt in range(args.repeat):
                url = f"sqlite:///{folder}/{name.replace(' ', '-')}-{attempt}.db"
                if name == "in-process":
                    used = in_process(spans, url)
                else:
                    used = through_service(spans, url, name.split()[1], args.runs)
                best = min(best, used)
            results[name] = len(spans) / best
            print(f"{name:12} {results[name]:10,.0f} spans per CPU second")
    base = results["in-process"]
    ratios = {name: round(results[name] / base, 2) for name in ("ingest http", "ingest grpc")}
    for name, ratio in ratios.items():
        print(f"{name}: {ratio:.2f}x the in-process processor (target 0.8x)")
    Path(args.output).write_text(
        json.dumps(
            {
                "runs": args.runs,
                "spans": len(spans),
                "repeat": args.repeat,
                "spans_per_cpu_second": {k: round(v) for k, v in results.items()},
                "ratio_to_in_process": ratios,
                "target": 0.8,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
