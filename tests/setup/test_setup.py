"""configure(): providers, exporters and metrics from arguments and the standard variables."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics as metrics_api
from opentelemetry import trace
from opentelemetry._logs import _internal as logs_internal
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

from decisiontrace import setup
from decisiontrace.models import RunStatus
from decisiontrace.pipeline import metrics
from decisiontrace.pipeline.sampling import KeepEveryRunSampler
from decisiontrace.setup import Telemetry, configure
from decisiontrace.stores import MemoryStore, open_store
from decisiontrace.tracking.tracker import DecisionTracker

# A port nothing listens on, with short timeouts, for configurations that must not
# reach anything.
NOWHERE = "http://127.0.0.1:9"


def reset_globals() -> None:
    """Forget the global providers, as opentelemetry-python's own tests do."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None
    metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()
    logs_internal._LOGGER_PROVIDER_SET_ONCE = Once()
    logs_internal._LOGGER_PROVIDER = None
    logs_internal._PROXY_LOGGER_PROVIDER = logs_internal.ProxyLoggerProvider()


@pytest.fixture(autouse=True)
def fresh_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variables from the environment, no global providers, no active setup."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    reset_globals()
    yield
    active = setup._active
    if active is not None:
        active.shutdown(2_000)
    setup._active = None
    reset_globals()


def run_once(tracker: DecisionTracker, goal: str = "goal", *, success: bool = True) -> str:
    with tracker.run(goal, "a goal") as run:
        decision_id = tracker.decide(
            intent="pick", options=[{"id": "a"}], chosen="a", reasoning="r"
        )
        tracker.record_outcome(decision_id=decision_id, success=success, tokens_used=10)
    return run.run_id


def test_store_alone_follows_the_variables_and_a_plain_tracker_records_through_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    telemetry = configure(store=url)
    assert isinstance(telemetry.tracer_provider, TracerProvider)
    assert trace.get_tracer_provider() is telemetry.tracer_provider
    assert telemetry.span_processors == []
    assert telemetry.meter_provider is None  # metrics follow the span exporters: none
    run_id = run_once(DecisionTracker("plain"))  # no tracer_provider: the global one
    telemetry.shutdown()
    with open_store(url) as store:
        run = store.load_run(run_id)
    assert run is not None and run.status == RunStatus.COMPLETED


@pytest.mark.parametrize(
    ("variables", "arguments", "exporter_type"),
    [
        ({"OTEL_TRACES_EXPORTER": "otlp"}, {}, GrpcSpanExporter),  # the Python SDK's default
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, {}, HttpSpanExporter),
        (
            {
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            {},
            HttpSpanExporter,
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, {"protocol": "grpc"}, GrpcSpanExporter),
        ({"OTEL_TRACES_EXPORTER": "console"}, {}, ConsoleSpanExporter),
        ({"OTEL_TRACES_EXPORTER": "console"}, {"exporter": "otlp"}, GrpcSpanExporter),
    ],
)
def test_the_exporter_follows_variables_and_arguments_win(
    monkeypatch: pytest.MonkeyPatch,
    variables: dict[str, str],
    arguments: dict[str, Any],
    exporter_type: type,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    telemetry = configure(store="memory://", endpoint=NOWHERE, export_timeout=0.2, **arguments)
    [span_processor] = telemetry.span_processors
    assert type(span_processor.span_exporter) is exporter_type


def test_several_exporters_and_the_http_signal_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console, otlp")
    telemetry = configure(
        store="memory://",
        protocol="http/protobuf",
        endpoint="http://127.0.0.1:9/",
        export_timeout=0.2,
        metrics_exporter="none",
    )
    console, otlp = (p.span_exporter for p in telemetry.span_processors)
    assert isinstance(console, ConsoleSpanExporter)
    assert isinstance(otlp, HttpSpanExporter)
    assert otlp._endpoint == "http://127.0.0.1:9/v1/traces"


def test_resource_from_the_variables_and_the_service_name_argument_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,team=agents")
    telemetry = configure(store="memory://", exporter="none")
    attributes = telemetry.tracer_provider.resource.attributes
    assert attributes["service.name"] == "from-env"
    assert attributes["team"] == "agents"
    telemetry.shutdown()
    reset_globals()
    telemetry = configure(
        store="memory://",
        exporter="none",
        service_name="explicit",
        resource_attributes={"team": "x"},
    )
    attributes = telemetry.tracer_provider.resource.attributes
    assert (attributes["service.name"], attributes["team"]) == ("explicit", "x")
    assert attributes["deployment.environment"] == "test"


def test_the_sampler_variables_choose_what_is_exported_but_every_run_is_recorded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    telemetry = configure(store=MemoryStore(), exporter="none")
    sampler = telemetry.tracer_provider.sampler
    assert isinstance(sampler, KeepEveryRunSampler)
    assert sampler.export_sampler is not None
    exported = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exported))
    run_id = run_once(DecisionTracker("sampled-out"))
    assert telemetry.force_flush(5_000)
    assert telemetry.store.load_run(run_id) is not None
    assert exported.get_finished_spans() == ()


def test_export_ratio_wins_over_the_sampler_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    telemetry = configure(store="memory://", exporter="none", export_ratio=0.25)
    sampler = telemetry.tracer_provider.sampler
    assert isinstance(sampler, KeepEveryRunSampler)
    assert (sampler.export_ratio, sampler.export_sampler) == (0.25, None)


def test_an_unknown_sampler_variable_warns_and_exports_everything(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    telemetry = configure(store="memory://", exporter="none")
    assert "unknown OTEL_TRACES_SAMPLER 'sometimes'" in caplog.text
    sampler = telemetry.tracer_provider.sampler
    assert isinstance(sampler, KeepEveryRunSampler) and sampler.export_ratio == 1.0


def test_an_installed_provider_is_kept_and_only_gets_processors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    users_exporter = InMemorySpanExporter()
    users_provider = TracerProvider()
    users_provider.add_span_processor(SimpleSpanProcessor(users_exporter))
    trace.set_tracer_provider(users_provider)

    with caplog.at_level(logging.WARNING, "decisiontrace"):
        telemetry = configure(store=MemoryStore(), service_name="ignored", export_ratio=0.5)
    assert "service_name, export_ratio ignored" in caplog.text
    assert telemetry.tracer_provider is users_provider
    assert trace.get_tracer_provider() is users_provider
    assert telemetry.span_processors == []  # no exporter unless asked: the owner has one
    run_id = run_once(DecisionTracker("user"))
    assert telemetry.force_flush(5_000)
    assert telemetry.store.load_run(run_id) is not None
    assert len(users_exporter.get_finished_spans()) == 2

    telemetry.shutdown()
    # The user's provider still works; only what configure() added has stopped.
    with users_provider.get_tracer("after").start_as_current_span("still exported"):
        pass
    assert users_exporter.get_finished_spans()[-1].name == "still exported"
    assert telemetry.processor._shutdown
    users_provider.shutdown()


def test_an_installed_provider_gets_an_exporter_when_asked() -> None:
    users_provider = TracerProvider()
    trace.set_tracer_provider(users_provider)
    telemetry = configure(store="memory://", exporter="console", metrics_exporter="none")
    [span_processor] = telemetry.span_processors
    assert isinstance(span_processor.span_exporter, ConsoleSpanExporter)
    assert users_provider.sampler is not None
    assert not isinstance(users_provider.sampler, KeepEveryRunSampler)
    users_provider.shutdown()


def test_an_explicit_provider_is_used_and_the_global_one_left_alone() -> None:
    provider = TracerProvider()
    telemetry = configure(store="memory://", tracer_provider=provider)
    assert telemetry.tracer_provider is provider
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    run_id = run_once(DecisionTracker("explicit", tracer_provider=provider))
    telemetry.shutdown()
    assert telemetry.store.load_run(run_id) is not None
    provider.shutdown()


def test_calling_configure_again_returns_the_active_configuration(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = configure(store="memory://", exporter="none")
    assert configure(store="memory://", exporter="console") is first
    assert "configure() called again" in caplog.text
    first.shutdown()
    reset_globals()
    second = configure(store="memory://", exporter="none")
    assert second is not first


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"exporter": "zipkin"}, "exporter: unknown exporter 'zipkin'"),
        ({"exporter": 1}, "exporter must be a str"),
        ({"metrics_exporter": "prometheus"}, "metrics_exporter: unknown exporter"),
        ({"protocol": "http/json"}, "protocol must be one of grpc, http/protobuf"),
        ({"endpoint": "ftp://collector"}, "endpoint must be an http:// or https:// URL"),
        ({"endpoint": ""}, "endpoint must be a non-empty URL"),
        ({"export_ratio": 2}, "export_ratio must be a number from 0.0 to 1.0"),
        ({"headers": {"k": 1}}, "headers must be a mapping of str to str"),
        ({"export_timeout": 0}, "export_timeout must be a positive number"),
        ({"service_name": ""}, "service_name must be a non-empty str"),
        ({"resource_attributes": ["a"]}, "resource_attributes must be a mapping"),
        ({"tracer_provider": object()}, "tracer_provider must be an opentelemetry.sdk"),
        ({"meter_provider": object()}, "meter_provider must be an OpenTelemetry MeterProvider"),
        ({"store": "nosuch://x"}, "unknown store URL scheme"),
    ],
)
def test_bad_arguments_raise_value_error_and_change_nothing(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        configure(**arguments)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    assert setup._active is None


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OTEL_TRACES_EXPORTER", "jaeger", "OTEL_TRACES_EXPORTER: unknown exporter 'jaeger'"),
        ("OTEL_METRICS_EXPORTER", "prometheus", "OTEL_METRICS_EXPORTER: unknown exporter"),
        (
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "udp",
            "OTEL_EXPORTER_OTLP_PROTOCOL: unsupported OTLP protocol 'udp'",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "http/json",
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: unsupported",
        ),
    ],
)
def test_bad_variables_raise_value_error_naming_them(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match="^" + message):
        configure(store="memory://")
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


# --- metrics ------------------------------------------------------------------------------


def test_metrics_go_to_an_installed_meter_provider() -> None:
    reader = InMemoryMetricReader()
    metrics_api.set_meter_provider(MeterProvider(metric_readers=[reader]))
    telemetry = configure(store="memory://", exporter="none")
    assert telemetry.meter_provider is metrics_api.get_meter_provider()
    run_once(DecisionTracker("metered"), "metered-goal")
    telemetry.shutdown()
    data = reader.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert names >= {metrics.DECISIONS, metrics.OUTCOMES, metrics.RUNS, metrics.RUN_DURATION}


def test_metrics_go_to_an_explicit_meter_provider() -> None:
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    telemetry = configure(store="memory://", exporter="none", meter_provider=meter_provider)
    assert telemetry.meter_provider is meter_provider
    run_once(DecisionTracker("metered"))
    assert telemetry.force_flush(5_000)
    assert reader.get_metrics_data() is not None
    telemetry.shutdown()
    meter_provider.shutdown()


def test_otlp_traces_bring_an_otlp_meter_provider_installed_globally() -> None:
    telemetry = configure(store="memory://", exporter="otlp", endpoint=NOWHERE, export_timeout=0.2)
    meter_provider = telemetry.meter_provider
    assert isinstance(meter_provider, MeterProvider)
    assert metrics_api.get_meter_provider() is meter_provider
    telemetry.shutdown(2_000)


def test_the_handle_names_what_it_set_up() -> None:
    telemetry = configure(store="memory://", exporter="none")
    assert isinstance(telemetry, Telemetry)
    assert telemetry.store is telemetry.processor.store
    assert telemetry.force_flush(5_000)
    telemetry.shutdown()
    telemetry.shutdown()  # twice is fine
    assert setup._active is None


# --- local first ----------------------------------------------------------------------------

LOCAL_ONLY = """
import gc
import sys
import decisiontrace as dt

telemetry = dt.configure(store=sys.argv[1])
tracker = dt.DecisionTracker("local")
with tracker.run("local-goal", "stored, never exported") as run:
    decision_id = tracker.decide(intent="pick", options=[{"id": "a"}], chosen="a", reasoning="r")
    tracker.record_outcome(decision_id=decision_id, success=True)
telemetry.shutdown()
exporters = sorted(
    type(o).__name__ for o in gc.get_objects() if type(o).__name__.endswith("Exporter")
)
print(run.run_id, telemetry.span_processors, telemetry.meter_provider, exporters)
"""


def _listen(port: int) -> socket.socket | None:
    """A listener on the OTLP default port (None if something else holds it)."""
    listener = socket.socket()
    try:
        listener.bind(("127.0.0.1", port))
    except OSError:
        listener.close()
        return None
    listener.listen(8)
    listener.setblocking(False)
    return listener


def test_without_endpoint_or_exporter_runs_are_stored_and_nothing_is_exported(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    # Where the SDK's exporters would connect by default: nothing may arrive there.
    listeners = [listener for port in (4317, 4318) if (listener := _listen(port)) is not None]
    try:
        done = subprocess.run(
            [sys.executable, "-c", LOCAL_ONLY, url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for listener in listeners:
            with pytest.raises(BlockingIOError):
                listener.accept()
    finally:
        for listener in listeners:
            listener.close()
    assert done.returncode == 0, done.stderr
    run_id, rest = done.stdout.split(" ", 1)
    # No export processor, no metrics pipeline, no OTLP exporter made.
    assert rest.strip() == "[] None []"
    assert "Failed to export" not in done.stderr
    assert "decisiontrace" not in done.stderr  # and no warning either
    with open_store(url) as store:
        run = store.load_run(run_id)
    assert run is not None and run.status == RunStatus.COMPLETED


@pytest.mark.parametrize(
    "variables",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": NOWHERE},
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": NOWHERE},
        {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TIMEOUT": "0.2"},
    ],
)
def test_an_otlp_variable_alone_turns_export_on(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    telemetry = configure(store="memory://", export_timeout=0.2)
    [span_processor] = telemetry.span_processors
    assert type(span_processor.span_exporter) is GrpcSpanExporter
    assert isinstance(telemetry.meter_provider, MeterProvider)
    telemetry.shutdown(2_000)


def test_an_endpoint_argument_alone_turns_export_on() -> None:
    telemetry = configure(store="memory://", endpoint=NOWHERE, export_timeout=0.2)
    [span_processor] = telemetry.span_processors
    assert type(span_processor.span_exporter) is GrpcSpanExporter
    telemetry.shutdown(2_000)


def test_a_metrics_endpoint_alone_exports_metrics_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", NOWHERE)
    telemetry = configure(store="memory://", export_timeout=0.2)
    assert telemetry.span_processors == []
    assert isinstance(telemetry.meter_provider, MeterProvider)
    telemetry.shutdown(2_000)


def test_evaluation_events_stay_local_without_an_exporter() -> None:
    telemetry = configure(store="memory://")
    assert telemetry.logger_provider is None
    assert not isinstance(logs_internal.get_logger_provider(), SdkLoggerProvider)
    telemetry.shutdown(2_000)


def test_evaluation_events_go_where_the_spans_go_or_where_the_logs_variables_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    telemetry = configure(
        store="memory://", endpoint=NOWHERE, protocol="http/protobuf", export_timeout=0.2
    )
    assert isinstance(telemetry.logger_provider, SdkLoggerProvider)
    assert logs_internal.get_logger_provider() is telemetry.logger_provider
    telemetry.shutdown(2_000)
    reset_globals()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", NOWHERE)
    logs_only = configure(store="memory://", export_timeout=0.2)
    assert logs_only.span_processors == []
    assert isinstance(logs_only.logger_provider, SdkLoggerProvider)
    logs_only.shutdown(2_000)


def test_an_installed_logger_provider_is_used_and_kept_running() -> None:
    mine = SdkLoggerProvider()
    logs_internal.set_logger_provider(mine)
    telemetry = configure(store="memory://", exporter="none")
    assert telemetry.logger_provider is mine
    telemetry.shutdown(2_000)
    assert logs_internal.get_logger_provider() is mine
    mine.shutdown()
