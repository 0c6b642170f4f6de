"""Runs nobody ends, decisions never given an outcome, lost root spans: memory stays bounded.

The tracker and the processor each cap what they keep by count and by age. What goes
over is not forgotten silently: it is stored as a ``stuck`` or ``cancelled`` run with
the reason in ``end_reason``.
"""

from __future__ import annotations

import gc
import logging
import sqlite3
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace

import decisiontrace as dt
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import SQLiteStore

from ._support import Pipeline, make_pipeline, wait_until


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def pipeline_with(db: Path, tracker: dict[str, Any] | None = None, **options: Any) -> Pipeline:
    return make_pipeline(SQLiteStore(db), tracker_options=tracker, **options)


def end_reason(run: dt.Run | None) -> str:
    assert run is not None
    reason: str = run.model_dump()["end_reason"]
    return reason


# --- the tracker ----------------------------------------------------------------------------


def test_runs_never_ended_are_capped_by_count_and_stored_as_stuck(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = pipeline_with(db, tracker={"max_active_runs": 3})
    tracker = pipeline.tracker
    run_ids = []
    for index in range(10):
        run_ids.append(tracker.start_run(goal_id=f"g{index}", execution_id=f"e{index}"))
        tracker.decide(
            execution_id=f"e{index}", intent="never resolved", options=[], chosen="", reasoning=""
        )
    assert tracker.get_active_executions() == ["e7", "e8", "e9"]
    pipeline.flush()
    for run_id in run_ids[:7]:
        run = pipeline.store.load_run(run_id)
        assert run is not None and run.status == dt.RunStatus.STUCK
        assert end_reason(run) == "too many active runs (max_active_runs=3)"
        [decision] = run.decisions  # the decision without an outcome is kept as such
        assert decision.outcome is None
    assert all(pipeline.store.load_run(run_id) is None for run_id in run_ids[7:])
    warnings = [r for r in caplog.records if "ended as stuck" in r.getMessage()]
    assert len(warnings) == 1  # once per tracker, not once per run
    pipeline.provider.shutdown()


def test_runs_never_ended_are_capped_by_age(db: Path) -> None:
    pipeline = pipeline_with(db, tracker={"run_timeout": 0.2})
    tracker = pipeline.tracker
    old = tracker.start_run(goal_id="old", execution_id="old")
    time.sleep(0.3)
    new = tracker.start_run(goal_id="new", execution_id="new")  # the check runs here
    assert tracker.get_active_executions() == ["new"]
    pipeline.flush()
    run = pipeline.store.load_run(old)
    assert run is not None and run.status == dt.RunStatus.STUCK
    assert end_reason(run) == "run did not end within run_timeout"
    assert pipeline.store.load_run(new) is None
    pipeline.provider.shutdown()


def test_memory_stays_flat_however_many_runs_are_left_open(db: Path) -> None:
    pipeline = pipeline_with(db, tracker={"max_active_runs": 50})
    tracker = pipeline.tracker

    def leak(count: int) -> None:
        for _ in range(count):
            tracker.start_run(goal_id="leaky", input_data={"payload": "x" * 2_000})
            tracker.quick_decision(intent="i", action="a", reasoning="r")
        pipeline.flush()
        pipeline.exporter.clear()

    leak(300)  # warm up: caches, connections, the 50 that stay
    gc.collect()
    tracemalloc.start()
    try:
        leak(300)
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        leak(1_500)
        gc.collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tracker.get_active_executions()) == 50
    assert len(pipeline.processor._open.runs) == 50
    # 1500 more runs left open: had they been kept, ~2 KB of input each and their spans.
    assert second - first < 1_000_000
    pipeline.provider.shutdown()


@pytest.mark.parametrize(
    "options",
    [{"max_active_runs": 0}, {"max_active_runs": 1.5}, {"run_timeout": 0}, {"run_timeout": "1"}],
)
def test_bad_limits_are_refused_at_construction(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        dt.DecisionTracker("s", **options)


# --- the processor --------------------------------------------------------------------------


def hand_made_run(tracer: trace.Tracer, run_id: str) -> trace.Span:
    """A run span from code other than the tracker, left open."""
    return tracer.start_span(
        "run", attributes={sc.SPAN_KIND: sc.KIND_RUN, sc.RUN_ID: run_id, sc.GOAL_ID: "g"}
    )


def test_the_processor_caps_open_run_spans_by_count(db: Path) -> None:
    pipeline = pipeline_with(db, max_open_runs=4)
    tracer = pipeline.provider.get_tracer("other")
    spans = [hand_made_run(tracer, f"run_{index}") for index in range(10)]
    pipeline.flush()
    assert len(pipeline.processor._open.runs) == 4
    for index in range(6):
        run = pipeline.store.load_run(f"run_{index}")
        assert run is not None and run.status == dt.RunStatus.STUCK
        assert end_reason(run) == "too many open runs (max_open_runs=4)"
    assert pipeline.store.load_run("run_6") is None
    for span in spans:
        span.end()
    pipeline.provider.shutdown()


def test_the_processor_caps_open_run_spans_by_age(db: Path) -> None:
    pipeline = pipeline_with(db, run_timeout=0.2)
    tracer = pipeline.provider.get_tracer("other")
    span = hand_made_run(tracer, "run_old")
    wait_until(lambda: pipeline.store.load_run("run_old") is not None)
    run = pipeline.store.load_run("run_old")
    assert run is not None and run.status == dt.RunStatus.STUCK
    assert end_reason(run) == "run did not end within run_timeout"
    assert pipeline.processor._open.runs == {}
    span.end()
    pipeline.provider.shutdown()


def test_decisions_whose_root_span_is_lost_are_stored_as_stuck(db: Path) -> None:
    pipeline = pipeline_with(db, run_timeout=0.2)
    tracer = pipeline.provider.get_tracer("other")
    # The root span exists in another process (or was dropped): only decisions arrive.
    parent = trace.NonRecordingSpan(
        trace.SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=trace.TraceFlags(1))
    )
    for index in range(3):
        tracer.start_span(
            f"decision {index}",
            context=trace.set_span_in_context(parent),
            attributes={
                sc.SPAN_KIND: sc.KIND_DECISION,
                sc.RUN_ID: "run_lost",
                sc.DECISION_ID: f"dec_{index}",
            },
        ).end()
    wait_until(lambda: pipeline.store.load_run("run_lost") is not None)
    run = pipeline.store.load_run("run_lost")
    assert run is not None and run.status == dt.RunStatus.STUCK
    assert [d.id for d in run.decisions] == ["dec_0", "dec_1", "dec_2"]
    assert end_reason(run) == "run span never ended"
    assert pipeline.processor._assembler.pending == {}
    pipeline.provider.shutdown()


def test_spans_under_decisions_that_never_end_are_capped(db: Path) -> None:
    pipeline = pipeline_with(db, max_queue_size=20)
    tracer = pipeline.provider.get_tracer("llm")
    with pipeline.tracker.run("g"):
        decision_id = pipeline.tracker.decide(intent="i", options=[], chosen="", reasoning="")
        live = pipeline.tracker.registry.current()
        assert live is not None
        context = trace.set_span_in_context(live.decisions[decision_id].span)
        for _ in range(200):
            tracer.start_span("llm call never ended", context=context)
        assert len(pipeline.processor._tokens.notes) <= 20
    pipeline.provider.shutdown()


def test_a_full_span_queue_drops_and_counts_and_logs_once(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    SQLiteStore(db).close()
    competitor = sqlite3.connect(db, isolation_level=None)
    competitor.execute("BEGIN EXCLUSIVE")  # the writer hangs in its first write
    try:
        pipeline = pipeline_with(db, max_queue_size=30)
        with pipeline.tracker.run("first"):
            pass
        wait_until(lambda: not pipeline.processor._writer._inbox, what="the writer to take the run")
        time.sleep(0.1)
        for _ in range(50):
            with pipeline.tracker.run("g"):
                pipeline.tracker.quick_decision(intent="i", action="a", reasoning="r")
        assert len(pipeline.processor._writer._inbox) == 30
        assert pipeline.processor.dropped_spans == 100 - 30
        messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert sum("span queue full" in message for message in messages) == 1
        pipeline.processor.shutdown(timeout_millis=100)
    finally:
        competitor.execute("ROLLBACK")
        competitor.close()


def test_runs_open_at_shutdown_are_stored_as_cancelled_with_the_reason(db: Path) -> None:
    pipeline = pipeline_with(db)
    run_id = pipeline.tracker.start_run(goal_id="g", execution_id="e")
    pipeline.tracker.decide(execution_id="e", intent="i", options=[], chosen="", reasoning="")
    pipeline.provider.shutdown()
    run = SQLiteStore(db).load_run(run_id)
    assert run is not None and run.status == dt.RunStatus.CANCELLED
    assert end_reason(run) == "tracer provider shut down with the run still open"
    assert len(run.decisions) == 1 and run.decisions[0].outcome is None


@pytest.fixture(autouse=True)
def _no_leftover_threads() -> Iterator[None]:
    yield
    gc.collect()
