"""OTLP/gRPC: the ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` method,
and ``LogsService/Export`` for judgements of decisions (see ``_logs``).

gRPC itself bounds message size (``RESOURCE_EXHAUSTED``, not retried) and concurrent
calls (``RESOURCE_EXHAUSTED`` beyond ``maximum_concurrent_rpcs``). Here: a missing or
wrong bearer token is ``UNAUTHENTICATED``, a full queue or a failing store is
``UNAVAILABLE`` (which every OTLP exporter and the collector retry), and spans that
cannot be read are named in the response's ``partial_success``.
"""

from __future__ import annotations

import hmac
import logging
from concurrent import futures
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    DESCRIPTOR as TRACE_SERVICE_FILE,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from decisiontrace.ingest._logs import receive_logs
from decisiontrace.ingest._receiver import Receiver, Verdict
from decisiontrace.ingest._spans import from_protobuf

logger = logging.getLogger("decisiontrace.ingest")
_TRACE_SERVICE = TRACE_SERVICE_FILE.services_by_name["TraceService"].full_name


class _TraceService:
    """``TraceService/Export``, handed the request's bytes: they are read as OTLP/HTTP's
    are (``_wire``), not into the generated message classes first."""

    def __init__(self, receiver: Receiver, token: str | None) -> None:
        self._receiver = receiver
        self._token = token

    def _authorized(self, context: grpc.ServicerContext) -> bool:
        if self._token is None:
            return True
        for key, value in context.invocation_metadata():
            if key == "authorization" and isinstance(value, str):
                scheme, _, credentials = value.partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(
                    credentials.strip().encode(), self._token.encode()
                )
        return False

    def export(self, request: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        receiver = self._receiver
        if not self._authorized(context):
            receiver.count("rejected_unauthorized")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            decoded = from_protobuf(request, receiver.links)
        except (ValueError, RecursionError) as error:  # MalformedRequest too
            receiver.count("rejected_malformed")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed OTLP request: {error}")
        verdict = receiver.submit(decoded)
        if verdict is Verdict.OVERLOADED:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the ingest queue is full; retry later")
        if verdict is Verdict.STORE_FAILING:
            context.abort(
                grpc.StatusCode.UNAVAILABLE, "the run store is not writable right now; retry later"
            )
        response = ExportTraceServiceResponse()
        if decoded.rejected:
            response.partial_success.rejected_spans = decoded.rejected
            response.partial_success.error_message = "; ".join(decoded.errors)
        return response


class _LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    """Judgements of decisions (evaluation events), stored with their decisions."""

    def __init__(self, trace_service: _TraceService) -> None:
        self._trace_service = trace_service  # shares its token check

    def Export(
        self, request: ExportLogsServiceRequest, context: grpc.ServicerContext
    ) -> ExportLogsServiceResponse:
        receiver = self._trace_service._receiver
        if not self._trace_service._authorized(context):
            receiver.count("rejected_unauthorized")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        try:
            return receive_logs(receiver, MessageToDict(request))
        except Exception:  # expected: the user's store failed; the exporter retries UNAVAILABLE
            logger.exception("decisiontrace: storing judgements failed")
            context.abort(
                grpc.StatusCode.UNAVAILABLE, "the run store is not writable right now; retry later"
            )
            raise  # not reached: abort raises


def grpc_server(
    receiver: Receiver,
    address: str,
    *,
    token: str | None,
    max_request_bytes: int,
    max_concurrency: int,
    tls: tuple[bytes, bytes] | None,
) -> tuple[grpc.Server, int]:
    """A started-to-be gRPC server for ``address`` (``host:port``); returns it and the port.

    Raises:
        OSError: the address cannot be bound.
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", max_request_bytes),
        ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="otlp-grpc"),
        maximum_concurrent_rpcs=max_concurrency,
        options=options,
    )
    trace_service = _TraceService(receiver, token)
    export = grpc.unary_unary_rpc_method_handler(
        trace_service.export,
        request_deserializer=None,  # the bytes as they came
        response_serializer=ExportTraceServiceResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(_TRACE_SERVICE, {"Export": export}),)
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(  # type: ignore[no-untyped-call]
        _LogsService(trace_service), server
    )
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            key, cert = tls
            port = server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
    except RuntimeError as error:
        raise OSError(f"cannot listen on {address} (gRPC): {error}") from None
    if not port:
        raise OSError(f"cannot listen on {address} (gRPC)")
    return server, port


__all__ = ["grpc_server"]
