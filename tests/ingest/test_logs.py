"""Judgements sent to the ingest service: the SDK's real OTLP log exporters (HTTP and
gRPC) post gen_ai.evaluation.result events to a real IngestService on 127.0.0.1, which
stores them with the decisions it stored from the spans."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import decisiontrace as dt
from decisiontrace.evaluation import telemetry
from decisiontrace.evaluation.judgement import build
from decisiontrace.ingest import IngestService
from decisiontrace.stores import MemoryStore


@pytest.fixture
def service() -> Iterator[IngestService]:
    svc = IngestService(MemoryStore(), grpc_address="127.0.0.1:0", http_address="127.0.0.1:0")
    svc.start()
    yield svc
    svc.stop(5)


def _recorded_run(service: IngestService) -> tuple[str, str]:
    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    provider.add_span_processor(
        SimpleSpanProcessor(HttpSpans(endpoint=f"http://127.0.0.1:{service.http_port}/v1/traces"))
    )
    tracker = dt.DecisionTracker("agent", tracer_provider=provider)
    with tracker.run("support", "Answer") as run:
        decision_id = tracker.decide(intent="Classify", options=[{"id": "howto"}, {"id": "bug"}],
                                     chosen="howto", reasoning="matches")  # fmt: skip
        tracker.record_outcome(decision_id=decision_id, success=False, error="wrong")
    provider.shutdown()
    return run.run_id, decision_id


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_evaluation_events_are_stored_with_their_decisions(
    service: IngestService, protocol: str
) -> None:
    run_id, decision_id = _recorded_run(service)
    exporter: LogRecordExporter = (
        HttpLogs(endpoint=f"http://127.0.0.1:{service.http_port}/v1/logs")
        if protocol == "http"
        else GrpcLogs(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True)
    )
    logs = LoggerProvider()
    logs.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    # The run may still be on its way to the store: the service flushes before giving up.
    record = {"id": run_id, "decisions": [{"id": decision_id}]}
    judgement = build("reviewer", {"outcome_quality": 0.1}, None, "poor", "bug it was")
    telemetry.emit(record, {"id": decision_id}, judgement, logs)
    unknown = build("reviewer", None, 0.5, None, None)
    telemetry.emit({"id": "run_nope"}, {"id": "dec_0"}, unknown, logs)
    logs.shutdown()

    run = service.store.load_run(run_id)
    assert run is not None
    (stored,) = dt.judgements_of(run.decisions[0])
    assert (stored.evaluator, stored.score, stored.label) == ("reviewer", 0.1, "poor")
    assert run.decisions[0].evaluation is not None
    assert service.receiver.counters["judgements_stored"] == 1
    assert service.receiver.counters["judgements_rejected"] == 1


def test_a_logs_request_that_is_not_protobuf_is_refused(service: IngestService) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", service.http_port, timeout=10)
    connection.request("POST", "/v1/logs", body=b"\xff\x00junk",
                       headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
    answer = connection.getresponse()
    assert answer.status == 400
    connection.close()
    connection = http.client.HTTPConnection("127.0.0.1", service.http_port, timeout=10)
    connection.request("POST", "/v1/logs", body=b"", headers={
        "Content-Type": "application/x-protobuf", "Content-Length": "0"})  # fmt: skip
    empty = connection.getresponse()
    assert empty.status == 200
    assert not ExportLogsServiceResponse.FromString(empty.read()).HasField("partial_success")
    connection.close()
