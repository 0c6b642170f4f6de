"""Statistics over stored runs: per node, decision type and option, and calibration.

Everything here works on :class:`~decisiontrace.models.Run` records and returns plain
JSON-ready dicts, so ``decisiontrace stats --json``, the terminal tables and the HTML
report all show the same numbers.

Definitions:

- a decision *succeeded* when its outcome says so; decisions without an outcome count as
  made but not in success rates (``success_rate`` is ``None`` when no decision of a
  group has an outcome);
- tokens and latency come from the outcomes; latency percentiles interpolate linearly
  between the closest ranks (numpy's default), over decisions with an outcome;
- an option is *offered* by every decision that lists it and *chosen* when it is the
  decision's ``chosen_option_id``; its success rate is over the decisions that chose it;
- calibration compares the stated confidence of the chosen option with how often those
  decisions succeeded, in ten buckets of width 0.1 (the last one includes 1.0), over
  decisions with an outcome whose chosen option is among their options and has a
  confidence the agent gave (a ``confidence_defaulted`` option's 0.5 is the schema's
  default, not a statement: it is left out here and of ``mean_confidence``). The expected
  calibration error is the bucket-size-weighted mean of ``|success rate - confidence|``;
- ``evaluations``: what judgements of the decisions say (evaluated quality, goal
  alignment, better options, calibration against quality), defined in
  :mod:`decisiontrace.evaluation.analytics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from decisiontrace.evaluation.analytics import EvaluationTally
from decisiontrace.models import Decision, Run
from decisiontrace.spanmodel._records import stated_confidence

__all__ = ["BUCKETS", "compute_stats", "percentile"]

#: Number of calibration buckets over [0, 1].
BUCKETS = 10
_PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values``, interpolating linearly; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    value = ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    return round(value, 3)


@dataclass
class _Tally:
    """Counts for one group of decisions."""

    decisions: int = 0
    with_outcome: int = 0
    successes: int = 0
    tokens: int = 0
    latencies: list[int] = field(default_factory=list)

    def add(self, decision: Decision) -> None:
        self.decisions += 1
        outcome = decision.outcome
        if outcome is None:
            return
        self.with_outcome += 1
        self.successes += outcome.success
        self.tokens += outcome.tokens_used
        self.latencies.append(outcome.latency_ms)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "with_outcome": self.with_outcome,
            "successes": self.successes,
            "success_rate": _rate(self.successes, self.with_outcome),
            "tokens": {
                "total": self.tokens,
                "mean": _mean(self.tokens, self.with_outcome),
            },
            "latency_ms": {f"p{q}": percentile(self.latencies, q) for q in _PERCENTILES},
        }


@dataclass
class _OptionTally:
    offered: int = 0
    chosen: _Tally = field(default_factory=_Tally)
    confidences: list[float] = field(default_factory=list)


@dataclass
class _Bucket:
    decisions: int = 0
    successes: int = 0
    confidence_sum: float = 0.0


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _mean(total: float, count: int) -> float | None:
    return None if count == 0 else round(total / count, 2)


def _bucket_of(confidence: float) -> int:
    return min(BUCKETS - 1, max(0, int(confidence * BUCKETS)))


def compute_stats(runs: Iterable[Run]) -> dict[str, Any]:
    """Statistics over ``runs`` (see the module docstring for the definitions).

    Returns:
        A JSON-ready dict: ``runs``, ``decisions``, ``runs_by_status``, ``by_node``,
        ``by_decision_type``, ``by_node_and_type``, ``by_option`` (lists of groups, in
        order of first appearance, each with ``decisions``, ``with_outcome``,
        ``successes``, ``success_rate``, ``tokens`` and ``latency_ms`` percentiles) and
        ``calibration`` (``buckets`` and ``expected_calibration_error``) and
        ``evaluations`` (see :mod:`decisiontrace.evaluation.analytics`).
    """
    run_count = 0
    by_status: dict[str, int] = {}
    overall = _Tally()
    nodes: dict[str, _Tally] = {}
    types: dict[str, _Tally] = {}
    node_types: dict[tuple[str, str], _Tally] = {}
    options: dict[tuple[str, str, str], _OptionTally] = {}
    buckets = [_Bucket() for _ in range(BUCKETS)]
    evaluations = EvaluationTally()
    for run in runs:
        run_count += 1
        evaluations.add(run)
        by_status[run.status.value] = by_status.get(run.status.value, 0) + 1
        for decision in run.decisions:
            kind = decision.decision_type.value
            overall.add(decision)
            nodes.setdefault(decision.node_id, _Tally()).add(decision)
            types.setdefault(kind, _Tally()).add(decision)
            node_types.setdefault((decision.node_id, kind), _Tally()).add(decision)
            chosen = decision.chosen_option
            for option in decision.options:
                tally = options.setdefault((decision.node_id, kind, option.id), _OptionTally())
                tally.offered += 1
                if chosen is not None and option.id == chosen.id:
                    tally.chosen.add(decision)
                    stated = stated_confidence(option)
                    if stated is not None:
                        tally.confidences.append(stated)
            # Calibration: only confidences the agent gave (not the schema's default).
            confidence = None if chosen is None else stated_confidence(chosen)
            if confidence is not None and decision.outcome is not None:
                bucket = buckets[_bucket_of(confidence)]
                bucket.decisions += 1
                bucket.successes += decision.outcome.success
                bucket.confidence_sum += confidence
    return {
        "runs": run_count,
        "decisions": overall.decisions,
        "runs_by_status": dict(sorted(by_status.items())),
        "overall": overall.as_dict(),
        "by_node": [{"node_id": key, **tally.as_dict()} for key, tally in nodes.items()],
        "by_decision_type": [
            {"decision_type": key, **tally.as_dict()} for key, tally in types.items()
        ],
        "by_node_and_type": [
            {"node_id": node_id, "decision_type": kind, **tally.as_dict()}
            for (node_id, kind), tally in node_types.items()
        ],
        "by_option": [
            {
                "node_id": node_id,
                "decision_type": kind,
                "option_id": option_id,
                "offered": tally.offered,
                "chosen": tally.chosen.decisions,
                "chosen_share": _rate(tally.chosen.decisions, tally.offered),
                "mean_confidence": _mean(sum(tally.confidences), len(tally.confidences)),
                **{k: v for k, v in tally.chosen.as_dict().items() if k != "decisions"},
            }
            for (node_id, kind, option_id), tally in options.items()
        ],
        "calibration": _calibration(buckets),
        "evaluations": evaluations.result(),
    }


def _calibration(buckets: list[_Bucket]) -> dict[str, Any]:
    total = sum(bucket.decisions for bucket in buckets)
    error = 0.0
    rows = []
    for index, bucket in enumerate(buckets):
        rate = _rate(bucket.successes, bucket.decisions)
        confidence = _mean(bucket.confidence_sum, bucket.decisions)
        if rate is not None and confidence is not None:
            error += bucket.decisions / total * abs(rate - confidence)
        rows.append(
            {
                "low": index / BUCKETS,
                "high": (index + 1) / BUCKETS,
                "decisions": bucket.decisions,
                "successes": bucket.successes,
                "mean_confidence": confidence,
                "success_rate": rate,
            }
        )
    return {
        "decisions": total,
        "buckets": rows,
        "expected_calibration_error": round(error, 4) if total else None,
    }
