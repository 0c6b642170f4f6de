"""A recording call's arguments, checked and encoded into span attributes.

The agent hands us anything: each argument is normalized here (a wrong type warns once
and is converted, see :mod:`decisiontrace.tracking._normalize`) and handed to the encoder
(:mod:`decisiontrace.spanmodel._codec`). Runs on the agent's thread, outside any run's lock.
"""

from __future__ import annotations

from typing import Any

from decisiontrace.spanmodel import _codec, _ids
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._kinds import DecisionType
from decisiontrace.tracking import _normalize

Attributes = _codec.Attributes

#: The id formats live in the span model; the name stays here for the tracker's callers.
new_run_id = _ids.new_run_id


def run_start_attributes(
    run_id_prefix: str,
    stream_id: str,
    execution_id: Any,
    goal_id: Any,
    goal_description: Any,
    input_data: Any,
    start_ns: int,
) -> Attributes:
    """A run span's attributes, with a new run id (and execution id when none is given)."""
    if execution_id is None:
        execution_id = _ids.new_execution_id()
    else:
        execution_id = _normalize.text(execution_id, "start_run(): execution_id")
    return _codec.run_start_attributes(
        run_id=new_run_id(run_id_prefix, start_ns),
        goal_id=_normalize.text(goal_id, "start_run(): goal_id"),
        goal_description=_normalize.text(goal_description, "start_run(): goal_description"),
        stream_id=stream_id,
        execution_id=execution_id,
        input_data=input_data,
    )


def decision_attributes(
    run_id: str,
    intent: str,
    options: Any,
    chosen: Any,
    reasoning: Any,
    node_id: Any,
    decision_type: Any,
    constraints: Any,
    context: Any,
    where: str,
) -> tuple[Attributes, list[dict[str, Any]]]:
    """A decision span's attributes (its id left empty) and its normalized options.

    Well-formed arguments take the type checks inline; only the others are handed to
    :mod:`~decisiontrace.tracking._normalize` (with the words of their warning).
    """
    if type(options) is not _normalize.PreparedOptions:  # a decorator's static list
        options = _normalize.prepare_options(options, where)
    if type(node_id) is not str:
        node_id = _normalize.text(node_id, f"{where}: node_id")
    if type(chosen) is not str:
        chosen = _normalize.text(chosen, f"{where}: chosen")
    if type(reasoning) is not str:
        reasoning = _normalize.text(reasoning, f"{where}: reasoning")
    if type(decision_type) is DecisionType:
        decision_type = decision_type.value
    elif type(decision_type) is not str or decision_type not in _normalize.DECISION_TYPES:
        decision_type = _normalize.decision_type_value(decision_type, where)
    if constraints is not None:
        constraints = _normalize.string_list(constraints, f"{where}: constraints")
    # Positional: this call runs for every decision (keywords cost more).
    attributes = _codec.decision_attributes(
        run_id, "", intent, options.options, chosen, reasoning, node_id, decision_type,
        constraints or [], context, where, options.json(), options.ids,
    )  # fmt: skip
    return attributes, options.options


def outcome_attributes(
    success: bool,
    result: Any,
    error: Any,
    summary: Any,
    state_changes: Any,
    tokens_used: Any,
    latency_ms: Any,
    error_type: Any,
    input_tokens: Any,
    output_tokens: Any,
    llm_tokens: int,
    *,
    quiet: bool,
    where: str,
) -> Attributes:
    """An outcome's attributes; ``llm_tokens`` (from LLM spans) add to the agent's count."""
    if input_tokens is not None:
        input_tokens = _normalize.integer(input_tokens, f"{where}: input_tokens")
    if output_tokens is not None:
        output_tokens = _normalize.integer(output_tokens, f"{where}: output_tokens")
    tokens = _normalize.integer(tokens_used, f"{where}: tokens_used")
    if not tokens and (input_tokens or output_tokens):
        tokens = (input_tokens or 0) + (output_tokens or 0)
    # In the order the checks always ran (their warnings come in this order).
    if error is not None:
        error = _normalize.text(error, f"{where}: error")
    if type(summary) is not str:
        summary = _normalize.text(summary, f"{where}: summary")
    latency_ms = _normalize.integer(latency_ms, f"{where}: latency_ms")
    if error_type is not None:
        error_type = _normalize.text(error_type, "error_type")
    # Positional: this call runs for every outcome (keywords cost more).
    attributes = _codec.outcome_attributes(
        success, result, error, summary, state_changes, tokens + llm_tokens, latency_ms,
        error_type, input_tokens, output_tokens, where, quiet,
    )  # fmt: skip
    if llm_tokens:
        attributes[sc.OUTCOME_LLM_TOKENS] = llm_tokens
    return attributes


def problem_attributes(
    problem_id: str,
    severity: Any,
    description: Any,
    decision_id: Any,
    root_cause: Any,
    suggested_fix: Any,
    where: str,
) -> Attributes:
    """A problem event's attributes."""
    return _codec.problem_attributes(
        problem_id=problem_id,
        severity=_normalize.text(severity, f"{where}: severity"),
        description=_normalize.text(description, f"{where}: description"),
        decision_id=None if decision_id is None else _normalize.text(decision_id, where),
        root_cause=None if root_cause is None else _normalize.text(root_cause, where),
        suggested_fix=None if suggested_fix is None else _normalize.text(suggested_fix, where),
    )


__all__ = [
    "decision_attributes",
    "new_run_id",
    "outcome_attributes",
    "problem_attributes",
    "run_start_attributes",
]
