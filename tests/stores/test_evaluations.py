"""Judgements round-trip through every store (memory, SQLite, JSON files, PostgreSQL: the
``store`` fixture of conftest.py), survive the run being saved again, and never wipe or
duplicate one another."""

from __future__ import annotations

from typing import Any

import jsonschema

from decisiontrace import Run
from decisiontrace.evaluation.judgement import build, judgements_of, stored_form
from decisiontrace.stores import RunStore
from tests.stores._records import make_record


def _judgement(evaluator: str, **fields: Any) -> dict[str, Any]:
    return stored_form(
        build(
            evaluator,
            fields.get("evaluation"),
            fields.get("score"),
            fields.get("label"),
            fields.get("explanation"),
            fields.get("evaluated_at"),
        )
    )


def _run_id(store: RunStore, name: str) -> str:
    return f"run_eval_{name}"


def test_judgements_round_trip_and_full_evaluation_becomes_the_decision_evaluation(
    store: RunStore, run_schema: dict[str, Any]
) -> None:
    run_id = _run_id(store, "round")
    store.save_records([make_record(run_id)])
    decision_id = store.load_run(run_id).decisions[0].id  # type: ignore[union-attr]
    full = {"goal_aligned": False, "alignment_score": 0.2, "outcome_quality": 0.3,
            "better_option_existed": True, "better_option_id": "other", "why_better": "x",
            "explanation": "judged"}  # fmt: skip
    assert (
        store.update_evaluations(
            run_id,
            [
                (decision_id, _judgement("judge-a", score=0.9, label="good", explanation="fine")),
                (decision_id, _judgement("judge-b", evaluation=full)),
            ],
        )
        == []
    )

    run = store.load_run(run_id)
    assert run is not None
    decision = run.decisions[0]
    assert [(j.evaluator, j.score, j.label) for j in judgements_of(decision)] == [
        ("judge-a", 0.9, "good"),
        ("judge-b", 0.3, None),
    ]
    assert decision.evaluation is not None
    assert decision.evaluation.better_option_id == "other"
    assert decision.evaluation.outcome_quality == 0.3
    assert decision.was_good_decision is False  # the evaluation now decides it
    assert run.decisions[1].model_extra == {} or "evaluations" not in (
        run.decisions[1].model_extra or {}
    )
    # The original's schema accepts the evaluated record.
    jsonschema.validate(run.model_dump(mode="json"), run_schema)
    # And the record is what the store hands out.
    assert Run.model_validate(store.load_record(run_id)) == run


def test_the_latest_judgement_of_an_evaluator_wins_and_an_older_one_is_ignored(
    store: RunStore,
) -> None:
    from datetime import datetime

    run_id = _run_id(store, "latest")
    store.save_records([make_record(run_id)])
    early, late = datetime(2026, 12, 1, 10, 0), datetime(2026, 12, 1, 11, 0)
    store.update_evaluations(run_id, [("dec_0", _judgement("j", score=0.1, evaluated_at=early))])
    store.update_evaluations(run_id, [("dec_0", _judgement("j", score=0.7, evaluated_at=late))])
    store.update_evaluations(run_id, [("dec_0", _judgement("j", score=0.2, evaluated_at=early))])
    run = store.load_run(run_id)
    assert run is not None
    assert [(j.evaluator, j.score) for j in judgements_of(run.decisions[0])] == [("j", 0.7)]


def test_saving_the_run_again_keeps_its_judgements(store: RunStore) -> None:
    run_id = _run_id(store, "resave")
    store.save_records([make_record(run_id)])
    store.update_evaluations(
        run_id, [("dec_0", _judgement("j", evaluation={"outcome_quality": 0.4}))]
    )
    # A late span re-assembles the run: the new record has no judgements of its own.
    again = make_record(run_id)
    again["narrative"] = "saved again"
    store.save_records([again])
    assert "evaluations" not in again["decisions"][0]  # the caller's record is untouched
    run = store.load_run(run_id)
    assert run is not None
    assert run.narrative == "saved again"
    assert [j.evaluator for j in judgements_of(run.decisions[0])] == ["j"]
    assert run.decisions[0].evaluation is not None
    assert run.decisions[0].evaluation.outcome_quality == 0.4


def test_unknown_run_and_decision_ids_record_nothing(store: RunStore) -> None:
    run_id = _run_id(store, "unknown")
    assert store.update_evaluations(run_id, [("dec_0", _judgement("j", score=1.0))]) is None
    store.save_records([make_record(run_id)])
    before = store.load_record(run_id)
    assert store.update_evaluations(run_id, [("dec_99", _judgement("j", score=1.0))]) == ["dec_99"]
    assert store.load_record(run_id) == before
    assert store.load_run("run_never_saved") is None
