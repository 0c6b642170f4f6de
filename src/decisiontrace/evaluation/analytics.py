"""What the judgements say, per node and per chosen option, and how well the agent's
confidence predicted them.

Definitions (over decisions with at least one judgement that has a full
``DecisionEvaluation``; a record's own ``evaluation`` counts when it has no judgements):

- *evaluated quality*: the mean ``outcome_quality`` of a decision's full evaluations,
  then the mean over decisions;
- *goal alignment*: the mean ``alignment_score`` likewise, and the share of decisions
  every evaluation called ``goal_aligned``;
- *better option existed*: some evaluation of the decision says so; ``better_options``
  counts which option it named;
- *calibration against quality*: the chosen option's confidence against evaluated quality,
  in ten buckets of width 0.1 (the last includes 1.0), beside the success rate of the
  same decisions (those with an outcome); each expected calibration error is the
  bucket-size-weighted mean of ``|quality - confidence|`` (or ``|success rate -
  confidence|``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from decisiontrace.evaluation.judgement import judgements_of
from decisiontrace.models import Decision, DecisionEvaluation, Run
from decisiontrace.spanmodel._records import stated_confidence

__all__ = [
    "BUCKETS",
    "EvaluationTally",
    "decision_evaluations",
    "decision_verdict",
    "evaluation_stats",
]

BUCKETS = 10


def decision_evaluations(decision: Decision) -> list[DecisionEvaluation]:
    """The full evaluations of a decision: its judgements', else its own ``evaluation``."""
    full = [j.evaluation for j in judgements_of(decision) if j.evaluation is not None]
    if not full and decision.evaluation is not None:
        full = [decision.evaluation]
    return full


@dataclass
class _Group:
    judged: int = 0
    quality_sum: float = 0.0
    alignment_sum: float = 0.0
    aligned: int = 0
    better: int = 0
    better_options: Counter[str] = field(default_factory=Counter)

    def add(self, evaluations: list[DecisionEvaluation]) -> None:
        self.judged += 1
        self.quality_sum += sum(e.outcome_quality for e in evaluations) / len(evaluations)
        self.alignment_sum += sum(e.alignment_score for e in evaluations) / len(evaluations)
        self.aligned += all(e.goal_aligned for e in evaluations)
        named = [e for e in evaluations if e.better_option_existed]
        if named:
            self.better += 1
            option = next((e.better_option_id for e in named if e.better_option_id), None)
            if option is not None:
                self.better_options[option] += 1

    def as_dict(self) -> dict[str, Any]:
        judged = self.judged
        return {
            "judged": judged,
            "mean_quality": round(self.quality_sum / judged, 4) if judged else None,
            "mean_alignment": round(self.alignment_sum / judged, 4) if judged else None,
            "goal_aligned_rate": round(self.aligned / judged, 4) if judged else None,
            "better_option_existed": self.better,
            "better_option_rate": round(self.better / judged, 4) if judged else None,
            "better_options": dict(self.better_options.most_common()),
        }


@dataclass
class _Bucket:
    decisions: int = 0
    confidence_sum: float = 0.0
    quality_sum: float = 0.0
    with_outcome: int = 0
    successes: int = 0


@dataclass
class EvaluationTally:
    """Accumulates :func:`evaluation_stats` a run at a time (runs are streamed)."""

    judgements: int = 0
    evaluators: Counter[str] = field(default_factory=Counter)
    overall: _Group = field(default_factory=_Group)
    nodes: dict[str, _Group] = field(default_factory=dict)
    options: dict[tuple[str, str], _Group] = field(default_factory=dict)
    buckets: list[_Bucket] = field(default_factory=lambda: [_Bucket() for _ in range(BUCKETS)])

    def add(self, run: Run) -> None:
        for decision in run.decisions:
            for judgement in judgements_of(decision):
                self.judgements += 1
                self.evaluators[judgement.evaluator] += 1
            evaluations = decision_evaluations(decision)
            if not evaluations:
                continue
            self.overall.add(evaluations)
            self.nodes.setdefault(decision.node_id, _Group()).add(evaluations)
            chosen = decision.chosen_option
            if chosen is None:
                continue
            self.options.setdefault((decision.node_id, chosen.id), _Group()).add(evaluations)
            confidence = stated_confidence(chosen)
            if confidence is None:  # the agent gave none: not a statement to calibrate
                continue
            bucket = self.buckets[min(BUCKETS - 1, max(0, int(confidence * BUCKETS)))]
            bucket.decisions += 1
            bucket.confidence_sum += confidence
            bucket.quality_sum += sum(e.outcome_quality for e in evaluations) / len(evaluations)
            if decision.outcome is not None:
                bucket.with_outcome += 1
                bucket.successes += decision.outcome.success

    def result(self) -> dict[str, Any]:
        """The JSON-ready statistics (see the module docstring)."""
        return {
            "judgements": self.judgements,
            "evaluators": dict(sorted(self.evaluators.items())),
            "overall": self.overall.as_dict(),
            "by_node": [{"node_id": k, **g.as_dict()} for k, g in self.nodes.items()],
            "by_option": [
                {"node_id": node_id, "option_id": option_id, **g.as_dict()}
                for (node_id, option_id), g in self.options.items()
            ],
            "calibration": self._calibration(),
        }

    def _calibration(self) -> dict[str, Any]:
        total = sum(b.decisions for b in self.buckets)
        with_outcome = sum(b.with_outcome for b in self.buckets)
        quality_error = success_error = 0.0
        rows = []
        for index, b in enumerate(self.buckets):
            confidence = b.confidence_sum / b.decisions if b.decisions else None
            quality = b.quality_sum / b.decisions if b.decisions else None
            rate = b.successes / b.with_outcome if b.with_outcome else None
            if confidence is not None and quality is not None:
                quality_error += b.decisions / total * abs(quality - confidence)
            if confidence is not None and rate is not None:
                success_error += b.with_outcome / with_outcome * abs(rate - confidence)
            rows.append(
                {
                    "low": index / BUCKETS,
                    "high": (index + 1) / BUCKETS,
                    "decisions": b.decisions,
                    "mean_confidence": None if confidence is None else round(confidence, 4),
                    "mean_quality": None if quality is None else round(quality, 4),
                    "success_rate": None if rate is None else round(rate, 4),
                }
            )
        return {
            "decisions": total,
            "buckets": rows,
            "expected_calibration_error_quality": round(quality_error, 4) if total else None,
            "expected_calibration_error_success": (
                round(success_error, 4) if with_outcome else None
            ),
        }


def evaluation_stats(runs: list[Run]) -> dict[str, Any]:
    """Evaluated quality, goal alignment, better options and calibration over ``runs``."""
    tally = EvaluationTally()
    for run in runs:
        tally.add(run)
    return tally.result()


def decision_verdict(decision: Decision) -> dict[str, Any] | None:
    """What the judgements of one decision say, for listing decisions; None if unjudged.

    Returns:
        ``evaluators`` (names), ``quality`` and ``alignment`` (means over the full
        evaluations, None without one), ``better_option_id`` (the first one named, or
        None) and ``better_option_existed``.
    """
    judgements = judgements_of(decision)
    evaluations = decision_evaluations(decision)
    if not judgements and not evaluations:
        return None
    better = [e for e in evaluations if e.better_option_existed]
    return {
        "evaluators": [j.evaluator for j in judgements],
        "quality": (
            round(sum(e.outcome_quality for e in evaluations) / len(evaluations), 4)
            if evaluations
            else None
        ),
        "alignment": (
            round(sum(e.alignment_score for e in evaluations) / len(evaluations), 4)
            if evaluations
            else None
        ),
        "better_option_existed": bool(better),
        "better_option_id": next((e.better_option_id for e in better if e.better_option_id), None),
    }
