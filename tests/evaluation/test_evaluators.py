"""The built-in evaluators on crafted runs, with the exact judgements expected."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from decisiontrace import Decision, DecisionEvaluation, Outcome, Problem, Run, RunStatus
from decisiontrace.evaluation.evaluators import better_option, load_evaluator, outcome

T0 = datetime(2026, 12, 1, 9, 0, 0)


def _decision(
    index: int, node: str, chosen: str, success: bool | None, error: str | None = None
) -> Decision:
    return Decision.model_validate(
        {
            "id": f"dec_{index}",
            "timestamp": T0 + timedelta(seconds=index),
            "node_id": node,
            "intent": "pick a source",
            "options": [
                {"id": option, "description": option, "action_type": "fetch"}
                for option in ("kb", "search", "llm")
            ],
            "chosen_option_id": chosen,
            "outcome": None
            if success is None
            else Outcome(success=success, error=error, timestamp=T0),
        }
    )


def _run(decisions: list[Decision], status: RunStatus, problems: list[Problem] = ()) -> Run:  # type: ignore[assignment]
    return Run(id="run_x", goal_id="g", decisions=decisions, status=status, problems=list(problems))


def test_better_option_names_the_option_a_later_decision_at_the_same_node_succeeded_with() -> None:
    failed = _decision(1, "retriever", "kb", False, "kb: no article matched")
    run = _run(
        [
            _decision(0, "classifier", "kb", True),
            failed,
            _decision(2, "responder", "search", True),  # another node: not an alternative
            _decision(3, "retriever", "search", True),
        ],
        RunStatus.COMPLETED,
    )
    why = (
        "'search' succeeded when dec_3 chose it later in the run at node 'retriever', "
        "where 'kb' failed (kb: no article matched)"
    )
    assert better_option(run, failed) == {
        "score": 0.0,
        "label": "better_option_existed",
        "explanation": why,
        "evaluation": DecisionEvaluation(
            goal_aligned=True,
            alignment_score=0.5,
            better_option_existed=True,
            better_option_id="search",
            why_better=why,
            outcome_quality=0.0,
            contributed_to_success=False,
            explanation=why,
        ),
    }


@pytest.mark.parametrize(
    ("later", "label"),
    [
        (_decision(2, "retriever", "search", False), "no_better_option_seen"),  # failed too
        (_decision(2, "retriever", "kb", True), "no_better_option_seen"),  # same option
        (_decision(2, "other", "search", True), "no_better_option_seen"),  # other node
        (_decision(2, "retriever", "web", True), "no_better_option_seen"),  # not an option
    ],
)
def test_better_option_needs_another_of_its_options_succeeding_later_at_its_node(
    later: Decision, label: str
) -> None:
    failed = _decision(1, "retriever", "kb", False)
    result = better_option(_run([failed, later], RunStatus.FAILED), failed)
    assert result is not None
    assert (result["label"], result["score"]) == (label, 1.0)
    assert result["evaluation"].better_option_existed is False


def test_better_option_judges_an_earlier_decision_only_by_later_ones() -> None:
    earlier_success = _decision(0, "retriever", "search", True)
    failed = _decision(1, "retriever", "kb", False)
    result = better_option(_run([earlier_success, failed], RunStatus.FAILED), failed)
    assert result is not None and result["label"] == "no_better_option_seen"
    assert better_option(_run([earlier_success], RunStatus.FAILED), earlier_success) == {
        "score": 1.0,
        "label": "chosen_option_succeeded",
        "explanation": "'search' succeeded",
        "evaluation": DecisionEvaluation(outcome_quality=1.0, explanation="'search' succeeded"),
    }


def test_no_outcome_no_judgement() -> None:
    open_decision = _decision(0, "retriever", "kb", None)
    run = _run([open_decision], RunStatus.CANCELLED)
    assert better_option(run, open_decision) is None
    assert outcome(run, open_decision) is None


def _problem(index: int, severity: str, decision_id: str | None, second: int) -> Problem:
    return Problem(
        id=f"prob_{index}", severity=severity, description=f"p{index}", decision_id=decision_id,
        timestamp=T0 + timedelta(seconds=second),
    )  # fmt: skip


def test_outcome_weighs_success_the_problems_after_it_and_the_run_result() -> None:
    good = _decision(0, "classifier", "kb", True)
    warned = _decision(1, "retriever", "kb", True)
    failed = _decision(2, "responder", "llm", False, "rejected")
    problems = [
        _problem(0, "warning", "dec_1", 1),
        _problem(1, "minor", None, 3),  # after every decision, tied to none
        _problem(2, "critical", None, 5),
    ]
    completed = _run([good, warned, failed], RunStatus.COMPLETED, problems)
    expected: dict[str, Any] = {
        "dec_0": ("good", DecisionEvaluation(
            goal_aligned=True, alignment_score=1.0, outcome_quality=0.8,
            contributed_to_success=True,
            explanation="succeeded; 2 problems reported after it; the run completed")),
        "dec_1": ("mixed", DecisionEvaluation(
            goal_aligned=True, alignment_score=1.0, outcome_quality=0.55,
            contributed_to_success=True,
            explanation="succeeded; 1 problem tied to it; 2 problems reported after it; "
                        "the run completed")),
        "dec_2": ("poor", DecisionEvaluation(
            goal_aligned=False, alignment_score=0.5, outcome_quality=0.0,
            contributed_to_success=None,
            explanation="failed (rejected); 2 problems reported after it; the run completed")),
    }  # fmt: skip
    for decision in completed.decisions:
        label, evaluation = expected[decision.id]
        assert outcome(completed, decision) == {"label": label, "evaluation": evaluation}

    failed_run = _run([failed], RunStatus.FAILED)
    assert outcome(failed_run, failed) == {
        "label": "poor",
        "evaluation": DecisionEvaluation(
            goal_aligned=False, alignment_score=0.0, outcome_quality=0.0,
            contributed_to_success=False, explanation="failed (rejected); the run failed",
        ),
    }  # fmt: skip


def test_load_evaluator_finds_built_ins_and_module_functions_and_says_why_not() -> None:
    assert load_evaluator("better-option") == ("better-option", better_option)
    name, function = load_evaluator("decisiontrace.evaluation.evaluators:outcome")
    assert (name, function) == ("decisiontrace.evaluation.evaluators:outcome", outcome)
    for spec, words in [
        ("nope", "unknown evaluator 'nope'"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("decisiontrace.evaluation.evaluators:missing", "has no 'missing'"),
        ("decisiontrace.evaluation.evaluators:BUILT_IN", "is not callable"),
    ]:
        with pytest.raises(ValueError, match=words):
            load_evaluator(spec)
