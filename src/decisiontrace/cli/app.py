"""The ``decisiontrace`` command line (click), and ``python -m decisiontrace``.

Output is for people by default (rich tables and trees) and for machines with
``--json``. Exit status: 0 when the command did what was asked, 1 when it ran but found
problems (a partly malformed file to rebuild, demo runs missing from the store), 2 for
bad input (usage, unknown run ids, a store or file that cannot be read). Errors are one
line on stderr saying what is wrong and what to do, never a traceback.

Reading commands never create a store: a store URL naming nothing that exists is an
error, not an empty store.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import TYPE_CHECKING

import click

from decisiontrace._version import __version__
from decisiontrace.cli import render
from decisiontrace.cli._errors import App, CommandError, fail, one_line
from decisiontrace.cli._json import listing, run_json
from decisiontrace.cli._lazy import LazyGroup
from decisiontrace.cli._links import TRACE_URL_ENV_VAR
from decisiontrace.cli._options import filters, json_option, store_option
from decisiontrace.cli._output import console, print_json
from decisiontrace.cli._store import STORE_KEY, load_run, load_runs, open_for_reading, store_url
from decisiontrace.spanmodel._kinds import RunStatus
from decisiontrace.stores import StoreError, open_store

if TYPE_CHECKING:
    from decisiontrace.models import Run

__all__ = ["main"]

# Commands kept in modules of their own, imported when run (or listed by --help): each
# command loads only what it uses, so `runs list` starts without the evaluation package,
# the stats and views, rich's progress bars or the server.
_COMMANDS = {
    "decisions": "decisiontrace.cli.decisions:decisions_command",
    "evaluate": "decisiontrace.cli.evaluate:evaluate",
    "serve": "decisiontrace.cli.serve:serve",
}
_RUNS_COMMANDS = {"tail": "decisiontrace.cli.tail:tail_command"}


def _otlp_json_line(run: Run) -> str:
    """One run as an OTLP JSON line (the exporter is loaded only by ``export``)."""
    from decisiontrace.export._otlp_export import otlp_json_line

    return otlp_json_line(run)


# --- output ---------------------------------------------------------------------------


_console = console
_print_json = print_json


# --- commands ---------------------------------------------------------------------------


@click.group(
    "decisiontrace",
    cls=App,
    lazy_commands=_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Examples:
  decisiontrace demo                     record 60 support-ticket runs
  decisiontrace runs list --status failed
  decisiontrace runs show RUN_ID
  decisiontrace stats
  decisiontrace report --html report.html
""",
)
@store_option
@click.version_option(__version__, prog_name="decisiontrace")
def main() -> None:
    """Look into the decisions an agent recorded: runs, stats, diffs, reports."""


@main.group(
    cls=LazyGroup,
    lazy_commands=_RUNS_COMMANDS,
    epilog="Example: decisiontrace runs list --status failed --since 1d",
)
@store_option
def runs() -> None:
    """List stored runs, show one as a tree, or follow them as they are stored."""


@runs.command(
    "list",
    epilog="""\b
Examples:
  decisiontrace runs list --goal resolve-ticket --status failed
  decisiontrace runs list --node retriever --since 2h --json
""",
)
@filters
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), help="Only this status.")
@click.option("--node", metavar="NODE_ID", help="Only runs in which this node decided something.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many."
)
@json_option
@store_option
@click.pass_context
def runs_list(
    ctx: click.Context,
    goal: str | None,
    since: datetime | None,
    status: str | None,
    node: str | None,
    limit: int,
    as_json: bool,
) -> int:
    """Stored runs, newest first."""
    with open_for_reading(ctx) as store:
        # The summary dicts as stored, not RunSummary models: a listing needs no
        # validation, and `runs list` starts without pydantic.
        found = store.list_summaries(
            goal_id=goal, status=status, since=since, limit=limit + 1, node_id=node
        )
        shown = found[:limit]
        if as_json:
            _print_json([listing(store, summary) for summary in shown])
            return 0
    if not shown:
        click.echo(render.nothing_found("runs", filtered=any((goal, since, status, node))))
        return 0
    caption = f"newest {limit} shown; use --limit for more" if len(found) > limit else None
    console = _console()
    console.print(render.runs_table(shown, caption=caption, width=console.width))
    return 0


@runs.command(
    "show",
    epilog="Example: decisiontrace runs show run_support-agent_20260510_140307_1a2b3c4d",
)
@click.argument("run_id")
@json_option
@store_option
@click.pass_context
def runs_show(ctx: click.Context, run_id: str, as_json: bool) -> int:
    """One run as a tree: each decision with its options, choice, outcome and problems."""
    with open_for_reading(ctx) as store:
        run = load_run(store, run_id)
    if as_json:
        _print_json(run_json(run))
    else:
        _console().print(render.run_tree(run))
    return 0


@main.command(
    epilog="""\b
Examples:
  decisiontrace stats
  decisiontrace stats --goal resolve-ticket --since 7d --json
  decisiontrace stats --node retriever --status failed
""",
)
@filters
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), help="Only this status.")
@click.option("--node", metavar="NODE_ID", help="Only runs in which this node decided something.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest this many runs.")
@json_option
@store_option
@click.pass_context
def stats(
    ctx: click.Context,
    goal: str | None,
    since: datetime | None,
    status: str | None,
    node: str | None,
    limit: int | None,
    as_json: bool,
) -> int:
    """Per node, decision type and option: choices, success rate, tokens, latency, calibration."""
    from decisiontrace.cli import views
    from decisiontrace.cli.stats import stats_of_store

    with open_for_reading(ctx) as store:
        result = stats_of_store(store, goal, since, limit, status=status, node=node)
    if as_json:
        _print_json(result)
    elif not result["runs"]:
        click.echo(render.nothing_found("runs", filtered=any((goal, since, status, node, limit))))
    else:
        _console().print(views.stats_view(result))
    return 0


@main.command(epilog="Example: decisiontrace diff RUN_A RUN_B")
@click.argument("run_a")
@click.argument("run_b")
@json_option
@store_option
@click.pass_context
def diff(ctx: click.Context, run_a: str, run_b: str, as_json: bool) -> int:
    """Where two runs of the same goal first chose differently, and how their outcomes differed."""
    from decisiontrace.cli import views
    from decisiontrace.cli.diff import diff_runs

    with open_for_reading(ctx) as store:
        first, second = load_run(store, run_a), load_run(store, run_b)
    result = diff_runs(first, second)
    if not result["same_goal"]:
        click.echo(
            f"warning: the runs pursue different goals ({first.goal_id!r}, {second.goal_id!r}); "
            "their decisions may not be comparable",
            err=True,
        )
    if as_json:
        _print_json(result)
    else:
        _console().print(views.diff_view(result))
    return 0


@main.command(
    epilog="""\b
Examples:
  decisiontrace export RUN_ID > run.json
  decisiontrace export RUN_ID --format otlp-json -o run.otlp.jsonl
  decisiontrace rebuild run.otlp.jsonl --store sqlite:///copy.db
""",
)
@click.argument("run_id")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["json", "otlp-json"]),
    default="json",
    show_default=True,
    help="json: the Run record; otlp-json: its spans as one OTLP JSON line, "
    "which `decisiontrace rebuild` reads back.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write here.")
@click.option(
    "--json", "as_json", is_flag=True,
    help="With -o: say what was written as JSON on stdout (without -o the run is JSON).",
)  # fmt: skip
@store_option
@click.pass_context
def export(
    ctx: click.Context, run_id: str, output_format: str, output: str | None, as_json: bool
) -> int:
    """Write one run as its JSON record or as OTLP JSON spans (RUN_ID may be a unique prefix)."""
    with open_for_reading(ctx) as store:
        run = load_run(store, run_id)
    run_id = run.id
    if output_format == "json":
        text = json.dumps(run.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    else:
        text = _otlp_json_line(run) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as stream:
            stream.write(text)
        if as_json:
            _print_json(
                {"run_id": run_id, "format": output_format, "output": output, "chars": len(text)}
            )
        else:
            click.echo(f"wrote {run_id} to {output}", err=True)
    return 0


@main.command(
    epilog="""\b
Examples:
  decisiontrace rebuild traces.jsonl --store sqlite:///runs.db
  curl -s http://jaeger:16686/api/v3/traces/TRACE_ID | decisiontrace rebuild -
""",
)
@click.argument("file")
@json_option
@store_option
@click.pass_context
def rebuild(ctx: click.Context, file: str, as_json: bool) -> int:
    """Rebuild runs from OTLP JSON (collector file exporter, Jaeger or Tempo) into a store.

    FILE is an OTLP JSON file, or - for standard input. Exit status 1 when some lines or
    fields were malformed (the rest was rebuilt), 2 when nothing could be read.
    """
    from decisiontrace.export.rebuild import rebuild as rebuild_runs

    try:
        store = open_store(store_url(ctx))
    except (ValueError, TypeError, StoreError, OSError) as error:
        raise CommandError(f"--store: {one_line(error)}") from error
    try:
        result = rebuild_runs(sys.stdin if file == "-" else file, store)
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"{file}: {one_line(error)}") from error
    except Exception as error:  # expected: the user's store failed; one line, no traceback
        raise CommandError(f"{store.url}: {one_line(error)}") from error
    finally:
        store.close()
    for message in result.errors:
        click.echo(f"{file}: {message}", err=True)
    if as_json:
        _print_json(
            {
                "runs_written": result.runs_written,
                "spans_read": result.spans_read,
                "lines_read": result.lines_read,
                "judgements_written": result.judgements_written,
                "errors": list(result.errors),
                "store": store.url,
            }
        )
    else:
        judged = (
            f" and {render.plural(result.judgements_written, 'judgement')} of decisions"
            if result.judgements_written
            else ""
        )
        click.echo(
            f"rebuilt {render.plural(result.runs_written, 'run')} from "
            f"{render.plural(result.spans_read, 'span')} "
            f"({render.plural(result.lines_read, 'line')}){judged} into {store.url}"
        )
    if result.errors:
        return 1 if result.spans_read else 2
    return 0


@main.command(
    epilog="""\b
Examples:
  decisiontrace report --html report.html
  decisiontrace report --html failed.html --goal resolve-ticket --since 1d --limit 50
""",
)
@click.option(
    "--html",
    "html_path",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Write the page here.",
)
@filters
@click.option(
    "--limit", type=click.IntRange(min=1), default=200, show_default=True,
    help="The newest this many runs.",
)  # fmt: skip
@click.option("--title", default="decisiontrace report", show_default=True)
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), help="Only this status.")
@click.option("--node", metavar="NODE_ID", help="Only runs in which this node decided something.")
@json_option
@store_option
@click.pass_context
def report(
    ctx: click.Context,
    html_path: str,
    goal: str | None,
    since: datetime | None,
    limit: int,
    title: str,
    status: str | None,
    node: str | None,
    as_json: bool,
) -> int:
    """One self-contained HTML page: every run's decisions, searchable, and stats with charts.

    Runs with a trace id link to their trace when DECISIONTRACE_TRACE_URL is a URL
    template with {trace_id} (for Jaeger: http://localhost:16686/trace/{trace_id});
    with {span_id} each decision links to its span too.
    """
    from decisiontrace.cli.stats import stats_of_store

    with open_for_reading(ctx) as store:
        selected = list(load_runs(store, goal, since, limit, status=status, node=node))
        statistics = stats_of_store(store, goal, since, limit, status=status, node=node)
        url = store.url
    # Imported here, as the exporter and the progress bar below: reading commands such as
    # `runs list` start faster without them.
    from decisiontrace.cli.report import render_report

    page = render_report(
        selected,
        statistics,
        store_url=url,
        generated_at=datetime.now().astimezone(),
        title=title,
        trace_url_template=os.environ.get(TRACE_URL_ENV_VAR, "").strip() or None,
    )
    with open(html_path, "w", encoding="utf-8") as stream:
        stream.write(page)
    if as_json:
        _print_json({"runs": len(selected), "output": html_path, "store": url})
    else:
        click.echo(f"wrote a report of {render.plural(len(selected), 'run')} to {html_path}")
    return 0


@main.command(
    epilog="""\b
Examples:
  decisiontrace demo
  decisiontrace demo --seed 3 --tickets 200 --store sqlite:///demo.db
  OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 decisiontrace demo
""",
)
@click.option("--seed", type=int, default=7, show_default=True, help="Same seed, same runs.")
@click.option("--tickets", type=click.IntRange(1, 100_000), default=60, show_default=True)
@click.option(
    "--threads", type=click.IntRange(1, 64), default=4, show_default=True,
    help="Worker threads for the blocking knowledge-base reads.",
)  # fmt: skip
@json_option
@store_option
@click.pass_context
def demo(ctx: click.Context, seed: int, tickets: int, threads: int, as_json: bool) -> int:
    """Run a support-ticket agent on simulated tickets and show what was recorded.

    Dozens of tickets run at once (asyncio tasks, plus threads for blocking reads); each
    is a run of classifier, retriever, responder and escalation decisions with options,
    confidences, simulated LLM calls, failures and problems. With
    OTEL_EXPORTER_OTLP_ENDPOINT set the spans are exported there as well.
    """
    from decisiontrace.cli import views
    from decisiontrace.cli.stats import compute_stats
    from decisiontrace.demo import run_demo

    console = _console()
    url = ctx.meta.get(STORE_KEY)  # None: $DECISIONTRACE_STORE or the default store
    if not as_json:
        console.print(f"Running the support-ticket agent on {tickets} tickets (seed {seed})…")
    if console.is_terminal and not as_json:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("tickets", total=tickets)
            result = run_demo(
                url,
                seed=seed,
                tickets=tickets,
                threads=threads,
                progress=lambda done, total: progress.update(task, completed=done),
            )
    else:
        result = run_demo(url, seed=seed, tickets=tickets, threads=threads)
    with open_store(result.store_url) as store:
        recorded = [run for run in map(store.load_run, result.run_ids.values()) if run]
    if as_json:
        _print_json(
            {
                "store": result.store_url,
                "seed": result.seed,
                "runs": len(recorded),
                "runs_by_status": result.status_counts,
                "run_ids": sorted(run.id for run in recorded),
                "seconds": round(result.seconds, 3),
                "exported_to": result.exported_to,
                "missing": list(result.missing),
            }
        )
    else:
        console.print(views.demo_view(result, recorded, compute_stats(recorded)))
    if result.missing:
        fail(
            f"{len(result.missing)} of {tickets} runs are not in {result.store_url} "
            f"(tickets {', '.join(result.missing[:5])}); check the log above"
        )
        return 1
    return 0
