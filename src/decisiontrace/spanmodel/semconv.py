"""Attribute, event and span names of the decisiontrace span model.

Every name the package writes onto a span lives here, and nowhere else. The model
itself is described in ``docs/span-model.md``.

Two families of names are used:

* ``decisiontrace.*``: this project's own names. Those people filter on in Jaeger or
  Tempo (decision type, node, chosen option, outcome success, tokens, latency, option
  count, chosen confidence) are plain typed attributes; structured values (options,
  input context, results) travel as JSON strings so they survive export losslessly.
* ``gen_ai.*`` and ``error.type``: names from the OpenTelemetry semantic conventions,
  written in addition where the conventions have a name for the thing.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "decisiontrace"

# --- discriminator -----------------------------------------------------------------
#: ``"run"`` on a run's root span, ``"decision"`` on a decision span.
SPAN_KIND: Final = "decisiontrace.span_kind"
KIND_RUN: Final = "run"
KIND_DECISION: Final = "decision"

# --- run statuses (the values of RUN_STATUS) ------------------------------------------
#: Statuses whose run span has status ERROR (``_codec.run_span_status``) and whose runs
#: count as errors in the metrics.
RUN_STATUSES_ERROR: Final = frozenset(("failed", "stuck"))
#: Statuses whose traces the export samplers always keep (``pipeline.sampling``).
RUN_STATUSES_EXPORTED: Final = frozenset(("failed", "stuck", "cancelled"))

# --- run span ----------------------------------------------------------------------
RUN_ID: Final = "decisiontrace.run.id"
RUN_STATUS: Final = "decisiontrace.run.status"
RUN_NARRATIVE: Final = "decisiontrace.run.narrative"
RUN_INPUT: Final = "decisiontrace.run.input"  # JSON object
RUN_OUTPUT: Final = "decisiontrace.run.output"  # JSON object
RUN_DECISION_COUNT: Final = "decisiontrace.run.decision_count"
RUN_SUCCESS_COUNT: Final = "decisiontrace.run.successful_decisions"
RUN_FAILURE_COUNT: Final = "decisiontrace.run.failed_decisions"
RUN_TOTAL_TOKENS: Final = "decisiontrace.run.total_tokens"
#: LLM tokens in ``total_tokens`` that count for the run but none of its decisions.
RUN_LLM_TOKENS: Final = "decisiontrace.run.llm_tokens"
RUN_PROBLEM_COUNT: Final = "decisiontrace.run.problem_count"
RUN_NODES: Final = "decisiontrace.run.nodes_executed"  # string array
RUN_EDGES: Final = "decisiontrace.run.edges_traversed"  # string array
#: Why a run ended without ``end_run`` (stuck / cancelled runs).
RUN_END_REASON: Final = "decisiontrace.run.end_reason"
#: True on a run that ended paused, resumable (a LangGraph interrupt): its status stays
#: ``completed``, the original's statuses having no "paused".
RUN_PAUSED: Final = "decisiontrace.run.paused"
#: The run this one resumes (a LangGraph thread resumed after an interrupt).
RUN_RESUMED_FROM: Final = "decisiontrace.run.resumed_from"
#: The LangGraph thread (``configurable.thread_id``) the run belongs to.
RUN_THREAD_ID: Final = "decisiontrace.run.thread_id"
GOAL_ID: Final = "decisiontrace.goal.id"
GOAL_DESCRIPTION: Final = "decisiontrace.goal.description"
STREAM_ID: Final = "decisiontrace.stream.id"
EXECUTION_ID: Final = "decisiontrace.execution.id"

# --- decision span -----------------------------------------------------------------
DECISION_ID: Final = "decisiontrace.decision.id"
DECISION_INTENT: Final = "decisiontrace.decision.intent"
DECISION_TYPE: Final = "decisiontrace.decision.type"
DECISION_REASONING: Final = "decisiontrace.decision.reasoning"
DECISION_CONSTRAINTS: Final = "decisiontrace.decision.constraints"  # string array
DECISION_INPUT_CONTEXT: Final = "decisiontrace.decision.input_context"  # JSON object
DECISION_OPTIONS: Final = "decisiontrace.decision.options"  # JSON array of Option
DECISION_OPTION_IDS: Final = "decisiontrace.decision.option_ids"  # string array
DECISION_OPTION_COUNT: Final = "decisiontrace.decision.option_count"
DECISION_CHOSEN_ID: Final = "decisiontrace.decision.chosen_option.id"
DECISION_CHOSEN_CONFIDENCE: Final = "decisiontrace.decision.chosen_option.confidence"
DECISION_EVALUATION: Final = "decisiontrace.decision.evaluation"  # JSON object
#: True on a decision whose function was paused by a control-flow exception
#: (LangGraph's interrupt); it has no outcome and is not a failure.
DECISION_PAUSED: Final = "decisiontrace.decision.paused"
NODE_ID: Final = "decisiontrace.node.id"

# --- outcome (set on the decision span when recorded) -------------------------------
OUTCOME_SUCCESS: Final = "decisiontrace.outcome.success"
OUTCOME_RESULT: Final = "decisiontrace.outcome.result"  # JSON value
OUTCOME_ERROR: Final = "decisiontrace.outcome.error"
OUTCOME_SUMMARY: Final = "decisiontrace.outcome.summary"
OUTCOME_STATE_CHANGES: Final = "decisiontrace.outcome.state_changes"  # JSON object
OUTCOME_TOKENS: Final = "decisiontrace.outcome.tokens_used"
#: LLM span tokens already in ``tokens_used`` (the processor adds only later ones).
OUTCOME_LLM_TOKENS: Final = "decisiontrace.outcome.llm_tokens"
OUTCOME_LATENCY_MS: Final = "decisiontrace.outcome.latency_ms"
#: Nanoseconds since the epoch; absent means "the span's end time".
OUTCOME_TIME: Final = "decisiontrace.outcome.time_unix_nano"

# --- problem events (on the run span) -------------------------------------------------
PROBLEM_EVENT: Final = "decisiontrace.problem"
PROBLEM_ID: Final = "decisiontrace.problem.id"
PROBLEM_SEVERITY: Final = "decisiontrace.problem.severity"
PROBLEM_DESCRIPTION: Final = "decisiontrace.problem.description"
PROBLEM_ROOT_CAUSE: Final = "decisiontrace.problem.root_cause"
PROBLEM_SUGGESTED_FIX: Final = "decisiontrace.problem.suggested_fix"
PROBLEM_DECISION_ID: Final = "decisiontrace.problem.decision_id"

# --- OpenTelemetry semantic conventions (GenAI, error) --------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_OPERATION_INVOKE_AGENT: Final = "invoke_agent"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
#: Older name some instrumentations still write (OpenLLMetry before the rename).
GEN_AI_USAGE_PROMPT_TOKENS: Final = "gen_ai.usage.prompt_tokens"
GEN_AI_USAGE_COMPLETION_TOKENS: Final = "gen_ai.usage.completion_tokens"
#: OpenInference's names for the same counts.
LLM_TOKEN_COUNT_PROMPT: Final = "llm.token_count.prompt"
LLM_TOKEN_COUNT_COMPLETION: Final = "llm.token_count.completion"
ERROR_TYPE: Final = "error.type"

# --- evaluation events (GenAI semantic conventions; a log record each) ------------------
#: The event name (the log record's EventName) of a judgement of a decision.
GEN_AI_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"
#: Where older emitters put the event name, before log records had an EventName field.
EVENT_NAME_ATTRIBUTE: Final = "event.name"
# The judgement's full DecisionEvaluation travels as DECISION_EVALUATION (JSON object),
# the judged decision as RUN_ID, DECISION_ID, NODE_ID and DECISION_CHOSEN_ID.
ERROR_TYPE_OTHER: Final = "_OTHER"

# --- span names -------------------------------------------------------------------------
RUN_SPAN_NAME_PREFIX: Final = "invoke_agent"
DECISION_SPAN_NAME_PREFIX: Final = "decision"

# --- runs across processes ----------------------------------------------------------------
#: The W3C baggage entry that names the run a trace belongs to, so that another process
#: receiving the trace context records into that run (see ``docs/propagation.md``).
#: Its value is URL-encoded ``run=<run id>&exec=<execution id>&goal=<goal id>``.
BAGGAGE_RUN: Final = "decisiontrace.run"
#: ``"problem"`` on the span that carries a problem reported in a process that does not
#: hold the run span (the problem is a ``decisiontrace.problem`` event on it).
KIND_PROBLEM: Final = "problem"
#: On decision and problem spans recorded into a run started in another process: which
#: recording of the run they belong to (``{service}:{pid}:{8 hex}``), and the process's
#: ``service.name``.
FRAGMENT_ID: Final = "decisiontrace.fragment.id"
FRAGMENT_SERVICE: Final = "decisiontrace.fragment.service"
PROBLEM_SPAN_NAME_PREFIX: Final = "problem"
