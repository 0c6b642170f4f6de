"""The report page: header, toolbar, one collapsed ``<details>`` per run, statistics.

Each run is drawn as a one-line summary with its filter and sort keys in ``data-``
attributes; its decisions are rendered from the embedded JSON when it is opened (see
:mod:`._payload` and :mod:`._assets`), which keeps a page of thousands of runs small
enough to open at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from decisiontrace.cli.report._assets import CSS, SCRIPT
from decisiontrace.cli.report._charts import escape_text as _e
from decisiontrace.cli.report._charts import format_ms, format_pct, stats_section
from decisiontrace.cli.report._payload import all_payloads, embed_json
from decisiontrace.models import Run, RunStatus

__all__ = ["render_report"]

#: (value, label) of the sort menu; the value is ``data-<key>:<direction>``.
_SORTS = (
    ("start:desc", "newest first"),
    ("start:asc", "oldest first"),
    ("duration:desc", "longest"),
    ("tokens:desc", "most tokens"),
    ("decisions:desc", "most decisions"),
    ("problems:desc", "most problems"),
    ("success:asc", "lowest success"),
)


def _time(moment: datetime) -> str:
    # Records keep local time; shown with its offset, as the other commands show it.
    moment = moment if moment.tzinfo is not None else moment.astimezone()
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    offset = moment.strftime("%z")
    return f"{text} {offset[:3]}:{offset[3:]}" if offset else text


def _epoch_ms(moment: datetime) -> int:
    # A naive time is taken as local time, as the page's date inputs are.
    return int(moment.timestamp() * 1000)


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def _run_item(index: int, run: Run) -> str:
    status = run.status.value
    metrics = run.metrics
    rate = metrics.success_rate if run.decisions else None
    nodes = "\n".join(dict.fromkeys(d.node_id for d in run.decisions))
    paused = (
        '<span class="badge status-running">paused</span>'
        if (run.model_extra or {}).get("paused") is True
        else ""
    )
    facts = " · ".join(
        (
            _time(run.started_at),
            format_ms(run.duration_ms),
            _plural(metrics.total_decisions, "decision"),
            f"{format_pct(rate)} succeeded",
            _plural(metrics.total_tokens, "token"),
            _plural(len(run.problems), "problem"),
        )
    )
    return (
        f'<details class="run" id="run-{index}" data-i="{index}" data-status="{_e(status)}" '
        f'data-goal="{_e(run.goal_id)}" data-nodes="{_e(nodes)}" '
        f'data-start="{_epoch_ms(run.started_at)}" data-duration="{run.duration_ms}" '
        f'data-tokens="{metrics.total_tokens}" data-decisions="{metrics.total_decisions}" '
        f'data-problems="{len(run.problems)}" data-success="{-1 if rate is None else rate}">'
        f'<summary><span class="badge status-{_e(status)}">{_e(status)}</span>'
        f"{paused}"
        f'<span class="rid">{_e(run.id)}</span><span class="goal">{_e(run.goal_id)}</span>'
        f'<span class="facts">{_e(facts)}</span></summary></details>'
    )


def _select(element_id: str, label: str, values: Sequence[str], every: str) -> str:
    options = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)
    return (
        f'<label for="{element_id}">{label}</label>'
        f'<select id="{element_id}"><option value="">{every}</option>{options}</select>'
    )


def _toolbar(runs: Sequence[Run]) -> str:
    goals = sorted({run.goal_id for run in runs})
    nodes = sorted({d.node_id for run in runs for d in run.decisions})
    sorts = "".join(f'<option value="{value}">{label}</option>' for value, label in _SORTS)
    return (
        '<div class="toolbar" role="search">'
        '<input type="search" id="q" placeholder="Search ids, goals, options, reasoning, errors…" '
        'aria-label="Search runs">'
        f"{_select('f-status', 'status', [s.value for s in RunStatus], 'any')}"
        f"{_select('f-goal', 'goal', goals, 'any')}"
        f"{_select('f-node', 'node', nodes, 'any')}"
        '<label for="f-from">from</label><input type="datetime-local" id="f-from" step="1">'
        '<label for="f-to">to</label><input type="datetime-local" id="f-to" step="1">'
        f'<label for="sort">sort</label><select id="sort">{sorts}</select>'
        '<button type="button" id="open-shown">open shown</button>'
        '<button type="button" id="close-all">close all</button>'
        "</div>"
    )


def render_report(
    runs: Sequence[Run],
    stats: dict[str, Any],
    *,
    store_url: str,
    generated_at: datetime,
    title: str = "decisiontrace report",
    trace_url_template: str | None = None,
) -> str:
    """The HTML page for ``runs`` (newest first) and their ``stats`` (from compute_stats).

    Args:
        runs: The runs to show, in the order the page lists them by default.
        stats: ``compute_stats(runs)``.
        store_url: Shown in the header.
        generated_at: Shown in the header.
        title: The page title.
        trace_url_template: ``DECISIONTRACE_TRACE_URL``'s form (``{trace_id}``,
            ``{span_id}``, ``{run_id}``): runs, and decisions when it has
            ``{span_id}``, link to their trace; only http(s) links are shown.
    """
    chips = "".join(
        f'<span class="status-{_e(status)}">{_e(status)}: {count}</span>'
        for status, count in stats["runs_by_status"].items()
    )
    items = "".join(_run_item(index, run) for index, run in enumerate(runs))
    data = embed_json(all_payloads(runs, trace_url_template))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1>"
        f'<p class="meta">{_plural(len(runs), "run")} from {_e(store_url)} · generated '
        f"{_e(_time(generated_at))} · "
        '<a href="#runs">runs</a> · <a href="#stats">statistics</a></p>'
        f'<p class="chips">{chips}</p></header>'
        f'<section id="runs">{_toolbar(runs)}<p id="shown"></p>'
        "<noscript><p>Open this page with JavaScript enabled to see each run's decisions."
        "</p></noscript>"
        f'<div id="run-list">{items}</div></section>'
        f"{stats_section(stats)}"
        f'<script type="application/json" id="dt-data">{data}</script>'
        f"<script>{SCRIPT}</script>"
        "</body></html>\n"
    )
