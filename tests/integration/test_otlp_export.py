"""Export through the real OTLP exporters to real OTLP receivers started on loopback.

A gRPC server implementing the trace and metrics services of opentelemetry-proto, and
an HTTP server taking protobuf POSTs at /v1/traces and /v1/metrics, run inside the test;
configure() sets up the exporters; the requests that arrive are decoded and checked.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry._logs import _internal as logs_internal
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.util._once import Once

from decisiontrace import setup
from decisiontrace.export.rebuild import rebuild
from decisiontrace.models import RunStatus
from decisiontrace.pipeline import metrics
from decisiontrace.setup import configure
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore
from decisiontrace.tracking.tracker import DecisionTracker

ExportTraceServiceRequest = trace_service_pb2.ExportTraceServiceRequest
ExportMetricsServiceRequest = metrics_service_pb2.ExportMetricsServiceRequest


# --- receivers --------------------------------------------------------------------------


@dataclass
class Received:
    """What a receiver got: decoded requests and the headers they came with."""

    traces: list[Any] = field(default_factory=list)
    metrics: list[Any] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> list[dict[str, Any]]:
        """Every span received, as a plain dict with decoded attributes and resource."""
        with self.lock:
            requests = list(self.traces)
        result = []
        for request in requests:
            for resource_spans in request.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        result.append(
                            {
                                "trace_id": span.trace_id.hex(),
                                "span_id": span.span_id.hex(),
                                "parent_id": span.parent_span_id.hex() or None,
                                "name": span.name,
                                "attributes": _attributes(span.attributes),
                                "events": [e.name for e in span.events],
                                "status": span.status.code,
                                "resource": resource,
                                "scope": scope_spans.scope.name,
                            }
                        )
        return result

    def metric_names(self) -> set[str]:
        with self.lock:
            requests = list(self.metrics)
        return {
            metric.name
            for request in requests
            for resource_metrics in request.resource_metrics
            for scope_metrics in resource_metrics.scope_metrics
            for metric in scope_metrics.metrics
        }


def _attributes(key_values: Any) -> dict[str, Any]:
    result = {}
    for key_value in key_values:
        value = key_value.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            result[key_value.key] = [
                getattr(v, v.WhichOneof("value")) for v in value.array_value.values
            ]
        else:
            result[key_value.key] = getattr(value, kind) if kind else None
    return result


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.received.lock:
            self.received.traces.append(request)
            self.received.headers.append(dict(context.invocation_metadata()))  # type: ignore[arg-type]
        return trace_service_pb2.ExportTraceServiceResponse()


class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        with self.received.lock:
            self.received.metrics.append(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


@dataclass
class Receiver:
    protocol: str  # the OTLP protocol it speaks
    endpoint: str
    received: Received
    status: list[int]  # what the HTTP receiver answers (a test may change it)


@pytest.fixture
def grpc_receiver() -> Iterator[Receiver]:
    received = Received()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(TraceService(received), server)
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(MetricsService(received), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield Receiver("grpc", f"http://127.0.0.1:{port}", received, [200])
    server.stop(grace=None).wait(5)


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    received = Received()
    status = [200]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with received.lock:
                received.headers.append({k.lower(): v for k, v in self.headers.items()})
                if self.path == "/v1/traces":
                    received.traces.append(ExportTraceServiceRequest.FromString(body))
                elif self.path == "/v1/metrics":
                    received.metrics.append(ExportMetricsServiceRequest.FromString(body))
            code = status[0] if self.path in ("/v1/traces", "/v1/metrics") else 404
            self.send_response(code)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield Receiver(
        "http/protobuf", f"http://127.0.0.1:{server.server_address[1]}", received, status
    )
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(params=["grpc", "http/protobuf"])
def receiver(request: pytest.FixtureRequest) -> Receiver:
    name = "grpc_receiver" if request.param == "grpc" else "http_receiver"
    result: Receiver = request.getfixturevalue(name)
    return result


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- globals ------------------------------------------------------------------------------


def reset_globals() -> None:
    """Forget the global providers, as opentelemetry-python's own tests do."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
    logs_internal._LOGGER_PROVIDER = None
    logs_internal._PROXY_LOGGER_PROVIDER = logs_internal.ProxyLoggerProvider()


@pytest.fixture(autouse=True)
def fresh_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    reset_globals()
    yield
    if setup._active is not None:
        setup._active.shutdown(2_000)
    setup._active = None
    reset_globals()


def record_run(
    tracker: DecisionTracker, goal: str, *, fail: bool = False, problem: bool = False
) -> str:
    with tracker.run(goal, f"goal {goal}", {"ticket": goal}) as run:
        tracker.set_node("classifier")
        first = tracker.decide(
            intent="Classify",
            options=[{"id": "howto", "confidence": 0.8}, {"id": "bug", "confidence": 0.2}],
            chosen="howto",
            reasoning="asks how",
        )
        tracker.record_outcome(decision_id=first, success=True, tokens_used=40, latency_ms=12)
        tracker.set_node("responder")
        second = tracker.decide(
            intent="Answer", options=[{"id": "kb"}], chosen="kb", reasoning="kb has it"
        )
        tracker.record_outcome(
            decision_id=second, success=not fail, error="kb down" if fail else None
        )
        if problem:
            tracker.report_problem(severity="warning", description="slow KB")
    return run.run_id


# --- the tests ------------------------------------------------------------------------------


def test_runs_arrive_as_trees_of_spans_with_their_attributes(receiver: Receiver) -> None:
    store = MemoryStore()
    telemetry = configure(
        store=store,
        exporter="otlp",
        endpoint=receiver.endpoint,
        protocol=receiver.protocol,
        headers={"x-tenant": "t-1"},
        service_name="agent-under-test",
    )
    tracker = DecisionTracker("export-test")  # records through the global provider
    run_id = record_run(tracker, "g1", problem=True)
    telemetry.shutdown(10_000)

    spans = receiver.received.spans()
    [root] = [s for s in spans if s["parent_id"] is None]
    children = sorted((s for s in spans if s["parent_id"] is not None), key=lambda s: s["name"])
    assert root["name"] == "invoke_agent export-test"
    assert root["resource"]["service.name"] == "agent-under-test"
    assert root["scope"] == "decisiontrace"
    assert root["events"] == [sc.PROBLEM_EVENT]
    expected = {
        sc.SPAN_KIND: "run",
        sc.RUN_ID: run_id,
        sc.RUN_STATUS: "completed",
        sc.RUN_DECISION_COUNT: 2,
        sc.RUN_PROBLEM_COUNT: 1,
        sc.RUN_NODES: ["classifier", "responder"],
    }
    assert {key: root["attributes"][key] for key in expected} == expected
    assert [c["name"] for c in children] == ["decision Answer", "decision Classify"]
    for child in children:
        assert (child["trace_id"], child["parent_id"]) == (root["trace_id"], root["span_id"])
        assert child["attributes"][sc.SPAN_KIND] == "decision"
        assert child["attributes"][sc.RUN_ID] == run_id
    classify = children[1]["attributes"]
    assert classify[sc.DECISION_CHOSEN_ID] == "howto"
    assert classify[sc.DECISION_CHOSEN_CONFIDENCE] == 0.8
    assert classify[sc.DECISION_OPTION_IDS] == ["howto", "bug"]
    assert (classify[sc.OUTCOME_SUCCESS], classify[sc.OUTCOME_TOKENS]) == (True, 40)
    assert receiver.received.headers
    assert all(headers.get("x-tenant") == "t-1" for headers in receiver.received.headers)
    assert {metrics.DECISIONS, metrics.OUTCOMES, metrics.RUNS} <= receiver.received.metric_names()
    assert store.load_run(run_id) is not None


def test_the_standard_variables_alone_point_the_agent_at_a_collector(
    http_receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", http_receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=secret")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env-agent")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=ci")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    telemetry = configure(store=url)
    run_id = record_run(DecisionTracker("env"), "g")
    telemetry.shutdown(10_000)
    spans = http_receiver.received.spans()
    assert {s["attributes"][sc.RUN_ID] for s in spans} == {run_id}
    resource = spans[0]["resource"]
    assert (resource["service.name"], resource["deployment.environment"]) == ("env-agent", "ci")
    assert all(h.get("x-api-key") == "secret" for h in http_receiver.received.headers)
    assert metrics.RUNS in http_receiver.received.metric_names()


def test_what_a_collector_receives_rebuilds_the_stored_runs(grpc_receiver: Receiver) -> None:
    store = MemoryStore()
    telemetry = configure(store=store, endpoint=grpc_receiver.endpoint, metrics_exporter="none")
    tracker = DecisionTracker("rebuilt")
    run_ids = [record_run(tracker, "a", problem=True), record_run(tracker, "b", fail=True)]
    telemetry.shutdown(10_000)
    lines = [json.dumps(MessageToDict(request)) for request in grpc_receiver.received.traces]
    rebuilt = MemoryStore()
    result = rebuild(lines, rebuilt)
    assert result.errors == []
    for run_id in run_ids:
        assert rebuilt.load_run(run_id) == store.load_run(run_id)


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_an_endpoint_that_is_down_leaves_the_agent_running_and_the_store_complete(
    protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "OTEL_EXPORTER_OTLP_TIMEOUT", "0.5"
    )  # seconds, as the Python exporters read it
    store = MemoryStore()
    telemetry = configure(
        store=store,
        exporter="otlp",
        protocol=protocol,
        endpoint=f"http://127.0.0.1:{closed_port()}",
    )
    tracker = DecisionTracker("offline")
    run_ids = [record_run(tracker, f"g{index}", fail=index % 3 == 0) for index in range(20)]
    telemetry.shutdown(5_000)  # returns: export gives up within its timeout
    for run_id in run_ids:
        assert store.load_run(run_id) is not None
    assert len(store.list_runs()) == 20


@pytest.mark.parametrize("status", [503, 429])
def test_an_endpoint_refusing_exports_still_leaves_every_run_stored(
    http_receiver: Receiver, status: int
) -> None:
    http_receiver.status[0] = status
    store = MemoryStore()
    telemetry = configure(
        store=store,
        exporter="otlp",
        protocol="http/protobuf",
        endpoint=http_receiver.endpoint,
        export_timeout=0.5,
    )
    tracker = DecisionTracker("refused")
    run_ids = [record_run(tracker, f"g{index}") for index in range(5)]
    telemetry.shutdown(5_000)
    assert http_receiver.received.traces  # the exporter did try
    assert sorted(s.run_id for s in store.list_runs()) == sorted(run_ids)


def test_export_ratio_zero_exports_only_runs_that_went_wrong_but_stores_all(
    http_receiver: Receiver,
) -> None:
    store = MemoryStore()
    telemetry = configure(
        store=store,
        exporter="otlp",
        protocol="http/protobuf",
        endpoint=http_receiver.endpoint,
        export_ratio=0.0,
        metrics_exporter="none",
    )
    tracker = DecisionTracker("sampled")
    ok = [record_run(tracker, f"ok{index}") for index in range(5)]
    failed = record_run(tracker, "failed", fail=True)
    problem = record_run(tracker, "problem", problem=True)
    telemetry.shutdown(10_000)

    for run_id in [*ok, failed, problem]:
        assert store.load_run(run_id) is not None
    stored = store.load_run(failed)
    assert stored is not None and stored.metrics.failed_decisions == 1
    by_run: dict[str, list[str]] = {}
    for span in http_receiver.received.spans():
        by_run.setdefault(span["attributes"][sc.RUN_ID], []).append(span["name"])
    assert {run_id: sorted(names) for run_id, names in by_run.items()} == {
        run_id: ["decision Answer", "decision Classify", "invoke_agent sampled"]
        for run_id in (failed, problem)
    }
    completed = store.load_run(ok[0])
    assert completed is not None and completed.status == RunStatus.COMPLETED


# --- the example ------------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "export_otlp.py"


def run_example(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(variables, DECISIONTRACE_STORE=f"sqlite:///{tmp_path / 'example.db'}")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_the_example_exports_to_the_endpoint_in_the_standard_variables(
    http_receiver: Receiver, tmp_path: Path
) -> None:
    done = run_example(
        tmp_path,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=http_receiver.endpoint,
        OTEL_SERVICE_NAME="example-agent",
    )
    spans = http_receiver.received.spans()
    run_ids = {s["attributes"][sc.RUN_ID] for s in spans}
    assert len(run_ids) == 3
    assert all(run_id in done.stdout for run_id in run_ids)
    assert {s["resource"]["service.name"] for s in spans} == {"example-agent"}
    assert metrics.DECISIONS in http_receiver.received.metric_names()


def test_the_example_prints_to_the_console_without_an_endpoint(tmp_path: Path) -> None:
    done = run_example(tmp_path, OTEL_TRACES_EXPORTER="console")
    assert '"name": "invoke_agent support-agent"' in done.stdout
    assert f'"name": "{metrics.RUNS}"' in done.stdout
    assert done.stdout.count(": completed") == 2 and done.stdout.count(": failed") == 1
