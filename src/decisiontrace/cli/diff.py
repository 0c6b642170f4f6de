"""Where two runs first chose differently, and how their outcomes differed.

Decisions are compared in order, position by position: the first position where the
node, intent or chosen option differs (or where one run has no more decisions) is the
first difference. Outcomes are compared over every position both runs share with the
same node and intent.
"""

from __future__ import annotations

from typing import Any

from decisiontrace.models import Decision, Run
from decisiontrace.spanmodel._records import stated_confidence

__all__ = ["diff_runs"]


def _decision(decision: Decision) -> dict[str, Any]:
    chosen = decision.chosen_option
    outcome = decision.outcome
    return {
        "id": decision.id,
        "node_id": decision.node_id,
        "intent": decision.intent,
        "decision_type": decision.decision_type.value,
        "chosen_option_id": decision.chosen_option_id,
        "confidence": None if chosen is None else stated_confidence(chosen),
        "success": None if outcome is None else outcome.success,
        "error": None if outcome is None else outcome.error,
        "tokens_used": None if outcome is None else outcome.tokens_used,
        "latency_ms": None if outcome is None else outcome.latency_ms,
    }


def _run(run: Run) -> dict[str, Any]:
    """Counts from the decisions themselves, so hand-made runs compare as well as stored ones."""
    outcomes = [d.outcome for d in run.decisions if d.outcome is not None]
    return {
        "id": run.id,
        "goal_id": run.goal_id,
        "status": run.status.value,
        "decisions": len(run.decisions),
        "successful_decisions": sum(1 for o in outcomes if o.success),
        "failed_decisions": sum(1 for o in outcomes if not o.success),
        "total_tokens": sum(o.tokens_used for o in outcomes),
        "duration_ms": run.duration_ms,
        "problems": len(run.problems),
    }


def _same_step(a: Decision, b: Decision) -> bool:
    return a.node_id == b.node_id and a.intent == b.intent


def diff_runs(run_a: Run, run_b: Run) -> dict[str, Any]:
    """Compare two runs.

    Returns:
        A JSON-ready dict: ``run_a`` and ``run_b`` (id, goal, status and counts),
        ``same_goal``, ``same_decisions`` (how many leading decisions agree on node,
        intent and chosen option), ``first_difference`` (None when every decision agrees,
        else ``index``, ``kind`` — ``chosen`` (same step, other option), ``path`` (a
        different step) or ``length`` (one run stopped) — and the two decisions, a
        missing one as None), ``outcome_differences`` (positions of the same step whose
        success differs) and ``delta`` (run B minus run A for tokens, duration, failed
        decisions and problems).
    """
    a_decisions, b_decisions = run_a.decisions, run_b.decisions
    first: dict[str, Any] | None = None
    agreed = 0
    for index in range(max(len(a_decisions), len(b_decisions))):
        a = a_decisions[index] if index < len(a_decisions) else None
        b = b_decisions[index] if index < len(b_decisions) else None
        if a is None or b is None:
            kind = "length"
        elif not _same_step(a, b):
            kind = "path"
        elif a.chosen_option_id != b.chosen_option_id:
            kind = "chosen"
        else:
            agreed += 1
            continue
        first = {
            "index": index,
            "kind": kind,
            "a": None if a is None else _decision(a),
            "b": None if b is None else _decision(b),
        }
        break
    outcome_differences = []
    for index, (a, b) in enumerate(zip(a_decisions, b_decisions, strict=False)):
        if not _same_step(a, b):
            continue
        a_success = None if a.outcome is None else a.outcome.success
        b_success = None if b.outcome is None else b.outcome.success
        if a_success != b_success:
            outcome_differences.append(
                {
                    "index": index,
                    "node_id": a.node_id,
                    "intent": a.intent,
                    "a": _decision(a),
                    "b": _decision(b),
                }
            )
    summary_a, summary_b = _run(run_a), _run(run_b)
    return {
        "run_a": summary_a,
        "run_b": summary_b,
        "same_goal": run_a.goal_id == run_b.goal_id,
        "same_decisions": agreed,
        "first_difference": first,
        "outcome_differences": outcome_differences,
        "delta": {
            key: summary_b[key] - summary_a[key]
            for key in ("total_tokens", "duration_ms", "failed_decisions", "problems")
        },
    }
