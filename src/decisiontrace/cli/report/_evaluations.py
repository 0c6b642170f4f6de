"""The report's judgements part: evaluated quality, goal alignment and better options per
node and chosen option, and confidence against evaluated quality as well as success
(numbers from :mod:`decisiontrace.evaluation.analytics`). Static markup, every label
escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

__all__ = ["evaluations_section"]


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _table(head: Sequence[str], numeric_from: int, rows: list[list[str]]) -> str:
    cells = "".join(
        f'<th class="num">{_e(name)}</th>' if index >= numeric_from else f"<th>{_e(name)}</th>"
        for index, name in enumerate(head)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{_e(value)}</td>'
            if index >= numeric_from
            else f"<td>{_e(value)}</td>"
            for index, value in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<div class="scroll"><table><thead><tr>{cells}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _group_row(group: dict[str, Any]) -> list[str]:
    named = ", ".join(f"{option} ×{count}" for option, count in group["better_options"].items())
    return [
        str(group["judged"]),
        _score(group["mean_quality"]),
        _score(group["mean_alignment"]),
        _pct(group["goal_aligned_rate"]),
        f"{group['better_option_existed']} ({_pct(group['better_option_rate'])})",
        named or "-",
    ]


_GROUP_HEAD = ["judged", "quality", "alignment", "goal aligned", "better existed", "better option"]


def evaluations_section(evaluations: dict[str, Any] | None) -> str:
    """The judgements part of the statistics section; empty when nothing was judged."""
    if not evaluations or not evaluations["overall"]["judged"]:
        return ""
    overall = evaluations["overall"]
    evaluators = ", ".join(f"{name} ({count})" for name, count in evaluations["evaluators"].items())
    calibration = evaluations["calibration"]
    quality_error = calibration["expected_calibration_error_quality"]
    success_error = calibration["expected_calibration_error_success"]
    calibration_rows = [
        [
            f"{b['low']:.1f}–{b['high']:.1f}",
            str(b["decisions"]),
            _score(b["mean_confidence"]),
            _score(b["mean_quality"]),
            _pct(b["success_rate"]),
        ]
        for b in calibration["buckets"]
        if b["decisions"]
    ]
    errors = []
    if quality_error is not None:
        errors.append(f"expected calibration error against quality {quality_error:.3f}")
    if success_error is not None:
        errors.append(f"against success {success_error:.3f}")
    return (
        '<div id="evaluations"><h3>Judgements</h3>'
        f'<p class="meta">{overall["judged"]} decisions judged'
        + (f" by {_e(evaluators)}" if evaluators else "")
        + f"; evaluated quality {_score(overall['mean_quality'])}; a better option existed for "
        f"{overall['better_option_existed']} ({_pct(overall['better_option_rate'])})</p>"
        "<h4>By node</h4>"
        + _table(
            ["node", *_GROUP_HEAD],
            1,
            [[g["node_id"], *_group_row(g)] for g in evaluations["by_node"]],
        )
        + "<h4>By chosen option</h4>"
        + _table(
            ["node", "option", *_GROUP_HEAD],
            2,
            [[g["node_id"], g["option_id"], *_group_row(g)] for g in evaluations["by_option"]],
        )
        + "<h4>Confidence against evaluated quality and success</h4>"
        + _table(["confidence", "judged", "stated", "quality", "success"], 1, calibration_rows)
        + (f'<p class="meta">{_e(", ".join(errors))}</p>' if errors else "")
        + "</div>"
    )
