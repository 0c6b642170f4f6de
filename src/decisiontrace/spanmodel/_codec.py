"""The span model, encoding: record fields to span attributes.

Encoding runs on the agent's thread, so it builds plain dicts, checks types cheaply,
and JSON-encodes each structured value exactly once. The way back, spans to records,
is :mod:`decisiontrace.spanmodel._decode`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import Status, StatusCode

from decisiontrace.spanmodel import _records
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._redact import redact_text
from decisiontrace.spanmodel._values import (
    CONFIDENCE_DEFAULTED,
    EMPTY_LIST,
    json_attr,
    json_object_attr,
    text,
    warn,
)

logger = logging.getLogger("decisiontrace")

Attributes = dict[str, Any]
Record = dict[str, Any]


def run_start_attributes(
    *,
    run_id: str,
    goal_id: str,
    goal_description: str,
    stream_id: str,
    execution_id: str,
    input_data: Any,
) -> Attributes:
    """Attributes set on a run span when it starts."""
    return {
        sc.SPAN_KIND: sc.KIND_RUN,
        sc.RUN_ID: run_id,
        sc.GOAL_ID: goal_id,
        sc.GOAL_DESCRIPTION: goal_description,
        sc.STREAM_ID: stream_id,
        sc.EXECUTION_ID: execution_id,
        sc.RUN_INPUT: json_object_attr(input_data, "start_run(): input_data"),
        sc.GEN_AI_OPERATION_NAME: sc.GEN_AI_OPERATION_INVOKE_AGENT,
        sc.GEN_AI_AGENT_NAME: stream_id,
        sc.GEN_AI_AGENT_DESCRIPTION: goal_description,
        sc.GEN_AI_CONVERSATION_ID: execution_id,
    }


def run_end_attributes(
    *,
    status: str,
    narrative: str,
    totals: _records.Totals,
    problem_count: int,
    nodes: list[str],
    llm_tokens: int = 0,
    edges: Sequence[str] = (),
    output_data: Any = None,
    end_reason: str | None = None,
    paused: bool = False,
) -> Attributes:
    """Attributes set on a run span when it ends.

    Args:
        status: the run status value.
        narrative: the narrative as recorded (given and redacted, or generated).
        totals: the run's decisions counted (:class:`~decisiontrace.spanmodel._records.Totals`),
            ``tokens`` without ``llm_tokens``.
        problem_count: problems reported.
        nodes: nodes executed, in first-seen order.
        llm_tokens: LLM tokens that count for the run but none of its decisions; the run
            span's total includes them.
        edges: edges traversed, written only when there are any.
        output_data: the run's output, written only when there is any.
        end_reason: why the run ended without ``end_run`` (stuck, cancelled).
        paused: the run ended paused, resumable.
    """
    attributes: Attributes = {
        sc.RUN_STATUS: status,
        sc.RUN_NARRATIVE: narrative,
        sc.RUN_DECISION_COUNT: totals.decisions,
        sc.RUN_SUCCESS_COUNT: totals.successful,
        sc.RUN_FAILURE_COUNT: totals.failed,
        sc.RUN_TOTAL_TOKENS: totals.tokens + llm_tokens,
        sc.RUN_PROBLEM_COUNT: problem_count,
        sc.RUN_NODES: nodes,
    }
    if llm_tokens:
        attributes[sc.RUN_LLM_TOKENS] = llm_tokens
    if edges:
        attributes[sc.RUN_EDGES] = list(edges)
    if end_reason is not None:
        attributes[sc.RUN_END_REASON] = end_reason
    if paused:
        attributes[sc.RUN_PAUSED] = True
    if output_data:
        attributes[sc.RUN_OUTPUT] = json_object_attr(output_data, "end_run(): output_data")
    return attributes


def ended_status(success: bool) -> str:
    """The status of a run ended without one given: ``completed`` or ``failed``."""
    return "completed" if success else "failed"


def is_error_status(status: str) -> bool:
    """Whether a run of this status has a run span with status ERROR (failed, stuck)."""
    return status in sc.RUN_STATUSES_ERROR


def run_span_status(status: str) -> Status | None:
    """The span status of a run span ending with ``status``: ERROR for failed and stuck
    runs, None (left UNSET) otherwise."""
    if status in sc.RUN_STATUSES_ERROR:
        return Status(StatusCode.ERROR, f"run {status}")
    return None


def outcome_span_status(success: bool, error: str | None) -> Status | None:
    """The span status of a decision span whose outcome is recorded: ERROR with the error
    as description when the outcome failed, None (left UNSET) otherwise."""
    return None if success else Status(StatusCode.ERROR, error)


def decision_attributes(
    run_id: str,
    decision_id: str,
    intent: str,
    options: list[dict[str, Any]],
    chosen: str,
    reasoning: str,
    node_id: str,
    decision_type: str,
    constraints: list[str],
    context: Any,
    where: str,
    options_json: str | None = None,
    option_ids: list[str] | None = None,
) -> Attributes:
    """Attributes set on a decision span when it starts (options already normalized;
    ``options_json`` and ``option_ids`` when they were prepared beforehand)."""
    if option_ids is None:
        option_ids = [option["id"] for option in options]
    # What the agent did not give is left out (the decoder reads a missing attribute as
    # the field's default): each attribute costs the SDK a validation pass per span.
    attributes: Attributes = {
        sc.SPAN_KIND: sc.KIND_DECISION,
        sc.RUN_ID: run_id,
        sc.DECISION_ID: decision_id,
        sc.DECISION_INTENT: intent,
        sc.DECISION_TYPE: decision_type,
        sc.NODE_ID: node_id,
    }
    if chosen:
        attributes[sc.DECISION_CHOSEN_ID] = chosen
    if reasoning:
        attributes[sc.DECISION_REASONING] = redact_text(reasoning)
    if constraints:
        attributes[sc.DECISION_CONSTRAINTS] = constraints
    if context is not None and not (type(context) is dict and not context):
        attributes[sc.DECISION_INPUT_CONTEXT] = json_object_attr(context, f"{where}: context")
    if options:
        if options_json is None:
            options_json = json_attr(options, f"{where}: options", EMPTY_LIST)
        attributes[sc.DECISION_OPTIONS] = options_json
        attributes[sc.DECISION_OPTION_IDS] = option_ids
        attributes[sc.DECISION_OPTION_COUNT] = len(options)
        if chosen:
            if chosen not in option_ids:
                # "" means "not decided yet" (decorators set the choice with the outcome).
                warn(f"{where}: chosen option {chosen!r} is not among the options {option_ids}")
            else:
                option = options[option_ids.index(chosen)]
                if not option.get(CONFIDENCE_DEFAULTED):  # only a confidence the agent gave
                    attributes[sc.DECISION_CHOSEN_CONFIDENCE] = option["confidence"]
    return attributes


def choice_attributes(
    options: list[dict[str, Any]] | None, chosen: Any, reasoning: Any
) -> Attributes:
    """Attributes that set a decision's choice (and reasoning) after it started.

    ``options`` are the decision's normalized options, for the chosen one's confidence.
    """
    where = "record_outcome()"
    update: Attributes = {}
    if reasoning is not None:
        text_ = reasoning if type(reasoning) is str else text(reasoning, where)
        update[sc.DECISION_REASONING] = redact_text(text_) if text_ else text_
    if chosen is None:
        return update
    chosen = chosen if type(chosen) is str else text(chosen, f"{where}: chosen")
    update[sc.DECISION_CHOSEN_ID] = chosen
    for option in options or ():
        if option["id"] == chosen:
            if not option.get(CONFIDENCE_DEFAULTED):
                update[sc.DECISION_CHOSEN_CONFIDENCE] = option["confidence"]
            break
    else:
        if options and chosen:
            ids = [option["id"] for option in options]
            warn(f"{where}: chosen option {chosen!r} is not among the options {ids}")
    return update


def outcome_attributes(
    success: bool,
    result: Any,
    error: str | None,
    summary: str,
    state_changes: Any,
    tokens_used: int,
    latency_ms: int,
    error_type: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    where: str = "record_outcome()",
    quiet: bool = False,
) -> Attributes:
    """Attributes set on a decision span when its outcome is recorded.

    ``quiet``: don't warn when the result had to be converted or truncated (it was
    captured from a decorated function, not handed over).
    """
    attributes: Attributes = {sc.OUTCOME_SUCCESS: success}
    # Zero and empty values are left out: the decoder reads them as the defaults.
    if summary:
        attributes[sc.OUTCOME_SUMMARY] = redact_text(summary)
    if tokens_used:
        attributes[sc.OUTCOME_TOKENS] = tokens_used
    if latency_ms:
        attributes[sc.OUTCOME_LATENCY_MS] = latency_ms
    if result is not None:
        attributes[sc.OUTCOME_RESULT] = json_attr(result, f"{where}: result", "null", quiet=quiet)
    if error is not None:
        attributes[sc.OUTCOME_ERROR] = redact_text(error)
    if state_changes:
        attributes[sc.OUTCOME_STATE_CHANGES] = json_object_attr(
            state_changes, f"{where}: state_changes"
        )
    if not success:
        attributes[sc.ERROR_TYPE] = error_type or sc.ERROR_TYPE_OTHER
    if input_tokens is not None:
        attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
    if output_tokens is not None:
        attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
    return attributes


def problem_attributes(
    *,
    problem_id: str,
    severity: str,
    description: str,
    decision_id: str | None,
    root_cause: str | None,
    suggested_fix: str | None,
) -> Attributes:
    """Attributes of a problem event on the run span (None fields are left out)."""
    attributes: Attributes = {
        sc.PROBLEM_ID: problem_id,
        sc.PROBLEM_SEVERITY: severity,
        sc.PROBLEM_DESCRIPTION: redact_text(description),
    }
    if decision_id is not None:
        attributes[sc.PROBLEM_DECISION_ID] = decision_id
    if root_cause is not None:
        attributes[sc.PROBLEM_ROOT_CAUSE] = redact_text(root_cause)
    if suggested_fix is not None:
        attributes[sc.PROBLEM_SUGGESTED_FIX] = redact_text(suggested_fix)
    return attributes
