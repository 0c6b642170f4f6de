"""A run sent to the ingest service loads equal to the run the agent's processor stores.

The same runs (every kind of value a span of ours carries: long and non-ASCII text,
arrays, booleans, negative and large integers, doubles; LLM spans under decisions;
problems; a failed run and an open decision) go to a real ``IngestService`` over each
way in, and to a ``RunRecordProcessor`` in this process; both write to SQLite files.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import decisiontrace as dt
from decisiontrace.export import _otlp_json
from decisiontrace.ingest import IngestService
from decisiontrace.stores import open_store

_LONG = "étape " * 3000  # a value over 16 KiB: a three-byte length on the wire


def _record_runs(tracker: dt.DecisionTracker, provider: TracerProvider) -> list[str]:
    llm = provider.get_tracer("llm")
    run_ids = []
    with tracker.run("support", "Answer the ticket ✓", {"ticket": -7, "long": _LONG}) as run:
        first = tracker.decide(
            intent="Classify ünïcode",
            options=[
                {"id": "howto", "description": _LONG, "confidence": 0.8, "pros": ["fast"]},
                {"id": "bug", "description": "a bug", "confidence": 0.15},
            ],
            chosen="howto",
            reasoning="matches the FAQ " * 20,
            node_id="classifier",
            constraints=["budget", "politeness"],
            context={"big": 2**62, "negative": -(2**40), "ratio": 0.125, "none": None},
        )
        with llm.start_as_current_span(
            "chat", attributes={"gen_ai.usage.input_tokens": 30, "gen_ai.usage.output_tokens": 9}
        ):
            pass
        tracker.record_outcome(
            decision_id=first, success=True, result={"answer": _LONG}, tokens_used=12,
            latency_ms=340, state_changes={"stage": "classified"}, summary="done",
        )  # fmt: skip
        second = tracker.decide(
            intent="Escalate", options=[{"id": "yes"}, {"id": "no"}], chosen="no",
            reasoning="", node_id="router",
        )  # fmt: skip
        tracker.record_outcome(
            decision_id=second, success=False, error="timeout", error_type="TimeoutError",
            input_tokens=5, output_tokens=6,
        )  # fmt: skip
        tracker.report_problem(severity="warning", description="slow tool", root_cause="net")
        run_ids.append(run.run_id)
    with pytest.raises(RuntimeError):
        _failing_run(tracker, run_ids)
    return run_ids


def _failing_run(tracker: dt.DecisionTracker, run_ids: list[str]) -> None:
    with tracker.run("support", "Fails") as failed:
        run_ids.append(failed.run_id)
        tracker.decide(intent="Open at the end", options=[{"id": "a"}], chosen="a", reasoning="r")
        raise RuntimeError("boom")


def _agent(exporter: SpanExporter) -> tuple[TracerProvider, dt.DecisionTracker]:
    provider = TracerProvider(resource=Resource.create({"service.name": "agent"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, dt.DecisionTracker("agent", tracer_provider=provider)


def _post(port: int | None, body: bytes, content_type: str) -> None:
    assert port is not None
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/v1/traces", body, {"Content-Type": content_type})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        response.read()
    finally:
        connection.close()


def _in_one_request(service: IngestService, spans: Sequence[ReadableSpan], how: str) -> None:
    if how == "http protobuf, one request":
        _post(service.http_port, encode_spans(spans).SerializeToString(), "application/x-protobuf")
    else:
        _post(service.http_port, _otlp_json.request_line(spans).encode(), "application/json")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[IngestService]:
    svc = IngestService(
        f"sqlite:///{tmp_path}/ingest.db", grpc_address="127.0.0.1:0", http_address="127.0.0.1:0"
    )
    svc.start()
    yield svc
    svc.stop(5)


@pytest.mark.parametrize(
    "how",
    [
        "http protobuf, exporter",  # a request a span, as a SimpleSpanProcessor sends
        "http protobuf, one request",  # every span at once, as a batch sends them
        "http json, one request",
        "grpc, exporter",
    ],
)
def test_a_run_ingested_loads_equal_to_the_processors(
    service: IngestService, tmp_path: Path, how: str
) -> None:
    memory = InMemorySpanExporter()
    if how == "http protobuf, exporter":
        exporter: SpanExporter = HttpExporter(
            endpoint=f"http://127.0.0.1:{service.http_port}/v1/traces"
        )
    elif how == "grpc, exporter":
        exporter = GrpcExporter(endpoint=f"127.0.0.1:{service.grpc_port}", insecure=True)
    else:
        exporter = memory
    provider, tracker = _agent(exporter)
    local_url = f"sqlite:///{tmp_path}/local.db"
    provider.add_span_processor(dt.RunRecordProcessor(local_url, handle_sigterm=False))
    run_ids = _record_runs(tracker, provider)
    provider.shutdown()
    if exporter is memory:
        _in_one_request(service, memory.get_finished_spans(), how)
    assert service.receiver.processor.force_flush(10_000)
    with open_store(local_url) as local:
        for run_id in run_ids:
            expected = local.load_run(run_id)
            assert expected is not None
            assert service.store.load_run(run_id) == expected
        assert service.store.list_runs() == local.list_runs()
    assert service.receiver.counters["spans_rejected"] == 0
