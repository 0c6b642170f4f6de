"""Judgements of decisions, merged into stored run records (plain dicts).

A judgement is what one evaluator concluded about one decision, kept in the decision's
``evaluations`` extra field (the original's models accept extra fields)::

    {"evaluator": "better-option", "score": 0.0, "label": "better_option_existed",
     "explanation": "...", "evaluation": {...DecisionEvaluation...} | null,
     "evaluated_at": "2026-12-01T12:00:00.123456"}

One judgement per evaluator: a later one replaces an earlier one of the same evaluator
(an older one arriving late, e.g. replayed by ``rebuild``, is ignored), so evaluating
twice changes nothing. The decision's own ``evaluation`` field (the original's) holds the
full ``DecisionEvaluation`` of the latest judgement that has one.

The stores use these helpers to apply judgements inside their own transactions, and to
carry judgements over when a run is saved again (a late span re-assembles it).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from decisiontrace.spanmodel import _records

#: The decision's extra field holding its judgements.
EVALUATIONS_FIELD = "evaluations"

Record = dict[str, Any]
#: ``(decision_id, judgement)``.
DecisionJudgement = tuple[str, Record]


def _newer_or_same(candidate: Record, current: Record) -> bool:
    return str(candidate.get("evaluated_at") or "") >= str(current.get("evaluated_at") or "")


def merged(existing: Iterable[Any], incoming: Iterable[Record]) -> list[Record]:
    """One judgement per evaluator, the latest of each, in first-seen evaluator order."""
    by_evaluator: dict[str, Record] = {}
    for judgement in (*existing, *incoming):
        if not isinstance(judgement, dict) or not isinstance(judgement.get("evaluator"), str):
            continue
        name = judgement["evaluator"]
        current = by_evaluator.get(name)
        if current is None or _newer_or_same(judgement, current):
            # Reinserting would move it to the end; keep the evaluator's first place.
            by_evaluator[name] = judgement
    return list(by_evaluator.values())


def refresh_evaluation(decision: Record) -> None:
    """Set ``evaluation`` to the latest full evaluation among the judgements, if any."""
    judgements = [
        j
        for j in decision.get(EVALUATIONS_FIELD) or []
        if isinstance(j, dict) and isinstance(j.get("evaluation"), dict)
    ]
    if not judgements:
        return
    latest = max(judgements, key=lambda j: str(j.get("evaluated_at") or ""))
    decision["evaluation"] = latest["evaluation"]
    if "was_good_decision" in decision:  # the computed field, when the record carries it
        decision["was_good_decision"] = _records.was_good_decision(
            bool(decision.get("was_successful")), latest["evaluation"]
        )


def apply(record: Record, judgements: Sequence[DecisionJudgement]) -> list[str]:
    """Merge judgements into ``record`` in place; returns the decision ids not in it."""
    decisions = {d.get("id"): d for d in record.get("decisions") or [] if isinstance(d, dict)}
    unknown: list[str] = []
    for decision_id, judgement in judgements:
        decision = decisions.get(decision_id)
        if decision is None:
            unknown.append(decision_id)
            continue
        decision[EVALUATIONS_FIELD] = merged(decision.get(EVALUATIONS_FIELD) or [], [judgement])
        refresh_evaluation(decision)
    return unknown


def carried(old: Record) -> list[DecisionJudgement]:
    """The judgements of a stored record, to apply again to a new version of the run."""
    return [
        (str(decision.get("id")), judgement)
        for decision in old.get("decisions") or []
        if isinstance(decision, dict)
        for judgement in decision.get(EVALUATIONS_FIELD) or []
        if isinstance(judgement, dict)
    ]


def carry_over(old: Record | None, new: Record) -> bool:
    """Keep the judgements of ``old`` in ``new`` (same run saved again); True if any."""
    if old is None:
        return False
    judgements = carried(old)
    if not judgements:
        return False
    apply(new, judgements)
    return True


def decision_ids(record: Record) -> set[str]:
    """The ids of a record's decisions."""
    return {str(d.get("id")) for d in record.get("decisions") or [] if isinstance(d, dict)}


__all__ = [
    "EVALUATIONS_FIELD",
    "DecisionJudgement",
    "apply",
    "carried",
    "carry_over",
    "decision_ids",
    "merged",
    "refresh_evaluation",
]
