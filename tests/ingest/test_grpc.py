"""OTLP/gRPC requests the service cannot read, sent as raw bytes over a real channel."""

from __future__ import annotations

from collections.abc import Iterator

import grpc  # type: ignore[import-untyped]
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from decisiontrace.ingest import IngestService
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore

_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def service() -> Iterator[IngestService]:
    svc = IngestService(MemoryStore(), grpc_address="127.0.0.1:0", http_address=None)
    svc.start()
    yield svc
    svc.stop(5)


def _export(service: IngestService, body: bytes) -> ExportTraceServiceResponse:
    with grpc.insecure_channel(f"127.0.0.1:{service.grpc_port}") as channel:
        export = channel.unary_unary(
            _EXPORT,
            request_serializer=None,  # the bytes as given
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        return export(body, timeout=10)


def test_a_request_that_is_not_otlp_gets_invalid_argument_with_the_reason(
    service: IngestService,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _export(service, b"\xff\x00not protobuf")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an OTLP protobuf" in raised.value.details()
    assert service.receiver.counters["rejected_malformed"] == 1


def test_a_span_with_an_unreadable_attribute_of_ours_is_named_and_the_others_kept(
    service: IngestService,
) -> None:
    readable = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="fine")
    unreadable = Span(trace_id=b"\x01" * 16, span_id=b"\x03" * 8, name="bad")
    # The second span's attribute: our key, a string value that is not UTF-8.
    key = KeyValue(key=sc.DECISION_INTENT).SerializeToString()
    attribute = key + b"\x12\x04\x0a\x02\xff\xfe"
    span_bytes = unreadable.SerializeToString()
    with_attribute = span_bytes + b"\x4a" + bytes([len(attribute)]) + attribute
    response = _export(service, _raw_request([readable.SerializeToString(), with_attribute]))
    assert response.partial_success.rejected_spans == 1
    assert "spans[1]" in response.partial_success.error_message
    assert "UTF-8" in response.partial_success.error_message
    assert service.receiver.counters["spans_ignored"] == 1  # the readable one: not ours


def _raw_request(spans: list[bytes]) -> bytes:
    """An ExportTraceServiceRequest around spans given as bytes."""
    scope = b"".join(b"\x12" + _varint(len(span)) + span for span in spans)
    resource = b"\x12" + _varint(len(scope)) + scope
    return b"\x0a" + _varint(len(resource)) + resource


def _varint(number: int) -> bytes:
    out = bytearray()
    while number >= 0x80:
        out.append(number & 0x7F | 0x80)
        number >>= 7
    out.append(number)
    return bytes(out)
