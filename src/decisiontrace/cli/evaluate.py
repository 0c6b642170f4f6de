"""``decisiontrace evaluate``: run an evaluator over stored decisions.

Judgements are stored with their decisions (one per evaluator, so running it again
replaces its earlier judgements) and, when the ``OTEL_*`` variables name a log
destination (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_LOGS_EXPORTER``), sent as
``gen_ai.evaluation.result`` events parented to the decisions' spans.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from decisiontrace.cli._errors import CommandError, one_line
from decisiontrace.cli._options import filters, json_option, store_option
from decisiontrace.cli._store import load_runs, open_existing
from decisiontrace.evaluation import telemetry
from decisiontrace.evaluation.evaluators import BUILT_IN, load_evaluator
from decisiontrace.evaluation.judgement import judgements_of
from decisiontrace.evaluation.runner import EvaluationReport, evaluate_runs
from decisiontrace.models import Run

__all__ = ["evaluate"]


def _report_json(report: EvaluationReport) -> dict[str, Any]:
    return {
        "evaluator": report.evaluator,
        "decisions_seen": report.decisions_seen,
        "judged": [
            {"run_id": run_id, "decision_id": decision_id, **j.model_dump(mode="json")}
            for run_id, decision_id, j in report.judged
        ],
        "unjudged": report.unjudged,
        "already_judged": report.already_judged,
        "skipped": [vars(s) for s in report.skipped],
    }


def _summary(report: EvaluationReport) -> Table:
    labels = Counter(j.label or "(no label)" for _, _, j in report.judged)
    table = Table(title=f"evaluator {report.evaluator}: {len(report.judged)} decisions judged")
    table.add_column("label")
    table.add_column("decisions", justify="right")
    for label, count in labels.most_common():
        table.add_row(label, str(count))
    return table


@click.command(
    "evaluate",
    epilog="""\b
Examples:
  decisiontrace evaluate --evaluator better-option
  decisiontrace evaluate --evaluator outcome --since 1d --goal resolve-ticket
  decisiontrace evaluate --evaluator mypkg.judges:llm_judge --node responder --workers 8
""",
)
@click.option(
    "--evaluator",
    "spec",
    required=True,
    metavar="NAME|MODULE:FUNCTION",
    help=f"A built-in evaluator ({', '.join(BUILT_IN)}) or module:function taking "
    "(run, decision) and returning a judgement or None.",
)
@click.option(
    "--run", "run_ids", multiple=True, metavar="RUN_ID", help="Only this run (repeatable)."
)
@filters
@click.option("--node", metavar="NODE_ID", help="Only decisions made at this node.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest this many runs.")
@click.option(
    "--workers", type=click.IntRange(1, 256), default=4, show_default=True,
    help="Evaluator calls at once (more for evaluators that wait on a network).",
)  # fmt: skip
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
    help="Seconds one call may take; a call that takes longer is reported and skipped.",
)  # fmt: skip
@click.option(
    "--only-new", is_flag=True,
    help="Leave out decisions this evaluator judged already (an expensive judge is asked once).",
)  # fmt: skip
@json_option
@store_option
@click.pass_context
def evaluate(
    ctx: click.Context,
    spec: str,
    run_ids: tuple[str, ...],
    goal: str | None,
    since: datetime | None,
    node: str | None,
    limit: int | None,
    workers: int,
    timeout: float,
    only_new: bool,
    as_json: bool,
) -> int:
    """Judge stored decisions with an evaluator, and store the judgements with them.

    Exit status 1 when the evaluator raised or timed out on some decisions (they are
    listed and the rest were judged), 2 for an unknown evaluator or run id.
    """
    try:
        name, function = load_evaluator(spec)
    except ValueError as error:
        raise CommandError(f"--evaluator: {error}") from error
    try:
        events = telemetry.provider_from_environment()
    except ValueError as error:
        raise CommandError(one_line(error)) from error
    console = Console(stderr=True, highlight=False)
    try:
        with open_existing(ctx) as store:
            runs: list[Run] = []
            for run_id in run_ids:
                run = store.load_run(run_id)
                if run is None:
                    raise CommandError(
                        f"no run {run_id!r} in {store.url}; list run ids with "
                        "`decisiontrace runs list`"
                    )
                runs.append(run)
            if not run_ids:
                runs = list(load_runs(store, goal, since, limit))
            total = sum(
                1
                for run in runs
                for d in run.decisions
                if (node is None or d.node_id == node)
                and not (only_new and any(j.evaluator == name for j in judgements_of(d)))
            )
            with Progress(
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                disable=as_json or not console.is_terminal,
            ) as progress:
                task = progress.add_task(f"judging with {name}", total=total)
                report = evaluate_runs(
                    store, runs, function, name, node_id=node, workers=workers,
                    timeout=timeout, logger_provider=events, only_new=only_new,
                    on_progress=lambda done: progress.advance(task, done),
                )  # fmt: skip
    finally:
        if events is not None:
            events.shutdown()  # type: ignore[attr-defined]  # an SDK provider: flushes
    for skipped in report.skipped:
        click.echo(f"skipped {skipped.run_id} {skipped.decision_id}: {skipped.reason}", err=True)
    if as_json:
        click.echo(json.dumps(_report_json(report), indent=2, ensure_ascii=False))
    elif not report.decisions_seen:
        click.echo("no decisions match; try fewer filters, or `decisiontrace demo` to record some")
    else:
        out = Console(highlight=False)
        if not out.is_terminal and not os.environ.get("COLUMNS"):
            out.width = 160
        out.print(_summary(report))
        out.print(
            f"{len(report.judged)} judged, {report.unjudged} left unjudged, "
            f"{len(report.skipped)} skipped, of {report.decisions_seen} decisions"
            + (f" ({report.already_judged} judged before, left out)" if only_new else "")
        )
    return 1 if report.skipped else 0
