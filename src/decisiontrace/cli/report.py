"""``decisiontrace report --html``: one self-contained HTML page about stored runs.

Inline CSS and inline SVG drawn here, no scripts, no fonts or images from anywhere, so
the page opens offline and can be mailed or attached to a ticket. Sections: the runs
table, a timeline picture of each run's decisions (bars on a time axis, coloured by
outcome, problems as markers), and the statistics with charts (success rate per node
and per decision type, a calibration chart) and their tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Any

from decisiontrace.models import Run

__all__ = ["render_report"]

_SUCCESS = "#2f9e5b"
_FAILURE = "#d64545"
_PENDING = "#9aa0a6"
_ACCENT = "#3867d6"
_SEVERITY_COLOURS = {"critical": "#b71c1c", "error": "#d64545", "warning": "#e6a100"}

_CSS = """
:root { color-scheme: light; --muted: #5f6368; --line: #dadce0; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system,
  "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #202124; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 8px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0 0 12px; }
.chips span { display: inline-block; margin: 0 8px 6px 0; padding: 2px 10px;
  border-radius: 12px; background: #f1f3f4; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { font-weight: 600; background: #f8f9fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; }
.status-completed { color: #1e7e45; } .status-failed { color: #c62828; }
.status-stuck { color: #a66f00; } .status-cancelled { color: #8e24aa; }
.status-running { color: #00838f; }
a { color: #1a5fb4; text-decoration: none; }
a:hover { text-decoration: underline; }
.timeline { margin: 10px 0 22px; }
.timeline h3 { margin-bottom: 2px; }
.timeline p { margin: 0 0 4px; color: var(--muted); }
.charts { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.charts figure { margin: 0; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  fill: #3c4043; }
.legend span { margin-right: 14px; color: var(--muted); }
.legend i { display: inline-block; width: 10px; height: 10px; margin-right: 4px;
  border-radius: 2px; vertical-align: -1px; }
"""


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _seconds_between(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() * 1000


def _nice_step(span_ms: float, ticks: int = 6) -> float:
    """A round tick interval (1, 2 or 5 times a power of ten) for an axis."""
    raw = max(span_ms, 1e-9) / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return float(factor * power)
    return float(10 * power)


# --- sections ---------------------------------------------------------------------------


def _runs_table(runs: Sequence[Run]) -> str:
    rows = []
    for index, run in enumerate(runs):
        status = run.status.value
        rows.append(
            "<tr>"
            f'<td><a href="#run-{index}">{_e(run.id)}</a></td>'
            f"<td>{_e(run.goal_id)}</td>"
            f'<td class="status status-{_e(status)}">{_e(status)}</td>'
            f"<td>{_e(run.started_at.strftime('%Y-%m-%d %H:%M:%S'))}</td>"
            f'<td class="num">{_ms(run.duration_ms)}</td>'
            f'<td class="num">{run.metrics.total_decisions}</td>'
            f'<td class="num">{_pct(run.metrics.success_rate if run.decisions else None)}</td>'
            f'<td class="num">{run.metrics.total_tokens:,}</td>'
            f'<td class="num">{len(run.problems)}</td>'
            "</tr>"
        )
    head = "".join(
        f'<th class="num">{name}</th>' if name not in ("run", "goal", "status", "started")
        else f"<th>{name}</th>"
        for name in ("run", "goal", "status", "started", "duration", "decisions", "success",
                     "tokens", "problems")
    )  # fmt: skip
    return (
        '<section id="runs"><h2>Runs</h2>'
        f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        "</table></section>"
    )


def _timeline_svg(run: Run) -> str:
    """The run's decisions as bars on a time axis, and its problems as diamonds."""
    label_width, chart_width, row, top = 330, 640, 20, 8
    start = run.started_at
    end_ms = _seconds_between(start, run.completed_at) if run.completed_at else 0.0
    bars = []
    for decision in run.decisions:
        begin = _seconds_between(start, decision.timestamp)
        outcome = decision.outcome
        finish = _seconds_between(start, outcome.timestamp) if outcome else end_ms
        bars.append((decision, begin, max(finish, begin)))
        end_ms = max(end_ms, finish)
    problem_times = [(p, _seconds_between(start, p.timestamp)) for p in run.problems]
    end_ms = max([end_ms, 1.0] + [t for _, t in problem_times])
    scale = chart_width / end_ms
    rows = len(bars) + (1 if problem_times else 0)
    height = top + rows * row + 28
    width = label_width + chart_width + 20
    parts = [
        f'<svg class="timeline-chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>Timeline of {_e(run.id)}</title>'
    ]
    step = _nice_step(end_ms)
    axis_y = top + rows * row + 4
    tick = 0.0
    while tick <= end_ms + 1e-9:
        x = label_width + tick * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{axis_y}" stroke="#eceff1"/>'
            f'<text x="{x:.1f}" y="{axis_y + 14}" text-anchor="middle">{_ms(tick)}</text>'
        )
        tick += step
    for index, (decision, begin, finish) in enumerate(bars):
        y = top + index * row
        outcome = decision.outcome
        colour = _PENDING if outcome is None else (_SUCCESS if outcome.success else _FAILURE)
        state = "no outcome" if outcome is None else ("success" if outcome.success else "failed")
        chosen = f" → {decision.chosen_option_id}" if decision.chosen_option_id else ""
        label = f"{decision.id} [{decision.node_id}] {decision.intent}{chosen}"
        if len(label) > 52:
            label = label[:51] + "…"
        x = label_width + begin * scale
        bar_width = max((finish - begin) * scale, 2.0)
        detail = f"{decision.id} {decision.intent}{chosen}: {state}, {_ms(finish - begin)}"
        if outcome is not None and outcome.error:
            detail += f" ({outcome.error})"
        parts.append(
            f'<text x="4" y="{y + 14}">{_e(label)}</text>'
            f'<rect class="decision-bar" data-outcome="{state}" x="{x:.1f}" y="{y + 3}" '
            f'width="{bar_width:.1f}" height="{row - 6}" rx="2" fill="{colour}">'
            f"<title>{_e(detail)}</title></rect>"
        )
    if problem_times:
        y = top + len(bars) * row
        parts.append(f'<text x="4" y="{y + 14}">problems</text>')
        for problem, at in problem_times:
            x = label_width + at * scale
            colour = _SEVERITY_COLOURS.get(problem.severity, "#8d6e63")
            cy = y + row / 2
            parts.append(
                f'<path class="problem-marker" d="M{x:.1f} {cy - 6:.1f} L{x + 6:.1f} {cy:.1f} '
                f'L{x:.1f} {cy + 6:.1f} L{x - 6:.1f} {cy:.1f} Z" fill="{colour}">'
                f"<title>{_e(f'{problem.id} [{problem.severity}] {problem.description}')}</title>"
                "</path>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _timelines(runs: Sequence[Run]) -> str:
    sections = []
    for index, run in enumerate(runs):
        status = run.status.value
        sections.append(
            f'<div class="timeline" id="run-{index}">'
            f'<h3>{_e(run.id)} <span class="status status-{_e(status)}">{_e(status)}</span></h3>'
            f"<p>{_e(run.goal_id)} · {_ms(run.duration_ms)} · {_e(run.narrative)}</p>"
            f"{_timeline_svg(run)}</div>"
        )
    legend = (
        '<p class="legend">'
        f'<span><i style="background:{_SUCCESS}"></i>succeeded</span>'
        f'<span><i style="background:{_FAILURE}"></i>failed</span>'
        f'<span><i style="background:{_PENDING}"></i>no outcome</span>'
        f'<span><i style="background:{_SEVERITY_COLOURS["warning"]}"></i>problem</span></p>'
    )
    return f'<section id="timelines"><h2>Timelines</h2>{legend}{"".join(sections)}</section>'


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
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


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
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _stats(stats: dict[str, Any]) -> str:
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
        "</section>"
    )


def render_report(
    runs: Sequence[Run],
    stats: dict[str, Any],
    *,
    store_url: str,
    generated_at: datetime,
    title: str = "decisiontrace report",
) -> str:
    """The HTML page for ``runs`` (newest first) and their ``stats`` (from compute_stats)."""
    chips = "".join(
        f'<span class="status-{_e(status)}">{_e(status)}: {count}</span>'
        for status, count in stats["runs_by_status"].items()
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>"
        f'<p class="meta">{len(runs)} runs from {_e(store_url)} · generated '
        f"{_e(generated_at.strftime('%Y-%m-%d %H:%M:%S'))}</p>"
        f'<p class="chips">{chips}</p>'
        '<nav><a href="#runs">Runs</a> · <a href="#timelines">Timelines</a> · '
        '<a href="#stats">Statistics</a></nav></header>'
        f"{_runs_table(runs)}{_timelines(runs)}{_stats(stats)}"
        "</body></html>\n"
    )
