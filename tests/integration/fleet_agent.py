"""An agent process of the fleet tests: a client starting runs, or a server deciding in them.

Run as a script: ``python fleet_agent.py ROLE SERVICE [options]``. Every process sets
up a real SDK pipeline (``service.name`` = SERVICE) and either stores runs itself
(``--store URL``) or only exports them over OTLP (``--otlp ENDPOINT --protocol
grpc|http``) with a BatchSpanProcessor. Trace context crosses between processes over
real HTTP on 127.0.0.1 through the global propagator, as OpenTelemetry's client and
server instrumentations carry it.

- ``server``: serves POST / on 127.0.0.1 (prints ``PORT n``); each request is handled
  in the extracted context by a decorated decision, which calls ``--downstream`` (if
  given) while it runs. Stops on SIGTERM (flushing).
- ``client``: makes ``--runs`` runs, each a decision then a call to ``--downstream``,
  printing ``RUN run_id end_time`` per run; ``--pause`` seconds between runs;
  it stops early once the file ``--until`` names exists.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import decisiontrace as dt


def _provider(service: str, store: str | None, otlp: str | None, protocol: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    if store:
        provider.add_span_processor(dt.RunRecordProcessor(store))
    if otlp:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter: Any = OTLPSpanExporter(endpoint=otlp, insecure=True)
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HTTPSpanExporter,
            )

            exporter = HTTPSpanExporter(endpoint=otlp.rstrip("/") + "/v1/traces")
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100))
    trace.set_tracer_provider(provider)
    return provider


def _call(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    propagate.inject(headers)  # what a client instrumentation does
    request = urllib.request.Request(url, json.dumps(payload).encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def serve(service: str, downstream: str | None, provider: TracerProvider) -> None:
    @dt.node(f"{service}-node")
    @dt.decision(f"{service} picks a route", options=["local", "downstream"])
    def decide(payload: dict[str, Any]) -> str:
        if downstream:
            _call(downstream, payload)
            return "downstream"
        return "local"

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            # What a server instrumentation does: the caller's context is current.
            # (urllib sends "Traceparent"; HTTP header names are case-insensitive.)
            headers = {name.lower(): value for name, value in self.headers.items()}
            token = context.attach(propagate.extract(headers))
            try:
                route = decide(payload)
            finally:
                context.detach(token)
            body = json.dumps({"service": service, "route": route}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"PORT {server.server_address[1]}", flush=True)
    while not stop.wait(0.1):
        pass
    server.shutdown()
    provider.shutdown()


def client(
    service: str,
    downstream: str,
    runs: int,
    pause: float,
    provider: TracerProvider,
    until: str | None = None,
) -> None:
    tracker = dt.DecisionTracker(service, tracer_provider=provider)
    for number in range(runs):
        if until is not None and os.path.exists(until):
            break
        with tracker.run("fleet", "A run across three processes", {"n": number}) as run:
            decision_id = tracker.decide(
                intent="Ask the planner",
                options=[{"id": "planner"}, {"id": "alone"}],
                chosen="planner",
                reasoning="it knows the tools",
                node_id="front",
            )
            answer = _call(downstream, {"n": number})
            tracker.record_outcome(decision_id=decision_id, success=True, result=answer)
        print(f"RUN {run.run_id} {time.time()}", flush=True)  # when the run ended
        time.sleep(pause)
    provider.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["server", "client"])
    parser.add_argument("service")
    parser.add_argument("--store")
    parser.add_argument("--otlp")
    parser.add_argument("--protocol", default="grpc", choices=["grpc", "http"])
    parser.add_argument("--downstream")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--until", help="stop making runs once this file exists")
    args = parser.parse_args()
    provider = _provider(args.service, args.store, args.otlp, args.protocol)
    if args.role == "server":
        serve(args.service, args.downstream, provider)
    else:
        client(args.service, args.downstream, args.runs, args.pause, provider, args.until)
    sys.exit(0)


if __name__ == "__main__":
    main()
