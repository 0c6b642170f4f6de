"""An OTLP endpoint that is down, slow, or refuses: runs are still stored, exit is bounded.

Real OTLP receivers on 127.0.0.1 (HTTP/protobuf and gRPC, extending the loopback
receivers of ``tests/integration/test_otlp_export.py``) answer with the fault; the
agent records through ``configure()``'s real exporters into a real SQLite store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from decisiontrace.setup import configure
from decisiontrace.stores import SQLiteStore
from decisiontrace.tracking.tracker import DecisionTracker
from tests.integration.test_otlp_export import closed_port, fresh_globals, record_run

__all__ = ["fresh_globals"]  # its autouse fixture resets the global providers here too

#: How long the exporters may take per export, retries included.
EXPORT_TIMEOUT = 0.5
RUNS = 15


@dataclass
class Fault:
    """What a receiver does with each export request."""

    status: int = 200  # HTTP status; mapped to a gRPC code for the gRPC receiver
    hang: bool = False  # block until released (longer than the exporter's timeout)
    requests: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> None:
        with self.lock:
            self.requests += 1
        if self.hang:
            self.release.wait(10)


GRPC_CODES = {
    503: grpc.StatusCode.UNAVAILABLE,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    400: grpc.StatusCode.INVALID_ARGUMENT,
}


class FaultyTraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, fault: Fault) -> None:
        self.fault = fault

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.fault.take()
        if self.fault.status != 200:
            context.abort(GRPC_CODES[self.fault.status], "injected fault")
        return trace_service_pb2.ExportTraceServiceResponse()


@dataclass
class Endpoint:
    protocol: str
    url: str
    fault: Fault


@pytest.fixture
def http_endpoint() -> Iterator[Endpoint]:
    fault = Fault()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            fault.take()
            try:
                self.send_response(fault.status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the exporter gave up and closed the connection

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield Endpoint("http/protobuf", f"http://127.0.0.1:{server.server_address[1]}", fault)
    fault.release.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def grpc_endpoint() -> Iterator[Endpoint]:
    fault = Fault()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(FaultyTraceService(fault), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield Endpoint("grpc", f"http://127.0.0.1:{port}", fault)
    fault.release.set()
    server.stop(grace=None).wait(5)


@pytest.fixture(params=["grpc", "http/protobuf"])
def endpoint(request: pytest.FixtureRequest) -> Endpoint:
    name = "grpc_endpoint" if request.param == "grpc" else "http_endpoint"
    result: Endpoint = request.getfixturevalue(name)
    return result


def run_agent(count: int, within: float = 20.0) -> list[str]:
    """Record runs on a thread of their own; fail if they take longer than ``within``."""
    run_ids: list[str] = []

    def agent() -> None:
        tracker = DecisionTracker("otlp-faults")
        run_ids.extend(
            record_run(tracker, f"g{index}", fail=index % 4 == 0) for index in range(count)
        )

    thread = threading.Thread(target=agent, daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), "the agent waited for the OTLP endpoint"
    return run_ids


def check_everything_stored(store: SQLiteStore, run_ids: list[str]) -> None:
    assert len(run_ids) == RUNS
    for run_id in run_ids:
        run = store.load_run(run_id)
        assert run is not None and len(run.decisions) == 2


def shut_down_in_bounded_time(telemetry: Any) -> None:
    started = time.monotonic()
    telemetry.shutdown(2_000)
    assert time.monotonic() - started < 8.0


@pytest.mark.parametrize("status", [503, 429, 400])
def test_an_endpoint_refusing_exports(endpoint: Endpoint, status: int, tmp_path: Path) -> None:
    endpoint.fault.status = status
    store = SQLiteStore(tmp_path / "runs.db")
    telemetry = configure(
        store=store,
        exporter="otlp",
        protocol=endpoint.protocol,
        endpoint=endpoint.url,
        export_timeout=EXPORT_TIMEOUT,
        metrics_exporter="none",
    )
    run_ids = run_agent(RUNS)
    assert telemetry.processor.force_flush(5_000)
    check_everything_stored(store, run_ids)
    shut_down_in_bounded_time(telemetry)
    assert endpoint.fault.requests >= 1  # the exporter did try
    assert telemetry.processor.dropped_runs == 0


def test_an_endpoint_slower_than_the_export_timeout(endpoint: Endpoint, tmp_path: Path) -> None:
    endpoint.fault.hang = True
    store = SQLiteStore(tmp_path / "runs.db")
    export_timeout = 2.0
    telemetry = configure(
        store=store,
        exporter="otlp",
        protocol=endpoint.protocol,
        endpoint=endpoint.url,
        export_timeout=export_timeout,
        metrics_exporter="none",
    )
    first = run_agent(1)
    telemetry.span_processors[0].force_flush(100)  # start an export that will hang
    deadline = time.monotonic() + 10
    while endpoint.fault.requests == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert endpoint.fault.requests >= 1
    # While the receiver sits on a request: an agent that waited for even one export
    # would take the exporter's whole timeout.
    run_ids = first + run_agent(RUNS - 1, within=export_timeout / 2)
    assert telemetry.processor.force_flush(5_000)  # storing never waits for export
    check_everything_stored(store, run_ids)
    shut_down_in_bounded_time(telemetry)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_endpoint_that_is_down(protocol: str, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    telemetry = configure(
        store=store,
        exporter="otlp",
        protocol=protocol,
        endpoint=f"http://127.0.0.1:{closed_port()}",
        export_timeout=EXPORT_TIMEOUT,
        metrics_exporter="none",
    )
    run_ids = run_agent(RUNS)
    assert telemetry.processor.force_flush(5_000)
    check_everything_stored(store, run_ids)
    shut_down_in_bounded_time(telemetry)
