"""Run and decision metrics, recorded from the records the processor assembles."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from decisiontrace.models import DecisionType
from decisiontrace.pipeline import metrics
from decisiontrace.pipeline.metrics import RunMetrics, agent_name
from decisiontrace.pipeline.processor import RunRecordProcessor
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore
from decisiontrace.tracking.tracker import DecisionTracker

Points = dict[str, dict[frozenset[tuple[str, Any]], Any]]


def points(reader: InMemoryMetricReader) -> Points:
    """metric name -> {attributes: value (counters) or (count, sum) (histograms)}."""
    result: Points = {}
    data = reader.get_metrics_data()
    if data is None:
        return result
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                by_attributes = result.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    key = frozenset((point.attributes or {}).items())
                    value = getattr(point, "value", None)
                    by_attributes[key] = (
                        value if value is not None else (point.count, round(point.sum, 3))  # type: ignore[union-attr]
                    )
    return result


def attrs(**values: Any) -> frozenset[tuple[str, Any]]:
    names = {
        "type": sc.DECISION_TYPE,
        "node": sc.NODE_ID,
        "chosen": sc.DECISION_CHOSEN_ID,
        "success": sc.OUTCOME_SUCCESS,
        "status": sc.RUN_STATUS,
        "goal": sc.GOAL_ID,
        "agent": sc.GEN_AI_AGENT_NAME,
        "error": sc.ERROR_TYPE,
    }
    return frozenset((names[key], value) for key, value in values.items())


class Setup:
    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.store = MemoryStore()
        self.processor = RunRecordProcessor(self.store, flush_interval=0.05)
        self.metrics = RunMetrics(self.meter_provider)
        self.threads: list[str] = []

        def listener(records: list[dict[str, Any]]) -> None:
            self.threads.append(threading.current_thread().name)
            self.metrics.record(records)

        self.processor.add_listener(listener)
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)
        self.tracker = DecisionTracker("support-bot", tracer_provider=self.provider)

    def flush(self) -> Points:
        assert self.processor.force_flush(10_000)
        return points(self.reader)


@pytest.fixture
def setup() -> Iterator[Setup]:
    setup = Setup()
    yield setup
    setup.provider.shutdown()
    setup.meter_provider.shutdown()


def test_decisions_outcomes_tokens_and_durations(setup: Setup) -> None:
    tracker = setup.tracker
    with tracker.run("tickets", "Handle tickets"):
        tracker.set_node("classifier")
        first = tracker.decide(
            intent="classify",
            options=[{"id": "howto"}, {"id": "bug"}],
            chosen="howto",
            reasoning="r",
            decision_type=DecisionType.PATH_CHOICE,
        )
        tracker.record_outcome(decision_id=first, success=True, tokens_used=400, latency_ms=250)
        second = tracker.decide(
            intent="classify again",
            options=[{"id": "howto"}, {"id": "bug"}],
            chosen="bug",
            reasoning="r",
            decision_type=DecisionType.PATH_CHOICE,
        )
        tracker.record_outcome(decision_id=second, success=False, error="wrong", latency_ms=1500)
        tracker.set_node("responder")
        third = tracker.decide(intent="answer", options=[], chosen="kb", reasoning="r")
        tracker.record_outcome(decision_id=third, success=True, tokens_used=100, latency_ms=50)
    data = setup.flush()

    assert data[metrics.DECISIONS] == {
        attrs(type="path_choice", node="classifier", chosen="howto"): 1,
        attrs(type="path_choice", node="classifier", chosen="bug"): 1,
        attrs(type="custom", node="responder", chosen="kb"): 1,
    }
    assert data[metrics.OUTCOMES] == {
        attrs(success=True, node="classifier", type="path_choice"): 1,
        attrs(success=False, node="classifier", type="path_choice"): 1,
        attrs(success=True, node="responder", type="custom"): 1,
    }
    assert data[metrics.DECISION_TOKENS] == {
        attrs(node="classifier", type="path_choice"): (1, 400),  # the failed one used none
        attrs(node="responder", type="custom"): (1, 100),
    }
    assert data[metrics.DECISION_DURATION] == {
        attrs(success=True, node="classifier", type="path_choice"): (1, 0.25),
        attrs(success=False, node="classifier", type="path_choice"): (1, 1.5),
        attrs(success=True, node="responder", type="custom"): (1, 0.05),
    }
    assert data[metrics.RUNS] == {attrs(status="completed", goal="tickets"): 1}
    [(count, _)] = data[metrics.RUN_DURATION].values()
    assert count == 1
    assert set(data[metrics.GEN_AI_INVOKE_AGENT_DURATION]) == {
        attrs(status="completed", agent="support-bot")
    }
    assert "gen_ai.client.token.usage" not in data
    assert set(setup.threads) == {"decisiontrace-writer"}


def test_metrics_come_when_the_run_ends_not_on_the_agents_thread(setup: Setup) -> None:
    tracker = setup.tracker
    tracker.start_run(goal_id="slow", execution_id="e1")
    decision_id = tracker.decide(
        intent="x", options=[], chosen="a", reasoning="r", execution_id="e1"
    )
    tracker.record_outcome(decision_id=decision_id, success=True, execution_id="e1")
    assert setup.flush() == {}
    tracker.end_run(success=False, execution_id="e1")
    data = setup.flush()
    assert data[metrics.DECISIONS] == {attrs(type="custom", node="unknown", chosen="a"): 1}
    assert data[metrics.RUNS] == {attrs(status="failed", goal="slow"): 1}
    assert set(data[metrics.GEN_AI_INVOKE_AGENT_DURATION]) == {
        attrs(status="failed", agent="support-bot", error="failed")
    }


def test_decision_duration_falls_back_to_the_span_when_no_latency_is_given(setup: Setup) -> None:
    tracker = setup.tracker
    with tracker.run("g"):
        decision_id = tracker.decide(intent="x", options=[], chosen="a", reasoning="r")
        tracker.record_outcome(decision_id=decision_id, success=True)
    data = setup.flush()
    [(count, seconds)] = data[metrics.DECISION_DURATION].values()
    assert count == 1 and 0 <= seconds < 60


def sample_record(decisions: int) -> dict[str, Any]:
    return {
        "id": "run_bot_20250101_120000_0123abcd",
        "goal_id": "g",
        "status": "completed",
        "completed_at": "2025-01-01T12:00:02",
        "duration_ms": 2000,
        "decisions": [
            {
                "id": f"dec_{index}",
                "node_id": "n",
                "decision_type": "custom",
                "chosen_option_id": "a",
                "timestamp": "2025-01-01T12:00:00",
                "outcome": {"success": True, "tokens_used": 0, "latency_ms": 10, "timestamp": "x"},
            }
            for index in range(decisions)
        ],
    }


def test_a_run_handed_over_again_only_adds_its_new_decisions() -> None:
    reader = InMemoryMetricReader()
    recorder = RunMetrics(MeterProvider(metric_readers=[reader]))
    recorder.record([sample_record(1)])
    recorder.record([sample_record(1)])  # the same run again (a late span arrived)
    recorder.record([sample_record(2)])  # with one more decision
    data = points(reader)
    assert data[metrics.DECISIONS] == {attrs(type="custom", node="n", chosen="a"): 2}
    assert data[metrics.RUNS] == {attrs(status="completed", goal="g"): 1}
    assert data[metrics.RUN_DURATION] == {attrs(status="completed", goal="g"): (1, 2.0)}


def test_the_remembered_runs_are_bounded() -> None:
    reader = InMemoryMetricReader()
    recorder = RunMetrics(MeterProvider(metric_readers=[reader]), max_remembered_runs=1)
    first = sample_record(1)
    second = copy.deepcopy(first)
    second["id"] = "run_other"
    recorder.record([first, second, first])  # the first was forgotten: counted again
    assert points(reader)[metrics.RUNS] == {attrs(status="completed", goal="g"): 3}


def test_a_malformed_record_is_logged_and_the_others_still_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = InMemoryMetricReader()
    recorder = RunMetrics(MeterProvider(metric_readers=[reader]))
    recorder.record([{"id": "bad", "decisions": [None]}, sample_record(1)])
    assert "metrics of run 'bad' failed" in caplog.text
    assert points(reader)[metrics.DECISIONS] == {attrs(type="custom", node="n", chosen="a"): 1}


@pytest.mark.parametrize(
    ("run_id", "name"),
    [
        ("run_support-bot_20250101_120000_0123abcd", "support-bot"),
        ("run_my_agent_20250101_120000_0123abcd", "my_agent"),
        ("run_20250101_120000_0123abcd", None),  # the compat single-run tracker's ids
        ("custom-id", None),
    ],
)
def test_agent_name_from_run_id(run_id: str, name: str | None) -> None:
    assert agent_name(run_id) == name


def test_metric_names() -> None:
    assert metrics.METRIC_NAMES == (
        "decisiontrace.decisions",
        "decisiontrace.outcomes",
        "decisiontrace.decision.tokens",
        "decisiontrace.decision.duration",
        "decisiontrace.runs",
        "decisiontrace.run.duration",
        "gen_ai.invoke_agent.duration",
    )
