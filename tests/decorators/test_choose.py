"""choose(): a decision's choice declared inside the decorated function."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import decisiontrace as dt
from tests.conftest import Pipeline


def test_a_declared_choice_survives_the_function_raising(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)

    @dt.decision("Pick a source", options=["kb", "search"], tracker=tracker)
    def pick_source() -> str:
        dt.choose("kb", reasoning="the KB covers how-to questions")
        raise TimeoutError("kb timed out")

    with tracker.run("g") as run, pytest.raises(TimeoutError):
        pick_source()
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    [decision] = stored.decisions
    assert decision.chosen_option_id == "kb"
    assert decision.reasoning == "the KB covers how-to questions"
    assert decision.chosen_option is not None
    assert decision.outcome is not None
    assert decision.outcome.success is False
    assert decision.outcome.error == "kb timed out"
    span = next(s for s in pipeline.spans() if s.name == "decision Pick a source")
    assert (span.attributes or {})["decisiontrace.decision.chosen_option.id"] == "kb"


def test_the_choice_given_with_the_outcome_wins(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)

    @dt.decision("Pick", options=["a", "b"], tracker=tracker)
    def pick() -> str:
        dt.choose("a")
        return "b"  # an option id returned: that is the choice recorded

    with tracker.run("g") as run:
        pick()
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert stored.decisions[0].chosen_option_id == "b"


def test_choose_outside_a_decision_warns_and_does_nothing(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    dt.choose("x")
    with tracker.run("g") as run:
        dt.choose("y")
        tracker.quick_decision(intent="i", action="a", reasoning="r")
    assert caplog.text.count("called outside a decision") == 2
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert stored.decisions[0].chosen_option_id == "action"


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "unrecorded"])
def test_a_declared_choice_is_the_same_whether_the_run_is_recorded_or_not(
    pipeline: Pipeline, recorded: bool
) -> None:
    # Sampled out, the run is not recorded, but its live view (get_run) still says what
    # was chosen, as in a recorded run: one home for runs nobody records.
    provider = pipeline.provider if recorded else TracerProvider(sampler=ALWAYS_OFF)
    tracker = dt.DecisionTracker("s", tracer_provider=provider)

    @dt.decision("Pick", options=["a", "b"], tracker=tracker)
    def pick() -> str:
        dt.choose("b")
        return "neither"  # not an option id: the declared choice stands

    @dt.decision("Pick again", options=["a", "b"], tracker=tracker)
    def pick_and_fail() -> str:
        dt.choose("a")
        raise ValueError("no")

    with tracker.run("g") as run:
        pick()
        with pytest.raises(ValueError, match="no"):
            pick_and_fail()
        live = run.get_run()
    assert live is not None
    assert [d.chosen_option_id for d in live.decisions] == ["b", "a"]
    assert [d.outcome.success for d in live.decisions if d.outcome] == [True, False]
