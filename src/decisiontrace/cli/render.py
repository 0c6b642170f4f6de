"""Terminal output for people: rich tables and trees.

rich decides about colour: it uses it on a terminal, writes plain text when the output
is piped, and honours ``NO_COLOR``. Every function here returns renderables and prints
nothing, so the commands decide where output goes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table
from rich.text import Text

from decisiontrace.cli._links import run_trace_id, trace_url
from decisiontrace.cli._store import short_id
from decisiontrace.cli._times import time_text
from decisiontrace.spanmodel import _ids
from decisiontrace.spanmodel._records import stated_confidence

if TYPE_CHECKING:  # run_tree's own imports wait for `runs show`: `runs list` starts faster
    from rich.tree import Tree

    from decisiontrace.models import Decision, Option, Problem, Run

__all__ = [
    "NOT_GIVEN",
    "STATUS_STYLES",
    "fitted_table",
    "format_ms",
    "format_rate",
    "json_line",
    "nothing_found",
    "plural",
    "run_started",
    "run_tree",
    "runs_table",
    "status_counts_table",
    "status_text",
    "token_count",
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


def token_count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def status_text(status: str) -> Text:
    """A run status, coloured."""
    return Text(status, style=STATUS_STYLES.get(status, ""))


def run_started(run_id: str) -> str:
    """The start time a run id carries, with this machine's UTC offset (ids carry local
    time): ``2026-05-10 14:03:07+02:00``, or "" if it has none."""
    moment = _ids.run_id_time(run_id)
    return "" if moment is None else time_text(moment)


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
    summaries: Sequence[Mapping[str, Any]], *, caption: str | None = None, width: int = WIDE
) -> Table:
    """One row per run summary (a store's summary dict), newest first as given; short ids
    when ``width`` is narrow."""
    wide = width >= WIDE
    rows = []
    for summary in summaries:
        run_id = summary["run_id"]
        decisions = summary["decision_count"]
        problems = summary["problem_count"]
        row: list[Any] = [
            run_id if wide else short_id(run_id),
            summary["goal_id"],
            status_text(summary["status"]),
        ]
        if width >= NARROW:  # below it, `runs show` has the start time
            row.append(run_started(run_id))
        row += [
            format_ms(summary["duration_ms"]),
            f"{decisions:,}",
            format_rate(summary["success_rate"] if decisions else None),
            Text(f"{problems:,}", style="yellow" if problems else ""),
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
            f"  {format_ms(outcome.latency_ms)} · {token_count(outcome.tokens_used)} tokens",
            style="dim",
        )
    return label


def run_tree(run: Run) -> Tree:
    """The run as a tree: decisions in order with their options, outcome and problems."""
    from rich.tree import Tree

    from decisiontrace.cli.evaluations import judgement_lines

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
