"""Terminal views over many runs: statistics, the diff of two runs, the demo's summary.

Like :mod:`decisiontrace.cli.render` (the shared formatting, run listings and the tree
of one run), every function returns renderables and prints nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from decisiontrace.cli.evaluations import evaluation_views
from decisiontrace.cli.render import (
    NOT_GIVEN,
    fitted_table,
    format_ms,
    format_rate,
    plural,
    run_tree,
    status_counts_table,
    status_text,
    token_count,
)
from decisiontrace.models import Run

if TYPE_CHECKING:
    from decisiontrace.demo import DemoResult

__all__ = [
    "calibration_table",
    "demo_view",
    "diff_view",
    "group_table",
    "option_table",
    "stats_view",
]


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
                token_count(group["tokens"]["total"]),
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
                token_count(option["tokens"]["total"]),
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
