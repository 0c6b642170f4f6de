"""dt.evaluate and tracker.evaluate: a judgement stored with its decision and emitted as a
gen_ai.evaluation.result event through a real SDK LoggerProvider; bad input warns once
and records nothing."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

import decisiontrace as dt
from decisiontrace.spanmodel import semconv as sc
from tests.conftest import Pipeline


@pytest.fixture
def logs() -> Iterator[tuple[LoggerProvider, InMemoryLogRecordExporter]]:
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _record_run(pipeline: Pipeline, *, end: bool = True) -> tuple[dt.DecisionTracker, str, str]:
    tracker = dt.DecisionTracker("evals", tracer_provider=pipeline.provider)
    run_id = tracker.start_run(goal_id="g", execution_id="x1")
    decision_id = tracker.decide(
        intent="Pick a tool", options=[{"id": "a", "description": "A", "action_type": "t",
        "confidence": 0.9}, {"id": "b", "description": "B", "action_type": "t"}],
        chosen="a", reasoning="a looks right", node_id="picker", execution_id="x1",
    )  # fmt: skip
    tracker.record_outcome(decision_id=decision_id, success=False, error="a broke",
                           execution_id="x1")  # fmt: skip
    if end:
        tracker.end_run(success=False, execution_id="x1")
    return tracker, run_id, decision_id


def _events(exporter: InMemoryLogRecordExporter) -> list[dict[str, Any]]:
    return [
        {
            "event_name": item.log_record.event_name,
            "attributes": dict(item.log_record.attributes or {}),
            "trace_id": item.log_record.trace_id,
            "span_id": item.log_record.span_id,
        }
        for item in exporter.get_finished_logs()
    ]


def test_evaluate_stores_the_judgement_and_emits_the_event(
    pipeline: Pipeline, logs: tuple[LoggerProvider, InMemoryLogRecordExporter]
) -> None:
    provider, exporter = logs
    _, run_id, decision_id = _record_run(pipeline)
    pipeline.flush()

    judgement = dt.evaluate(
        run_id, decision_id, evaluator="reviewer", score=0.25, label="poor",
        explanation="b would have worked", store=pipeline.store, logger_provider=provider,
    )  # fmt: skip

    assert judgement is not None and judgement.score == 0.25
    run = pipeline.store.load_run(run_id)
    assert run is not None
    assert [(j.evaluator, j.score, j.label, j.explanation) for j in
            dt.judgements_of(run.decisions[0])] == [
        ("reviewer", 0.25, "poor", "b would have worked")]  # fmt: skip
    assert run.decisions[0].evaluation is None  # no full evaluation was given
    events = _events(exporter)
    assert len(events) == 1
    assert events[0]["event_name"] == "gen_ai.evaluation.result"
    assert events[0]["attributes"] == {
        "gen_ai.evaluation.name": "reviewer",
        "gen_ai.evaluation.score.value": 0.25,
        "gen_ai.evaluation.score.label": "poor",
        "gen_ai.evaluation.explanation": "b would have worked",
        sc.RUN_ID: run_id,
        sc.DECISION_ID: decision_id,
        sc.NODE_ID: "picker",
        sc.DECISION_CHOSEN_ID: "a",
    }


def test_the_event_is_parented_to_the_decision_span(
    pipeline: Pipeline, logs: tuple[LoggerProvider, InMemoryLogRecordExporter]
) -> None:
    provider, exporter = logs
    _, run_id, decision_id = _record_run(pipeline)
    pipeline.flush()
    record = pipeline.store.load_record(run_id)
    assert record is not None
    assert "trace_id" in record  # the records keep the span ids events are parented to
    dt.evaluate(run_id, decision_id, evaluator="j", score=1.0, store=pipeline.store,
                logger_provider=provider)  # fmt: skip
    decision_span = next(
        s for s in pipeline.spans() if s.attributes and s.attributes.get(sc.DECISION_ID)
    )
    assert decision_span.context is not None
    (event,) = _events(exporter)
    assert (event["trace_id"], event["span_id"]) == (
        decision_span.context.trace_id,
        decision_span.context.span_id,
    )


def test_a_full_evaluation_becomes_the_decision_evaluation_and_evaluating_again_replaces_it(
    pipeline: Pipeline, logs: tuple[LoggerProvider, InMemoryLogRecordExporter]
) -> None:
    provider, exporter = logs
    _, run_id, decision_id = _record_run(pipeline)
    pipeline.flush()
    for quality in (0.5, 0.1):
        dt.evaluate(
            run_id, decision_id, evaluator="judge", store=pipeline.store, logger_provider=provider,
            evaluation=dt.DecisionEvaluation(outcome_quality=quality, better_option_existed=True,
                                             better_option_id="b", explanation="b was better"),
        )  # fmt: skip
    run = pipeline.store.load_run(run_id)
    assert run is not None
    (judgement,) = dt.judgements_of(run.decisions[0])
    assert (judgement.score, judgement.explanation) == (0.1, "b was better")
    assert run.decisions[0].evaluation == dt.DecisionEvaluation(
        outcome_quality=0.1, better_option_existed=True, better_option_id="b",
        explanation="b was better",
    )  # fmt: skip
    assert [e["attributes"]["gen_ai.evaluation.score.value"] for e in _events(exporter)] == [
        0.5,
        0.1,
    ]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"score": 1.5}, "score"),
        ({"score": float("nan")}, "score"),
        ({"evaluation": {"outcome_quality": -0.1}}, "evaluation.outcome_quality"),
        ({"evaluation": {"alignment_score": 2}}, "evaluation.alignment_score"),
        ({}, "needs an evaluation, a score or a label"),
    ],
)
def test_scores_outside_the_ranges_are_refused_with_the_field_named(
    pipeline: Pipeline,
    logs: tuple[LoggerProvider, InMemoryLogRecordExporter],
    caplog: pytest.LogCaptureFixture,
    arguments: dict[str, Any],
    field: str,
) -> None:
    provider, exporter = logs
    _, run_id, decision_id = _record_run(pipeline)
    pipeline.flush()
    before = pipeline.store.load_record(run_id)
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        result = dt.evaluate(run_id, decision_id, evaluator="j", store=pipeline.store,
                             logger_provider=provider, **arguments)  # fmt: skip
    assert result is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and field in warnings[0], warnings
    assert pipeline.store.load_record(run_id) == before
    assert _events(exporter) == []


def test_unknown_run_or_decision_warns_once_and_records_nothing(
    pipeline: Pipeline,
    logs: tuple[LoggerProvider, InMemoryLogRecordExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, exporter = logs
    _, run_id, _ = _record_run(pipeline)
    pipeline.flush()
    before = pipeline.store.load_record(run_id)
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        assert dt.evaluate("run_nope", "dec_0", evaluator="j", score=1, wait=0,
                           store=pipeline.store, logger_provider=provider) is None  # fmt: skip
        assert dt.evaluate(run_id, "dec_9", evaluator="j", score=1,
                           store=pipeline.store, logger_provider=provider) is None  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "no run 'run_nope'" in warnings[0]
    assert "has no decision 'dec_9'" in warnings[1]
    assert pipeline.store.load_record(run_id) == before
    assert _events(exporter) == []


def test_a_judge_repeating_one_mistake_in_a_loop_gets_one_warning(
    pipeline: Pipeline,
    logs: tuple[LoggerProvider, InMemoryLogRecordExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, _ = logs
    _, run_id, decision_id = _record_run(pipeline)
    pipeline.flush()
    with caplog.at_level(logging.DEBUG, logger="decisiontrace"):
        for score in (1.5, 2.5, 3.5):
            assert dt.evaluate(run_id, decision_id, evaluator="j", score=score,
                               store=pipeline.store, logger_provider=provider) is None  # fmt: skip
        assert dt.evaluate(run_id, "dec_9", evaluator="j", score=1,
                           store=pipeline.store, logger_provider=provider) is None  # fmt: skip
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one per kind of mistake, not one per call
    assert "score" in warnings[0] and "1.5" in warnings[0]
    assert "has no decision 'dec_9'" in warnings[1]
    repeats = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert any("2.5" in m for m in repeats) and any("3.5" in m for m in repeats)


def test_tracker_evaluate_refuses_an_open_run_and_waits_for_an_ended_one(
    pipeline: Pipeline,
    logs: tuple[LoggerProvider, InMemoryLogRecordExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, _ = logs
    tracker, run_id, decision_id = _record_run(pipeline, end=False)
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        assert tracker.evaluate(run_id, decision_id, evaluator="j", score=0.5,
                                store=pipeline.store, logger_provider=provider) is None  # fmt: skip
    assert any("still open" in r.getMessage() for r in caplog.records)
    tracker.end_run(success=False, execution_id="x1")
    # No flush here: the tracker flushes its provider and waits for the run.
    judgement = tracker.evaluate(run_id, decision_id, evaluator="j", score=0.5,
                                 store=pipeline.store, logger_provider=provider)  # fmt: skip
    assert judgement is not None
    run = pipeline.store.load_run(run_id)
    assert run is not None and dt.judgements_of(run.decisions[0])[0].score == 0.5


def test_judgement_text_is_redacted_before_it_is_stored_or_sent(
    pipeline: Pipeline, logs: tuple[LoggerProvider, InMemoryLogRecordExporter]
) -> None:
    provider, exporter = logs
    _, run_id, decision_id = _record_run(pipeline)
    pipeline.flush()
    secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD"
    dt.evaluate(
        run_id, decision_id, evaluator="judge", store=pipeline.store, logger_provider=provider,
        explanation=f"it used the key {secret}",
        evaluation={"outcome_quality": 0.5, "why_better": f"password={secret}"},
    )  # fmt: skip
    stored = pipeline.store.load_record(run_id)
    sent = _events(exporter)
    assert stored is not None and len(sent) == 1
    assert secret not in repr(stored) and secret not in repr(sent)
    assert "[REDACTED]" in stored["decisions"][0]["evaluations"][0]["explanation"]
