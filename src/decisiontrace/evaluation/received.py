"""Judgements read back from ``gen_ai.evaluation.result`` events, stored with their
decisions: what ``rebuild`` does with OTLP JSON logs lines and what ``decisiontrace
serve`` does with the logs it receives."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from decisiontrace.evaluation.judgement import build, stored_form
from decisiontrace.evaluation.telemetry import ReadJudgement
from decisiontrace.stores import RunStore

__all__ = ["span_index", "store_received"]


def span_index(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], tuple[str, str]]:
    """``(trace_id, span_id) -> (run_id, decision_id)`` of records that keep span ids."""
    index: dict[tuple[str, str], tuple[str, str]] = {}
    for record in records:
        trace_id = record.get("trace_id")
        for decision in record.get("decisions") or []:
            span_id = decision.get("span_id")
            if isinstance(trace_id, str) and isinstance(span_id, str):
                index[(trace_id, span_id)] = (str(record["id"]), str(decision["id"]))
    return index


def store_received(
    store: RunStore,
    judgements: Iterable[tuple[str, ReadJudgement]],
    spans: Mapping[tuple[str, str], tuple[str, str]] | None = None,
) -> tuple[int, list[tuple[str, str]]]:
    """Store judgements read from events, one ``update_evaluations`` call per run.

    An event names its run and decision; failing that, its trace and span ids are
    looked up in ``spans``.

    Args:
        store: where the runs are.
        judgements: ``(where, read judgement)``; ``where`` names the event in errors.
        spans: see :func:`span_index`.

    Returns:
        How many judgements were stored, and ``(where, problem)`` for each one that was
        not (no decision named, a value out of range, a run or decision not stored).
    """
    problems: list[tuple[str, str]] = []
    per_run: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    places: dict[str, list[str]] = {}
    for where, read in judgements:
        run_id, decision_id = read.run_id, read.decision_id
        if (run_id is None or decision_id is None) and read.trace_id and read.span_id:
            run_id, decision_id = (spans or {}).get((read.trace_id, read.span_id), (None, None))
        if run_id is None or decision_id is None:
            problems.append((where, "an evaluation event that names no decision"))
            continue
        fields = read.judgement
        try:
            judgement = build(
                fields["evaluator"], fields.get("evaluation"), fields.get("score"),
                fields.get("label"), fields.get("explanation"), fields.get("evaluated_at"),
            )  # fmt: skip
        except ValueError as error:
            problems.append((where, f"evaluation event of {run_id} {decision_id}: {error}"))
            continue
        per_run.setdefault(run_id, []).append((decision_id, stored_form(judgement)))
        places.setdefault(run_id, []).append(where)
    written = 0
    for run_id, items in per_run.items():
        unknown = store.update_evaluations(run_id, items)
        if unknown is None:
            problems += [(where, f"run {run_id!r} is not stored") for where in places[run_id]]
            continue
        for (decision_id, _), where in zip(items, places[run_id], strict=True):
            if decision_id in unknown:
                problems.append((where, f"run {run_id!r} has no decision {decision_id!r}"))
            else:
                written += 1
    return written, problems
