"""The standard OpenTelemetry environment variables, read into exporters and samplers.

``configure()`` follows ``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``,
``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]{PROTOCOL,ENDPOINT,HEADERS,TIMEOUT}`` and
``OTEL_TRACES_SAMPLER[_ARG]`` through these helpers. OTLP exporters are imported only
when chosen, so an agent that exports nothing never loads gRPC.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, LogRecordExporter
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    DEFAULT_OFF,
    DEFAULT_ON,
    ParentBasedTraceIdRatio,
    Sampler,
    TraceIdRatioBased,
)

logger = logging.getLogger("decisiontrace")

EXPORTERS = ("otlp", "console", "none")
PROTOCOLS = ("grpc", "http/protobuf")
# What the Python SDK picks for "otlp" when no protocol variable is set.
DEFAULT_PROTOCOL = "grpc"
_SIGNAL_PATHS = {"traces": "/v1/traces", "metrics": "/v1/metrics", "logs": "/v1/logs"}


def env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def exporter_names(value: str, source: str, allowed: tuple[str, ...] = EXPORTERS) -> list[str]:
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    for name in names:
        if name not in allowed:
            raise ValueError(
                f"{source}: unknown exporter {name!r}; use one of {', '.join(allowed)}"
            )
    return [name for name in names if name != "none"]


def protocol(explicit: str | None, signal: str) -> str:
    for value, source in (
        (explicit, "protocol"),
        (
            env(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"),
            f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL",
        ),
        (env("OTEL_EXPORTER_OTLP_PROTOCOL"), "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ):
        if value is not None:
            if value not in PROTOCOLS:
                raise ValueError(
                    f"{source}: unsupported OTLP protocol {value!r}; "
                    f"use one of {', '.join(PROTOCOLS)}"
                )
            return value
    return DEFAULT_PROTOCOL


def otlp_configured(endpoint: str | None, protocol: str | None, signal: str) -> bool:
    """OTLP export is asked for ``signal`` without naming an exporter: an endpoint or a
    protocol is given, as an argument or by the ``OTEL_EXPORTER_OTLP_*`` variables."""
    if endpoint is not None or protocol is not None:
        return True
    return any(
        env(f"OTEL_EXPORTER_OTLP_{part}{setting}") is not None
        for part in ("", f"{signal.upper()}_")
        for setting in ("ENDPOINT", "PROTOCOL")
    )


def env_sampler() -> Sampler | None:
    """The sampler OTEL_TRACES_SAMPLER / _ARG name, read as the SDK reads them."""
    name = env("OTEL_TRACES_SAMPLER")
    if name is None:
        return None
    name = name.lower()
    fixed = {
        "always_on": ALWAYS_ON,
        "always_off": ALWAYS_OFF,
        "parentbased_always_on": DEFAULT_ON,
        "parentbased_always_off": DEFAULT_OFF,
    }
    if name in fixed:
        return fixed[name]
    if name not in ("traceidratio", "parentbased_traceidratio"):
        logger.warning("decisiontrace: unknown OTEL_TRACES_SAMPLER %r; exporting every trace", name)
        return None
    try:
        rate = float(env("OTEL_TRACES_SAMPLER_ARG") or "")
        return TraceIdRatioBased(rate) if name == "traceidratio" else ParentBasedTraceIdRatio(rate)
    except (TypeError, ValueError):
        logger.warning(
            "decisiontrace: OTEL_TRACES_SAMPLER_ARG is not a ratio from 0 to 1; using 1.0"
        )
        return None


# --- exporters ------------------------------------------------------------------------


def signal_url(endpoint: str, signal: str) -> str:
    """OTLP/HTTP: a base endpoint plus the signal's path, as for OTEL_EXPORTER_OTLP_ENDPOINT."""
    return endpoint.rstrip("/") + _SIGNAL_PATHS[signal]


def otlp_options(
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    timeout: float | None,
    signal: str,
    protocol: str,
) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if endpoint is not None:
        options["endpoint"] = endpoint if protocol == "grpc" else signal_url(endpoint, signal)
    if headers is not None:
        options["headers"] = dict(headers)
    if timeout is not None:
        options["timeout"] = float(timeout)
    return options


def span_exporter(name: str, protocol: str, options: dict[str, Any]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(**options)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    return HttpSpanExporter(**options)


def metric_exporter(name: str, protocol: str, options: dict[str, Any]) -> MetricExporter:
    if name == "console":
        return ConsoleMetricExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
            OTLPMetricExporter as GrpcMetricExporter,
        )

        return GrpcMetricExporter(**options)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter as HttpMetricExporter,
    )

    return HttpMetricExporter(**options)


def log_exporter(name: str, protocol: str, options: dict[str, Any]) -> LogRecordExporter:
    if name == "console":
        return ConsoleLogRecordExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
            OTLPLogExporter as GrpcLogExporter,
        )

        return GrpcLogExporter(**options)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (
        OTLPLogExporter as HttpLogExporter,
    )

    return HttpLogExporter(**options)


# --- configure ------------------------------------------------------------------------------
