"""Judgements reach a real OTLP/HTTP receiver on loopback as gen_ai.evaluation.result
log records, sent by the SDK's own OTLP log exporter that configure() sets up, beside the
run's spans; rebuild reads both back into an equal store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry._logs import _internal as logs_internal
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.util._once import Once

import decisiontrace as dt
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import SQLiteStore, open_store


@dataclass
class Received:
    traces: list[Any] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(received: Received) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            kinds = {
                "/v1/traces": (trace_service_pb2.ExportTraceServiceRequest, received.traces),
                "/v1/logs": (logs_service_pb2.ExportLogsServiceRequest, received.logs),
                "/v1/metrics": (None, None),
            }
            kind, sink = kinds.get(self.path, (None, None))
            if kind is not None and sink is not None:
                message = kind()
                message.ParseFromString(body)
                with received.lock:
                    sink.append(message)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    received = Received()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(received))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def fresh_globals() -> Iterator[None]:
    yield
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
    logs_internal._LOGGER_PROVIDER = None
    logs_internal._PROXY_LOGGER_PROVIDER = logs_internal.ProxyLoggerProvider()


def _hex(raw: bytes) -> str:
    return raw.hex()


def test_judgements_arrive_as_evaluation_events_with_their_decision_spans_and_rebuild(
    receiver: tuple[str, Received], tmp_path: Path
) -> None:
    endpoint, received = receiver
    store = SQLiteStore(tmp_path / "runs.db")
    telemetry = dt.configure(
        store=store, exporter="otlp", protocol="http/protobuf", endpoint=endpoint,
        service_name="evals-test",
    )  # fmt: skip
    tracker = dt.DecisionTracker("evals")
    with tracker.run("g", "a goal") as run:
        first = tracker.decide(
            intent="Fetch", options=[{"id": "kb", "description": "kb", "action_type": "t"},
            {"id": "web", "description": "web", "action_type": "t"}], chosen="kb",
            reasoning="kb first", node_id="retriever",
        )  # fmt: skip
        tracker.record_outcome(decision_id=first, success=False, error="kb: empty")
        second = tracker.decide(
            intent="Fetch", options=[{"id": "kb", "description": "kb", "action_type": "t"},
            {"id": "web", "description": "web", "action_type": "t"}], chosen="web",
            reasoning="fallback", node_id="retriever",
        )  # fmt: skip
        tracker.record_outcome(decision_id=second, success=True)
    # The store of the active configure(), and its global LoggerProvider.
    assert dt.evaluate(run.run_id, first, evaluator="reviewer", score=0.2, label="poor",
                       explanation="web worked") is not None  # fmt: skip
    stored_run = store.load_run(run.run_id)
    assert stored_run is not None
    from decisiontrace.evaluation.evaluators import better_option
    from decisiontrace.evaluation.runner import evaluate_runs

    report = evaluate_runs(store, [stored_run], better_option, "better-option")
    assert len(report.judged) == 2
    telemetry.shutdown()

    records = [
        (r, resource)
        for request in received.logs
        for resource in request.resource_logs
        for scope in resource.scope_logs
        for r in scope.log_records
    ]
    events = [
        {
            "event_name": r.event_name,
            "attributes": MessageToDict(r)["attributes"],
            "trace_id": _hex(r.trace_id),
            "span_id": _hex(r.span_id),
            "service": {a.key: a.value.string_value for a in resource.resource.attributes}.get(
                "service.name"
            ),
        }
        for r, resource in records
    ]
    assert [e["event_name"] for e in events] == ["gen_ai.evaluation.result"] * 3
    by_name = {}
    for event in events:
        attributes = {a["key"]: a["value"] for a in event["attributes"]}
        by_name[(attributes[sc.GEN_AI_EVALUATION_NAME]["stringValue"],
                 attributes[sc.DECISION_ID]["stringValue"])] = (event, attributes)  # fmt: skip
    event, attributes = by_name[("better-option", first)]
    assert attributes[sc.GEN_AI_EVALUATION_SCORE_VALUE] == {"doubleValue": 0.0}
    assert attributes[sc.GEN_AI_EVALUATION_SCORE_LABEL] == {"stringValue": "better_option_existed"}
    assert "'web' succeeded" in attributes[sc.GEN_AI_EVALUATION_EXPLANATION]["stringValue"]
    assert json.loads(attributes[sc.DECISION_EVALUATION]["stringValue"])["better_option_id"] == (
        "web"
    )
    assert event["service"] == "evals-test"

    spans = {
        (
            s.attributes and {a.key: a.value.string_value for a in s.attributes}.get(sc.DECISION_ID)
        ): s
        for request in received.traces
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for s in scope.spans
    }
    # rebuild: spans and events, as a collector's file exporter writes them.
    lines = [json.dumps(MessageToDict(request)) for request in received.traces + received.logs]
    source = tmp_path / "otlp.jsonl"
    source.write_text("\n".join(lines) + "\n")
    rebuilt_store = SQLiteStore(tmp_path / "rebuilt.db")
    result = dt.rebuild(source, rebuilt_store)
    assert result.errors == []
    assert result.judgements_written == 3
    assert rebuilt_store.load_run(run.run_id) == store.load_run(run.run_id)
    from click.testing import CliRunner

    from decisiontrace.cli.app import main

    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    out = CliRunner().invoke(main, ["rebuild", str(source), "--store", copy])
    assert out.exit_code == 0, out.output
    assert "and 3 judgements of decisions into" in out.stdout

    record = store.load_record(run.run_id)
    assert record is not None
    assert "trace_id" in record  # the records keep the span ids events are parented to
    for (_, decision_id), (event, _) in by_name.items():
        span = spans[decision_id]
        assert (event["trace_id"], event["span_id"]) == (_hex(span.trace_id), _hex(span.span_id))


def test_the_demo_then_evaluate_sends_better_option_events_with_the_decision_spans(
    receiver: tuple[str, Received], tmp_path: Path
) -> None:
    endpoint, received = receiver
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "support-agent",
    }
    for args in (
        ["demo", "--tickets", "20", "--seed", "2"],
        ["evaluate", "--evaluator", "better-option", "--json"],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "decisiontrace", "--store", url, *args],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    better = {
        (j["run_id"], j["decision_id"]): j["evaluation"]["better_option_id"]
        for j in report["judged"]
        if j["label"] == "better_option_existed"
    }
    assert better, "the demo makes decisions a later fallback did better than"

    with received.lock:
        logs, traces = list(received.logs), list(received.traces)
    events = {}
    for request in logs:
        for resource in request.resource_logs:
            for scope in resource.scope_logs:
                for log_record in scope.log_records:
                    assert log_record.event_name == "gen_ai.evaluation.result"
                    attributes = {a.key: a.value for a in log_record.attributes}
                    key = (attributes[sc.RUN_ID].string_value,
                           attributes[sc.DECISION_ID].string_value)  # fmt: skip
                    events[key] = (log_record, attributes)
    assert len(events) == len(report["judged"])
    for key, option in better.items():
        _, attributes = events[key]
        assert attributes[sc.GEN_AI_EVALUATION_NAME].string_value == "better-option"
        assert attributes[sc.GEN_AI_EVALUATION_SCORE_LABEL].string_value == "better_option_existed"
        assert json.loads(attributes[sc.DECISION_EVALUATION].string_value)["better_option_id"] == (
            option
        )

    run_of_trace: dict[bytes, str] = {}
    decision_spans: dict[tuple[bytes, str], Any] = {}
    for request in traces:
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: a.value.string_value for a in span.attributes}
                    if sc.RUN_ID in attributes and sc.DECISION_ID not in attributes:
                        run_of_trace[span.trace_id] = attributes[sc.RUN_ID]
                    if sc.DECISION_ID in attributes:
                        decision_spans[(span.trace_id, attributes[sc.DECISION_ID])] = span
    spans_by_decision = {
        (run_of_trace[trace_id], decision_id): span
        for (trace_id, decision_id), span in decision_spans.items()
        if trace_id in run_of_trace
    }
    with open_store(url) as store:
        record = store.load_record(next(iter(better))[0])
    assert record is not None
    assert "trace_id" in record  # the records keep the span ids events are parented to
    for key in better:
        log_record, _ = events[key]
        span = spans_by_decision[key]
        assert (log_record.trace_id, log_record.span_id) == (span.trace_id, span.span_id)
