"""Sampling that keeps every run: RECORD_ONLY instead of DROP, and failed runs exported."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from decisiontrace._internal.errors import RAISE_ENV
from decisiontrace.models import RunStatus
from decisiontrace.pipeline import sampling
from decisiontrace.pipeline.processor import RunRecordProcessor
from decisiontrace.pipeline.sampling import (
    KeepEveryRunSampler,
    KeepFailedRunsProcessor,
    run_needs_export,
)
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore
from decisiontrace.tracking.tracker import DecisionTracker

ATTRIBUTES = {sc.SPAN_KIND: sc.KIND_RUN, sc.RUN_ID: "run_1"}
LOW_TRACE_ID = 0x0123456789ABCDEF_0000000000000001  # low 64 bits tiny: inside any ratio > 0
HIGH_TRACE_ID = 0x0123456789ABCDEF_FFFFFFFFFFFFFFF0  # low 64 bits near the top: outside < 1


def parent(sampled: bool, *, remote: bool = False) -> Context:
    context = SpanContext(
        LOW_TRACE_ID,
        0xAB,
        is_remote=remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        trace_state=TraceState([("vendor", "x")]),
    )
    return trace.set_span_in_context(NonRecordingSpan(context))


# --- the sampler ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "trace_id", "decision"),
    [
        (0.0, LOW_TRACE_ID, Decision.RECORD_ONLY),
        (1.0, HIGH_TRACE_ID, Decision.RECORD_AND_SAMPLE),
        (0.5, LOW_TRACE_ID, Decision.RECORD_AND_SAMPLE),
        (0.5, HIGH_TRACE_ID, Decision.RECORD_ONLY),
    ],
)
def test_roots_are_sampled_by_trace_id_and_otherwise_recorded_only(
    ratio: float, trace_id: int, decision: Decision
) -> None:
    result = KeepEveryRunSampler(ratio).should_sample(None, trace_id, "run", attributes=ATTRIBUTES)
    assert result.decision is decision
    assert dict(result.attributes) == ATTRIBUTES


@pytest.mark.parametrize("remote", [False, True])
@pytest.mark.parametrize("sampled", [False, True])
def test_children_follow_their_parent_and_are_always_recorded(sampled: bool, remote: bool) -> None:
    sampler = KeepEveryRunSampler(0.0 if sampled else 1.0)  # the ratio must not matter
    result = sampler.should_sample(
        parent(sampled, remote=remote), LOW_TRACE_ID, "decision", attributes={"a": 1}
    )
    assert result.decision is (Decision.RECORD_AND_SAMPLE if sampled else Decision.RECORD_ONLY)
    assert dict(result.attributes) == {"a": 1}
    assert result.trace_state is not None and result.trace_state.get("vendor") == "x"


def test_a_wrapped_sampler_decides_export_and_its_drops_are_recorded_with_their_attributes() -> (
    None
):
    dropping = KeepEveryRunSampler(export_sampler=TraceIdRatioBased(0.0))
    result = dropping.should_sample(None, LOW_TRACE_ID, "run", attributes=ATTRIBUTES)
    assert result.decision is Decision.RECORD_ONLY
    assert dict(result.attributes) == ATTRIBUTES  # TraceIdRatioBased returns none on DROP
    off = KeepEveryRunSampler(export_sampler=ALWAYS_OFF)
    assert off.should_sample(None, LOW_TRACE_ID, "x").decision is Decision.RECORD_ONLY
    keeping = KeepEveryRunSampler(export_sampler=TraceIdRatioBased(1.0))
    sampled = keeping.should_sample(None, LOW_TRACE_ID, "run", attributes=ATTRIBUTES)
    assert sampled.decision is Decision.RECORD_AND_SAMPLE
    assert dict(sampled.attributes) == ATTRIBUTES
    assert "TraceIdRatioBased" in keeping.get_description()


@pytest.mark.parametrize("ratio", [-0.1, 1.5, "0.5", True, float("nan")])
def test_a_bad_ratio_is_refused(ratio: Any) -> None:
    with pytest.raises(ValueError, match="export_ratio"):
        KeepEveryRunSampler(ratio)


def test_ratio_and_sampler_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        KeepEveryRunSampler(0.5, export_sampler=ALWAYS_OFF)
    with pytest.raises(ValueError, match="must be a Sampler"):
        KeepEveryRunSampler(export_sampler="always_off")  # type: ignore[arg-type]


# --- the export processor, in a real pipeline ----------------------------------------------


@dataclass
class Pipeline:
    provider: TracerProvider
    store: MemoryStore
    exporter: InMemorySpanExporter
    export: KeepFailedRunsProcessor
    tracker: DecisionTracker

    def flush(self) -> None:
        assert self.provider.force_flush(10_000)

    def exported(self) -> dict[str, list[dict[str, Any]]]:
        """Exported spans by run id, as plain dicts (run span first, then by name)."""
        by_trace: dict[int, list[ReadableSpan]] = {}
        for span in self.exporter.get_finished_spans():
            assert span.context is not None
            by_trace.setdefault(span.context.trace_id, []).append(span)
        result = {}
        for spans in by_trace.values():
            run_id = next(
                str((s.attributes or {})[sc.RUN_ID])
                for s in spans
                if sc.RUN_ID in (s.attributes or {})
            )
            result[run_id] = sorted(
                (
                    {
                        "name": s.name,
                        "parent": s.parent is not None,
                        "sampled": s.context is not None and s.context.trace_flags.sampled,
                        "kind": (s.attributes or {}).get(sc.SPAN_KIND),
                    }
                    for s in spans
                ),
                key=lambda d: (d["parent"], d["name"]),
            )
        return result


def make_pipeline(ratio: float, **options: Any) -> Pipeline:
    store = MemoryStore()
    exporter = InMemorySpanExporter()
    export = KeepFailedRunsProcessor(exporter, **options)
    provider = TracerProvider(sampler=KeepEveryRunSampler(ratio))
    provider.add_span_processor(RunRecordProcessor(store, flush_interval=0.05))
    provider.add_span_processor(export)
    return Pipeline(
        provider, store, exporter, export, DecisionTracker("agent", tracer_provider=provider)
    )


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    pipeline = make_pipeline(0.0)
    yield pipeline
    pipeline.provider.shutdown()


def run_with(
    pipeline: Pipeline,
    goal: str,
    *,
    success: bool = True,
    problem: bool = False,
    fail_run: bool = False,
) -> str:
    tracker = pipeline.tracker
    tracer = pipeline.provider.get_tracer("tool")
    with tracker.run(goal, goal) as run:
        decision_id = tracker.decide(
            intent="pick", options=[{"id": "a"}], chosen="a", reasoning="r"
        )
        with tracer.start_as_current_span("tool call"):
            pass
        tracker.record_outcome(
            decision_id=decision_id, success=success, error=None if success else "no"
        )
        if problem:
            tracker.report_problem(severity="warning", description="slow")
        if fail_run:
            run.success = False
    return run.run_id


def test_ratio_zero_stores_every_run_and_exports_only_runs_that_went_wrong(
    pipeline: Pipeline,
) -> None:
    ok = run_with(pipeline, "ok")
    failed_decision = run_with(pipeline, "failed-decision", success=False)
    problem = run_with(pipeline, "problem", problem=True)
    failed_run = run_with(pipeline, "failed-run", fail_run=True)
    with pipeline.provider.get_tracer("web").start_as_current_span("GET /"):
        pass  # not a run: unsampled, not held, not exported
    pipeline.flush()

    for run_id in (ok, failed_decision, problem, failed_run):
        assert pipeline.store.load_run(run_id) is not None
    stored = pipeline.store.load_run(failed_run)
    assert stored is not None and stored.status == RunStatus.FAILED

    whole_trace = [
        {"name": "invoke_agent agent", "parent": False, "sampled": True, "kind": "run"},
        {"name": "decision pick", "parent": True, "sampled": True, "kind": "decision"},
        {"name": "tool call", "parent": True, "sampled": True, "kind": None},
    ]
    assert pipeline.exported() == {
        failed_decision: whole_trace,
        problem: whole_trace,
        failed_run: whole_trace,
    }
    assert pipeline.export.exported_runs == 3


def test_a_run_with_an_error_span_inside_is_exported(pipeline: Pipeline) -> None:
    tracker = pipeline.tracker
    with tracker.run("tool-error", "tool-error") as run:
        with pipeline.provider.get_tracer("tool").start_as_current_span("flaky tool") as span:
            span.set_status(trace.Status(trace.StatusCode.ERROR, "retry later"))
        decision_id = tracker.decide(intent="go on", options=[], chosen="a", reasoning="r")
        tracker.record_outcome(decision_id=decision_id, success=True)
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None and stored.status == RunStatus.COMPLETED
    assert [s["name"] for s in pipeline.exported()[run.run_id]] == [
        "invoke_agent agent",
        "decision go on",
        "flaky tool",
    ]


def test_exported_copies_keep_the_span_data() -> None:
    pipeline = make_pipeline(0.0)
    run_id = run_with(pipeline, "failed", success=False)
    pipeline.flush()
    run_span = next(s for s in pipeline.exporter.get_finished_spans() if s.parent is None)
    assert run_span.attributes is not None
    assert run_span.attributes[sc.RUN_ID] == run_id
    assert run_span.attributes[sc.RUN_FAILURE_COUNT] == 1
    assert run_span.resource == pipeline.provider.resource
    assert run_span.instrumentation_scope is not None
    assert run_span.instrumentation_scope.name == "decisiontrace"
    pipeline.provider.shutdown()


def test_ratio_one_exports_everything_straight_through() -> None:
    pipeline = make_pipeline(1.0)
    ok = run_with(pipeline, "ok")
    bad = run_with(pipeline, "bad", success=False)
    pipeline.flush()
    assert set(pipeline.exported()) == {ok, bad}
    assert pipeline.export.exported_runs == 0  # nothing needed holding
    pipeline.provider.shutdown()


def test_a_span_ending_after_its_run_follows_the_runs_verdict(pipeline: Pipeline) -> None:
    tracker = pipeline.tracker
    late = {}
    for goal, success in (("kept", False), ("dropped", True)):
        with tracker.run(goal, goal) as run:
            decision_id = tracker.decide(intent="x", options=[], chosen="a", reasoning="r")
            tracker.record_outcome(decision_id=decision_id, success=success)
            late[goal] = pipeline.provider.get_tracer("bg").start_span("background work")
        late[goal].end()
        late[goal + "_id"] = run.run_id
    pipeline.flush()
    exported = pipeline.exported()
    assert set(exported) == {late["kept_id"]}
    assert "background work" in [s["name"] for s in exported[late["kept_id"]]]


def test_held_spans_are_bounded_per_run_but_the_run_span_always_counts() -> None:
    pipeline = make_pipeline(0.0, max_spans_per_trace=2)
    tracker = pipeline.tracker
    with tracker.run("big", "big") as run:
        for index in range(4):
            decision_id = tracker.decide(intent=f"d{index}", options=[], chosen="a", reasoning="r")
            tracker.record_outcome(decision_id=decision_id, success=index != 3)
    pipeline.flush()
    names = [s["name"] for s in pipeline.exported()[run.run_id]]
    assert names == ["invoke_agent agent", "decision d0", "decision d1"]
    assert pipeline.export.dropped_spans == 2
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None and len(stored.decisions) == 4  # storage is not bounded by this
    pipeline.provider.shutdown()


def test_beyond_the_total_bound_the_oldest_held_run_is_dropped() -> None:
    pipeline = make_pipeline(0.0, max_held_spans=2)
    tracker = pipeline.tracker
    first = tracker.start_run(goal_id="first", execution_id="e1")
    decision_id = tracker.decide(
        intent="a", options=[], chosen="a", reasoning="r", execution_id="e1"
    )
    tracker.record_outcome(decision_id=decision_id, success=True, execution_id="e1")
    second = tracker.start_run(goal_id="second", execution_id="e2")
    for index in range(2):
        decision_id = tracker.decide(
            intent=f"b{index}", options=[], chosen="a", reasoning="r", execution_id="e2"
        )
        tracker.record_outcome(decision_id=decision_id, success=True, execution_id="e2")
    tracker.end_run(success=False, execution_id="e1")
    tracker.end_run(success=False, execution_id="e2")
    pipeline.flush()
    exported = pipeline.exported()
    assert first not in exported  # evicted to make room, so not exported
    assert [s["name"] for s in exported[second]] == [
        "invoke_agent agent",
        "decision b0",
        "decision b1",
    ]
    assert pipeline.export.dropped_spans == 1
    pipeline.provider.shutdown()


def test_a_run_held_too_long_is_exported_as_stuck(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(sampling, "monotonic", lambda: clock[0])
    pipeline = make_pipeline(0.0, max_hold_seconds=60)
    tracker = pipeline.tracker
    stuck = tracker.start_run(goal_id="stuck", execution_id="e1")
    decision_id = tracker.decide(
        intent="wait", options=[], chosen="a", reasoning="r", execution_id="e1"
    )
    tracker.record_outcome(decision_id=decision_id, success=True, execution_id="e1")
    clock[0] += 61
    run_with(pipeline, "ok")  # any unsampled span ending triggers the age check
    pipeline.flush()
    assert [s["name"] for s in pipeline.exported()[stuck]] == ["decision wait"]
    tracker.end_run(success=True, execution_id="e1")
    pipeline.flush()
    assert [s["name"] for s in pipeline.exported()[stuck]] == [
        "invoke_agent agent",
        "decision wait",
    ]
    pipeline.provider.shutdown()


def test_shutdown_exports_runs_still_open() -> None:
    pipeline = make_pipeline(0.0)
    tracker = pipeline.tracker
    tracker.start_run(goal_id="open", execution_id="e1")
    decision_id = tracker.decide(
        intent="half", options=[], chosen="a", reasoning="r", execution_id="e1"
    )
    tracker.record_outcome(decision_id=decision_id, success=True, execution_id="e1")
    pipeline.export.shutdown()
    assert [s.name for s in pipeline.exporter.get_finished_spans()] == ["decision half"]
    pipeline.provider.shutdown()


class HangingExporter(SpanExporter):
    """An exporter whose export blocks until it is shut down (an endpoint that hangs)."""

    def __init__(self) -> None:
        self.stopped = threading.Event()
        self.exports = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exports += 1
        self.stopped.wait(30)
        return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.stopped.set()


def test_shutdown_returns_even_when_the_exporter_hangs(caplog: pytest.LogCaptureFixture) -> None:
    exporter = HangingExporter()
    export = KeepFailedRunsProcessor(exporter)
    provider = TracerProvider(sampler=KeepEveryRunSampler(1.0))
    provider.add_span_processor(export)
    provider.get_tracer("t").start_span("s").end()
    with caplog.at_level(logging.WARNING, "decisiontrace"):
        export.shutdown(timeout_millis=100)
    assert exporter.stopped.is_set()  # the exporter was told to stop its retries
    assert "did not finish" in caplog.text
    assert exporter.exports == 1
    provider.shutdown()


class Broken:
    """Not a span: every attribute access raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(name)


def test_processor_methods_never_raise(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RAISE_ENV)  # in production: logged once per hook, never raised
    export = KeepFailedRunsProcessor(InMemorySpanExporter())
    with caplog.at_level(logging.ERROR, "decisiontrace"):
        export.on_start(Broken())  # type: ignore[arg-type]
        export.on_end(Broken())  # type: ignore[arg-type]
        export.on_end(Broken())  # type: ignore[arg-type]
    assert caplog.text.count("KeepFailedRunsProcessor on_end failed") == 1
    assert caplog.text.count("KeepFailedRunsProcessor on_start failed") == 1
    export.shutdown()


@pytest.mark.parametrize("option", ["max_spans_per_trace", "max_held_spans", "max_hold_seconds"])
def test_bad_bounds_are_refused(option: str) -> None:
    with pytest.raises(ValueError, match=option):
        KeepFailedRunsProcessor(InMemorySpanExporter(), **{option: 0})


def test_a_completed_run_with_failed_decisions_needs_export() -> None:
    # The run span alone must say so: its failed decisions may have been recorded by
    # another process (fragments), so their ERROR spans are not held here.
    pipeline = make_pipeline(1.0)
    run_id = run_with(pipeline, "failed-decision", success=False)
    pipeline.flush()
    [run_span] = [s for s in pipeline.exporter.get_finished_spans() if s.parent is None]
    attributes = run_span.attributes or {}
    assert attributes[sc.RUN_ID] == run_id
    assert attributes[sc.RUN_STATUS] == "completed"
    assert run_span.status.status_code is not trace.StatusCode.ERROR
    assert run_needs_export(run_span)
    pipeline.provider.shutdown()
