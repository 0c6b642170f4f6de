"""A sampler the user chose never costs a stored run; its export decisions stand."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    Decision,
    ParentBased,
    TraceIdRatioBased,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.util._once import Once

import decisiontrace as dt
from decisiontrace import RunRecordProcessor, setup
from decisiontrace.pipeline.sampling import RecordEveryRunSampler
from decisiontrace.setup import configure
from decisiontrace.spanmodel import semconv
from decisiontrace.stores import MemoryStore
from decisiontrace.tracking.tracker import DecisionTracker

RUNS = 20
LOW_64 = 2**64 - 1


@pytest.fixture(autouse=True)
def fresh_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variables, no global tracer provider, no active configuration."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    yield
    if setup._active is not None:
        setup._active.shutdown(2_000)
    setup._active = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


def agent_runs(tracker: DecisionTracker, llm: trace.Tracer) -> list[tuple[str, int]]:
    """RUNS runs of one decision each, whose LLM span reports 11 + 7 tokens."""

    @dt.decision("Answer", options=["llm"])
    def answer() -> str:
        with llm.start_as_current_span("chat fake-model") as span:
            span.set_attribute(semconv.GEN_AI_USAGE_INPUT_TOKENS, 11)
            span.set_attribute(semconv.GEN_AI_USAGE_OUTPUT_TOKENS, 7)
        return "llm"

    made = []
    for number in range(RUNS):
        with tracker.run("answer", input_data={"n": number}) as run:
            assert answer() == "llm"
            made.append((run.run_id, trace.get_current_span().get_span_context().trace_id))
    return made


def test_a_ratio_sampler_on_the_users_provider_stores_every_run_and_exports_its_sample(
    caplog: pytest.LogCaptureFixture,
) -> None:
    user_sampler = ParentBased(TraceIdRatioBased(0.5))
    provider = TracerProvider(sampler=user_sampler)
    exported = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exported))
    trace.set_tracer_provider(provider)
    # An instrumentation set up before configure() holds its tracer already.
    llm = trace.get_tracer("fake.llm.instrumentation")
    store = MemoryStore()
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        telemetry = configure(store=store, metrics_exporter="none")
        made = agent_runs(DecisionTracker("sampled-agent"), llm)
        with llm.start_as_current_span("outside any run") as outside:
            outside_recorded = outside.is_recording()
        assert telemetry.force_flush(10_000)

    runs = {run_id: store.load_run(run_id) for run_id, _ in made}
    assert all(run is not None for run in runs.values()), "every run stored"
    for run in runs.values():
        assert run is not None
        assert run.metrics.total_decisions == 1
        assert run.metrics.total_tokens == 18  # the LLM span of an unsampled run counts too
    # Export is still the user's sampler's choice: the trace ids inside its ratio.
    bound = round(0.5 * 2**64)
    expected = {run_id for run_id, trace_id in made if trace_id & LOW_64 < bound}
    assert 0 < len(expected) < RUNS
    exported_runs = {
        span.attributes[semconv.RUN_ID]
        for span in exported.get_finished_spans()
        if span.attributes and span.attributes.get(semconv.SPAN_KIND) == semconv.KIND_RUN
    }
    assert exported_runs == expected
    assert all(span.context.trace_flags.sampled for span in exported.get_finished_spans())
    assert not caplog.records
    # A span outside any run is still the sampler's alone: kept or dropped as it says.
    assert isinstance(outside_recorded, bool)

    telemetry.shutdown()
    assert provider.sampler is user_sampler, "the user's sampler is put back"
    assert llm.sampler is user_sampler  # type: ignore[attr-defined]


def test_spans_outside_runs_are_dropped_as_the_user_sampler_says() -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    trace.set_tracer_provider(provider)
    telemetry = configure(store=MemoryStore(), metrics_exporter="none")
    other = trace.get_tracer("web.framework")
    with other.start_as_current_span("GET /health") as span:
        assert not span.is_recording()
    assert isinstance(provider.sampler, RecordEveryRunSampler)
    telemetry.shutdown()
    assert provider.sampler is ALWAYS_OFF


def test_a_wrapper_holding_the_sdk_provider_is_seen_through() -> None:
    class VendorProxy(trace.TracerProvider):
        """A vendor's provider that forwards to the SDK provider it holds."""

        def __init__(self, inner: TracerProvider) -> None:
            self._tracer_provider = inner

        def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
            return self._tracer_provider.get_tracer(*args, **kwargs)

    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.25)))
    trace.set_tracer_provider(VendorProxy(provider))
    store = MemoryStore()
    telemetry = configure(store=store, metrics_exporter="none")
    assert telemetry.tracer_provider is provider
    made = agent_runs(DecisionTracker("proxied"), trace.get_tracer("llm"))
    assert telemetry.force_flush(10_000)
    assert all(store.load_run(run_id) is not None for run_id, _ in made)
    telemetry.shutdown()


def test_an_object_holding_no_sdk_provider_is_refused() -> None:
    class NotAProvider:
        provider = object()

    with pytest.raises(ValueError, match="tracer_provider must be"):
        configure(store=MemoryStore(), tracer_provider=NotAProvider())  # type: ignore[arg-type]


def test_a_run_a_sampler_drops_without_configure_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(RunRecordProcessor(MemoryStore()))
    tracker = DecisionTracker("unconfigured", tracer_provider=provider)
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        for _ in range(3):
            with tracker.run("goal"):
                pass
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "will not be stored" in messages[0]
    assert "KeepEveryRunSampler(export_sampler=...)" in messages[0]
    provider.shutdown()


def unsampled_parent(*, remote: bool, recording: bool) -> otel_context.Context:
    span_context = SpanContext(
        trace_id=0x1234, span_id=0x99, is_remote=remote, trace_flags=TraceFlags(0)
    )
    if recording:
        provider = TracerProvider(sampler=RecordEveryRunSampler(ALWAYS_OFF))
        span = provider.get_tracer("t").start_span(
            "run", attributes={semconv.SPAN_KIND: semconv.KIND_RUN}
        )
        assert span.is_recording()
        return trace.set_span_in_context(span)
    return trace.set_span_in_context(NonRecordingSpan(span_context))


@pytest.mark.parametrize(
    ("attributes", "remote", "recording", "decision"),
    [
        ({semconv.SPAN_KIND: semconv.KIND_RUN, "k": 1}, False, False, Decision.RECORD_ONLY),
        ({semconv.SPAN_KIND: semconv.KIND_DECISION}, True, False, Decision.RECORD_ONLY),
        ({"k": 1}, True, False, Decision.DROP),  # another service chose not to record
        ({"k": 1}, False, True, Decision.RECORD_ONLY),  # under a run recorded only
    ],
)
def test_record_every_run_sampler_turns_only_run_drops_into_record_only(
    attributes: dict[str, Any], remote: bool, recording: bool, decision: Decision
) -> None:
    sampler = RecordEveryRunSampler(ParentBased(TraceIdRatioBased(1.0)))
    parent = unsampled_parent(remote=remote, recording=recording)
    result = sampler.should_sample(parent, 0x1234, "span", attributes=attributes)
    assert result.decision is decision
    if decision is Decision.RECORD_ONLY:
        assert dict(result.attributes or {}) == attributes  # the span's own are kept
    assert sampler.get_description().startswith("RecordEveryRunSampler{ParentBased")


def test_record_every_run_sampler_refuses_a_non_sampler() -> None:
    with pytest.raises(ValueError, match="sampler must be a Sampler"):
        RecordEveryRunSampler("always_on")  # type: ignore[arg-type]


def test_a_sampler_that_cannot_be_replaced_is_said_once_naming_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FixedSamplerProvider(TracerProvider):
        """A provider whose sampler is read-only, as some vendors' are."""

        @property  # type: ignore[override]
        def sampler(self) -> Any:
            return ALWAYS_OFF

        @sampler.setter
        def sampler(self, value: Any) -> None:
            if getattr(self, "_fixed", False):
                raise AttributeError("read-only")
            self._fixed = True

    provider = FixedSamplerProvider()
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        telemetry = configure(store=MemoryStore(), tracer_provider=provider)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "will not be stored" in messages[0] and "cannot be replaced" in messages[0]
    assert "KeepEveryRunSampler(export_sampler=" in messages[0]
    telemetry.shutdown()
