"""Bad input to a recording call: one clear warning per kind of bad input and call site.

The first occurrence of each kind at each of the agent's lines is logged at WARNING,
always; repeats go to DEBUG (an agent repeating one mistake in a loop gets one line,
not one per call). What can be recorded is recorded every time.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

import decisiontrace as dt
from decisiontrace._internal.errors import Once, warn_input
from tests.conftest import Pipeline

OPTIONS = [{"id": "a", "confidence": 0.5}, {"id": "b", "confidence": 0.4}]


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "decisiontrace" and r.levelno == logging.WARNING
    ]


def repeats(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "decisiontrace" and r.levelno == logging.DEBUG
    ]


def decide(tracker: dt.DecisionTracker, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "intent": "route",
        "options": OPTIONS,
        "chosen": "a",
        "reasoning": "because",
    }
    arguments.update(overrides)
    return tracker.decide(**arguments)


def test_one_mistake_repeated_in_a_loop_warns_once_and_records_every_call(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="decisiontrace")
    tracker = dt.DecisionTracker("svc", tracer_provider=pipeline.provider)
    with tracker.run("g") as run:
        for _ in range(5):
            tracker.decide(intent=42, options=OPTIONS, chosen="a", reasoning="r")  # type: ignore[arg-type]
    pipeline.flush()
    assert warnings(caplog) == [
        "decisiontrace: decide(): intent should be a str, got int; recorded as '42'"
    ]
    assert len(repeats(caplog)) == 4  # not lost: at DEBUG
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert [d.intent for d in stored.decisions] == ["42"] * 5


def test_each_kind_of_bad_input_is_reported_once(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = dt.DecisionTracker("svc", tracer_provider=pipeline.provider)
    with tracker.run("g"):
        for _ in range(3):
            decision_id = tracker.decide(intent=1, options=OPTIONS, chosen="a", reasoning=2)  # type: ignore[arg-type]
            tracker.record_outcome(decision_id=decision_id, success=True, latency_ms="slow")  # type: ignore[arg-type]
    assert warnings(caplog) == [
        "decisiontrace: decide(): intent should be a str, got int; recorded as '1'",
        "decisiontrace: decide(): reasoning should be a str, got int; recorded as '2'",
        "decisiontrace: record_outcome(): latency_ms should be an int, got 'slow'; recorded as 0",
    ]


def test_the_same_mistake_on_another_line_of_the_agent_is_reported_again(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = dt.DecisionTracker("svc", tracer_provider=pipeline.provider)
    with tracker.run("g"):
        for _ in range(2):
            decide(tracker, decision_type="no such type")
        for _ in range(2):
            tracker.decide(
                intent="other",
                options=OPTIONS,
                chosen="a",
                reasoning="r",
                decision_type="nor this",
            )
    assert warnings(caplog) == [
        "decisiontrace: decide(): unknown decision_type 'no such type'; recorded as 'custom'",
        "decisiontrace: decide(): unknown decision_type 'nor this'; recorded as 'custom'",
    ]


def test_bad_options_warn_once_per_kind_not_once_per_option(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = dt.DecisionTracker("svc", tracer_provider=pipeline.provider)
    no_ids = [{"description": "x"}, {"description": "y"}, {"description": "z"}]
    with tracker.run("g") as run:
        for _ in range(3):
            tracker.decide(intent="i", options=no_ids, chosen="option_0", reasoning="r")
    pipeline.flush()
    assert warnings(caplog) == [
        "decisiontrace: decide(): option 0 has no 'id'; recorded as 'option_0'"
    ]
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert [o.id for o in stored.decisions[-1].options] == ["option_0", "option_1", "option_2"]


def test_a_new_kind_is_reported_after_a_flood_of_another(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = dt.DecisionTracker("svc", tracer_provider=pipeline.provider)
    with tracker.run("g"):
        for index in range(50):
            decide(tracker, intent=index)
        decide(tracker, constraints="one")
    assert len(warnings(caplog)) == 2
    assert "constraints should be a list of str" in warnings(caplog)[-1]


def test_the_first_occurrence_is_reported_even_past_the_bound() -> None:
    once = Once(limit=2)
    assert warn_input("a", once=once)
    assert warn_input("b", once=once)  # another line of this test: another call site
    for _ in range(3):
        # Past the bound nothing more is remembered: reported every time, never lost.
        assert warn_input("c", once=once)


def test_a_tracker_limit_is_said_once_per_tracker(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):
        tracker = dt.DecisionTracker("svc", tracer_provider=pipeline.provider, max_active_runs=1)
        for index in range(3):
            tracker.start_run(goal_id="g", execution_id=f"e{index}")
    stuck = [m for m in warnings(caplog) if "ended as stuck" in m]
    assert len(stuck) == 2  # two trackers, each ending two runs as stuck: once each


def test_a_count_beyond_2_53_is_recorded_as_the_bound_and_the_spans_still_export(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    # An int beyond int64 is an attribute the OTLP encoder drops (logging an error).
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    tracker = dt.DecisionTracker("svc", tracer_provider=pipeline.provider)
    with tracker.run("g") as run:
        decision_id = decide(tracker)
        tracker.record_outcome(
            decision_id=decision_id,
            success=True,
            tokens_used=2**80,
            latency_ms=-(2**70),
            input_tokens=float(2**70),
        )
    pipeline.flush()
    bound = 2**53 - 1
    beyond = "decisiontrace: record_outcome(): {} is beyond ±2**53 - 1; recorded as {}"
    assert warnings(caplog) == [
        beyond.format("input_tokens", bound),
        beyond.format("tokens_used", bound),
        beyond.format("latency_ms", -bound),
    ]
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    outcome = stored.decisions[0].outcome
    assert outcome is not None
    assert (outcome.tokens_used, outcome.latency_ms) == (bound, -bound)
    spans = pipeline.spans()
    encoded = encode_spans(spans).resource_spans[0].scope_spans[0].spans
    assert [len(span.attributes) for span in encoded] == [
        len(span.attributes or {}) for span in spans
    ]
