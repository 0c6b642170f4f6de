"""The terminal views of judgements: per node and option, calibration against evaluated
quality, and the judgements of each decision in ``runs show``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from decisiontrace.evaluation.judgement import judgements_of
from decisiontrace.models import Decision

__all__ = ["evaluation_views", "judgement_lines"]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _better(group: dict[str, Any]) -> str:
    named = ", ".join(f"{option} ×{count}" for option, count in group["better_options"].items())
    return named or "-"


def _table(title: str, groups: Iterable[dict[str, Any]], keys: list[str]) -> Table:
    table = Table(box=box.SIMPLE_HEAVY, title=title)
    for key in keys:
        table.add_column(key.replace("_id", ""))
    for name in ("judged", "quality", "alignment", "aligned", "better existed"):
        table.add_column(name, justify="right")
    table.add_column("better option")
    for group in groups:
        table.add_row(
            *(str(group[key]) for key in keys),
            str(group["judged"]),
            _score(group["mean_quality"]),
            _score(group["mean_alignment"]),
            _rate(group["goal_aligned_rate"]),
            f"{group['better_option_existed']} ({_rate(group['better_option_rate'])})",
            _better(group),
        )
    return table


def _calibration(calibration: dict[str, Any]) -> Table:
    quality_error = calibration["expected_calibration_error_quality"]
    success_error = calibration["expected_calibration_error_success"]
    caption = []
    if quality_error is not None:
        caption.append(f"expected calibration error vs quality {quality_error:.3f}")
    if success_error is not None:
        caption.append(f"vs success {success_error:.3f}")
    table = Table(
        box=box.SIMPLE_HEAVY,
        title="calibration (chosen option's confidence vs evaluated quality and success)",
        caption=", ".join(caption) or None,
    )
    for name in ("confidence", "judged", "stated", "quality", "success"):
        table.add_column(name, justify="right")
    for bucket in calibration["buckets"]:
        if not bucket["decisions"]:
            continue
        table.add_row(
            f"{bucket['low']:.1f}–{bucket['high']:.1f}",
            str(bucket["decisions"]),
            _score(bucket["mean_confidence"]),
            _score(bucket["mean_quality"]),
            _rate(bucket["success_rate"]),
        )
    return table


def evaluation_views(evaluations: dict[str, Any]) -> list[RenderableType]:
    """The judgement tables of ``decisiontrace stats``; nothing when nothing was judged."""
    if not evaluations["overall"]["judged"]:
        return []
    overall = evaluations["overall"]
    evaluators = ", ".join(f"{name} ({count})" for name, count in evaluations["evaluators"].items())
    head = Text(
        f"{overall['judged']} decisions judged"
        + (f" by {evaluators}" if evaluators else "")
        + f": quality {_score(overall['mean_quality'])}, a better option existed for "
        f"{overall['better_option_existed']} ({_rate(overall['better_option_rate'])})",
        style="bold",
    )
    return [
        head,
        _table("judgements by node", evaluations["by_node"], ["node_id"]),
        _table("judgements by chosen option", evaluations["by_option"], ["node_id", "option_id"]),
        _calibration(evaluations["calibration"]),
    ]


def judgement_lines(decision: Decision) -> list[Text]:
    """One line per judgement of a decision, for the run tree."""
    lines = []
    for judgement in judgements_of(decision):
        line = Text("judged by ", style="magenta")
        line.append(judgement.evaluator, style="bold magenta")
        if judgement.score is not None:
            line.append(f"  score {judgement.score:.2f}")
        if judgement.label:
            line.append(f"  {judgement.label}", style="bold")
        evaluation = judgement.evaluation
        if evaluation is not None and evaluation.better_option_existed:
            line.append(f"  better option: {evaluation.better_option_id or '?'}", style="yellow")
        if judgement.explanation:
            line.append(f"  — {judgement.explanation}", style="italic")
        lines.append(line)
    return lines
