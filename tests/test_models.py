"""The record models against the reference record, summary and schema."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from decisiontrace import Decision, DecisionEvaluation, Outcome, Run, RunStatus, RunSummary
from decisiontrace.spanmodel import _records

from .conftest import REFERENCE


@pytest.fixture
def example() -> dict[str, Any]:
    return json.loads((REFERENCE / "example-run.json").read_text())


def test_example_round_trips_field_for_field(example: dict[str, Any]) -> None:
    run = Run.model_validate(example)
    assert run.model_dump(mode="json") == example
    assert Run.model_validate_json(run.model_dump_json()) == run


def test_computed_fields_do_not_come_back_as_extra_fields(example: dict[str, Any]) -> None:
    run = Run.model_validate(example)
    assert run.__pydantic_extra__ == {}
    assert run.metrics.__pydantic_extra__ == {}
    assert all(d.__pydantic_extra__ == {} for d in run.decisions)


def test_unknown_fields_are_kept(example: dict[str, Any]) -> None:
    example["custom"] = {"a": 1}
    run = Run.model_validate(example)
    assert run.model_dump(mode="json")["custom"] == {"a": 1}


def test_generated_narrative_matches_the_original(example: dict[str, Any]) -> None:
    run = Run.model_validate(example)
    assert run._generate_narrative() == example["narrative"]


def test_summary_matches_the_reference_summary(example: dict[str, Any]) -> None:
    expected = json.loads((REFERENCE / "example-run-summary.json").read_text())
    assert RunSummary.from_run(Run.model_validate(example)).model_dump(mode="json") == expected


def test_dumped_record_validates_against_the_schema(
    example: dict[str, Any], run_schema: dict[str, Any]
) -> None:
    jsonschema.validate(Run.model_validate(example).model_dump(mode="json"), run_schema)


def test_computed_fields() -> None:
    decision = Decision(
        id="dec_0",
        node_id="n",
        intent="i",
        options=[{"id": "a", "description": "A", "action_type": "t"}],
        chosen_option_id="a",
    )
    assert decision.chosen_option is not None and decision.chosen_option.description == "A"
    assert decision.was_successful is False and decision.was_good_decision is False
    run = Run(id="r", goal_id="g")
    run.add_decision(decision)
    run.record_outcome("dec_0", Outcome(success=True, tokens_used=7, latency_ms=3))
    assert decision.was_successful is True and decision.was_good_decision is True
    assert run.metrics.success_rate == 1.0
    assert (run.metrics.total_tokens, run.metrics.total_latency_ms) == (7, 3)
    decision.evaluation = DecisionEvaluation(outcome_quality=0.4)
    assert decision.was_good_decision is False
    run.complete(RunStatus.COMPLETED)
    assert run.narrative == "Run completed successfully. Made 1 decisions: 1 succeeded, 0 failed."
    assert run.duration_ms >= 0


def test_dict_level_narrative_counts_critical_and_warnings() -> None:
    text = _records.narrative(
        "failed", 3, 1, 2, [("critical", "db down"), ("warning", "slow"), ("minor", "x")],
        ["a", "b", "c", "d"],
    )  # fmt: skip
    assert text == (
        "Run failed. Made 3 decisions: 1 succeeded, 2 failed. Critical issues: db down "
        "Warnings: slow Failed on: a, b, c"
    )


def test_problems_added_to_a_model_are_numbered_as_the_tracker_numbers_them() -> None:
    run = Run(id="r", goal_id="g")
    assert [run.add_problem("minor", "a"), run.add_problem("warning", "b", "dec_0")] == [
        "prob_0",
        "prob_1",
    ]
    assert [p.id for p in run.problems] == ["prob_0", "prob_1"]
