"""``decisiontrace decisions``: find decisions across runs.

Filters on the run (goal, status, time) narrow the runs read; filters on the decision
(node, type, chosen option, outcome, text, judgements) pick decisions from them. Text
matches, case-insensitively, the intent, the reasoning, the options' ids and
descriptions, the outcome's summary and error, and the judgements' explanations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from decisiontrace.cli import render
from decisiontrace.cli._links import span_id_of, trace_url
from decisiontrace.cli._options import filters, json_option, store_option
from decisiontrace.cli._output import console, print_json
from decisiontrace.cli._store import load_runs, open_for_reading, short_id
from decisiontrace.cli._times import aware
from decisiontrace.evaluation.analytics import decision_verdict
from decisiontrace.evaluation.judgement import judgements_of
from decisiontrace.models import Decision, DecisionType, Run, RunStatus
from decisiontrace.spanmodel._records import stated_confidence
from decisiontrace.stores import RunStore

__all__ = ["decisions_command", "find_decisions", "search_store"]

OUTCOMES = ("success", "failed", "none")


def _outcome(decision: Decision) -> str:
    if decision.outcome is None:
        return "none"
    return "success" if decision.outcome.success else "failed"


def _text_of(decision: Decision) -> str:
    parts = [decision.intent, decision.reasoning]
    for option in decision.options:
        parts += [option.id, option.description]
    if decision.outcome is not None:
        parts += [decision.outcome.summary, decision.outcome.error or ""]
    parts += [j.explanation or "" for j in judgements_of(decision)]
    return "\n".join(parts).casefold()


def find_decisions(
    runs: Iterable[Run],
    *,
    node: str | None = None,
    decision_type: str | None = None,
    chosen: str | None = None,
    outcome: str | None = None,
    text: str | None = None,
    better_option: bool = False,
    judged_by: str | None = None,
) -> Iterator[tuple[Run, Decision]]:
    """``(run, decision)`` for every decision of ``runs`` that passes every filter given.

    ``better_option`` keeps decisions a judgement says a better option existed for;
    ``judged_by`` those this evaluator judged.
    """
    wanted = _matcher(node, decision_type, chosen, outcome, text, better_option, judged_by)
    for run in runs:
        for decision in run.decisions:
            if wanted(decision):
                yield run, decision


def _matcher(
    node: str | None,
    decision_type: str | None,
    chosen: str | None,
    outcome: str | None,
    text: str | None,
    better_option: bool,
    judged_by: str | None,
) -> Callable[[Decision], bool]:
    """The test a decision must pass, for the filters given."""
    needle = text.casefold() if text else None

    def wanted(decision: Decision) -> bool:
        if node is not None and decision.node_id != node:
            return False
        if decision_type is not None and decision.decision_type.value != decision_type:
            return False
        if chosen is not None and decision.chosen_option_id != chosen:
            return False
        if outcome is not None and _outcome(decision) != outcome:
            return False
        if needle is not None and needle not in _text_of(decision):
            return False
        if better_option or judged_by is not None:
            verdict = decision_verdict(decision)
            if verdict is None or (better_option and not verdict["better_option_existed"]):
                return False
            if judged_by is not None and judged_by not in verdict["evaluators"]:
                return False
        return True

    return wanted


def search_store(
    store: RunStore,
    *,
    goal: str | None = None,
    since: datetime | None = None,
    status: str | None = None,
    node: str | None = None,
    decision_type: str | None = None,
    chosen: str | None = None,
    outcome: str | None = None,
    text: str | None = None,
    better_option: bool = False,
    judged_by: str | None = None,
) -> Generator[tuple[Run, Decision], None, None]:
    """:func:`find_decisions` over the store's matching runs, newest first: narrowed by
    the columns the store keeps when it keeps them (only the runs of candidate
    decisions are read), else over every matching run."""
    candidates = store.search_decisions(
        goal_id=goal, status=status, since=since, node_id=node, decision_type=decision_type,
        chosen=chosen, outcome=outcome, text=text,
        judged=better_option or judged_by is not None,
    )  # fmt: skip
    if candidates is None:
        yield from find_decisions(
            load_runs(store, goal, since, None, status=status, node=node),
            node=node, decision_type=decision_type, chosen=chosen, outcome=outcome, text=text,
            better_option=better_option, judged_by=judged_by,
        )  # fmt: skip
        return
    wanted = _matcher(node, decision_type, chosen, outcome, text, better_option, judged_by)
    run: Run | None = None
    by_id: dict[str, Decision] = {}
    with contextlib.closing(candidates):
        for run_id, decision_id in candidates:
            if run is None or run.id != run_id:
                run = store.load_run(run_id)
                by_id = {} if run is None else {d.id: d for d in run.decisions}
            decision = by_id.get(decision_id)
            if run is not None and decision is not None and wanted(decision):
                yield run, decision


def _as_json(run: Run, decision: Decision) -> dict[str, Any]:
    chosen = decision.chosen_option
    outcome = decision.outcome
    return {
        "run_id": run.id,
        "goal_id": run.goal_id,
        "run_status": run.status.value,
        "decision_id": decision.id,
        "timestamp": aware(decision.timestamp).isoformat(),
        "node_id": decision.node_id,
        "decision_type": decision.decision_type.value,
        "intent": decision.intent,
        "chosen_option_id": decision.chosen_option_id,
        "confidence": None if chosen is None else stated_confidence(chosen),
        "reasoning": decision.reasoning,
        "outcome": _outcome(decision),
        "error": None if outcome is None else outcome.error,
        "tokens_used": None if outcome is None else outcome.tokens_used,
        "latency_ms": None if outcome is None else outcome.latency_ms,
        "judged": decision_verdict(decision),
        "span_id": span_id_of(decision),
        "trace_url": trace_url(run, decision),
    }


def _judged(decision: Decision) -> str:
    """Evaluated quality and the better option, if judgements name one."""
    verdict = decision_verdict(decision)
    if verdict is None:
        return "—"
    words = [] if verdict["quality"] is None else [f"q {verdict['quality']:.2f}"]
    if verdict["better_option_existed"]:
        words.append(f"better: {verdict['better_option_id'] or '?'}")
    return " · ".join(words) or ", ".join(verdict["evaluators"])


def _table(found: list[tuple[Run, Decision]], caption: str | None) -> Table:
    rows = []
    for run, decision in found:
        outcome = _outcome(decision)
        chosen = decision.chosen_option
        confidence = None if chosen is None else stated_confidence(chosen)
        rows.append(
            [
                short_id(run.id),
                decision.id,
                decision.node_id,
                decision.intent,
                decision.chosen_option_id or "—",
                render.NOT_GIVEN if confidence is None else f"{confidence:.2f}",
                Text(outcome, style={"success": "green", "failed": "bold red"}.get(outcome, "")),
                _judged(decision),
            ]
        )
    return render.fitted_table(
        [
            ("run", True),
            ("decision", True),
            ("node", False),
            ("intent", False),
            ("chosen", False),
            ("conf.", True),
            ("outcome", True),
            ("judged", False),
        ],
        rows,
        title=render.plural(len(found), "decision"),
        caption=caption,
    )


@click.command(
    "decisions",
    epilog="""\b
Examples:
  decisiontrace decisions --node retriever --outcome failed
  decisiontrace decisions --chosen escalate --since 1d --json
  decisiontrace decisions --text "refund"
  decisiontrace decisions --better-option --node retriever
""",
)
@filters
@click.option(
    "--status", type=click.Choice([s.value for s in RunStatus]), help="Runs of this status."
)
@click.option("--node", metavar="NODE_ID", help="Decisions made by this node.")
@click.option(
    "--type", "decision_type", type=click.Choice([t.value for t in DecisionType]),
    help="Decisions of this type.",
)  # fmt: skip
@click.option("--chosen", metavar="OPTION_ID", help="Decisions that chose this option.")
@click.option("--outcome", type=click.Choice(OUTCOMES), help="success, failed, or none yet.")
@click.option(
    "--text", help="Text in the intent, reasoning, options, outcome or judgements (any case)."
)
@click.option(
    "--better-option", is_flag=True,
    help="Decisions a judgement says a better option existed for (see `evaluate`).",
)  # fmt: skip
@click.option("--judged-by", metavar="EVALUATOR", help="Decisions this evaluator judged.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True,
    help="At most this many decisions, from the newest runs.",
)  # fmt: skip
@json_option
@store_option
@click.pass_context
def decisions_command(
    ctx: click.Context,
    goal: str | None,
    since: datetime | None,
    status: str | None,
    node: str | None,
    decision_type: str | None,
    chosen: str | None,
    outcome: str | None,
    text: str | None,
    better_option: bool,
    judged_by: str | None,
    limit: int,
    as_json: bool,
) -> int:
    """Find decisions across runs by node, type, chosen option, outcome and text."""
    found: list[tuple[Run, Decision]] = []
    with open_for_reading(ctx) as store:
        matches = search_store(
            store, goal=goal, since=since, status=status, node=node,
            decision_type=decision_type, chosen=chosen, outcome=outcome, text=text,
            better_option=better_option, judged_by=judged_by,
        )  # fmt: skip
        with contextlib.closing(matches):
            for item in matches:
                found.append(item)
                if len(found) > limit:
                    break
    more = len(found) > limit
    found = found[:limit]
    if as_json:
        print_json([_as_json(run, decision) for run, decision in found])
        return 0
    if not found:
        given = (goal, since, status, node, decision_type, chosen, outcome, text, better_option,
                 judged_by)  # fmt: skip
        click.echo(render.nothing_found("decisions", filtered=any(given)))
        return 0
    caption = f"first {limit} shown (newest runs first); use --limit for more" if more else None
    console().print(_table(found, caption))
    return 0
