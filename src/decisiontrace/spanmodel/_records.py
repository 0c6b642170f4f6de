"""Derived values of run records, computed on plain dicts.

The writer thread builds stored records as plain JSON-ready dicts (pydantic is too slow
for the persistence path), and the pydantic models in :mod:`decisiontrace.models`
delegate to these same functions, so a derived value (narrative, summary lines, success
rate) has exactly one implementation.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from decisiontrace._internal.memo import remember

#: Fields the original models compute; they are written to stored records (the schema
#: requires them) and dropped again when a record is loaded.
RUN_COMPUTED = ("duration_ms",)
METRICS_COMPUTED = ("success_rate",)
DECISION_COMPUTED = ("chosen_option", "was_successful", "was_good_decision")

_EPOCH_NS = 1_000_000_000


def ns_to_datetime(time_ns: int) -> datetime:
    """Naive local datetime for nanoseconds since the epoch, exact to the microsecond.

    The original tracker stamps records with ``datetime.now()`` (naive local time); the
    same convention keeps old and new records comparable.
    """
    seconds, rest = divmod(int(time_ns), _EPOCH_NS)
    base = _SECOND_DATETIME.get(seconds)
    if base is None:
        base = remember(_SECOND_DATETIME, _SECOND_ISO_MAX, seconds, datetime.fromtimestamp(seconds))
    return base + timedelta(microseconds=rest // 1000)


#: Local datetimes of whole seconds since the epoch (the writer makes two a run; the
#: conversion to local time is most of their cost), emptied when full.
_SECOND_DATETIME: dict[int, datetime] = {}


#: ISO text of whole seconds since the epoch (see :func:`ns_to_iso`), emptied when full.
_SECOND_ISO: dict[int, str] = {}
_SECOND_ISO_MAX = 4096


def _second_iso(seconds: int) -> str:
    text = _SECOND_ISO.get(seconds)
    if text is None:
        text = remember(
            _SECOND_ISO, _SECOND_ISO_MAX, seconds, datetime.fromtimestamp(seconds).isoformat()
        )
    return text


@functools.lru_cache(maxsize=64)
def _second_stamp(seconds: int) -> str:
    return datetime.fromtimestamp(seconds).strftime("%Y%m%d_%H%M%S")


def ns_to_stamp(time_ns: int) -> str:
    """``YYYYmmdd_HHMMSS`` in local time, as run ids carry it."""
    return _second_stamp(int(time_ns) // _EPOCH_NS)


def ns_to_iso(time_ns: int) -> str:
    """ISO 8601 text of :func:`ns_to_datetime` (``datetime.isoformat``'s form).

    Converting to local time is the slow part, and the decisions of a run mostly fall
    in a few seconds, so the text of each second is cached (a plain dict: the writer
    stamps two times per decision, and an ``lru_cache`` call costs more than the rest).
    """
    if type(time_ns) is not int:
        time_ns = int(time_ns)
    micros = time_ns // 1000
    prefix = _SECOND_ISO.get(micros // 1_000_000)
    if prefix is None:
        prefix = _second_iso(micros // 1_000_000)
    micros %= 1_000_000
    return f"{prefix}.{micros:06d}" if micros else prefix


def duration_ms(started_at: datetime, completed_at: datetime | None) -> int:
    """Run duration in whole milliseconds (0 while running), as the original computes it."""
    if completed_at is None:
        return 0
    return int((completed_at - started_at).total_seconds() * 1000)


def success_rate(total_decisions: int, successful_decisions: int) -> float:
    """Share of decisions that succeeded; 0.0 for a run without decisions."""
    if total_decisions == 0:
        return 0.0
    return successful_decisions / total_decisions


@dataclass(slots=True)
class Totals:
    """A run's decision counts and sums: one home for what the run span's end attributes
    and the stored ``metrics`` say (the tracker, the decoder and the export count here).

    Every decision counts in ``decisions``; only those with an outcome count as
    successful or failed and add their tokens and latency. ``tokens`` may start with
    LLM tokens that count for the run but none of its decisions.
    """

    decisions: int = 0
    successful: int = 0
    failed: int = 0
    tokens: int = 0
    latency_ms: int = 0

    def add(self, success: bool | None, tokens: int = 0, latency_ms: int = 0) -> None:
        """Count one decision: ``success`` None when it has no outcome."""
        self.decisions += 1
        if success is None:
            return
        if success:
            self.successful += 1
        else:
            self.failed += 1
        self.tokens += tokens
        self.latency_ms += latency_ms


def chosen_option(options: Sequence[Any], chosen_option_id: str) -> Any:
    """The option (dict or model) whose id is ``chosen_option_id``, or None."""
    for option in options:
        option_id = option.get("id") if isinstance(option, dict) else option.id
        if option_id == chosen_option_id:
            return option
    return None


def stated_confidence(option: Any) -> float | None:
    """The confidence the agent gave an option (dict or model), or None when it gave
    none and the stored 0.5 is the schema's default (``confidence_defaulted``)."""
    if isinstance(option, dict):
        defaulted = option.get("confidence_defaulted") is True
        confidence = option.get("confidence")
    else:
        defaulted = (getattr(option, "model_extra", None) or {}).get("confidence_defaulted") is True
        confidence = getattr(option, "confidence", None)
    if defaulted or isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return None
    return float(confidence)


def was_good_decision(was_successful: bool, evaluation: Any) -> bool:
    """Good when evaluated aligned with quality > 0.5; without evaluation, when it succeeded."""
    if evaluation is None:
        return was_successful
    if isinstance(evaluation, dict):
        aligned = bool(evaluation.get("goal_aligned", True))
        quality = float(evaluation.get("outcome_quality", 1.0))
    else:
        aligned, quality = evaluation.goal_aligned, evaluation.outcome_quality
    return aligned and quality > 0.5


def named_as_failed(success: bool | None, paused: bool) -> bool:
    """Whether a generated narrative's "Failed on" names a decision (``success`` None:
    no outcome): its outcome failed, or it was left without one and not paused (a
    paused decision runs again on resume)."""
    return success is False or (success is None and not paused)


def failed_on(decisions: Iterable[tuple[str, bool | None, bool]]) -> list[str]:
    """The intents a narrative's "Failed on" names, from ``(intent, success, paused)``
    of each decision, in order (see :func:`named_as_failed`)."""
    return [intent for intent, success, paused in decisions if named_as_failed(success, paused)]


def narrative(
    status: str,
    total_decisions: int,
    successful_decisions: int,
    failed_decisions: int,
    problems: Iterable[tuple[str, str]],
    failed_intents: Sequence[str],
) -> str:
    """The narrative the original generates when none is given.

    Args:
        status: the run's status value.
        total_decisions: decisions made.
        successful_decisions: outcomes recorded as successful.
        failed_decisions: outcomes recorded as failed.
        problems: ``(severity, description)`` of each problem, in order.
        failed_intents: intents of decisions that did not succeed, in order.
    """
    status_text = "completed successfully" if status == "completed" else "failed"
    parts = [
        f"Run {status_text}.",
        f"Made {total_decisions} decisions: {successful_decisions} succeeded, "
        f"{failed_decisions} failed.",
    ]
    problems = list(problems)
    critical = [description for severity, description in problems if severity == "critical"]
    warnings = [description for severity, description in problems if severity == "warning"]
    if critical:
        parts.append(f"Critical issues: {', '.join(critical)}")
    if warnings:
        parts.append(f"Warnings: {', '.join(warnings)}")
    if failed_intents:
        parts.append(f"Failed on: {', '.join(failed_intents[:3])}")
    return " ".join(parts)


def decision_line(decision: dict[str, Any]) -> str:
    """One line for a decision: ``✓ [node] intent → chosen action [quality: q]``."""
    status = "✓" if decision.get("was_successful") else "✗"
    evaluation = decision.get("evaluation")
    quality = ""
    if evaluation:
        quality = f" [quality: {float(evaluation.get('outcome_quality', 1.0)):.1f}]"
    chosen = decision.get("chosen_option")
    action = chosen.get("description", "") if chosen else "unknown action"
    return (
        f"{status} [{decision.get('node_id', '')}] {decision.get('intent', '')} → {action}{quality}"
    )


def summary_from_record(record: dict[str, Any]) -> dict[str, Any]:
    """The RunSummary of a stored run record (both as JSON-ready dicts)."""
    decisions = record.get("decisions", [])
    problems = record.get("problems", [])
    metrics = record.get("metrics", {})
    key_decisions: list[str] = []
    successes: list[str] = []
    for decision in decisions:
        evaluation = decision.get("evaluation")
        if not decision.get("was_successful") or (
            evaluation and float(evaluation.get("outcome_quality", 1.0)) > 0.8
        ):
            key_decisions.append(decision_line(decision))
        outcome = decision.get("outcome")
        if decision.get("was_successful") and outcome and outcome.get("summary"):
            successes.append(outcome["summary"])
    return {
        "run_id": record["id"],
        "goal_id": record["goal_id"],
        "status": record.get("status", "running"),
        "duration_ms": record.get("duration_ms", 0),
        "decision_count": metrics.get("total_decisions", 0),
        "success_rate": metrics.get("success_rate", 0.0),
        "problem_count": len(problems),
        "narrative": record.get("narrative", ""),
        "key_decisions": key_decisions[:5],
        "critical_problems": [p["description"] for p in problems if p["severity"] == "critical"],
        "warnings": [p["description"] for p in problems if p["severity"] == "warning"],
        "successes": successes[:3],
    }
