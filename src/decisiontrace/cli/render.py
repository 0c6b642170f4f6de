"""Terminal output for people: rich tables and trees.

rich decides about colour: it uses it on a terminal, writes plain text when the output
is piped, and honours ``NO_COLOR``. Every function here returns renderables and prints
nothing, so the commands decide where output goes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from decisiontrace._records import stated_confidence
from decisiontrace.cli._links import run_trace_id, trace_url
from decisiontrace.cli._store import short_id
from decisiontrace.cli._times import time_text
from decisiontrace.cli.evaluations import evaluation_views, judgement_lines
from decisiontrace.models import Decision, Option, Problem, Run, RunSummary

if TYPE_CHECKING:
    from decisiontrace.demo import DemoResult

__all__ = [
    "STATUS_STYLES",
    "calibration_table",
    "demo_view",
    "diff_view",
    "format_ms",
    "format_rate",
    "group_table",
    "option_table",
    "run_started",
    "run_tree",
    "runs_table",
    "stats_view",
    "status_counts_table",
    "status_text",
]

STATUS_STYLES = {
    "completed": "green",
    "failed": "bold red",
    "stuck": "yellow",
    "cancelled": "magenta",
    "running": "cyan",
}
#: What a value the agent did not give is shown as.
NOT_GIVEN = "—"
_SEVERITY_STYLES = {"critical": "bold red", "error": "red", "warning": "yellow", "minor": "dim"}
# run_{stream}_{YYYYmmdd_HHMMSS}_{8 hex}: the start time, to the second, is in the id.
_RUN_ID_TIME = re.compile(r"_(\d{4})(\d{2})(\d{2})_(\d{2})(\d{2})(\d{2})_[0-9a-f]{8}$")


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 run``, ``2 runs``, ``89,085 tokens``."""
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def json_line(value: Any) -> str:
    """``value`` as one line of JSON (JSON Lines)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def nothing_found(what: str, *, filtered: bool) -> str:
    """The line printed when a listing is empty; suggests fewer filters only if any were given."""
    if filtered:
        return f"no {what} match these filters; try fewer, or `decisiontrace runs list`"
    return f"no {what} stored yet; `decisiontrace demo` records some"


def format_ms(value: float | None) -> str:
    """``12 ms``, ``1.4 s``; ``-`` for None."""
    if value is None:
        return "-"
    if value < 1000:
        return f"{value:.0f} ms"
    return f"{value / 1000:.1f} s"


def format_rate(value: float | None) -> str:
    """``87.5%``; ``-`` for None (nothing to rate)."""
    return "-" if value is None else f"{value * 100:.1f}%"


def _tokens(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def status_text(status: str) -> Text:
    """A run status, coloured."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def run_started(run_id: str) -> str:
    """The start time a run id carries, with this machine's UTC offset (ids carry local
    time): ``2026-05-10 14:03:07+02:00``, or "" if it has none."""
    match = _RUN_ID_TIME.search(run_id)
    if match is None:
        return ""
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return ""
    return time_text(moment)


#: Below this width the runs table shows short ids (the hex that tells runs apart,
#: which every command accepts) instead of full run ids: an id is never cut.
WIDE = 130
#: Below this width the runs table leaves out the start time (``runs show`` has it).
NARROW = 100


def _cell_width(cell: Any) -> int:
    return cell.cell_len if isinstance(cell, Text) else Text(str(cell)).cell_len


def fitted_table(
    columns: Sequence[tuple[str, bool]],
    rows: Sequence[Sequence[Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
) -> Table:
    """A table whose numbers and ids are never cut: ``columns`` are ``(header, whole)``;
    a whole column (numbers, ids) keeps its widest cell, the others wrap to make room."""
    table = Table(
        box=box.SIMPLE_HEAVY, title=title, caption=caption, padding=(0, 1), pad_edge=False
    )
    for index, (header, whole) in enumerate(columns):
        widest = max([_cell_width(header), *(_cell_width(row[index]) for row in rows)])
        if whole:
            table.add_column(header, justify="right", no_wrap=True, min_width=widest)
        else:
            table.add_column(header, overflow="fold", min_width=min(widest, 4))
    for row in rows:
        table.add_row(*row)
    return table


def runs_table(
    summaries: Sequence[RunSummary], *, caption: str | None = None, width: int = WIDE
) -> Table:
    """One row per run, newest first as given; short ids when ``width`` is narrow."""
    wide = width >= WIDE
    rows = []
    for summary in summaries:
        row: list[Any] = [
            summary.run_id if wide else short_id(summary.run_id),
            summary.goal_id,
            status_text(summary.status.value),
        ]
        if width >= NARROW:  # below it, `runs show` has the start time
            row.append(run_started(summary.run_id))
        row += [
            format_ms(summary.duration_ms),
            f"{summary.decision_count:,}",
            format_rate(summary.success_rate if summary.decision_count else None),
            Text(f"{summary.problem_count:,}", style="yellow" if summary.problem_count else ""),
        ]
        rows.append(row)
    if not wide:
        note = "short ids: `decisiontrace runs show ID` takes them"
        caption = f"{caption}; {note}" if caption else note
    columns = [("run" if wide else "id", True), ("goal", False), ("status", True)]
    if width >= NARROW:
        columns.append(("started", True))
    columns += [(name, True) for name in ("duration", "decisions", "success", "problems")]
    return fitted_table(columns, rows, title=plural(len(summaries), "run"), caption=caption)


def status_counts_table(counts: dict[str, int], title: str = "runs by status") -> Table:
    """Runs per status, with their share."""
    total = sum(counts.values())
    table = Table(box=box.SIMPLE_HEAVY, title=title)
    table.add_column("status")
    table.add_column("runs", justify="right")
    table.add_column("share", justify="right")
    for status, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(
            status_text(status), str(count), format_rate(count / total if total else None)
        )
    return table


# --- one run as a tree ------------------------------------------------------------------


def _short_json(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _confidence(option: Option) -> str:
    """The confidence the agent gave, or "—" when it gave none (a stored default)."""
    stated = stated_confidence(option)
    return NOT_GIVEN if stated is None else f"{stated:.2f}"


def _options_table(decision: Decision) -> Table:
    """The options side by side: one column each, the chosen one marked."""
    table = Table(box=box.ROUNDED, show_header=True, padding=(0, 1))
    table.add_column("", style="dim")
    chosen = decision.chosen_option_id
    for option in decision.options:
        if option.id == chosen:
            table.add_column(Text(f"▶ {option.id}", style="bold green"), overflow="fold")
        else:
            table.add_column(option.id, overflow="fold")
    table.add_row("", *(option.description for option in decision.options))
    table.add_row("confidence", *(_confidence(option) for option in decision.options))
    if any(option.pros for option in decision.options):
        table.add_row(
            "pros", *("\n".join(f"+ {p}" for p in option.pros) for option in decision.options)
        )
    if any(option.cons for option in decision.options):
        table.add_row(
            "cons", *("\n".join(f"- {c}" for c in option.cons) for option in decision.options)
        )
    return table


def _problem_line(problem: Problem) -> Text:
    text = Text("⚠ ", style=_SEVERITY_STYLES.get(problem.severity, "yellow"))
    text.append(f"{problem.id} [{problem.severity}] ", style=_SEVERITY_STYLES.get(problem.severity))
    text.append(problem.description)
    if problem.root_cause:
        text.append(f" · cause: {problem.root_cause}", style="dim")
    if problem.suggested_fix:
        text.append(f" · fix: {problem.suggested_fix}", style="dim")
    return text


def _decision_label(decision: Decision) -> Text:
    outcome = decision.outcome
    if outcome is None and (decision.model_extra or {}).get("paused") is True:
        mark = Text("⏸ ", style="yellow")
    elif outcome is None:
        mark = Text("○ ", style="dim")
    elif outcome.success:
        mark = Text("✓ ", style="green")
    else:
        mark = Text("✗ ", style="bold red")
    label = mark
    label.append(f"{decision.id} ", style="bold")
    label.append(f"[{decision.node_id}] ", style="cyan")
    service = getattr(decision, "service", None)  # made in another process than the run's
    if isinstance(service, str) and service:
        label.append(f"@{service} ", style="magenta")
    label.append(decision.intent)
    label.append(f"  {decision.decision_type.value}", style="dim")
    if decision.chosen_option_id:
        label.append(" → ")
        label.append(decision.chosen_option_id, style="bold green")
    if outcome is not None:
        label.append(
            f"  {format_ms(outcome.latency_ms)} · {_tokens(outcome.tokens_used)} tokens",
            style="dim",
        )
    return label


def run_tree(run: Run) -> Tree:
    """The run as a tree: decisions in order with their options, outcome and problems."""
    head = Text(run.id, style="bold")
    head.append("  ")
    head.append_text(status_text(run.status.value))
    head.append(
        f"  goal {run.goal_id} · {format_ms(run.duration_ms)} · "
        f"{plural(run.metrics.total_decisions, 'decision')} · "
        f"{plural(run.metrics.total_tokens, 'token')}",
        style="dim",
    )
    extra = run.model_extra or {}
    if extra.get("paused") is True:
        head.append("  paused, resumable", style="bold yellow")
    tree = Tree(head)
    for field, name in (("thread_id", "thread"), ("resumed_from", "resumed from")):
        if extra.get(field) is not None:
            tree.add(Text(f"{name}: {extra[field]}", style="cyan"))
    when = f"started {time_text(run.started_at)}"
    if run.completed_at is not None:
        when += f" · ended {time_text(run.completed_at)}"
    tree.add(Text(when, style="dim"))
    trace_id = run_trace_id(run)
    if trace_id is not None:
        line = Text(f"trace {trace_id}", style="dim")
        link = trace_url(run)
        if link is not None:
            line.append(" · ")
            line.append(link, style=f"link {link}")
        tree.add(line)
    if run.goal_description:
        tree.add(Text(f"goal: {run.goal_description}", style="dim"))
    if run.input_data:
        tree.add(Text(f"input: {_short_json(run.input_data)}", style="dim"))
    problems_by_decision: dict[str | None, list[Problem]] = {}
    known = {decision.id for decision in run.decisions}
    for problem in run.problems:
        key = problem.decision_id if problem.decision_id in known else None
        problems_by_decision.setdefault(key, []).append(problem)
    for decision in run.decisions:
        branch = tree.add(_decision_label(decision))
        if decision.options:
            branch.add(_options_table(decision))
        if decision.reasoning:
            branch.add(Text(f"why: {decision.reasoning}", style="italic"))
        outcome = decision.outcome
        if outcome is None and (decision.model_extra or {}).get("paused") is True:
            branch.add(Text("paused: resumes when the graph is resumed", style="yellow"))
        elif outcome is None:
            branch.add(Text("no outcome recorded", style="dim"))
        elif outcome.success:
            detail = _short_json(outcome.result) if outcome.result is not None else ""
            branch.add(Text(f"outcome: success {detail}".rstrip(), style="green"))
        else:
            branch.add(Text(f"outcome: failed: {outcome.error or 'no error given'}", style="red"))
        for problem in problems_by_decision.get(decision.id, ()):
            branch.add(_problem_line(problem))
        for line in judgement_lines(decision):
            branch.add(line)
    for problem in problems_by_decision.get(None, ()):
        tree.add(_problem_line(problem))
    if run.output_data:
        tree.add(Text(f"output: {_short_json(run.output_data)}", style="dim"))
    if run.narrative:
        tree.add(Text(run.narrative, style="italic dim"))
    return tree


# --- statistics -------------------------------------------------------------------------


def group_table(title: str, groups: Iterable[dict[str, Any]], keys: Sequence[str]) -> Table:
    """A table of stats groups (``by_node``, ``by_decision_type``, ``by_node_and_type``)."""
    rows = []
    for group in groups:
        latency = group["latency_ms"]
        rows.append(
            [
                *(str(group[key]) for key in keys),
                f"{group['decisions']:,}",
                format_rate(group["success_rate"]),
                _tokens(group["tokens"]["total"]),
                format_ms(latency["p50"]),
                format_ms(latency["p90"]),
                format_ms(latency["p99"]),
            ]
        )
    columns = [(key.replace("_id", "").replace("_", " "), False) for key in keys]
    columns += [(name, True) for name in ("decisions", "success", "tokens", "p50", "p90", "p99")]
    return fitted_table(columns, rows, title=title)


def option_table(options: Iterable[dict[str, Any]]) -> Group:
    """How often each option was chosen, with what confidence, and how it went: one
    table per node and decision type, so that it reads at 80 columns."""
    grouped: dict[tuple[str, str], list[list[Any]]] = {}
    for option in options:
        confidence = option["mean_confidence"]
        grouped.setdefault((option["node_id"], option["decision_type"]), []).append(
            [
                option["option_id"],
                f"{option['offered']:,}",
                f"{option['chosen']:,}",
                format_rate(option["chosen_share"]),
                NOT_GIVEN if confidence is None else f"{confidence:.2f}",
                format_rate(option["success_rate"]),
                _tokens(option["tokens"]["total"]),
                format_ms(option["latency_ms"]["p50"]),
            ]
        )
    columns = [("option", False)] + [
        (name, True)
        for name in ("offered", "chosen", "share", "confidence", "success", "tokens", "p50")
    ]
    return Group(
        *(
            fitted_table(columns, rows, title=f"options: {node} · {kind}")
            for (node, kind), rows in grouped.items()
        )
    )


def calibration_table(calibration: dict[str, Any]) -> Table:
    """Stated confidence against observed success rate, bucket by bucket."""
    error = calibration["expected_calibration_error"]
    table = Table(
        box=box.SIMPLE_HEAVY,
        title="calibration (chosen option's confidence vs success)",
        caption=None if error is None else f"expected calibration error {error:.3f}",
    )
    for name in ("confidence", "decisions", "stated", "observed", ""):
        table.add_column(name, justify="right" if name else "left")
    for bucket in calibration["buckets"]:
        rate = bucket["success_rate"]
        stated = bucket["mean_confidence"]
        bar = "" if rate is None else "█" * round(rate * 20)
        gap = "" if rate is None or stated is None else f"{(rate - stated) * 100:+.0f} pts"
        table.add_row(
            f"{bucket['low']:.1f}–{bucket['high']:.1f}",
            str(bucket["decisions"]),
            "-" if stated is None else f"{stated:.2f}",
            format_rate(rate),
            Text(f"{bar} {gap}".strip(), style="cyan"),
        )
    return table


def stats_view(stats: dict[str, Any]) -> Group:
    """Every stats table, for ``decisiontrace stats``."""
    head = Text(
        f"{plural(stats['runs'], 'run')}, {plural(stats['decisions'], 'decision')}, "
        f"{format_rate(stats['overall']['success_rate'])} succeeded",
        style="bold",
    )
    parts: list[RenderableType] = [head]
    if stats["runs_by_status"]:
        parts.append(status_counts_table(stats["runs_by_status"]))
    parts += [
        group_table("by node", stats["by_node"], ["node_id"]),
        group_table("by decision type", stats["by_decision_type"], ["decision_type"]),
        option_table(stats["by_option"]),
        calibration_table(stats["calibration"]),
    ]
    if "evaluations" in stats:
        parts += evaluation_views(stats["evaluations"])
    return Group(*parts)


# --- diff -----------------------------------------------------------------------------------


def _diff_decision(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return "(no decision: the run had ended)"
    success = decision["success"]
    outcome = "no outcome" if success is None else ("succeeded" if success else "failed")
    confidence = decision["confidence"]
    stated = "" if confidence is None else f" (confidence {confidence:.2f})"
    error = f": {decision['error']}" if decision["error"] else ""
    return (
        f"{decision['id']} [{decision['node_id']}] {decision['intent']} → "
        f"{decision['chosen_option_id'] or '(none)'}{stated}, {outcome}{error}"
    )


def _diff_where(first: dict[str, Any]) -> str:
    """Where two runs part: the decision ids (never a position like "#0")."""
    ids = [side["id"] for side in (first["a"], first["b"]) if side is not None]
    if not ids:
        return "the end"
    if len(ids) == 2 and ids[0] != ids[1]:
        return f"decisions {ids[0]} (A) and {ids[1]} (B)"
    return f"decision {ids[0]}"


def diff_view(diff: dict[str, Any]) -> Group:
    """Where two runs first chose differently, and how their outcomes differed."""
    a, b = diff["run_a"], diff["run_b"]
    table = Table(box=box.SIMPLE_HEAVY, title="runs")
    table.add_column("")
    table.add_column("A")
    table.add_column("B")
    table.add_row("run", a["id"], b["id"])
    table.add_row("goal", a["goal_id"], b["goal_id"])
    table.add_row("status", status_text(a["status"]), status_text(b["status"]))
    for key, label in (("decisions", "decisions"), ("failed_decisions", "failed decisions"),
                       ("total_tokens", "tokens"), ("problems", "problems")):  # fmt: skip
        table.add_row(label, f"{a[key]:,}", f"{b[key]:,}")
    table.add_row("duration", format_ms(a["duration_ms"]), format_ms(b["duration_ms"]))
    parts: list[RenderableType] = [table]
    first = diff["first_difference"]
    if first is None:
        parts.append(Text("Both runs made the same decisions with the same choices.", "green"))
    else:
        what = {
            "chosen": "chose differently",
            "path": "took different steps",
            "length": "stopped at different points",
        }[first["kind"]]
        parts.append(
            Text(
                f"The runs agree on {plural(diff['same_decisions'], 'decision')}, then "
                f"{what} at {_diff_where(first)}:",
                style="bold",
            )
        )
        parts.append(Text(f"  A: {_diff_decision(first['a'])}"))
        parts.append(Text(f"  B: {_diff_decision(first['b'])}"))
    if diff["outcome_differences"]:
        parts.append(Text("Outcomes that differ:", style="bold"))
        for item in diff["outcome_differences"]:
            parts.append(Text(f"  A: {_diff_decision(item['a'])}"))
            parts.append(Text(f"  B: {_diff_decision(item['b'])}"))
    if a["status"] != b["status"]:
        parts.append(
            Text.assemble("Run A ", status_text(a["status"]), ", run B ", status_text(b["status"]))
        )
    return Group(*parts)


# --- the demo's summary ------------------------------------------------------------------


def demo_view(result: DemoResult, runs: Sequence[Run], stats: dict[str, Any]) -> Group:
    """What ``decisiontrace demo`` prints once the runs are stored."""
    head = Text(f"Recorded {plural(len(runs), 'run')} in {result.store_url} ", style="bold")
    head.append(f"({result.seconds:.1f} s, seed {result.seed})", style="dim")
    parts: list[RenderableType] = [head]
    if result.exported_to:
        parts.append(Text(f"Spans exported to {result.exported_to} as well.", style="cyan"))
    parts.append(status_counts_table(result.status_counts))
    parts.append(
        group_table(
            "success rate per node and decision type",
            stats["by_node_and_type"],
            ["node_id", "decision_type"],
        )
    )
    failed = next((run for run in runs if run.status.value == "failed"), None)
    if failed is not None:
        parts.append(Text("One failed run:", style="bold"))
        parts.append(run_tree(failed))
    example = failed.id if failed is not None else (runs[0].id if runs else "RUN_ID")
    parts.append(
        Text(
            "\nLook further:\n"
            "  decisiontrace runs list --status failed\n"
            f"  decisiontrace runs show {example}\n"
            "  decisiontrace stats\n"
            "  decisiontrace report --html report.html",
            style="dim",
        )
    )
    return Group(*parts)
