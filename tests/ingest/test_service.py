"""The ingest service on 127.0.0.1, fed by the SDK's real OTLP exporters and by hand.

Every test starts a real IngestService (gRPC and HTTP servers on ports the OS picks)
over a real store; requests are real OTLP requests over loopback.
"""

from __future__ import annotations

import gzip
import http.client
import json
import shutil
import sqlite3
import ssl
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.rpc import status_pb2  # type: ignore[import-untyped]
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import decisiontrace as dt
from decisiontrace.export import _otlp_json
from decisiontrace.ingest import IngestService
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore, SQLiteStore
from decisiontrace.tracking import propagation

# --- helpers ---------------------------------------------------------------------------


class KeepingStore(MemoryStore):
    """A memory store that also keeps every record saved, fragments included."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[dict[str, Any]] = []

    def save_records(self, records: Sequence[dict[str, Any]]) -> None:
        self.saved.extend(records)
        super().save_records(records)


class FailingStore(MemoryStore):
    def save_records(self, records: Sequence[dict[str, Any]]) -> None:
        raise OSError("disk full")


@pytest.fixture
def service() -> Iterator[IngestService]:
    svc = IngestService(KeepingStore(), grpc_address="127.0.0.1:0", http_address="127.0.0.1:0")
    svc.start()
    yield svc
    svc.stop(5)


def _agent(exporter: SpanExporter, service_name: str = "agent") -> tuple[TracerProvider, Any]:
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, dt.DecisionTracker(service_name, tracer_provider=provider)


def _one_run(tracker: dt.DecisionTracker) -> str:
    with tracker.run("support", "Answer", {"ticket": 1}) as run:
        decision_id = tracker.decide(
            intent="Classify",
            options=[{"id": "howto", "confidence": 0.8}, {"id": "bug"}],
            chosen="howto",
            reasoning="matches",
        )
        tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=12)
        tracker.report_problem(severity="warning", description="slow")
    return run.run_id


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def status_message(self) -> str:
        return str(status_pb2.Status.FromString(self.body).message)


def _request(
    port: int | None,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> Answer:
    assert port is not None
    connection = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
        if context is not None
        else http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    )
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def _post(service: IngestService, body: bytes, content_type: str, **headers: str) -> Answer:
    return _request(
        service.http_port, "POST", "/v1/traces", body, {"Content-Type": content_type, **headers}
    )


def _flushed(service: IngestService) -> None:
    assert service.receiver.processor.force_flush(10_000)


# --- exporters in, the processor's records out ------------------------------------------


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_runs_exported_by_the_sdk_are_stored_as_the_processor_stores_them(
    service: IngestService, protocol: str
) -> None:
    exporter: SpanExporter = (
        HttpExporter(endpoint=f"http://127.0.0.1:{service.http_port}/v1/traces")
        if protocol == "http"
        else GrpcExporter(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True)
    )
    provider, tracker = _agent(exporter)
    local = MemoryStore()
    provider.add_span_processor(dt.RunRecordProcessor(local, handle_sigterm=False))
    run_id = _one_run(tracker)
    provider.shutdown()
    _flushed(service)
    received = service.store.load_run(run_id)
    assert received is not None
    assert received == local.load_run(run_id)  # the very same record, rebuilt remotely
    assert service.receiver.counters["spans_accepted"] == 2


def test_otlp_json_over_http_is_read_with_hex_or_base64_ids(service: IngestService) -> None:
    exporter = InMemorySpanExporter()
    provider, tracker = _agent(exporter)
    run_id = _one_run(tracker)
    spans = exporter.get_finished_spans()
    for hex_ids in (True, False):
        response = _post(
            service, _otlp_json.request_line(spans, hex_ids=hex_ids).encode(), "application/json"
        )
        assert response.status == 200, response.body
        assert response.json() == {}
    _flushed(service)
    run = service.store.load_run(run_id)
    assert run is not None and [d.chosen_option_id for d in run.decisions] == ["howto"]
    provider.shutdown()


def test_fragments_from_two_services_reach_the_store(service: IngestService) -> None:
    endpoint = f"http://127.0.0.1:{service.http_port}/v1/traces"
    agent_provider, agent = _agent(HttpExporter(endpoint=endpoint), "agent")
    tool_provider, tool = _agent(HttpExporter(endpoint=endpoint), "tool")
    llm = tool_provider.get_tracer("llm")

    @dt.decision("Search", options=["kb", "web"], tracker=tool)
    def search() -> str:
        with llm.start_as_current_span("chat", attributes={"gen_ai.usage.output_tokens": 9}):
            pass
        return "web"

    headers: dict[str, str] = {}
    with agent.run("support") as run:
        propagation.inject(headers)
    with propagation.attached(headers):
        search()
        tool.report_problem(severity="warning", description="index stale")
    agent_provider.shutdown()
    tool_provider.shutdown()
    _flushed(service)
    store = service.store
    assert isinstance(store, KeepingStore)
    records = [r for r in store.saved if r["id"] == run.run_id]
    root = [r for r in records if "fragment_id" not in r]
    fragments = [r for r in records if "fragment_id" in r]
    assert len(root) == 1 and root[0]["status"] == "completed"
    assert fragments and fragments[-1]["fragment_id"].startswith("tool:")
    decision = fragments[-1]["decisions"][0]
    assert decision["service"] == "tool" and decision["chosen_option_id"] == "web"
    assert decision["outcome"]["tokens_used"] == 9  # the LLM span under it, same request
    assert fragments[-1]["problems"][0]["description"] == "index stale"
    assert service.receiver.counters["spans_ignored"] == 1  # the LLM span is not ours


# --- what it refuses --------------------------------------------------------------------


def test_malformed_requests_get_400_with_the_reason_and_the_service_goes_on(
    service: IngestService,
) -> None:
    response = _post(service, b"\xff\x00not protobuf", "application/x-protobuf")
    assert response.status == 400
    status = status_pb2.Status.FromString(response.body)
    assert "not an OTLP protobuf" in status.message
    response = _post(service, b"{not json", "application/json")
    assert response.status == 400
    assert "malformed OTLP request" in response.json()["message"]
    response = _post(service, b'{"data": []}', "application/json")
    assert response.status == 400
    assert "Jaeger's own JSON format" in response.json()["message"]
    assert service.receiver.counters["rejected_malformed"] == 3
    test_otlp_json_over_http_is_read_with_hex_or_base64_ids(service)  # still serving


def test_unreadable_spans_are_named_in_a_partial_success(service: IngestService) -> None:
    document = {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [{"traceId": "zz", "spanId": "00", "name": "x"}]}]}
        ]
    }
    response = _post(service, json.dumps(document).encode(), "application/json")
    assert response.status == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "traceId" in partial["errorMessage"]


def test_spans_that_are_not_ours_are_ignored_and_counted(service: IngestService) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("web").start_as_current_span("GET /"):
        pass
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    response = _post(service, body, "application/x-protobuf")
    assert response.status == 200
    assert service.receiver.counters["spans_ignored"] == 1
    _flushed(service)
    assert service.store.list_runs() == []


def test_oversized_requests_get_413_unread() -> None:
    svc = IngestService(MemoryStore(), grpc_address=None, http_address="127.0.0.1:0",
                        max_request_bytes=1000)  # fmt: skip
    svc.start()
    try:
        response = _post(svc, b"x" * 5000, "application/x-protobuf")
        assert response.status == 413
        assert "over the limit of 1000" in response.status_message()
        bomb = gzip.compress(b"\x00" * 100_000)
        response = _post(svc, bomb, "application/x-protobuf", **{"Content-Encoding": "gzip"})
        assert response.status == 413
        assert svc.receiver.counters["rejected_too_large"] == 2
    finally:
        svc.stop(5)


def test_a_bearer_token_is_required_when_set_and_rejections_are_counted() -> None:
    svc = IngestService(MemoryStore(), grpc_address="127.0.0.1:0", http_address="127.0.0.1:0",
                        token="s3cret")  # fmt: skip
    svc.start()
    try:
        body = ExportTraceServiceRequest().SerializeToString()
        assert _post(svc, body, "application/x-protobuf").status == 401
        wrong = {"Authorization": "Bearer nope"}
        assert _post(svc, body, "application/x-protobuf", **wrong).status == 401
        right = {"Authorization": "Bearer s3cret"}
        assert _post(svc, body, "application/x-protobuf", **right).status == 200
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Export(ExportTraceServiceRequest(), timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
            stub.Export(
                ExportTraceServiceRequest(),
                timeout=10,
                metadata=[("authorization", "Bearer s3cret")],
            )
        # The SDK exporter sends it from OTEL_EXPORTER_OTLP_HEADERS-style headers.
        exporter = HttpExporter(
            endpoint=f"http://127.0.0.1:{svc.http_port}/v1/traces",
            headers={"Authorization": "Bearer s3cret"},
        )
        provider, tracker = _agent(exporter)
        run_id = _one_run(tracker)
        provider.shutdown()
        _flushed(svc)
        assert svc.store.load_run(run_id) is not None
        assert svc.receiver.counters["rejected_unauthorized"] == 3
    finally:
        svc.stop(5)


def _spans_of_one_run() -> Sequence[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider, tracker = _agent(exporter)
    _one_run(tracker)
    provider.shutdown()
    return exporter.get_finished_spans()


def test_a_full_queue_answers_429_with_retry_after() -> None:
    svc = IngestService(MemoryStore(), grpc_address="127.0.0.1:0", http_address="127.0.0.1:0",
                        max_queue_spans=2)  # fmt: skip
    svc.start()
    try:
        body = encode_spans(_spans_of_one_run()).SerializeToString()  # 2 spans + a mark
        response = _post(svc, body, "application/x-protobuf")
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        with grpc.insecure_channel(f"127.0.0.1:{svc.grpc_port}") as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Export(ExportTraceServiceRequest.FromString(body), timeout=10)
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE  # retried by exporters
        assert svc.receiver.counters["rejected_overloaded"] == 2
    finally:
        svc.stop(5)


def test_a_failing_store_answers_503_and_the_exporter_keeps_retrying() -> None:
    svc = IngestService(FailingStore(), grpc_address=None, http_address="127.0.0.1:0")
    svc.start()
    try:
        body = encode_spans(_spans_of_one_run()).SerializeToString()
        response = _post(svc, body, "application/x-protobuf")
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        answer = _request(svc.http_port, "GET", "/health")
        assert answer.status == 503
        assert answer.json()["status"] == "store_failing"
    finally:
        svc.stop(2)


def test_spans_the_journal_could_not_take_are_not_acknowledged(tmp_path: Path) -> None:
    # On a store with a journal, what a request brought is journaled (or written)
    # before it is answered: a SIGKILL then loses nothing that was acknowledged.
    db = tmp_path / "runs.db"
    svc = IngestService(SQLiteStore(db, timeout=0.2), grpc_address=None, http_address="127.0.0.1:0")
    svc.start()
    exporter = InMemorySpanExporter()
    provider, tracker = _agent(exporter)
    with tracker.run("g"):
        tracker.quick_decision(intent="held", action="a", reasoning="r")
    # The decision only: its run waits for the run span, so nothing is saved, only journaled.
    held = [
        s for s in exporter.get_finished_spans()
        if (s.attributes or {}).get(sc.SPAN_KIND) == sc.KIND_DECISION
    ]  # fmt: skip
    body = _otlp_json.request_line(held).encode()
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        assert _post(svc, body, "application/json").status == 503
        writer.execute("ROLLBACK")
        assert _post(svc, body, "application/json").status == 200  # the retry
        journaled = writer.execute("SELECT count(*) FROM journal").fetchone()[0]
        assert journaled >= 1
    finally:
        writer.close()
        svc.stop(5)
        provider.shutdown()


def test_stopping_on_a_store_without_journal_stores_decisions_held_as_a_stuck_run(
    service: IngestService,
) -> None:
    # Nowhere to leave them for the next service: the run is stored as stuck, as before.
    exporter = InMemorySpanExporter()
    provider, tracker = _agent(exporter)
    with tracker.run("g") as run:
        tracker.quick_decision(intent="held", action="a", reasoning="r")
    held = [
        s for s in exporter.get_finished_spans()
        if (s.attributes or {}).get(sc.SPAN_KIND) == sc.KIND_DECISION
    ]  # fmt: skip
    assert _post(service, _otlp_json.request_line(held).encode(), "application/json").status == 200
    service.stop(5)
    provider.shutdown()
    stored = service.store.load_run(run.run_id)
    assert stored is not None
    assert stored.status.value == "stuck"
    assert [d.intent for d in stored.decisions] == ["held"]


def test_a_service_restarted_with_the_same_pid_completes_the_run_its_predecessor_held(
    tmp_path: Path,
) -> None:
    # A container restarted with `serve` as pid 1 again: the predecessor's journal
    # entries carry this very pid, and are still taken back.
    db = tmp_path / "runs.db"
    exporter = InMemorySpanExporter()
    provider, tracker = _agent(exporter)
    with tracker.run("g") as run:
        tracker.quick_decision(intent="held", action="a", reasoning="r")
    provider.shutdown()
    spans = exporter.get_finished_spans()
    kinds = [(s.attributes or {}).get(sc.SPAN_KIND) for s in spans]
    held = [s for s, kind in zip(spans, kinds, strict=True) if kind == sc.KIND_DECISION]
    rest = [s for s, kind in zip(spans, kinds, strict=True) if kind != sc.KIND_DECISION]
    for part in (held, rest):
        svc = IngestService(SQLiteStore(db), grpc_address=None, http_address="127.0.0.1:0")
        svc.start()
        try:
            assert (
                _post(svc, _otlp_json.request_line(part).encode(), "application/json").status == 200
            )
            _flushed(svc)
        finally:
            svc.stop(5)
    stored = SQLiteStore(db).load_run(run.run_id)
    assert stored is not None
    assert (stored.status.value, [d.intent for d in stored.decisions]) == ("completed", ["held"])


def test_requests_beyond_the_concurrency_limit_get_503(service: IngestService) -> None:
    http_server = service._http
    assert http_server is not None
    taken = 0
    while http_server.slots.acquire(blocking=False):  # every slot busy, as under load
        taken += 1
    try:
        response = _post(
            service, ExportTraceServiceRequest().SerializeToString(), "application/x-protobuf"
        )
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
    finally:
        for _ in range(taken):
            http_server.slots.release()


def test_health_reports_status_and_counters(service: IngestService) -> None:
    response = _request(service.http_port, "GET", "/health")
    health = response.json()
    assert response.status == 200
    assert health["status"] == "ok"
    assert {"spans_accepted", "spans_ignored", "rejected_unauthorized", "queue_length"} <= set(
        health
    )


def test_bad_configuration_is_refused_up_front() -> None:
    for kwargs in (
        {"grpc_address": None, "http_address": None},
        {"http_address": "localhost"},
        {"max_request_bytes": 0},
        {"tls_cert": "cert.pem"},
        {"token": " "},
    ):
        with pytest.raises(ValueError, match=r"\w"):
            IngestService(MemoryStore(), **kwargs)


# --- TLS --------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def test_tls_serves_both_protocols(certificate: tuple[str, str]) -> None:
    cert, key = certificate
    svc = IngestService(MemoryStore(), grpc_address="127.0.0.1:0", http_address="127.0.0.1:0",
                        tls_cert=cert, tls_key=key)  # fmt: skip
    svc.start()
    try:
        context = ssl.create_default_context(cafile=cert)
        assert _request(svc.http_port, "GET", "/health", context=context).status == 200
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            _request(svc.http_port, "GET", "/health")  # no TLS: refused
        credentials = grpc.ssl_channel_credentials(Path(cert).read_bytes())
        exporter = GrpcExporter(
            endpoint=f"localhost:{svc.grpc_port}", credentials=credentials, insecure=False
        )
        provider, tracker = _agent(exporter)
        run_id = _one_run(tracker)
        provider.shutdown()
        _flushed(svc)
        assert svc.store.load_run(run_id) is not None
    finally:
        svc.stop(5)


def test_response_of_an_accepted_protobuf_request_is_an_export_response(
    service: IngestService,
) -> None:
    body = encode_spans(_spans_of_one_run()).SerializeToString()
    response = _post(service, body, "application/x-protobuf")
    assert response.status == 200
    assert ExportTraceServiceResponse.FromString(response.body) == ExportTraceServiceResponse()
