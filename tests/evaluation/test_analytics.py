"""Evaluation statistics on crafted runs, with the exact numbers expected."""

from __future__ import annotations

from typing import Any

from decisiontrace import Decision, DecisionEvaluation, Outcome, Run
from decisiontrace.evaluation.analytics import decision_verdict, evaluation_stats
from decisiontrace.evaluation.judgement import build, stored_form


def _decision(
    index: int, chosen: str, confidence: float, success: bool, *evaluations: tuple[str, Any]
) -> Decision:
    record: dict[str, Any] = {
        "id": f"dec_{index}",
        "node_id": "retriever",
        "intent": "pick",
        "options": [
            {
                "id": o,
                "description": o,
                "action_type": "t",
                "confidence": confidence if o == chosen else 0.1,
            }
            for o in ("kb", "web")
        ],
        "chosen_option_id": chosen,
        "outcome": Outcome(success=success).model_dump(mode="json"),
    }
    record["evaluations"] = [
        stored_form(build(name, evaluation, None, None, None)) for name, evaluation in evaluations
    ]
    return Decision.model_validate(record)


def test_quality_alignment_better_options_and_calibration() -> None:
    run = Run(
        id="run_a",
        goal_id="g",
        decisions=[
            _decision(0, "kb", 0.85, False,
                      ("judge", DecisionEvaluation(outcome_quality=0.0, alignment_score=0.5,
                                                   better_option_existed=True,
                                                   better_option_id="web")),
                      ("other", DecisionEvaluation(outcome_quality=0.2, goal_aligned=False,
                                                   alignment_score=0.1))),
            _decision(1, "web", 0.75, True,
                      ("judge", DecisionEvaluation(outcome_quality=1.0))),
            _decision(2, "kb", 0.8, True),  # not judged
        ],
    )  # fmt: skip
    stats = evaluation_stats([run])
    assert stats["judgements"] == 3
    assert stats["evaluators"] == {"judge": 2, "other": 1}
    assert stats["overall"] == {
        "judged": 2,
        "mean_quality": 0.55,  # (mean(0.0, 0.2) + 1.0) / 2
        "mean_alignment": 0.65,  # (mean(0.5, 0.1) + 1.0) / 2
        "goal_aligned_rate": 0.5,  # dec_0 has an evaluation calling it not aligned
        "better_option_existed": 1,
        "better_option_rate": 0.5,
        "better_options": {"web": 1},
    }
    assert [(g["node_id"], g["option_id"], g["judged"], g["better_options"])
            for g in stats["by_option"]] == [
        ("retriever", "kb", 1, {"web": 1}), ("retriever", "web", 1, {})]  # fmt: skip
    calibration = stats["calibration"]
    filled = [b for b in calibration["buckets"] if b["decisions"]]
    assert filled == [
        {"low": 0.7, "high": 0.8, "decisions": 1, "mean_confidence": 0.75,
         "mean_quality": 1.0, "success_rate": 1.0},
        {"low": 0.8, "high": 0.9, "decisions": 1, "mean_confidence": 0.85,
         "mean_quality": 0.1, "success_rate": 0.0},
    ]  # fmt: skip
    assert calibration["expected_calibration_error_quality"] == 0.5  # (0.25 + 0.75) / 2
    assert calibration["expected_calibration_error_success"] == 0.55  # (0.25 + 0.85) / 2


def test_a_defaulted_confidence_is_left_out_of_calibration() -> None:
    decision = _decision(0, "kb", 0.5, True, ("judge", DecisionEvaluation(outcome_quality=1.0)))
    decision.options[0].confidence_defaulted = True  # type: ignore[attr-defined]
    stats = evaluation_stats([Run(id="r", goal_id="g", decisions=[decision])])
    assert stats["overall"]["judged"] == 1
    assert stats["calibration"]["decisions"] == 0
    assert stats["calibration"]["expected_calibration_error_quality"] is None


def test_a_record_with_only_the_original_evaluation_field_counts() -> None:
    decision = Decision.model_validate(
        {"id": "dec_0", "node_id": "n", "intent": "i",
         "evaluation": {"outcome_quality": 0.4, "better_option_existed": True}}
    )  # fmt: skip
    stats = evaluation_stats([Run(id="r", goal_id="g", decisions=[decision])])
    assert stats["judgements"] == 0
    assert (stats["overall"]["judged"], stats["overall"]["mean_quality"]) == (1, 0.4)
    assert stats["overall"]["better_options"] == {}
    assert stats["by_option"] == []


def test_the_verdict_of_one_decision() -> None:
    judged = _decision(
        0, "kb", 0.8, False,
        ("judge", DecisionEvaluation(outcome_quality=0.0, alignment_score=0.4,
                                     better_option_existed=True, better_option_id="web")),
        ("other", DecisionEvaluation(outcome_quality=0.5, alignment_score=0.6)),
    )  # fmt: skip
    assert decision_verdict(judged) == {
        "evaluators": ["judge", "other"],
        "quality": 0.25,
        "alignment": 0.5,
        "better_option_existed": True,
        "better_option_id": "web",
    }
    assert decision_verdict(_decision(1, "kb", 0.8, True)) is None
