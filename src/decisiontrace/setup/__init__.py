"""``configure()``: one call that sets up storage, export and metrics for an agent.

It follows the standard OpenTelemetry environment variables, so an agent is pointed at
a collector without a code change, and explicit arguments win over them. It is the only
place the package installs a global provider, and it never replaces one the user
installed: with an SDK ``TracerProvider`` already in place it only adds its processors.
``docs/export.md`` is the user's guide.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import _logs as logs_api
from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util.types import AttributeValue

from decisiontrace.pipeline.metrics import RunMetrics
from decisiontrace.pipeline.processor import RunRecordProcessor
from decisiontrace.pipeline.sampling import KeepEveryRunSampler, KeepFailedRunsProcessor
from decisiontrace.setup import _otel_env
from decisiontrace.setup._otel_env import PROTOCOLS
from decisiontrace.setup._providers import SamplerWrap, find_sdk_provider, record_every_run
from decisiontrace.stores import RunStore

logger = logging.getLogger("decisiontrace")


_lock = threading.Lock()
_active: Telemetry | None = None


class Telemetry:
    """What :func:`configure` set up, and the way to flush and shut it down.

    Attributes:
        tracer_provider: the provider spans go through (created, or the user's).
        meter_provider: the provider metrics are recorded with, or None without metrics.
        processor: the :class:`RunRecordProcessor` storing every run.
        store: the run store.
        span_processors: the export processors added to ``tracer_provider``.
        logger_provider: the provider evaluation events are emitted through, or None.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider,
        owns_tracer_provider: bool,
        meter_provider: metrics_api.MeterProvider | None,
        owns_meter_provider: bool,
        processor: RunRecordProcessor,
        span_processors: list[KeepFailedRunsProcessor],
        logger_provider: logs_api.LoggerProvider | None = None,
        owns_logger_provider: bool = False,
        sampler_wrap: SamplerWrap | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.processor = processor
        self.store: RunStore = processor.store
        self.span_processors = span_processors
        self._owns_tracer_provider = owns_tracer_provider
        self._owns_meter_provider = owns_meter_provider
        self.logger_provider = logger_provider
        self._owns_logger_provider = owns_logger_provider
        self._sampler_wrap = sampler_wrap
        self._shutdown = False

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Store every ended run, export what is queued and push metrics.

        Returns:
            True if all of it finished within ``timeout_millis``.
        """
        deadline = time.monotonic() + timeout_millis / 1000
        done = self.processor.force_flush(_remaining(deadline))
        for span_processor in self.span_processors:
            done = span_processor.force_flush(_remaining(deadline)) and done
        if isinstance(self.meter_provider, MeterProvider):
            done = self.meter_provider.force_flush(_remaining(deadline)) and done
        if isinstance(self.logger_provider, LoggerProvider):
            done = self.logger_provider.force_flush(_remaining(deadline)) and done
        return done

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Store every run (open ones as cancelled), export, push metrics, and stop.

        Only what :func:`configure` created is shut down: a tracer or meter provider
        the user installed keeps running (its metrics are flushed), with the processors
        configure() added to it stopped. Returns within about ``timeout_millis`` even
        when the endpoint is down.
        """
        global _active
        if self._shutdown:
            return
        self._shutdown = True
        deadline = time.monotonic() + timeout_millis / 1000
        # Runs first: storing them is what matters most, and it feeds the metrics.
        self.processor.shutdown(_remaining(deadline))
        for span_processor in self.span_processors:
            span_processor.shutdown(_remaining(deadline))
        if isinstance(self.meter_provider, MeterProvider):
            if self._owns_meter_provider:
                self.meter_provider.shutdown(_remaining(deadline))
            else:
                self.meter_provider.force_flush(_remaining(deadline))
        if isinstance(self.logger_provider, LoggerProvider):
            if self._owns_logger_provider:
                self.logger_provider.shutdown()
            else:
                self.logger_provider.force_flush(_remaining(deadline))
        if self._owns_tracer_provider:
            self.tracer_provider.shutdown()  # its processors are all stopped already
        elif self._sampler_wrap is not None:
            self._sampler_wrap.restore()
        with _lock:
            if _active is self:
                _active = None


def active_telemetry() -> Telemetry | None:
    """The configuration :func:`configure` made and that is not shut down, or None."""
    return _active


def _remaining(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


# --- argument and environment checks ------------------------------------------------------


def _check_arguments(
    *,
    service_name: Any,
    resource_attributes: Any,
    exporter: Any,
    endpoint: Any,
    protocol: Any,
    headers: Any,
    export_timeout: Any,
    metrics_exporter: Any,
    tracer_provider: Any,
    meter_provider: Any,
    logs_exporter: Any = None,
    logger_provider: Any = None,
) -> None:
    if service_name is not None and (not isinstance(service_name, str) or not service_name):
        raise ValueError(f"service_name must be a non-empty str, got {service_name!r}")
    if resource_attributes is not None and not isinstance(resource_attributes, Mapping):
        raise ValueError(f"resource_attributes must be a mapping, got {resource_attributes!r}")
    for name, value in (
        ("exporter", exporter),
        ("metrics_exporter", metrics_exporter),
        ("logs_exporter", logs_exporter),
    ):
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a str such as 'otlp', got {value!r}")
            _otel_env.exporter_names(value, name)
    if endpoint is not None:
        if not isinstance(endpoint, str) or not endpoint.strip():
            raise ValueError(f"endpoint must be a non-empty URL, got {endpoint!r}")
        scheme = endpoint.partition("://")[0].lower() if "://" in endpoint else None
        if scheme not in (None, "http", "https"):
            raise ValueError(f"endpoint must be an http:// or https:// URL, got {endpoint!r}")
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    if headers is not None and not (
        isinstance(headers, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise ValueError(f"headers must be a mapping of str to str, got {headers!r}")
    if export_timeout is not None and (
        isinstance(export_timeout, bool)
        or not isinstance(export_timeout, int | float)
        or export_timeout <= 0
    ):
        raise ValueError(
            f"export_timeout must be a positive number of seconds, got {export_timeout!r}"
        )
    if tracer_provider is not None and find_sdk_provider(tracer_provider) is None:
        raise ValueError(
            "tracer_provider must be an opentelemetry.sdk.trace.TracerProvider, or a "
            "wrapper holding one (such as logfire's)"
        )
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        raise ValueError("meter_provider must be an OpenTelemetry MeterProvider")
    if logger_provider is not None and not callable(getattr(logger_provider, "get_logger", None)):
        raise ValueError("logger_provider must be an OpenTelemetry LoggerProvider")


def configure(
    *,
    store: RunStore | str | os.PathLike[str] | None = None,
    service_name: str | None = None,
    resource_attributes: Mapping[str, AttributeValue] | None = None,
    exporter: str | None = None,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    export_timeout: float | None = None,
    export_ratio: float | None = None,
    metrics_exporter: str | None = None,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics_api.MeterProvider | None = None,
    logs_exporter: str | None = None,
    logger_provider: logs_api.LoggerProvider | None = None,
) -> Telemetry:
    """Set up run storage, span export and metrics in one call.

    Every run is stored by a :class:`RunRecordProcessor`; spans are exported in batches;
    metrics are recorded from the stored runs. Arguments left out follow the standard
    variables (``OTEL_TRACES_EXPORTER``, ``OTEL_METRICS_EXPORTER``,
    ``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT/PROTOCOL/HEADERS/TIMEOUT``,
    ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER[_ARG]``);
    explicit arguments win over them.

    Without an SDK ``TracerProvider`` installed, one is created with the resource and a
    :class:`KeepEveryRunSampler`, and installed as the global provider, so a
    ``DecisionTracker`` created without ``tracer_provider`` records through it. With
    one installed (or passed as ``tracer_provider``), or a wrapper holding one such as
    logfire's, it is kept: the run processor is added to the SDK provider, and an
    exporter only when ``exporter`` is given (the provider's owner has usually set up
    export already). Its sampler is wrapped in a
    :class:`~decisiontrace.pipeline.sampling.RecordEveryRunSampler`, so that runs it would drop
    are still recorded and stored (not exported), and restored at shutdown. ``service_name``,
    ``resource_attributes`` and ``export_ratio`` cannot apply to it and are ignored with
    a warning. Metrics go to an SDK ``MeterProvider`` already installed (or passed),
    else to one created here with the metric exporters, installed globally.

    Calling configure() again (without ``tracer_provider``) while a configuration is
    active logs a warning and returns the active one.

    Args:
        store: the run store or its URL; default ``$DECISIONTRACE_STORE`` or the default store.
        service_name: ``service.name`` (default ``OTEL_SERVICE_NAME``).
        resource_attributes: more resource attributes (merged over ``OTEL_RESOURCE_ATTRIBUTES``).
        exporter: ``"otlp"``, ``"console"`` or ``"none"`` (comma-separated for several);
            default ``OTEL_TRACES_EXPORTER``, else ``"otlp"`` when an endpoint or a
            protocol is given (``endpoint``, ``protocol``,
            ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`` or ``..._PROTOCOL``), else
            ``"none"``: with neither, runs are only stored and nothing is sent anywhere.
        endpoint: OTLP base URL, e.g. ``http://collector:4317`` (gRPC) or
            ``http://collector:4318`` (HTTP; ``/v1/traces`` and ``/v1/metrics`` are
            appended); default the exporters' variables, else localhost (when
            ``exporter`` asks for OTLP).
        protocol: ``"grpc"`` or ``"http/protobuf"``; default
            ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``, else ``"grpc"`` (the Python SDK's choice).
        headers: headers sent with every export (default ``OTEL_EXPORTER_OTLP_HEADERS``).
        export_timeout: seconds an export may take, retries included (default
            ``OTEL_EXPORTER_OTLP_TIMEOUT``, else 10).
        export_ratio: share of traces to export, 0.0 to 1.0; every run is still stored,
            and runs that failed or reported a problem are always exported. Default: the
            ratio ``OTEL_TRACES_SAMPLER`` sets, else 1.0.
        metrics_exporter: like ``exporter``, for metrics; default ``OTEL_METRICS_EXPORTER``,
            else the span exporters, else ``"otlp"`` when
            ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` or ``..._PROTOCOL`` is set, else none.
        tracer_provider: add to this provider (or the SDK provider it wraps) instead of
            the global one.
        meter_provider: record metrics with this provider.
        logs_exporter: like ``exporter``, for the log records that carry evaluation
            events (``gen_ai.evaluation.result``, see :func:`decisiontrace.evaluate`);
            default ``OTEL_LOGS_EXPORTER``, else the span exporters. They go to an SDK
            ``LoggerProvider`` already installed (or passed), else to one created here
            (same resource as the spans), installed globally.
        logger_provider: emit evaluation events through this provider.

    Returns:
        The :class:`Telemetry` handle; call its ``shutdown()`` before the process exits.

    Raises:
        ValueError: an argument, or an exporter or protocol variable, is invalid.
        TypeError: ``store`` is of the wrong type.
    """
    global _active
    _check_arguments(
        service_name=service_name,
        resource_attributes=resource_attributes,
        exporter=exporter,
        endpoint=endpoint,
        protocol=protocol,
        headers=headers,
        export_timeout=export_timeout,
        metrics_exporter=metrics_exporter,
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logs_exporter=logs_exporter,
        logger_provider=logger_provider,
    )
    sampler = None if export_ratio is None else KeepEveryRunSampler(export_ratio)
    with _lock:
        if tracer_provider is None and _active is not None:
            logger.warning(
                "decisiontrace: configure() called again; the active configuration is kept "
                "(shut it down first to configure anew)"
            )
            return _active
        current = trace.get_tracer_provider()
        # A wrapper (logfire's proxy, say) counts as the SDK provider it holds.
        in_place = find_sdk_provider(tracer_provider if tracer_provider is not None else current)
        owns_tracer_provider = in_place is None
        if owns_tracer_provider:
            # Local first: without an exporter or an endpoint, runs are stored and
            # nothing is sent anywhere (no connection attempts, no wait at exit).
            trace_source = exporter or _otel_env.env("OTEL_TRACES_EXPORTER")
            if trace_source is None and _otel_env.otlp_configured(endpoint, protocol, "traces"):
                trace_source = "otlp"
            span_exporters = _otel_env.exporter_names(
                trace_source or "none", "exporter" if exporter else "OTEL_TRACES_EXPORTER"
            )
        else:
            span_exporters = _otel_env.exporter_names(exporter, "exporter") if exporter else []
        metric_source = metrics_exporter or _otel_env.env("OTEL_METRICS_EXPORTER")
        if metric_source is not None:
            metric_exporters = _otel_env.exporter_names(
                metric_source, "metrics_exporter" if metrics_exporter else "OTEL_METRICS_EXPORTER"
            )
        elif span_exporters:
            metric_exporters = list(span_exporters)
        elif owns_tracer_provider and _otel_env.otlp_configured(endpoint, protocol, "metrics"):
            metric_exporters = ["otlp"]
        else:
            metric_exporters = []
        trace_protocol = (
            _otel_env.protocol(protocol, "traces")
            if "otlp" in span_exporters
            else _otel_env.DEFAULT_PROTOCOL
        )
        metric_protocol = (
            _otel_env.protocol(protocol, "metrics")
            if "otlp" in metric_exporters
            else _otel_env.DEFAULT_PROTOCOL
        )

        processor = RunRecordProcessor(store)
        attributes: dict[str, AttributeValue] = dict(resource_attributes or {})
        if service_name is not None:
            attributes[SERVICE_NAME] = service_name
        resource = Resource.create(attributes)

        sampler_wrap: SamplerWrap | None = None
        if in_place is not None:
            provider = in_place
            sampler_wrap = record_every_run(provider)
        else:
            if sampler is None:
                env_sampler = _otel_env.env_sampler()
                sampler = KeepEveryRunSampler(export_sampler=env_sampler) if env_sampler else None
            provider = TracerProvider(resource=resource, sampler=sampler or KeepEveryRunSampler())
        if not owns_tracer_provider:
            ignored = [
                name
                for name, value in (
                    ("service_name", service_name),
                    ("resource_attributes", resource_attributes),
                    ("export_ratio", export_ratio),
                )
                if value is not None
            ]
            if ignored:
                logger.warning(
                    "decisiontrace: configure(): %s ignored: the TracerProvider already in "
                    "place keeps its own resource and sampler",
                    ", ".join(ignored),
                )
        trace_options = _otel_env.otlp_options(
            endpoint, headers, export_timeout, "traces", trace_protocol
        )
        span_processors = [
            KeepFailedRunsProcessor(_otel_env.span_exporter(name, trace_protocol, trace_options))
            for name in span_exporters
        ]
        # The run processor first: it stores the run before export processors see it.
        provider.add_span_processor(processor)
        for span_processor in span_processors:
            provider.add_span_processor(span_processor)

        owns_meter_provider = False
        metrics_provider: metrics_api.MeterProvider | None = meter_provider
        if metrics_provider is None:
            global_meter_provider = metrics_api.get_meter_provider()
            if isinstance(global_meter_provider, MeterProvider):
                metrics_provider = global_meter_provider
            elif metric_exporters:
                metric_options = _otel_env.otlp_options(
                    endpoint, headers, export_timeout, "metrics", metric_protocol
                )
                readers: list[MetricReader] = [
                    PeriodicExportingMetricReader(
                        _otel_env.metric_exporter(name, metric_protocol, metric_options)
                    )
                    for name in metric_exporters
                ]
                metrics_provider = MeterProvider(resource=provider.resource, metric_readers=readers)
                owns_meter_provider = True
                # Logs (does not raise) if a non-SDK provider is installed already.
                metrics_api.set_meter_provider(metrics_provider)
        if metrics_provider is not None:
            processor.add_listener(RunMetrics(metrics_provider).record)

        log_source = logs_exporter or _otel_env.env("OTEL_LOGS_EXPORTER")
        if log_source is not None:
            log_exporters = _otel_env.exporter_names(
                log_source, "logs_exporter" if logs_exporter else "OTEL_LOGS_EXPORTER"
            )
        elif span_exporters:
            log_exporters = list(span_exporters)
        elif owns_tracer_provider and _otel_env.otlp_configured(endpoint, protocol, "logs"):
            log_exporters = ["otlp"]
        else:
            log_exporters = []  # local first, as for spans and metrics
        events_provider, owns_logger_provider = _logger_provider(
            logger_provider, log_exporters, provider, endpoint, headers, export_timeout, protocol
        )

        if owns_tracer_provider:
            if isinstance(current, trace.ProxyTracerProvider):
                trace.set_tracer_provider(provider)
            else:
                logger.warning(
                    "decisiontrace: a %s is installed as the global tracer provider, so "
                    "configure() cannot install its own; pass telemetry.tracer_provider to "
                    "DecisionTracker(tracer_provider=...)",
                    type(current).__name__,
                )
        telemetry = Telemetry(
            tracer_provider=provider,
            owns_tracer_provider=owns_tracer_provider,
            meter_provider=metrics_provider,
            owns_meter_provider=owns_meter_provider,
            processor=processor,
            span_processors=span_processors,
            logger_provider=events_provider,
            owns_logger_provider=owns_logger_provider,
            sampler_wrap=sampler_wrap,
        )
        if tracer_provider is None:
            _active = telemetry
        return telemetry


def _logger_provider(
    given: logs_api.LoggerProvider | None,
    exporters: list[str],
    tracer_provider: TracerProvider,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    export_timeout: float | None,
    protocol: str | None,
) -> tuple[logs_api.LoggerProvider | None, bool]:
    """The provider evaluation events go through, and whether it was created here."""
    if given is not None:
        return given, False
    installed = logs_api.get_logger_provider()
    if isinstance(installed, LoggerProvider):
        return installed, False
    if not exporters:
        return None, False
    log_protocol = (
        _otel_env.protocol(protocol, "logs") if "otlp" in exporters else _otel_env.DEFAULT_PROTOCOL
    )
    options = _otel_env.otlp_options(endpoint, headers, export_timeout, "logs", log_protocol)
    created = LoggerProvider(resource=tracer_provider.resource)
    for name in exporters:
        created.add_log_record_processor(
            BatchLogRecordProcessor(_otel_env.log_exporter(name, log_protocol, options))
        )
    # Logs (does not raise) if a non-SDK provider is installed already.
    logs_api.set_logger_provider(created)
    return created, True
