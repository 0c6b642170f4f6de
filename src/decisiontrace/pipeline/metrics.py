"""Metrics of runs and decisions, recorded from the run records the processor assembles.

:class:`RunMetrics` is a :meth:`RunRecordProcessor.add_listener
<decisiontrace.processor.RunRecordProcessor.add_listener>` listener: it runs on the
processor's writer thread with each batch of finished runs, never on the agent's
thread, so metrics cost the agent nothing. Counts therefore appear when a run ends.

Names follow the OpenTelemetry GenAI conventions where one fits what is measured:
``gen_ai.invoke_agent.duration`` is the duration of an agent invocation, which a run
is (its span is the ``invoke_agent`` span). ``gen_ai.client.token.usage`` is *not*
recorded: it counts the tokens of one model call by ``gen_ai.token.type`` (input or
output) and provider, the conventions forbid reporting it without that split, and a
decision's record only holds a total; the LLM instrumentation under a decision is the
right source for it. ``decisiontrace.decision.tokens`` carries the per-decision total
instead. Attribute keys are the span model's (``decisiontrace.spanmodel.semconv``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from opentelemetry import metrics as metrics_api
from opentelemetry.util.types import AttributeValue

from decisiontrace._version import __version__
from decisiontrace.spanmodel import _codec, _ids
from decisiontrace.spanmodel import semconv as sc

logger = logging.getLogger("decisiontrace")

Record = dict[str, Any]

#: Counter of decisions, by type, node and chosen option.
DECISIONS: Final = "decisiontrace.decisions"
#: Counter of decision outcomes, by success, node and type.
OUTCOMES: Final = "decisiontrace.outcomes"
#: Histogram of tokens used per decision (outcomes that used any), by node and type.
DECISION_TOKENS: Final = "decisiontrace.decision.tokens"
#: Histogram of decision duration in seconds, by success, node and type.
DECISION_DURATION: Final = "decisiontrace.decision.duration"
#: Counter of finished runs, by status and goal.
RUNS: Final = "decisiontrace.runs"
#: Histogram of run duration in seconds, by status and goal.
RUN_DURATION: Final = "decisiontrace.run.duration"
#: GenAI convention: histogram of agent invocation (run) duration in seconds.
GEN_AI_INVOKE_AGENT_DURATION: Final = "gen_ai.invoke_agent.duration"

#: Every metric this module records.
METRIC_NAMES: Final = (
    DECISIONS,
    OUTCOMES,
    DECISION_TOKENS,
    DECISION_DURATION,
    RUNS,
    RUN_DURATION,
    GEN_AI_INVOKE_AGENT_DURATION,
)

# Bucket boundaries the GenAI conventions advise for gen_ai.invoke_agent.duration.
_AGENT_DURATION_BUCKETS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6)
# Decisions: from the GenAI client operation advice (10 ms to 82 s).
_DECISION_DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
# Tokens: the GenAI token usage advice (powers of 4).
_TOKEN_BUCKETS = tuple(float(4**n) for n in range(14))


def agent_name(run_id: str) -> str | None:
    """The stream id (``gen_ai.agent.name``) a tracker's run id carries, if any."""
    return _ids.stream_of_run_id(run_id)


def _seconds_between(start: Any, end: Any) -> float | None:
    try:
        return max(
            0.0, (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
        )
    except (TypeError, ValueError):
        return None


class RunMetrics:
    """Records run and decision metrics from run records.

    Add with ``processor.add_listener(RunMetrics(meter_provider).record)``;
    :func:`decisiontrace.setup.configure` does this. A run the processor hands over
    again (it re-emits a run when decision spans arrive late) only adds its new
    decisions.

    Args:
        meter_provider: where instruments come from; the global provider by default.
        max_remembered_runs: how many run ids are remembered to recognise a re-emitted run.
    """

    def __init__(
        self,
        meter_provider: metrics_api.MeterProvider | None = None,
        *,
        max_remembered_runs: int = 10_000,
    ) -> None:
        meter = metrics_api.get_meter("decisiontrace", __version__, meter_provider=meter_provider)
        self._decisions = meter.create_counter(
            DECISIONS,
            unit="{decision}",
            description="Decisions made, by type, node and chosen option.",
        )
        self._outcomes = meter.create_counter(
            OUTCOMES, unit="{outcome}", description="Decision outcomes, by success, node and type."
        )
        self._tokens = meter.create_histogram(
            DECISION_TOKENS,
            unit="{token}",
            description="Tokens used by one decision (its total; LLM spans under it included).",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self._decision_duration = meter.create_histogram(
            DECISION_DURATION,
            unit="s",
            description="How long a decision's action took (its outcome latency).",
            explicit_bucket_boundaries_advisory=_DECISION_DURATION_BUCKETS,
        )
        self._runs = meter.create_counter(
            RUNS, unit="{run}", description="Finished runs, by status and goal."
        )
        self._run_duration = meter.create_histogram(
            RUN_DURATION,
            unit="s",
            description="Run duration, by status and goal.",
            explicit_bucket_boundaries_advisory=_AGENT_DURATION_BUCKETS,
        )
        self._agent_duration = meter.create_histogram(
            GEN_AI_INVOKE_AGENT_DURATION,
            unit="s",
            description="The end-to-end duration of a single agent invocation (a run).",
            explicit_bucket_boundaries_advisory=_AGENT_DURATION_BUCKETS,
        )
        self._max_remembered = max_remembered_runs
        # run id -> ids of the decisions already counted
        self._seen: OrderedDict[str, set[str]] = OrderedDict()

    def record(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Record the metrics of these run records (the processor's listener call)."""
        for record in records:
            try:
                self._record_run(record)
            except Exception:  # expected: a malformed record (record() is public API)
                logger.exception("decisiontrace: metrics of run %r failed", record.get("id"))

    def _record_run(self, record: Mapping[str, Any]) -> None:
        run_id = str(record.get("id", ""))
        counted = self._seen.get(run_id)
        first_time = counted is None
        if counted is None:
            counted = set()
            self._seen[run_id] = counted
            while len(self._seen) > self._max_remembered:
                self._seen.popitem(last=False)
        else:
            self._seen.move_to_end(run_id)
        for decision in record.get("decisions") or ():
            decision_id = str(decision.get("id", ""))
            if decision_id in counted:
                continue
            counted.add(decision_id)
            self._record_decision(decision)
        if first_time:
            self._record_run_totals(record)

    def _record_decision(self, decision: Mapping[str, Any]) -> None:
        node = str(decision.get("node_id", "unknown"))
        decision_type = str(decision.get("decision_type", "custom"))
        self._decisions.add(
            1,
            {
                sc.DECISION_TYPE: decision_type,
                sc.NODE_ID: node,
                sc.DECISION_CHOSEN_ID: str(decision.get("chosen_option_id", "")),
            },
        )
        outcome = decision.get("outcome")
        if not isinstance(outcome, Mapping):
            return
        attributes: dict[str, AttributeValue] = {
            sc.OUTCOME_SUCCESS: bool(outcome.get("success")),
            sc.NODE_ID: node,
            sc.DECISION_TYPE: decision_type,
        }
        self._outcomes.add(1, attributes)
        tokens = outcome.get("tokens_used")
        if isinstance(tokens, int) and tokens > 0:
            self._tokens.record(tokens, {sc.NODE_ID: node, sc.DECISION_TYPE: decision_type})
        latency_ms = outcome.get("latency_ms")
        if isinstance(latency_ms, int | float) and latency_ms > 0:
            seconds: float | None = latency_ms / 1000
        else:  # no latency reported: the decision span's own duration
            seconds = _seconds_between(decision.get("timestamp"), outcome.get("timestamp"))
        if seconds is not None:
            self._decision_duration.record(seconds, attributes)

    def _record_run_totals(self, record: Mapping[str, Any]) -> None:
        status = str(record.get("status", ""))
        attributes = {sc.RUN_STATUS: status, sc.GOAL_ID: str(record.get("goal_id", ""))}
        self._runs.add(1, attributes)
        duration_ms = record.get("duration_ms")
        if not isinstance(duration_ms, int | float) or record.get("completed_at") is None:
            return
        seconds = max(0.0, duration_ms / 1000)
        self._run_duration.record(seconds, attributes)
        agent: dict[str, Any] = {sc.RUN_STATUS: status}
        name = agent_name(str(record.get("id", "")))
        if name is not None:
            agent[sc.GEN_AI_AGENT_NAME] = name
        if _codec.is_error_status(status):
            agent[sc.ERROR_TYPE] = status
        self._agent_duration.record(seconds, agent)
