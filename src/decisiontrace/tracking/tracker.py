"""The concurrent decision tracker: runs as root spans, decisions as child spans.

The tracker's only job is to emit spans and keep a live view of the runs in flight.
Storage is the :class:`~decisiontrace.pipeline.processor.RunRecordProcessor`'s business: it
rebuilds the records from the spans alone. The live view (``get_run``) decodes the very
attributes the spans carry, with the same code, so it agrees with the stored record.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry import trace

from decisiontrace._internal.errors import internal_error
from decisiontrace._version import __version__
from decisiontrace.spanmodel import _ids
from decisiontrace.spanmodel._jsonsafe import safe_repr, safe_str
from decisiontrace.spanmodel._kinds import DecisionType
from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking import _normalize
from decisiontrace.tracking._emitter import SpanEmitter
from decisiontrace.tracking._live import LiveRun
from decisiontrace.tracking._registry import RunRegistry
from decisiontrace.tracking._scope import RunScope

if TYPE_CHECKING:
    from decisiontrace.evaluation.judgement import Judgement
    from decisiontrace.models import DecisionEvaluation, Run
    from decisiontrace.spanmodel._kinds import RunStatus


def _describe(what: tuple[Any, ...]) -> str:
    """Words about a call for a warning, whatever the agent passed."""
    return " ".join(safe_str(part) for part in what)


class DecisionTracker:
    """Records runs and decisions of many concurrent executions as OpenTelemetry spans.

    The API is the original ``StreamDecisionTracker``'s, taken by keyword. Inside
    ``with tracker.run(...)`` (or after ``start_run`` in the same context) the
    ``execution_id`` may be left out. Recording calls never raise: bad input logs one
    warning and records what it can.

    In a process that received a run's trace context from another process (an
    OpenTelemetry server instrumentation attached it, or ``decisiontrace.tracking.propagation``),
    ``decide``, ``record_outcome`` and ``report_problem`` without ``execution_id``
    record into that run; their ids (``dec_N@{service}:{pid}:{8 hex}``) say which
    process made them. See ``docs/propagation.md``.

    Args:
        stream_id: the stream this tracker records for (part of every run id).
        tracer_provider: where spans go; defaults to the global provider. The tracker
            never installs a provider itself.
        outcome_aggregator: optional object with ``record_decision(stream_id=,
            execution_id=, decision=)`` and ``record_outcome(stream_id=, execution_id=,
            decision_id=, outcome=)``, called as the original calls it.
        max_active_runs: runs kept open at once; starting one more ends the oldest as
            ``stuck`` (reason "too many active runs"), so runs nobody ends cannot grow
            memory without bound.
        run_timeout: seconds a run may stay open; an older run is ended as ``stuck``
            when the next run starts.

    Raises:
        ValueError: ``stream_id`` is empty or not a str, ``tracer_provider`` has no
            ``get_tracer``, ``outcome_aggregator`` lacks the two methods, or a limit is
            not positive.

    The tracker is composed of two parts, its internal interface (see
    ``docs/architecture.md``): :attr:`emitter`, the
    :class:`~decisiontrace.tracking._emitter.SpanEmitter` that turns calls on a live run
    into spans, and :attr:`registry`, the
    :class:`~decisiontrace.tracking._registry.RunRegistry` of its live runs. Decorators,
    ``RunScope``, compat and integrations start and find runs through the registry and
    record through the :class:`~decisiontrace.tracking._live.LiveRun` they get.
    """

    def __init__(
        self,
        stream_id: str,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        outcome_aggregator: Any = None,
        max_active_runs: int = 10_000,
        run_timeout: float = 3600.0,
    ) -> None:
        if not isinstance(stream_id, str) or not stream_id:
            raise ValueError(f"stream_id must be a non-empty str, got {stream_id!r}")
        if type(max_active_runs) is not int or max_active_runs <= 0:
            raise ValueError(f"max_active_runs must be a positive int, got {max_active_runs!r}")
        if (
            not isinstance(run_timeout, int | float)
            or isinstance(run_timeout, bool)
            or not run_timeout > 0
            or run_timeout == float("inf")
        ):
            raise ValueError(
                f"run_timeout must be a positive number of seconds, got {run_timeout!r}"
            )
        if tracer_provider is not None and not callable(
            getattr(tracer_provider, "get_tracer", None)
        ):
            raise ValueError("tracer_provider must be an OpenTelemetry TracerProvider")
        if outcome_aggregator is not None and not all(
            callable(getattr(outcome_aggregator, name, None))
            for name in ("record_decision", "record_outcome")
        ):
            raise ValueError(
                "outcome_aggregator must have record_decision() and record_outcome() methods"
            )
        self.stream_id = stream_id
        self._tracer_provider = tracer_provider
        tracer = trace.get_tracer("decisiontrace", __version__, tracer_provider=tracer_provider)
        # The single-run tracker of the original framework names runs without a stream.
        self.emitter = SpanEmitter(
            stream_id, tracer, outcome_aggregator, _ids.run_id_prefix(stream_id)
        )
        self.registry = RunRegistry(self.emitter, max_active_runs, int(run_timeout * 1e9))

    # --- run lifecycle -------------------------------------------------------------

    def start_run(
        self,
        *,
        goal_id: str,
        goal_description: str = "",
        input_data: dict[str, Any] | None = None,
        execution_id: str | None = None,
    ) -> str:
        """Start a run (a new trace) and make it current in this context.

        Args:
            goal_id: the goal being pursued.
            goal_description: what the goal is, for people.
            input_data: the run's input.
            execution_id: identifies the execution; generated when left out.

        Returns:
            The run id, ``run_{stream}_{YYYYmmdd_HHMMSS}_{8 hex}``, or "" on failure.
        """
        try:
            live = self.registry.start(execution_id, goal_id, goal_description, input_data)
        except Exception as error:
            internal_error("start_run", error)
            return ""
        ctx.current_run.set(live)  # like the original's set_trace_context: no reset
        return live.run_id

    def run(
        self,
        goal_id: str,
        goal_description: str = "",
        input_data: dict[str, Any] | None = None,
        execution_id: str | None = None,
    ) -> RunScope:
        """A run scoped to a ``with`` or ``async with`` block.

        The run is the current execution and the current span inside the block; it
        ends on exit, failed (with the exception recorded) if the block raises.
        """
        return RunScope(self.registry, goal_id, goal_description, input_data, execution_id)

    def end_run(
        self,
        *,
        success: bool,
        narrative: str = "",
        output_data: dict[str, Any] | None = None,
        execution_id: str | None = None,
        status: RunStatus | str | None = None,
    ) -> None:
        """End a run: close decisions still open, set status and narrative, end its span.

        Args:
            success: whether the run achieved its goal (completed or failed).
            narrative: what happened; generated from the run when empty.
            output_data: the run's output.
            execution_id: which execution; the current run when left out.
            status: an explicit status (e.g. ``stuck``, ``cancelled``) overriding success.
        """
        try:
            live = self._resolve(execution_id, "end_run")
            if live is not None and live.fragment_id is not None:
                _normalize.warn(
                    f"end_run: run {live.run_id} was started in another process; "
                    "only that process ends it"
                )
            elif live is not None:
                live.end(success, narrative, output_data, status)
        except Exception as error:
            internal_error("end_run", error)

    def set_node(self, node_id: str = "unknown", *, execution_id: str | None = None) -> None:
        """Set the node that decisions of this execution are attributed to by default."""
        try:
            live = self._resolve(execution_id, "set_node")
            if live is not None:
                live.current_node = _normalize.text(node_id, "set_node(): node_id")
        except Exception as error:
            internal_error("set_node", error)

    def get_run(self, execution_id: str | None = None) -> Run | None:
        """The live Run of an execution with the decisions recorded so far, or None."""
        try:
            registry = self.registry
            live = registry.current() if execution_id is None else registry.lookup(execution_id)
            if live is None:
                return None
            return live.view()
        except Exception as error:
            internal_error("get_run", error)
            return None

    # --- decisions -------------------------------------------------------------------

    def decide(
        self,
        *,
        intent: str,
        options: list[dict[str, Any]],
        chosen: str,
        reasoning: str,
        node_id: str | None = None,
        decision_type: DecisionType | str = DecisionType.CUSTOM,
        constraints: list[str] | None = None,
        context: dict[str, Any] | None = None,
        execution_id: str | None = None,
    ) -> str:
        """Record a decision; its span stays open until the outcome is recorded.

        Returns:
            The decision id (``dec_N``), or "" if there is no such run.
        """
        try:
            live = self._resolve(execution_id, "decide", intent)
            if live is None:
                return ""
            # Straight to the run's writer (what live.open_decision forwards to): one
            # call less on every decision.
            decision = live.writer.open_decision(
                live, intent, options, chosen, reasoning, node_id, decision_type, constraints,
                context,
            )  # fmt: skip
            return "" if decision is None else decision.decision_id
        except Exception as error:
            internal_error("decide", error)
            return ""

    def record_outcome(
        self,
        *,
        decision_id: str,
        success: bool,
        result: Any = None,
        error: str | None = None,
        summary: str = "",
        state_changes: dict[str, Any] | None = None,
        tokens_used: int = 0,
        latency_ms: int = 0,
        execution_id: str | None = None,
        error_type: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        chosen: str | None = None,
        reasoning: str | None = None,
    ) -> None:
        """Record what happened when a decision was executed, and end its span.

        ``error_type`` (e.g. an exception class name) becomes ``error.type`` on the
        span; ``input_tokens``/``output_tokens`` become ``gen_ai.usage.*`` and, when
        ``tokens_used`` is 0, their sum is recorded as ``tokens_used``. ``chosen`` and
        ``reasoning``, when given, set the decision's choice now (for choices known only
        once the action ran).
        """
        try:
            live = self._resolve(execution_id, "record_outcome")
            if live is None:
                return
            decision = live.decision(decision_id)
            if decision is None:
                _normalize.warn(
                    f"record_outcome(): run {live.run_id} has no decision {safe_repr(decision_id)}"
                )
                return
            # Positionally, straight to the run's writer (what live.record_outcome
            # forwards to): its fifteen keywords cost more than the rest of this method.
            live.writer.record_outcome(
                live, decision, success, result, error, summary, state_changes, tokens_used,
                latency_ms, error_type, input_tokens, output_tokens, chosen, reasoning, False,
            )  # fmt: skip
        except Exception as error:
            internal_error("record_outcome", error)

    def report_problem(
        self,
        *,
        severity: str,
        description: str,
        decision_id: str | None = None,
        root_cause: str | None = None,
        suggested_fix: str | None = None,
        execution_id: str | None = None,
    ) -> str:
        """Report a problem: an event on the run span. Returns ``prob_N`` or ""."""
        try:
            live = self._resolve(execution_id, "report_problem", severity, description)
            if live is None:
                return ""
            return live.report_problem(
                severity, description, decision_id, root_cause, suggested_fix
            )
        except Exception as error:
            internal_error("report_problem", error)
            return ""

    def quick_decision(
        self,
        *,
        intent: str,
        action: str,
        reasoning: str,
        node_id: str | None = None,
        execution_id: str | None = None,
    ) -> str:
        """Record a decision with a single option ``"action"`` (action_type ``execute``)."""
        return self.decide(
            execution_id=execution_id,
            intent=intent,
            options=[{"id": "action", "description": action, "action_type": "execute"}],
            chosen="action",
            reasoning=reasoning,
            node_id=node_id,
        )

    # --- judging decisions afterwards ------------------------------------------------------

    def evaluate(
        self,
        run_id: str,
        decision_id: str,
        *,
        evaluator: str,
        evaluation: DecisionEvaluation | dict[str, Any] | None = None,
        score: float | None = None,
        label: str | None = None,
        explanation: str | None = None,
        store: Any = None,
        wait: float = 5.0,
        logger_provider: Any = None,
    ) -> Judgement | None:
        """Record a judgement of a decision of a run this tracker recorded.

        As :func:`decisiontrace.evaluate`, with this tracker's tracer provider flushed
        when the run is not stored yet; a run of this tracker's stream is waited for up
        to ``wait`` seconds. A run still open here cannot be judged: one warning, nothing
        recorded. Never raises.
        """
        try:
            from decisiontrace.evaluation import api  # the evaluation layer sits above

            if any(
                live.run_id == run_id and live.end_ns is None for live in self.registry.active()
            ):
                _normalize.warn(
                    f"evaluate(): run {safe_repr(run_id)} is still open; judge its "
                    "decisions after end_run; nothing recorded"
                )
                return None
            return api.record_evaluation(
                run_id, decision_id, evaluator, evaluation, score, label, explanation, store,
                wait, logger_provider, self._tracer_provider,
                poll=isinstance(run_id, str) and run_id.startswith(self.emitter.run_id_prefix),
            )  # fmt: skip
        except Exception as error:
            internal_error("evaluate", error)
            return None

    # --- monitoring --------------------------------------------------------------------

    def get_active_executions(self) -> list[str]:
        """Execution ids with a run in progress."""
        return self.registry.execution_ids()

    def get_stats(self) -> dict[str, Any]:
        """``stream_id``, ``active_executions`` and ``execution_ids``."""
        execution_ids = self.registry.execution_ids()
        return {
            "stream_id": self.stream_id,
            "active_executions": len(execution_ids),
            "execution_ids": execution_ids,
        }

    # --- internals ---------------------------------------------------------------------

    def _resolve(self, execution_id: Any, method: str, *what: Any) -> LiveRun | None:
        """The run a call is for; None (with a warning) if there is none.

        ``what`` describes the call in the warning; it is only formatted on that path,
        and safely: it is whatever the agent passed.
        """
        if execution_id is None:
            live = self.registry.for_call()
            if live is None:
                _normalize.warn(
                    f"{method} called outside a run and without execution_id {_describe(what)}"
                )
            return live
        live = self.registry.lookup(execution_id)
        if live is None:
            _normalize.warn(
                f"{method} called but no run for execution {safe_repr(execution_id)} "
                f"{_describe(what)}"
            )
        return live


__all__ = ["DecisionTracker"]
