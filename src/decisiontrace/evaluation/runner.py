"""Running an evaluator over stored decisions, as ``decisiontrace evaluate`` does.

Calls run on daemon threads, several at a time (evaluators that call an LLM wait on
I/O), each bounded by a timeout: an evaluator that raises or hangs on one decision is
reported and skipped, and the rest go on (a hung call's thread is abandoned, never
joined). Judgements are stored a run at a time, in one ``update_evaluations`` call per
run, and each is emitted as a ``gen_ai.evaluation.result`` event.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import _logs

from decisiontrace.evaluation import telemetry
from decisiontrace.evaluation.evaluators import Evaluator
from decisiontrace.evaluation.judgement import Judgement, build, judgements_of, stored_form
from decisiontrace.models import Decision, DecisionEvaluation, Run
from decisiontrace.spanmodel._jsonsafe import safe_str
from decisiontrace.stores import RunStore


@dataclass
class Skipped:
    """A decision the evaluator could not judge: it raised, timed out or returned junk."""

    run_id: str
    decision_id: str
    reason: str


@dataclass
class EvaluationReport:
    """What :func:`evaluate_runs` did.

    Attributes:
        evaluator: the name the judgements were recorded under.
        decisions_seen: decisions handed to the evaluator.
        judged: ``(run_id, decision_id, judgement)`` of every judgement recorded.
        unjudged: decisions the evaluator returned None for.
        skipped: decisions it raised or hung on, or returned something unusable for.
        already_judged: decisions left out because the evaluator judged them before
            (with ``only_new``).
    """

    evaluator: str
    decisions_seen: int = 0
    judged: list[tuple[str, str, Judgement]] = field(default_factory=list)
    unjudged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    already_judged: int = 0


def as_judgement(name: str, value: Any) -> Judgement | None:
    """An evaluator's return value as a judgement under ``name``; ValueError if unusable."""
    if value is None:
        return None
    if isinstance(value, Judgement):
        fields: dict[str, Any] = value.model_dump(exclude={"evaluator", "evaluated_at"})
    elif isinstance(value, DecisionEvaluation):
        fields = {"evaluation": value}
    elif isinstance(value, dict):
        unknown = set(value) - {"score", "label", "explanation", "evaluation"}
        if unknown:
            raise ValueError(f"unexpected keys {sorted(unknown)} in the evaluator's result")
        fields = value
    else:
        raise ValueError(
            f"an evaluator returns a Judgement, a DecisionEvaluation, a dict or None, "
            f"not {type(value).__name__}"
        )
    return build(
        name,
        fields.get("evaluation"),
        fields.get("score"),
        fields.get("label"),
        fields.get("explanation"),
    )


def _call(
    evaluator: Evaluator, run: Run, decision: Decision, results: queue.Queue[Any], key: int
) -> None:
    try:
        results.put((key, True, evaluator(run, decision)))
    except BaseException as error:  # expected: the user's evaluator failed; reported, skipped
        results.put((key, False, f"{type(error).__name__}: {safe_str(error)}"))


def evaluate_runs(
    store: RunStore,
    runs: Iterable[Run],
    evaluator: Evaluator,
    name: str,
    *,
    node_id: str | None = None,
    workers: int = 4,
    timeout: float = 60.0,
    on_progress: Callable[[int], None] | None = None,
    logger_provider: _logs.LoggerProvider | None = None,
    only_new: bool = False,
) -> EvaluationReport:
    """Judge every decision of ``runs`` (at ``node_id`` only, if given) with ``evaluator``.

    Args:
        store: where the runs are stored and the judgements go.
        runs: the stored runs to judge.
        evaluator: ``(run, decision) -> judgement | None``.
        name: the evaluator's name, recorded with each judgement.
        node_id: judge only decisions made at this node.
        workers: calls at once.
        timeout: seconds one call may take before it is skipped.
        on_progress: called with the number of decisions finished since the last call.
        logger_provider: where events go; default the global LoggerProvider.
        only_new: leave out decisions this evaluator judged already (counted in
            ``already_judged``), so an expensive evaluator is not asked twice.

    Returns:
        An :class:`EvaluationReport`.

    Raises:
        ValueError: ``workers`` or ``timeout`` is not positive.
    """
    if workers < 1 or not timeout > 0:
        raise ValueError("workers and timeout must be positive")
    report = EvaluationReport(evaluator=name)
    results: queue.Queue[tuple[int, bool, Any]] = queue.Queue()
    tasks = [
        (run, decision)
        for run in runs
        for decision in run.decisions
        if node_id is None or decision.node_id == node_id
    ]
    if only_new:
        fresh = [
            (run, decision)
            for run, decision in tasks
            if all(j.evaluator != name for j in judgements_of(decision))
        ]
        report.already_judged = len(tasks) - len(fresh)
        tasks = fresh
    report.decisions_seen = len(tasks)
    remaining_per_run: dict[str, int] = {}
    for run, _ in tasks:
        remaining_per_run[run.id] = remaining_per_run.get(run.id, 0) + 1
    pending: dict[str, list[tuple[str, Judgement]]] = {}
    running: dict[int, float] = {}  # task index -> deadline
    next_task = 0

    def finish(index: int) -> None:
        run = tasks[index][0]
        remaining_per_run[run.id] -= 1
        if on_progress is not None:
            on_progress(1)
        if remaining_per_run[run.id] == 0:
            _store(store, run, pending.pop(run.id, []), report, logger_provider)

    while next_task < len(tasks) or running:
        while next_task < len(tasks) and len(running) < workers:
            run, decision = tasks[next_task]
            threading.Thread(
                target=_call,
                args=(evaluator, run, decision, results, next_task),
                name=f"decisiontrace-evaluate-{next_task}",
                daemon=True,  # a hung evaluator must not keep the process alive
            ).start()
            running[next_task] = time.monotonic() + timeout
            next_task += 1
        wait = max(0.0, min(running.values()) - time.monotonic())
        try:
            index, ok, value = results.get(timeout=wait)
        except queue.Empty:
            now = time.monotonic()
            for index in [i for i, deadline in running.items() if deadline <= now]:
                del running[index]
                run, decision = tasks[index]
                report.skipped.append(
                    Skipped(run.id, decision.id, f"no answer within {timeout:g} seconds")
                )
                finish(index)
            continue
        if running.pop(index, None) is None:
            continue  # a call already given up on as timed out
        run, decision = tasks[index]
        if not ok:
            report.skipped.append(Skipped(run.id, decision.id, f"the evaluator raised {value}"))
        else:
            try:
                judgement = as_judgement(name, value)
            except ValueError as error:
                report.skipped.append(Skipped(run.id, decision.id, str(error)))
            else:
                if judgement is None:
                    report.unjudged += 1
                else:
                    pending.setdefault(run.id, []).append((decision.id, judgement))
        finish(index)
    return report


def _store(
    store: RunStore,
    run: Run,
    judgements: list[tuple[str, Judgement]],
    report: EvaluationReport,
    logger_provider: _logs.LoggerProvider | None,
) -> None:
    """Store one run's judgements in one call, then emit their events."""
    if not judgements:
        return
    unknown = store.update_evaluations(
        run.id, [(decision_id, stored_form(j)) for decision_id, j in judgements]
    )
    if unknown is None:
        for decision_id, _ in judgements:
            report.skipped.append(Skipped(run.id, decision_id, "the run is no longer stored"))
        return
    record = run.model_dump(mode="json")
    decisions = {d["id"]: d for d in record["decisions"]}
    for decision_id, judgement in judgements:
        if decision_id in unknown:
            report.skipped.append(Skipped(run.id, decision_id, "no longer in the stored run"))
            continue
        report.judged.append((run.id, decision_id, judgement))
        telemetry.emit(record, decisions[decision_id], judgement, logger_provider)


__all__ = ["EvaluationReport", "Skipped", "as_judgement", "evaluate_runs"]
