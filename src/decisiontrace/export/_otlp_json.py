"""OTLP JSON, both ways: requests read into :class:`~decisiontrace.spanmodel._decode.SpanData`, and
SDK spans written as the collector's file exporter writes them.

OTLP/JSON is the proto3 JSON mapping of ``ExportTraceServiceRequest`` with one
deviation the OTLP specification makes: trace and span ids are hex strings, not the
base64 that proto3 JSON uses for bytes. Readers here accept both (a hex id has 32 or
16 characters, a base64 one 24 or 12, so they cannot be confused), field names in
lowerCamelCase or as in the .proto, 64-bit integers as strings or numbers, and enums as
numbers or names, because files in the wild use all of them.

Reading is forgiving: a field that is wrong is reported with its path
(``resourceSpans[0].scopeSpans[1].spans[4].traceId``) and the span it belongs to is
skipped; the rest of the request is still read.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from decisiontrace.spanmodel import _decode

#: Status code of an ERROR span in OTLP (``STATUS_CODE_ERROR``).
#: OTLP's ``Status.code`` of a failed span (``STATUS_CODE_ERROR``), in both encodings.
STATUS_CODE_ERROR = 2
_STATUS_NAMES = {
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": STATUS_CODE_ERROR,
}

# Top-level keys that hold the list of ResourceSpans: the request's own field, and the
# name Tempo's trace-by-id API has used for it ("batches").
_RESOURCE_SPANS_KEYS = ("resourceSpans", "resource_spans", "batches")
# Wrappers around a request: Jaeger's api_v3 ({"result": ...}), Tempo's v2 API ({"trace": ...}).
_WRAPPER_KEYS = ("result", "trace")
_SCOPE_SPANS_KEYS = ("scopeSpans", "scope_spans", "instrumentationLibrarySpans")


class FieldError(ValueError):
    """A field of an OTLP JSON document that cannot be read; ``path`` names it."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path


def _field(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode_id(value: Any, size: int, path: str) -> int:
    """A trace (16 bytes) or span (8 bytes) id from hex or base64 text."""
    if not isinstance(value, str) or not value:
        raise FieldError(path, f"expected a {size}-byte id as hex text, got {_short(value)}")
    if len(value) == 2 * size:
        try:
            return int(value, 16)
        except ValueError:
            pass
    else:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == size:
            return int.from_bytes(raw, "big")
    raise FieldError(path, f"not a {size}-byte id in hex (or base64): {_short(value)}")


def _optional_span_id(value: Any, path: str) -> int | None:
    if value is None or value == "":
        return None
    span_id = decode_id(value, 8, path)
    return span_id or None


def _nanos(value: Any, path: str, *, required: bool) -> int | None:
    if value is None:
        if required:
            raise FieldError(path, "missing")
        return None
    if isinstance(value, bool):
        raise FieldError(path, f"expected nanoseconds, got {_short(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise FieldError(path, f"expected nanoseconds as an integer string, got {_short(value)}")


def nanos(value: Any, path: str, *, required: bool) -> int | None:
    """Nanoseconds of a ``*UnixNano`` field (integer string or number); None if absent."""
    return _nanos(value, path, required=required)


def any_value(value: Any, path: str) -> Any:
    """The Python value of an OTLP ``AnyValue`` object."""
    if not isinstance(value, Mapping):
        raise FieldError(path, f"expected an AnyValue object, got {_short(value)}")
    if not value:
        return None
    if "stringValue" in value or "string_value" in value:
        text = _field(value, "stringValue", "string_value")
        if not isinstance(text, str):
            raise FieldError(f"{path}.stringValue", f"expected a string, got {_short(text)}")
        return text
    if "boolValue" in value or "bool_value" in value:
        flag = _field(value, "boolValue", "bool_value")
        if not isinstance(flag, bool):
            raise FieldError(f"{path}.boolValue", f"expected true or false, got {_short(flag)}")
        return flag
    if "intValue" in value or "int_value" in value:
        number = _field(value, "intValue", "int_value")
        if isinstance(number, bool) or not isinstance(number, int | str):
            raise FieldError(f"{path}.intValue", f"expected an integer, got {_short(number)}")
        try:
            return int(number)
        except ValueError:
            raise FieldError(f"{path}.intValue", f"not an integer: {_short(number)}") from None
    if "doubleValue" in value or "double_value" in value:
        return _double(_field(value, "doubleValue", "double_value"), f"{path}.doubleValue")
    if "arrayValue" in value or "array_value" in value:
        array = _field(value, "arrayValue", "array_value")
        values = array.get("values", []) if isinstance(array, Mapping) else None
        if not isinstance(values, list):
            raise FieldError(
                f"{path}.arrayValue", f"expected {{'values': [...]}}, got {_short(array)}"
            )
        return [any_value(v, f"{path}.arrayValue.values[{i}]") for i, v in enumerate(values)]
    if "kvlistValue" in value or "kvlist_value" in value:
        kvlist = _field(value, "kvlistValue", "kvlist_value")
        values = kvlist.get("values", []) if isinstance(kvlist, Mapping) else None
        if not isinstance(values, list):
            raise FieldError(
                f"{path}.kvlistValue", f"expected {{'values': [...]}}, got {_short(kvlist)}"
            )
        return attributes(values, f"{path}.kvlistValue.values")
    if "bytesValue" in value or "bytes_value" in value:
        data = _field(value, "bytesValue", "bytes_value")
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise FieldError(f"{path}.bytesValue", f"not base64: {_short(data)}") from None
    raise FieldError(path, f"unknown AnyValue kind {_short(sorted(value))}")


def _double(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise FieldError(path, f"expected a number, got {_short(value)}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # proto3 JSON writes "NaN", "Infinity", and allows "1.5"
        try:
            return float(value)
        except ValueError:
            pass
    raise FieldError(path, f"expected a number, got {_short(value)}")


def attributes(values: Any, path: str) -> dict[str, Any]:
    """A ``KeyValue`` list as a dict (later duplicates win, as in the SDK)."""
    if values is None:
        return {}
    if not isinstance(values, list):
        raise FieldError(path, f"expected a list of key/value objects, got {_short(values)}")
    result: dict[str, Any] = {}
    for index, item in enumerate(values):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise FieldError(
                where, f"expected {{'key': str, 'value': AnyValue}}, got {_short(item)}"
            )
        value = any_value(item.get("value", {}), f"{where}.value")
        if value is not None:
            result[item["key"]] = value
    return result


def _status_is_error(status: Any, path: str) -> bool:
    if status is None:
        return False
    if not isinstance(status, Mapping):
        raise FieldError(path, f"expected a status object, got {_short(status)}")
    code = status.get("code", 0)
    if isinstance(code, str):
        if code in _STATUS_NAMES:
            return _STATUS_NAMES[code] == STATUS_CODE_ERROR
        if code.isdigit():
            return int(code) == STATUS_CODE_ERROR
    elif isinstance(code, int) and not isinstance(code, bool):
        return code == STATUS_CODE_ERROR
    raise FieldError(f"{path}.code", f"unknown status code {_short(code)}")


def span(obj: Any, path: str) -> _decode.SpanData:
    """One OTLP JSON ``Span`` object as SpanData."""
    if not isinstance(obj, Mapping):
        raise FieldError(path, f"expected a span object, got {_short(obj)}")
    trace_id = decode_id(_field(obj, "traceId", "trace_id"), 16, f"{path}.traceId")
    span_id = decode_id(_field(obj, "spanId", "span_id"), 8, f"{path}.spanId")
    parent_id = _optional_span_id(
        _field(obj, "parentSpanId", "parent_span_id"), f"{path}.parentSpanId"
    )
    start = _nanos(
        _field(obj, "startTimeUnixNano", "start_time_unix_nano"),
        f"{path}.startTimeUnixNano",
        required=True,
    )
    end = _nanos(
        _field(obj, "endTimeUnixNano", "end_time_unix_nano"),
        f"{path}.endTimeUnixNano",
        required=False,
    )
    name = obj.get("name", "")
    if not isinstance(name, str):
        raise FieldError(f"{path}.name", f"expected a string, got {_short(name)}")
    events_json = obj.get("events") or []
    if not isinstance(events_json, list):
        raise FieldError(f"{path}.events", f"expected a list, got {_short(events_json)}")
    events = []
    for index, event in enumerate(events_json):
        where = f"{path}.events[{index}]"
        if not isinstance(event, Mapping):
            raise FieldError(where, f"expected an event object, got {_short(event)}")
        event_name = event.get("name", "")
        if not isinstance(event_name, str):
            raise FieldError(f"{where}.name", f"expected a string, got {_short(event_name)}")
        time_ns = _nanos(
            _field(event, "timeUnixNano", "time_unix_nano"), f"{where}.timeUnixNano", required=True
        )
        assert time_ns is not None
        events.append(
            _decode.EventData(
                event_name, time_ns, attributes(event.get("attributes"), f"{where}.attributes")
            )
        )
    assert start is not None
    return _decode.SpanData(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        name=name,
        start_ns=start,
        end_ns=end,
        attributes=attributes(obj.get("attributes"), f"{path}.attributes"),
        events=events,
        error=_status_is_error(obj.get("status"), f"{path}.status"),
    )


def _list(obj: Mapping[str, Any], keys: Sequence[str], path: str) -> tuple[str, list[Any]]:
    for key in keys:
        if key in obj:
            value = obj[key]
            if value is None:
                return key, []
            if not isinstance(value, list):
                raise FieldError(f"{path}{key}", f"expected a list, got {_short(value)}")
            return key, value
    return keys[0], []


def unwrap_request(document: Any) -> Mapping[str, Any]:
    """The request object of a document: the request itself, or one wrapped by Jaeger's
    or Tempo's trace API. Raises FieldError naming what was found instead."""
    if not isinstance(document, Mapping):
        raise FieldError("(document)", f"expected a JSON object, got {type(document).__name__}")
    request: Mapping[str, Any] = document
    for _ in range(2):
        if any(key in request for key in _RESOURCE_SPANS_KEYS):
            return request
        inner = next(
            (request[k] for k in _WRAPPER_KEYS if isinstance(request.get(k), Mapping)), None
        )
        if inner is None:
            break
        request = inner
    document = request
    if "data" in document and isinstance(document["data"], list):
        raise FieldError(
            "data",
            "this is Jaeger's own JSON format, not OTLP; fetch the trace from Jaeger's "
            "OTLP API (/api/v3/traces/{id}) instead",
        )
    raise FieldError("(document)", f"no resourceSpans (keys: {_short(sorted(document))})")


def request_spans(
    document: Any,
    on_error: Callable[[FieldError], None],
    keep: Callable[[_decode.SpanData], _decode.SpanData] | None = None,
) -> Iterator[_decode.SpanData]:
    """Every readable span of one request document; each unreadable one is reported to
    ``on_error`` and skipped. ``keep`` may slim a span down before it is yielded."""
    try:
        request = unwrap_request(document)
        key, resource_spans = _list(request, _RESOURCE_SPANS_KEYS, "")
    except FieldError as error:
        on_error(error)
        return
    for r_index, resource in enumerate(resource_spans):
        r_path = f"{key}[{r_index}]"
        if not isinstance(resource, Mapping):
            on_error(FieldError(r_path, f"expected an object, got {_short(resource)}"))
            continue
        try:
            scope_key, scopes = _list(resource, _SCOPE_SPANS_KEYS, f"{r_path}.")
        except FieldError as error:
            on_error(error)
            continue
        service_name = _service_name(resource.get("resource"), f"{r_path}.resource")
        for s_index, scope in enumerate(scopes):
            s_path = f"{r_path}.{scope_key}[{s_index}]"
            if not isinstance(scope, Mapping):
                on_error(FieldError(s_path, f"expected an object, got {_short(scope)}"))
                continue
            spans = scope.get("spans") or []
            if not isinstance(spans, list):
                on_error(FieldError(f"{s_path}.spans", f"expected a list, got {_short(spans)}"))
                continue
            for index, obj in enumerate(spans):
                try:
                    data = span(obj, f"{s_path}.spans[{index}]")
                except FieldError as error:
                    on_error(error)
                    continue
                data.service_name = service_name
                yield data if keep is None else keep(data)


def _service_name(resource: Any, path: str) -> str | None:
    """``service.name`` of a ``Resource`` object, or None (a bad resource is not an error:
    the spans are still readable)."""
    if not isinstance(resource, Mapping):
        return None
    try:
        name = attributes(resource.get("attributes"), f"{path}.attributes").get(SERVICE_NAME)
    except FieldError:
        return None
    return name if isinstance(name, str) else None


# --- writing ----------------------------------------------------------------------------

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def _hex_ids(obj: Any) -> None:
    """Turn the base64 ids proto3 JSON writes into the hex ids OTLP/JSON specifies."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _ID_FIELDS and isinstance(value, str) and value:
                obj[key] = base64.b64decode(value).hex()
            else:
                _hex_ids(value)
    elif isinstance(obj, list):
        for item in obj:
            _hex_ids(item)


def request_dict(spans: Sequence[ReadableSpan], *, hex_ids: bool = True) -> dict[str, Any]:
    """The ``ExportTraceServiceRequest`` of ``spans`` as a JSON-ready dict.

    Args:
        spans: ended SDK spans.
        hex_ids: write ids as hex and enums as numbers, as the collector's file exporter
            does (OTLP/JSON); False gives plain proto3 JSON (base64 ids, enum names).
    """
    # Imported here: protobuf and the OTLP encoders are ~20 ms of every start-up.
    from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    message = encode_spans(spans)
    result: dict[str, Any] = MessageToDict(message, use_integers_for_enums=hex_ids)
    if hex_ids:
        _hex_ids(result)
    return result


def request_line(spans: Sequence[ReadableSpan], *, hex_ids: bool = True) -> str:
    """One line of OTLP JSON lines: the request of ``spans``, without a newline."""
    return json.dumps(request_dict(spans, hex_ids=hex_ids), separators=(",", ":"), allow_nan=False)


class OTLPJSONLinesExporter(SpanExporter):
    """A span exporter writing one OTLP JSON request per line, like the collector's file
    exporter, to a path (appended) or an open text stream. For tests and offline export.

    Args:
        target: a file path, or a text stream (not closed by :meth:`shutdown`).
        hex_ids: hex ids and numeric enums (OTLP/JSON, the default) or proto3 JSON.
    """

    def __init__(self, target: str | os.PathLike[str] | IO[str], *, hex_ids: bool = True) -> None:
        if isinstance(target, str | os.PathLike):
            self._stream: IO[str] = open(target, "a", encoding="utf-8")  # noqa: SIM115
            self._owned = True
        else:
            self._stream = target
            self._owned = False
        self._hex_ids = hex_ids

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write one line for this batch."""
        try:
            self._stream.write(request_line(spans, hex_ids=self._hex_ids) + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the file if this exporter opened it."""
        if self._owned:
            self._stream.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Every export is flushed as written."""
        return True
