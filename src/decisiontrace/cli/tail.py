"""``decisiontrace runs tail``: runs as they are stored, until Ctrl-C.

It polls the store (read-only) and prints every run it has not shown yet, and again
when a run is stored anew with another status (a late span, a resumed run). Output is a
line per run for people, or one JSON object per line with ``--json``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from types import FrameType
from typing import Any

import click
from rich.text import Text

from decisiontrace.cli import render
from decisiontrace.cli._json import listing
from decisiontrace.cli._options import json_option, store_option
from decisiontrace.cli._output import console
from decisiontrace.cli._store import open_for_reading, short_id
from decisiontrace.cli._times import time_text
from decisiontrace.models import RunStatus, RunSummary
from decisiontrace.stores import RunStore

__all__ = ["tail_command"]

# How many of the newest runs each poll reads: more than can be stored between polls.
_WINDOW = 500


def _line(item: dict[str, Any], summary: RunSummary) -> Text:
    started = item.get("started_at")
    when = time_text(datetime.fromisoformat(started)) if isinstance(started, str) else ""
    line = Text(f"{when}  ")
    line.append(f"{short_id(summary.run_id)}  ", style="bold")
    line.append_text(render.status_text(summary.status.value))
    line.append(
        f"  {summary.goal_id} · {render.plural(summary.decision_count, 'decision')} · "
        f"{render.format_rate(summary.success_rate if summary.decision_count else None)} "
        f"succeeded · {render.plural(summary.problem_count, 'problem')} · "
        f"{render.format_ms(summary.duration_ms)}"
    )
    if item.get("trace_url"):
        line.append(f"  {item['trace_url']}", style="dim")
    return line


def _poll(
    store: RunStore, goal: str | None, status: str | None, shown: dict[str, str]
) -> list[RunSummary]:
    """Runs stored since the last poll (or stored anew with another status), oldest first."""
    new = [
        summary
        for summary in store.list_runs(goal_id=goal, status=status, limit=_WINDOW)
        if shown.get(summary.run_id) != summary.status.value
    ]
    for summary in new:
        shown[summary.run_id] = summary.status.value
    return list(reversed(new))


@contextlib.contextmanager
def _stop_on_ctrl_c() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C; a second one interrupts as usual.

    The loop stops at its next look instead of taking ``KeyboardInterrupt`` wherever it
    happens to be (inside SQLite, or code that catches it), and a SIGINT the parent
    process left ignored still stops it.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals reach the main thread only; KeyboardInterrupt still works
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


@click.command(
    "tail",
    epilog="""\b
Examples:
  decisiontrace runs tail
  decisiontrace runs tail --status failed --json
""",
)
@click.option("--goal", metavar="GOAL_ID", help="Only runs toward this goal.")
@click.option("--status", type=click.Choice([s.value for s in RunStatus]), help="Only this status.")
@click.option(
    "-n", "--lines", type=click.IntRange(min=0), default=10, show_default=True,
    help="Start with this many of the newest runs.",
)  # fmt: skip
@click.option(
    "--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
    help="Seconds between looks at the store.",
)  # fmt: skip
@json_option
@store_option
@click.pass_context
def tail_command(
    ctx: click.Context,
    goal: str | None,
    status: str | None,
    lines: int,
    interval: float,
    as_json: bool,
) -> int:
    """Show runs as they are stored (newest last), until Ctrl-C."""
    out = console()
    shown: dict[str, str] = {}
    with open_for_reading(ctx) as store, _stop_on_ctrl_c() as stop:
        try:
            first = _poll(store, goal, status, shown)
            batch = first[len(first) - lines :] if lines else []
            while not stop.is_set():
                for summary in batch:
                    item = listing(store, summary.model_dump(mode="json"))
                    if as_json:
                        click.echo(render.json_line(item))
                    else:
                        out.print(_line(item, summary), soft_wrap=True)
                if stop.wait(interval):
                    break
                batch = _poll(store, goal, status, shown)
        except KeyboardInterrupt:
            pass
        if not as_json:
            click.echo("stopped", err=True)
    return 0
