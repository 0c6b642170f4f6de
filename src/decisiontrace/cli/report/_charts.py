"""The report's statistics section: inline SVG charts and the tables behind them.

Drawn on the server as static markup (no script needed): success rate per node and per
decision type, a calibration chart, and the per-group and per-option tables. Every label
comes from agent data and goes through :func:`escape_text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from decisiontrace.cli.report._evaluations import evaluations_section

__all__ = ["escape_text", "format_ms", "format_pct", "stats_section"]

SUCCESS = "#2f9e5b"
FAILURE = "#d64545"
ACCENT = "#3867d6"


def escape_text(value: Any) -> str:
    """``value`` as HTML text, safe in element content and in quoted attributes."""
    return escape(str(value), quote=True)


def format_ms(value: float | None) -> str:
    """Milliseconds as ``640 ms`` or ``1.2 s``; ``-`` when unknown."""
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


def format_pct(value: float | None) -> str:
    """A 0-1 rate as a percentage with one decimal; ``-`` when unknown."""
    return "-" if value is None else f"{value * 100:.1f}%"


_e = escape_text
_ms = format_ms
_pct = format_pct
_SUCCESS = SUCCESS
_FAILURE = FAILURE
_ACCENT = ACCENT


def _bar_chart(name: str, title: str, groups: Sequence[tuple[str, float | None, int]]) -> str:
    """Horizontal bars of success rates, labelled with the rate and the decision count."""
    label_width, chart_width, row = 230, 300, 24
    height = len(groups) * row + 30
    width = label_width + chart_width + 110
    parts = [
        f"<figure><figcaption>{_e(title)}</figcaption>"
        f'<svg class="chart" data-chart="{_e(name)}" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{_e(title)}</title>'
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        x = label_width + tick * chart_width
        parts.append(
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height - 22}" stroke="#eceff1"/>'
            f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle">{tick * 100:.0f}%</text>'
        )
    for index, (label, rate, count) in enumerate(groups):
        y = index * row
        bar = 0.0 if rate is None else rate * chart_width
        colour = _SUCCESS if rate is not None and rate >= 0.8 else "#f0a202"
        if rate is not None and rate < 0.6:
            colour = _FAILURE
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 16}" text-anchor="end">{_e(label)}</text>'
            f'<rect x="{label_width}" y="{y + 4}" width="{bar:.1f}" height="{row - 8}" rx="2" '
            f'fill="{colour}"><title>{_e(label)}: {_pct(rate)} of {count}</title></rect>'
            f'<text x="{label_width + bar + 6:.1f}" y="{y + 16}">{_pct(rate)} of {count}</text>'
        )
    parts.append("</svg></figure>")
    return "".join(parts)


def _calibration_chart(calibration: dict[str, Any]) -> str:
    """Observed success rate per confidence bucket against the diagonal of perfect calibration."""
    size, pad = 300, 40
    width = height = size + 2 * pad
    title = "Calibration: stated confidence vs observed success"

    def x_at(value: float) -> float:
        return pad + value * size

    def y_at(value: float) -> float:
        return pad + (1 - value) * size

    parts = [
        f"<figure><figcaption>{_e(title)}</figcaption>"
        f'<svg class="chart" data-chart="calibration" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}"><title>{_e(title)}</title>'
        f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#bdc1c6"/>'
    ]
    for tick in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(
            f'<text x="{x_at(tick):.1f}" y="{pad + size + 14}" '
            f'text-anchor="middle">{tick:.1f}</text>'
            f'<text x="{pad - 6}" y="{y_at(tick) + 4:.1f}" text-anchor="end">{tick:.1f}</text>'
        )
    for bucket in calibration["buckets"]:
        rate = bucket["success_rate"]
        if rate is None:
            continue
        x = x_at(bucket["low"]) + 2
        bar_width = size / len(calibration["buckets"]) - 4
        parts.append(
            f'<rect class="calibration-bar" x="{x:.1f}" y="{y_at(rate):.1f}" '
            f'width="{bar_width:.1f}" height="{rate * size:.1f}" fill="{_ACCENT}" '
            f'fill-opacity="0.35" stroke="{_ACCENT}">'
            f"<title>confidence {bucket['low']:.1f}–{bucket['high']:.1f}: "
            f"{_pct(rate)} of {bucket['decisions']} succeeded</title></rect>"
            f'<text x="{x + bar_width / 2:.1f}" y="{y_at(rate) - 4:.1f}" '
            f'text-anchor="middle">{bucket["decisions"]}</text>'
        )
    parts.append(
        f'<line x1="{x_at(0)}" y1="{y_at(0)}" x2="{x_at(1)}" y2="{y_at(1)}" stroke="#5f6368" '
        'stroke-dasharray="4 4"><title>perfect calibration</title></line>'
        f'<text x="{pad + size / 2}" y="{height - 4}" text-anchor="middle">'
        "stated confidence of the chosen option</text>"
        f'<text x="12" y="{pad + size / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {pad + size / 2})">observed success rate</text>'
        "</svg>"
    )
    error = calibration["expected_calibration_error"]
    if error is not None:
        parts.append(f'<p class="meta">expected calibration error {error:.3f} · bar labels: '
                     "decisions in the bucket</p>")  # fmt: skip
    parts.append("</figure>")
    return "".join(parts)


def _group_rows(groups: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    head = "".join(f"<th>{_e(k.replace('_id', '').replace('_', ' '))}</th>" for k in keys)
    head += "".join(
        f'<th class="num">{n}</th>' for n in ("decisions", "success", "tokens", "p50", "p90", "p99")
    )
    rows = []
    for group in groups:
        latency = group["latency_ms"]
        cells = "".join(f"<td>{_e(group[k])}</td>" for k in keys)
        cells += (
            f'<td class="num">{group["decisions"]}</td>'
            f'<td class="num">{_pct(group["success_rate"])}</td>'
            f'<td class="num">{group["tokens"]["total"]:,}</td>'
            f'<td class="num">{_ms(latency["p50"])}</td>'
            f'<td class="num">{_ms(latency["p90"])}</td>'
            f'<td class="num">{_ms(latency["p99"])}</td>'
        )
        rows.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _option_rows(options: Sequence[dict[str, Any]]) -> str:
    head = "".join(f"<th>{n}</th>" for n in ("node", "decision type", "option"))
    head += "".join(
        f'<th class="num">{n}</th>'
        for n in ("offered", "chosen", "share", "confidence", "success", "tokens", "p50")
    )
    rows = []
    for option in options:
        confidence = option["mean_confidence"]
        rows.append(
            "<tr>"
            f"<td>{_e(option['node_id'])}</td><td>{_e(option['decision_type'])}</td>"
            f"<td>{_e(option['option_id'])}</td>"
            f'<td class="num">{option["offered"]}</td><td class="num">{option["chosen"]}</td>'
            f'<td class="num">{_pct(option["chosen_share"])}</td>'
            f'<td class="num">{"-" if confidence is None else f"{confidence:.2f}"}</td>'
            f'<td class="num">{_pct(option["success_rate"])}</td>'
            f'<td class="num">{option["tokens"]["total"]:,}</td>'
            f'<td class="num">{_ms(option["latency_ms"]["p50"])}</td>'
            "</tr>"
        )
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def stats_section(stats: dict[str, Any]) -> str:
    """The statistics section: success-rate and calibration charts, then the tables."""
    nodes = [(g["node_id"], g["success_rate"], g["with_outcome"]) for g in stats["by_node"]]
    types = [
        (g["decision_type"], g["success_rate"], g["with_outcome"])
        for g in stats["by_decision_type"]
    ]
    return (
        '<section id="stats"><h2>Statistics</h2>'
        f'<p class="meta">{stats["decisions"]} decisions in {stats["runs"]} runs, '
        f"{_pct(stats['overall']['success_rate'])} succeeded, "
        f"{stats['overall']['tokens']['total']:,} tokens</p>"
        '<div class="charts">'
        f"{_bar_chart('node-success', 'Success rate per node', nodes)}"
        f"{_bar_chart('type-success', 'Success rate per decision type', types)}"
        f"{_calibration_chart(stats['calibration'])}"
        "</div>"
        "<h3>By node and decision type</h3>"
        f"{_group_rows(stats['by_node_and_type'], ['node_id', 'decision_type'])}"
        "<h3>Options</h3>"
        f"{_option_rows(stats['by_option'])}"
        f"{evaluations_section(stats.get('evaluations'))}"
        "</section>"
    )
