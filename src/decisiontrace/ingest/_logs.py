"""OTLP logs in: the judgements carried by ``gen_ai.evaluation.result`` events, stored
with their decisions (``decisiontrace.evaluate`` and ``decisiontrace evaluate`` send them
where the spans go). Other log records are not kept: this service stores runs."""

from __future__ import annotations

from typing import Any

from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from decisiontrace.evaluation.received import store_received
from decisiontrace.evaluation.telemetry import ReadJudgement, judgements_in_request
from decisiontrace.export import _otlp_json
from decisiontrace.ingest._receiver import Receiver

__all__ = ["LOGS_PATH", "parse_logs", "receive_logs"]

LOGS_PATH = "/v1/logs"
# A judgement may arrive just after its run ended: the run is flushed to the store
# (waiting at most this long) before the judgement is given up on.
_FLUSH_MILLIS = 2_000


def parse_logs(body: bytes) -> dict[str, Any]:
    """A binary ``ExportLogsServiceRequest`` as its proto3 JSON dict; ValueError if unreadable."""
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as error:  # expected: a peer's bad body (DecodeError, a truncated body's)
        raise ValueError(f"not an ExportLogsServiceRequest: {error}") from None
    document: dict[str, Any] = MessageToDict(request)
    return document


def receive_logs(receiver: Receiver, document: Any) -> ExportLogsServiceResponse:
    """Store the judgements of a logs request; those that cannot be are rejected."""
    errors: list[str] = []

    def report(error: _otlp_json.FieldError) -> None:
        errors.append(str(error))

    reads: list[tuple[str, ReadJudgement]] = [
        (f"evaluation event {index}", read)
        for index, read in enumerate(judgements_in_request(document, report))
    ]
    written, problems = store_received(receiver.store, reads)
    waiting = {where for where, problem in problems if problem.endswith("is not stored")}
    if waiting:
        receiver.processor.force_flush(_FLUSH_MILLIS)
        again = [(where, read) for where, read in reads if where in waiting]
        more, retried = store_received(receiver.store, again)
        written += more
        problems = [p for p in problems if p[0] not in waiting] + retried
    receiver.count("judgements_stored", written)
    response = ExportLogsServiceResponse()
    rejected = len(errors) + len(problems)
    if rejected:
        receiver.count("judgements_rejected", rejected)
        response.partial_success.rejected_log_records = rejected
        response.partial_success.error_message = "; ".join(
            errors + [f"{where}: {problem}" for where, problem in problems]
        )[:2000]
    return response
