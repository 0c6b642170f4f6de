"""Statistics over stored runs: per node, decision type and option, and calibration.

Everything here works on :class:`~decisiontrace.models.Run` records, or on the counts a
SQL store keeps at write time (``RunStore.decision_tallies``: no run is decoded but
those with judgements), and returns plain JSON-ready dicts, so ``decisiontrace stats
--json``, the terminal tables and the HTML report all show the same numbers.

Definitions:

- a decision *succeeded* when its outcome says so; decisions without an outcome count as
  made but not in success rates (``success_rate`` is ``None`` when no decision of a
  group has an outcome);
- groups (nodes, types, options) are listed most decisions first, then by name;
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

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from decisiontrace.cli._store import load_runs
from decisiontrace.evaluation.analytics import EvaluationTally
from decisiontrace.models import Run
from decisiontrace.spanmodel._records import stated_confidence
from decisiontrace.stores import RunStore
from decisiontrace.stores._facts import DecisionTallies

__all__ = [
    "BUCKETS", "compute_stats", "percentile", "percentile_of_counts", "stats_from_tallies",
    "stats_of_store",
]  # fmt: skip

#: Number of calibration buckets over [0, 1].
BUCKETS = 10
_PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values``, interpolating linearly; None if empty."""
    return percentile_of_counts(Counter(values), q)


def percentile_of_counts(counts: Mapping[Any, int], q: float) -> float | None:
    """:func:`percentile` of the values ``counts`` holds (value -> how many times)."""
    total = sum(counts.values())
    if not total:
        return None
    rank = (total - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, total - 1)
    low_value: float | None = None
    high_value: float = 0.0
    seen = 0
    for candidate in sorted(counts):
        seen += counts[candidate]
        if low_value is None and seen > low:
            low_value = candidate
        if seen > high:
            high_value = candidate
            break
    assert low_value is not None
    result: float = low_value + (high_value - low_value) * (rank - low)
    return round(result, 3)


@dataclass
class _Tally:
    """Counts for one group of decisions."""

    decisions: int = 0
    with_outcome: int = 0
    successes: int = 0
    tokens: int = 0
    latencies: Counter[int] = field(default_factory=Counter)

    def add(self, outcome: int | None, latency: int, tokens: int, count: int = 1) -> None:
        """``count`` decisions with this outcome (None, 0 or 1), latency and total tokens."""
        self.count(outcome, count, tokens)
        if outcome is not None:
            self.latencies[latency] += count

    def count(self, outcome: int | None, count: int, tokens: int) -> None:
        """``count`` decisions with this outcome and total tokens (latencies apart)."""
        self.decisions += count
        if outcome is not None:
            self.with_outcome += count
            self.successes += outcome * count
            self.tokens += tokens

    def merge(self, other: _Tally) -> None:
        """Count another group's decisions in this one."""
        self.decisions += other.decisions
        self.with_outcome += other.with_outcome
        self.successes += other.successes
        self.tokens += other.tokens
        self.latencies.update(other.latencies)

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
            "latency_ms": {f"p{q}": percentile_of_counts(self.latencies, q) for q in _PERCENTILES},
        }


@dataclass
class _OptionTally:
    offered: int = 0
    chosen: _Tally = field(default_factory=_Tally)
    confidence_count: int = 0
    confidence_sum: float = 0.0


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


@dataclass
class _Statistics:
    """The accumulators both ways in feed: decoded runs, or a store's tallies."""

    runs: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    overall: _Tally = field(default_factory=_Tally)
    nodes: dict[str, _Tally] = field(default_factory=dict)
    types: dict[str, _Tally] = field(default_factory=dict)
    node_types: dict[tuple[str, str], _Tally] = field(default_factory=dict)
    options: dict[tuple[str, str, str], _OptionTally] = field(default_factory=dict)
    buckets: list[_Bucket] = field(default_factory=lambda: [_Bucket() for _ in range(BUCKETS)])
    evaluations: EvaluationTally = field(default_factory=EvaluationTally)

    def add_group(
        self, node: str, kind: str, chosen: str | None, outcome: int | None, latency: int,
        count: int, tokens: int,
    ) -> None:  # fmt: skip
        """``count`` decisions of one node and type that chose ``chosen`` (an id among
        their options, else None) with this outcome and latency, and their tokens."""
        tally = self.node_types.get((node, kind))
        if tally is None:
            tally = self.node_types[(node, kind)] = _Tally()
        tally.add(outcome, latency, tokens, count)
        if chosen is not None:
            option = self.options.setdefault((node, kind, chosen), _OptionTally())
            option.chosen.add(outcome, latency, tokens, count)

    def add_offered(self, node: str, kind: str, option_ids: Iterable[str], count: int) -> None:
        for option_id in option_ids:
            self.options.setdefault((node, kind, option_id), _OptionTally()).offered += count

    def add_confidence(self, node: str, kind: str, chosen: str, count: int, total: float) -> None:
        option = self.options.setdefault((node, kind, chosen), _OptionTally())
        option.confidence_count += count
        option.confidence_sum += total

    def add_calibration(self, bucket: int, count: int, successes: int, total: float) -> None:
        self.buckets[bucket].decisions += count
        self.buckets[bucket].successes += successes
        self.buckets[bucket].confidence_sum += total

    def add_run(self, run: Run) -> None:
        """A decoded run: every decision as a group of one."""
        self.runs += 1
        self.by_status[run.status.value] += 1
        self.evaluations.add(run)
        for decision in run.decisions:
            node, kind = decision.node_id, decision.decision_type.value
            outcome = decision.outcome
            chosen = decision.chosen_option
            self.add_group(
                node, kind, None if chosen is None else chosen.id,
                None if outcome is None else int(outcome.success),
                0 if outcome is None else outcome.latency_ms,
                1, 0 if outcome is None else outcome.tokens_used,
            )  # fmt: skip
            self.add_offered(node, kind, [option.id for option in decision.options], 1)
            # Calibration: only confidences the agent gave (not the schema's default).
            confidence = None if chosen is None else stated_confidence(chosen)
            if confidence is None or chosen is None:
                continue
            self.add_confidence(node, kind, chosen.id, 1, confidence)
            if outcome is not None:
                self.add_calibration(_bucket_of(confidence), 1, int(outcome.success), confidence)

    def result(self) -> dict[str, Any]:
        # Nodes, types and the whole from the node-and-type groups.
        for (node, kind), tally in self.node_types.items():
            self.nodes.setdefault(node, _Tally()).merge(tally)
            self.types.setdefault(kind, _Tally()).merge(tally)
            self.overall.merge(tally)

        def ordered(groups: dict[Any, _Tally]) -> list[tuple[Any, _Tally]]:
            # Most decisions first, then by name: the same order however they were counted.
            return sorted(groups.items(), key=lambda item: (-item[1].decisions, item[0]))

        options = sorted(self.options.items(), key=lambda item: (item[0][:2], -item[1].offered,
                                                                 item[0][2]))  # fmt: skip
        return {
            "runs": self.runs,
            "decisions": self.overall.decisions,
            "runs_by_status": dict(sorted(self.by_status.items())),
            "overall": self.overall.as_dict(),
            "by_node": [{"node_id": key, **tally.as_dict()} for key, tally in ordered(self.nodes)],
            "by_decision_type": [
                {"decision_type": key, **tally.as_dict()} for key, tally in ordered(self.types)
            ],
            "by_node_and_type": [
                {"node_id": node_id, "decision_type": kind, **tally.as_dict()}
                for (node_id, kind), tally in ordered(self.node_types)
            ],
            "by_option": [
                {
                    "node_id": node_id,
                    "decision_type": kind,
                    "option_id": option_id,
                    "offered": tally.offered,
                    "chosen": tally.chosen.decisions,
                    "chosen_share": _rate(tally.chosen.decisions, tally.offered),
                    "mean_confidence": _mean(tally.confidence_sum, tally.confidence_count),
                    **{k: v for k, v in tally.chosen.as_dict().items() if k != "decisions"},
                }
                for (node_id, kind, option_id), tally in options
            ],
            "calibration": _calibration(self.buckets),
            "evaluations": self.evaluations.result(),
        }


def compute_stats(runs: Iterable[Run]) -> dict[str, Any]:
    """Statistics over ``runs`` (see the module docstring for the definitions).

    Returns:
        A JSON-ready dict: ``runs``, ``decisions``, ``runs_by_status``, ``by_node``,
        ``by_decision_type``, ``by_node_and_type``, ``by_option`` (lists of groups, most
        decisions first, then by name; options by node and type, most offered first,
        each with ``decisions``, ``with_outcome``, ``successes``, ``success_rate``,
        ``tokens`` and ``latency_ms`` percentiles) and ``calibration`` (``buckets`` and
        ``expected_calibration_error``) and ``evaluations`` (see
        :mod:`decisiontrace.evaluation.analytics`).
    """
    statistics = _Statistics()
    for run in runs:
        statistics.add_run(run)
    return statistics.result()


def stats_of_store(
    store: RunStore,
    goal: str | None,
    since: datetime | None,
    limit: int | None,
    *,
    status: str | None = None,
    node: str | None = None,
) -> dict[str, Any]:
    """:func:`compute_stats` of the matching runs of ``store`` (newest ``limit``), from
    the counts it keeps when it keeps them, else from its decoded runs."""
    tallies = store.decision_tallies(
        goal_id=goal, status=status, since=since, node_id=node, limit=limit
    )
    if tallies is None:
        return compute_stats(load_runs(store, goal, since, limit, status=status, node=node))
    judged = (run for run in map(store.load_run, tallies.judged_run_ids) if run is not None)
    return stats_from_tallies(tallies, judged)


def stats_from_tallies(tallies: DecisionTallies, judged_runs: Iterable[Run]) -> dict[str, Any]:
    """The same statistics from a store's counts (``RunStore.decision_tallies``) and the
    runs among them with judgements (``tallies.judged_run_ids``, decoded, in that order):
    equal to :func:`compute_stats` of the matching runs."""
    statistics = _Statistics()
    statistics.runs = sum(tallies.runs_by_status.values())
    statistics.by_status.update(tallies.runs_by_status)
    node_types, options = statistics.node_types, statistics.options
    for node, kind, listed, chosen, outcome, count, tokens, stated, total in tallies.counts:
        known = None if outcome < 0 else outcome
        tally = node_types.get((node, kind))
        if tally is None:
            tally = node_types[(node, kind)] = _Tally()
        tally.count(known, count, tokens)
        if listed:
            option = options.setdefault((node, kind, chosen), _OptionTally())
            option.chosen.count(known, count, tokens)
            option.confidence_count += stated
            option.confidence_sum += total
    for node, kind, latency, count in tallies.latencies:
        node_types[(node, kind)].latencies[latency] += count
    for node, kind, chosen, latency, count in tallies.chosen_latencies:
        options[(node, kind, chosen)].chosen.latencies[latency] += count
    for node, kind, option_ids, count in tallies.offered:
        statistics.add_offered(node, kind, json.loads(option_ids), count)
    for calibration in tallies.calibration:
        statistics.add_calibration(*calibration)
    for run in judged_runs:
        statistics.evaluations.add(run)
    return statistics.result()


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
