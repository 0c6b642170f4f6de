"""Judgements as OpenTelemetry events, both ways.

Each judgement is emitted through the Logs API as a ``gen_ai.evaluation.result`` event
(the GenAI semantic conventions' event; new events go through the Logs API rather than
span events), parented to the judged decision's span context, which the stored records
keep (Run extra ``trace_id``, Decision extra ``span_id``). So a tracing backend shows the
judgement with the decision. ``rebuild`` reads the events back from OTLP JSON logs with
:func:`judgements_in_request`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import _logs, trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.util.types import AnyValue

from decisiontrace._version import __version__
from decisiontrace.evaluation.judgement import Judgement
from decisiontrace.export import _otlp_json
from decisiontrace.spanmodel import _records
from decisiontrace.spanmodel import semconv as sc

logger = logging.getLogger("decisiontrace")

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
_RESOURCE_LOGS_KEYS = ("resourceLogs", "resource_logs")
_SCOPE_LOGS_KEYS = ("scopeLogs", "scope_logs")
_LOG_RECORDS_KEYS = ("logRecords", "log_records")


def decision_context(record: Mapping[str, Any], decision: Mapping[str, Any]) -> Context | None:
    """The context of the decision's span, from the ids the records keep; None without them."""
    trace_id, span_id = record.get("trace_id"), decision.get("span_id")
    if not (isinstance(trace_id, str) and isinstance(span_id, str)):
        return None
    if not (_TRACE_ID.match(trace_id.lower()) and _SPAN_ID.match(span_id.lower())):
        return None
    context = SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(1)
    )
    if not context.is_valid:
        return None
    return trace.set_span_in_context(NonRecordingSpan(context))


def event_attributes(
    run_id: str, decision: Mapping[str, Any], judgement: Judgement
) -> dict[str, AnyValue]:
    """The event's attributes: the semantic conventions' names, then which decision."""
    attributes: dict[str, AnyValue] = {sc.GEN_AI_EVALUATION_NAME: judgement.evaluator}
    if judgement.score is not None:
        attributes[sc.GEN_AI_EVALUATION_SCORE_VALUE] = judgement.score
    if judgement.label is not None:
        attributes[sc.GEN_AI_EVALUATION_SCORE_LABEL] = judgement.label
    if judgement.explanation is not None:
        attributes[sc.GEN_AI_EVALUATION_EXPLANATION] = judgement.explanation
    attributes[sc.RUN_ID] = run_id
    attributes[sc.DECISION_ID] = str(decision.get("id"))
    for key, name in ((sc.NODE_ID, "node_id"), (sc.DECISION_CHOSEN_ID, "chosen_option_id")):
        value = decision.get(name)
        if isinstance(value, str) and value:
            attributes[key] = value
    if judgement.evaluation is not None:
        attributes[sc.DECISION_EVALUATION] = judgement.evaluation.model_dump_json()
    return attributes


def _time_ns(judgement: Judgement) -> int:
    """Nanoseconds since the epoch of ``evaluated_at`` (local time), exact to the µs."""
    moment = judgement.evaluated_at
    if moment.tzinfo is not None:
        moment = moment.astimezone().replace(tzinfo=None)
    whole = moment.replace(microsecond=0)
    return int(whole.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def emit(
    record: Mapping[str, Any],
    decision: Mapping[str, Any],
    judgement: Judgement,
    logger_provider: _logs.LoggerProvider | None = None,
) -> None:
    """Emit one ``gen_ai.evaluation.result`` event (the global LoggerProvider by default)."""
    otel_logger = _logs.get_logger("decisiontrace", __version__, logger_provider=logger_provider)
    context = decision_context(record, decision)
    otel_logger.emit(
        timestamp=_time_ns(judgement),
        context=context if context is not None else Context(),
        severity_number=_logs.SeverityNumber.INFO,
        event_name=sc.GEN_AI_EVALUATION_RESULT,
        attributes=event_attributes(str(record.get("id")), decision, judgement),
    )


# --- reading OTLP JSON logs back --------------------------------------------------------------


@dataclass
class ReadJudgement:
    """A judgement read from an exported event, with what identifies its decision."""

    run_id: str | None
    decision_id: str | None
    trace_id: str | None
    span_id: str | None
    judgement: dict[str, Any]


def is_logs_request(document: Any) -> bool:
    """Whether a JSON document is an ``ExportLogsServiceRequest``."""
    return isinstance(document, Mapping) and any(key in document for key in _RESOURCE_LOGS_KEYS)


def _items(obj: Mapping[str, Any], keys: tuple[str, ...], path: str) -> tuple[str, list[Any]]:
    for key in keys:
        if key in obj:
            value = obj[key]
            if value is None:
                return f"{path}{key}", []
            if not isinstance(value, list):
                raise _otlp_json.FieldError(f"{path}{key}", "expected a list")
            return f"{path}{key}", value
    return f"{path}{keys[0]}", []


def judgements_in_request(
    document: Any, on_error: Callable[[_otlp_json.FieldError], None]
) -> Iterator[ReadJudgement]:
    """Every ``gen_ai.evaluation.result`` event of one OTLP JSON logs request.

    Other log records are skipped; an unreadable one is reported to ``on_error``.
    """
    try:
        key, resources = _items(document, _RESOURCE_LOGS_KEYS, "")
    except _otlp_json.FieldError as error:
        on_error(error)
        return
    for r_index, resource in enumerate(resources):
        r_path = f"{key}[{r_index}]"
        try:
            if not isinstance(resource, Mapping):
                raise _otlp_json.FieldError(r_path, "expected an object")
            s_key, scopes = _items(resource, _SCOPE_LOGS_KEYS, f"{r_path}.")
        except _otlp_json.FieldError as error:
            on_error(error)
            continue
        for s_index, scope in enumerate(scopes):
            s_path = f"{s_key}[{s_index}]"
            try:
                if not isinstance(scope, Mapping):
                    raise _otlp_json.FieldError(s_path, "expected an object")
                l_key, log_records = _items(scope, _LOG_RECORDS_KEYS, f"{s_path}.")
            except _otlp_json.FieldError as error:
                on_error(error)
                continue
            for index, log_record in enumerate(log_records):
                try:
                    read = _judgement(log_record, f"{l_key}[{index}]")
                except _otlp_json.FieldError as error:
                    on_error(error)
                    continue
                if read is not None:
                    yield read


def _hex(value: Any, size: int, path: str) -> str | None:
    if value in (None, ""):
        return None
    number = _otlp_json.decode_id(value, size, path)
    return f"{number:0{size * 2}x}" if number else None


def _judgement(log_record: Any, path: str) -> ReadJudgement | None:
    if not isinstance(log_record, Mapping):
        raise _otlp_json.FieldError(path, "expected a log record object")
    attributes = _otlp_json.attributes(log_record.get("attributes"), f"{path}.attributes")
    event_name = log_record.get("eventName") or log_record.get("event_name")
    if sc.GEN_AI_EVALUATION_RESULT not in (event_name, attributes.get(sc.EVENT_NAME_ATTRIBUTE)):
        return None
    name = attributes.get(sc.GEN_AI_EVALUATION_NAME)
    if not isinstance(name, str) or not name:
        raise _otlp_json.FieldError(f"{path}.attributes", f"{sc.GEN_AI_EVALUATION_NAME} is missing")
    judgement: dict[str, Any] = {"evaluator": name}
    for key, field in (
        (sc.GEN_AI_EVALUATION_SCORE_VALUE, "score"),
        (sc.GEN_AI_EVALUATION_SCORE_LABEL, "label"),
        (sc.GEN_AI_EVALUATION_EXPLANATION, "explanation"),
    ):
        judgement[field] = attributes.get(key)
    evaluation = attributes.get(sc.DECISION_EVALUATION)
    if isinstance(evaluation, str):
        try:
            judgement["evaluation"] = json.loads(evaluation)
        except ValueError:
            raise _otlp_json.FieldError(
                f"{path}.attributes", f"{sc.DECISION_EVALUATION} is not JSON"
            ) from None
    time_ns = _otlp_json.nanos(
        log_record.get("timeUnixNano") or log_record.get("time_unix_nano"),
        f"{path}.timeUnixNano",
        required=False,
    )
    if time_ns:
        judgement["evaluated_at"] = _records.ns_to_datetime(time_ns)
    run_id, decision_id = attributes.get(sc.RUN_ID), attributes.get(sc.DECISION_ID)
    return ReadJudgement(
        run_id=run_id if isinstance(run_id, str) else None,
        decision_id=decision_id if isinstance(decision_id, str) else None,
        trace_id=_hex(log_record.get("traceId") or log_record.get("trace_id"), 16, path),
        span_id=_hex(log_record.get("spanId") or log_record.get("span_id"), 8, path),
        judgement=judgement,
    )


def provider_from_environment() -> _logs.LoggerProvider | None:
    """A LoggerProvider exporting as the ``OTEL_*`` variables say, for a process (the CLI)
    that judges decisions without :func:`~decisiontrace.configure`; None when they name
    no log destination (``OTEL_LOGS_EXPORTER`` unset or ``none``, and no OTLP endpoint).

    Raises:
        ValueError: an exporter or protocol variable is invalid.
    """
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    from decisiontrace.setup import _otel_env

    named = _otel_env.env("OTEL_LOGS_EXPORTER")
    if named is not None:
        exporters = _otel_env.exporter_names(named, "OTEL_LOGS_EXPORTER")
    elif _otel_env.otlp_configured(None, None, "logs"):
        exporters = ["otlp"]
    else:
        exporters = []
    if not exporters:
        return None
    protocol = _otel_env.protocol(None, "logs")
    provider = LoggerProvider(resource=Resource.create())
    for name in exporters:
        provider.add_log_record_processor(
            BatchLogRecordProcessor(_otel_env.log_exporter(name, protocol, {}))
        )
    return provider


__all__ = [
    "ReadJudgement",
    "decision_context",
    "emit",
    "event_attributes",
    "is_logs_request",
    "judgements_in_request",
    "provider_from_environment",
]
