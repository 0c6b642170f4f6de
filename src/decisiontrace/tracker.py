"""The concurrent decision tracker: runs as root spans, decisions as child spans.

The tracker's only job is to emit spans and keep a live view of the runs in flight.
Storage is the :class:`~decisiontrace.processor.RunRecordProcessor`'s business: it
rebuilds the records from the spans alone. The live view (``get_run``) decodes the very
attributes the spans carry, with the same code, so it agrees with the stored record.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from decisiontrace import _codec, _normalize, _records
from decisiontrace import _context as ctx
from decisiontrace import semconv as sc
from decisiontrace._jsonsafe import safe_repr, safe_str
from decisiontrace._redact import redact_text
from decisiontrace._scope import RunScope
from decisiontrace._version import __version__
from decisiontrace.models import Decision, DecisionType, Outcome, Run, RunStatus

logger = logging.getLogger("decisiontrace")

_ROOT_CONTEXT = otel_context.Context()

#: Run and execution ids come from here, seeded from os.urandom, reseeded in a forked child.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def _describe(what: tuple[Any, ...]) -> str:
    """Words about a call for a warning, whatever the agent passed."""
    return " ".join(safe_str(part) for part in what)


class LiveDecision:
    """A decision in flight: its span and the attributes it was given."""

    __slots__ = ("attributes", "decision_id", "end_ns", "options", "outcome", "span", "start_ns")

    def __init__(
        self,
        decision_id: str,
        span: Span,
        attributes: _codec.Attributes,
        start_ns: int,
        options: list[dict[str, Any]] | None = None,
    ):
        self.decision_id = decision_id
        self.span = span
        self.attributes = attributes
        self.start_ns = start_ns
        self.options = options  # normalized, so a late choice needs no JSON decoding
        self.end_ns: int | None = None
        self.outcome: _codec.Attributes | None = None

    def record(self) -> _codec.Record:
        """The decision as a stored-form dict."""
        attributes = self.attributes
        if self.outcome is not None:
            attributes = {**attributes, **self.outcome}
        return _codec.decision_record(attributes, self.start_ns, self.end_ns)


class LiveRun:
    """A run in flight: its root span, decisions and problems, and the current node."""

    __slots__ = (
        "attributes",
        "context",
        "current_node",
        "decisions",
        "end_attributes",
        "end_ns",
        "execution_id",
        "goal_id",
        "lock",
        "nodes",
        "problems",
        "recording",
        "run_id",
        "span",
        "start_ns",
        "trace_id",
        "tracker",
    )

    def __init__(
        self,
        tracker: DecisionTracker,
        execution_id: str,
        run_id: str,
        goal_id: str,
        span: Span,
        attributes: _codec.Attributes,
        start_ns: int,
    ):
        self.tracker = tracker
        self.execution_id = execution_id
        self.run_id = run_id
        self.goal_id = goal_id
        self.span = span
        self.trace_id = span.get_span_context().trace_id
        # False without an SDK, or when a sampler dropped the run: then nothing will
        # store or export it, and decisions skip the encoding work (see _decide_unrecorded).
        self.recording = span.is_recording()
        self.context = trace.set_span_in_context(span, _ROOT_CONTEXT)
        self.attributes = attributes
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.end_attributes: _codec.Attributes = {}
        self.decisions: dict[str, LiveDecision] = {}
        self.problems: list[tuple[_codec.Attributes, int]] = []
        self.current_node = "unknown"
        self.nodes: list[str] = []
        self.lock = threading.Lock()

    def note_node(self, node_id: str) -> None:
        """Count ``node_id`` as executed in this run (first-seen order)."""
        with self.lock:
            if node_id not in self.nodes:
                self.nodes.append(node_id)

    def record(self) -> _codec.Record:
        """The run as a stored-form dict, decoded from the attributes its spans carry."""
        with self.lock:
            decisions = [d.record() for d in self.decisions.values()]
            problems = [_codec.problem_record(a, t) for a, t in self.problems]
            nodes = list(self.nodes)
        return _codec.run_record(
            {**self.attributes, sc.RUN_NODES: nodes, **self.end_attributes},
            self.start_ns,
            self.end_ns,
            decisions,
            problems,
        )

    def view(self) -> Run:
        """The run as a :class:`Run` model."""
        return Run.model_validate(self.record())


class DecisionTracker:
    """Records runs and decisions of many concurrent executions as OpenTelemetry spans.

    The API is the original ``StreamDecisionTracker``'s, taken by keyword. Inside
    ``with tracker.run(...)`` (or after ``start_run`` in the same context) the
    ``execution_id`` may be left out. Recording calls never raise: bad input logs one
    warning and records what it can.

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
        self._tracer = trace.get_tracer(
            "decisiontrace", __version__, tracer_provider=tracer_provider
        )
        self._outcome_aggregator = outcome_aggregator
        # Insertion-ordered, oldest run first: the limits below only ever look at the head.
        self._runs: dict[str, LiveRun] = {}
        self._max_active_runs = max_active_runs
        self._run_timeout_ns = int(run_timeout * 1e9)
        self._limit_warned: set[str] = set()
        # The single-run tracker of the original framework names runs without a stream.
        self._run_id_prefix = f"run_{stream_id}_"

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
            live = self._start(execution_id, goal_id, goal_description, input_data)
        except Exception:
            logger.exception("decisiontrace: start_run failed")
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
        return RunScope(self, goal_id, goal_description, input_data, execution_id)

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
            if live is not None:
                self._finish(live, success, narrative, output_data, status)
        except Exception:
            logger.exception("decisiontrace: end_run failed")

    def set_node(self, node_id: str = "unknown", *, execution_id: str | None = None) -> None:
        """Set the node that decisions of this execution are attributed to by default."""
        try:
            live = self._resolve(execution_id, "set_node")
            if live is not None:
                live.current_node = _normalize.text(node_id, "set_node(): node_id")
        except Exception:
            logger.exception("decisiontrace: set_node failed")

    def get_run(self, execution_id: str | None = None) -> Run | None:
        """The live Run of an execution with the decisions recorded so far, or None."""
        try:
            live = self._current() if execution_id is None else self._lookup(execution_id)
            if live is None:
                return None
            return live.view()
        except Exception:
            logger.exception("decisiontrace: get_run failed")
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
            return self._decide(
                live, intent, options, chosen, reasoning, node_id, decision_type,
                constraints, context,
            )  # fmt: skip
        except Exception:
            logger.exception("decisiontrace: decide failed")
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
            self._record_outcome(
                live, decision_id, success, result=result, error=error, summary=summary,
                state_changes=state_changes, tokens_used=tokens_used, latency_ms=latency_ms,
                error_type=error_type, input_tokens=input_tokens, output_tokens=output_tokens,
                chosen=chosen, reasoning=reasoning,
            )  # fmt: skip
        except Exception:
            logger.exception("decisiontrace: record_outcome failed")

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
            return self._report_problem(
                live, severity, description, decision_id, root_cause, suggested_fix
            )
        except Exception:
            logger.exception("decisiontrace: report_problem failed")
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

    # --- monitoring --------------------------------------------------------------------

    def get_active_executions(self) -> list[str]:
        """Execution ids with a run in progress."""
        return list(self._runs)

    def get_stats(self) -> dict[str, Any]:
        """``stream_id``, ``active_executions`` and ``execution_ids``."""
        execution_ids = list(self._runs)
        return {
            "stream_id": self.stream_id,
            "active_executions": len(execution_ids),
            "execution_ids": execution_ids,
        }

    # --- internals ---------------------------------------------------------------------

    def _current(self) -> LiveRun | None:
        live = ctx.current_run.get()
        if live is not None and live.tracker is self and live.end_ns is None:
            return live
        return None

    def _resolve(self, execution_id: Any, method: str, *what: Any) -> LiveRun | None:
        """The run a call is for; None (with a warning) if there is none.

        ``what`` describes the call in the warning; it is only formatted on that path,
        and safely: it is whatever the agent passed.
        """
        if execution_id is None:
            live = self._current()
            if live is None:
                _normalize.warn(
                    f"{method} called outside a run and without execution_id {_describe(what)}"
                )
            return live
        live = self._lookup(execution_id)
        if live is None:
            _normalize.warn(
                f"{method} called but no run for execution {safe_repr(execution_id)} "
                f"{_describe(what)}"
            )
        return live

    def _lookup(self, execution_id: Any) -> LiveRun | None:
        try:
            return self._runs.get(execution_id)
        except Exception:  # unhashable, or a __hash__/__eq__ that raises
            return None

    def _start(
        self,
        execution_id: str | None,
        goal_id: Any,
        goal_description: Any,
        input_data: Any,
    ) -> LiveRun:
        start_ns = time.time_ns()
        if execution_id is None:
            execution_id = f"{_ids.getrandbits(128):032x}"
        else:
            execution_id = _normalize.text(execution_id, "start_run(): execution_id")
        goal_id = _normalize.text(goal_id, "start_run(): goal_id")
        goal_description = _normalize.text(goal_description, "start_run(): goal_description")
        stamp = _records.ns_to_stamp(start_ns)
        # A private generator: fast (no syscall), and unaffected by random.seed() in the
        # agent, which would make every process produce the same ids and overwrite runs.
        run_id = f"{self._run_id_prefix}{stamp}_{_ids.getrandbits(32):08x}"
        attributes = _codec.run_start_attributes(
            run_id=run_id,
            goal_id=goal_id,
            goal_description=goal_description,
            stream_id=self.stream_id,
            execution_id=execution_id,
            input_data=input_data,
        )
        caller = trace.get_current_span().get_span_context()
        span = self._tracer.start_span(
            f"{sc.RUN_SPAN_NAME_PREFIX} {self.stream_id}",
            context=_ROOT_CONTEXT,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=[Link(caller)] if caller.is_valid else None,
            start_time=start_ns,
        )
        live = LiveRun(self, execution_id, run_id, goal_id, span, attributes, start_ns)
        # pop, then insert: a reused execution id moves to the end, keeping the order by age.
        previous = self._runs.pop(execution_id, None)
        self._runs[execution_id] = live
        if previous is not None:
            _normalize.warn(
                f"start_run: execution {execution_id!r} already has run {previous.run_id}; "
                "that run is ended as cancelled"
            )
            self._finish(
                previous, False, "", None, RunStatus.CANCELLED, remove=False,
                end_reason="its execution started a new run",
            )  # fmt: skip
        self._enforce_limits(start_ns)
        return live

    def _enforce_limits(self, now_ns: int) -> None:
        """End the oldest runs as stuck while there are too many or they are too old.

        O(1) amortized: only the head of the insertion-ordered ``_runs`` is examined,
        and every run is ended at most once.
        """
        runs = self._runs
        oldest_allowed = now_ns - self._run_timeout_ns
        while runs:
            try:
                oldest = next(iter(runs.values()))
            except (StopIteration, RuntimeError):  # another thread changed _runs: next time
                return
            if len(runs) > self._max_active_runs:
                reason = f"too many active runs (max_active_runs={self._max_active_runs})"
            elif oldest.start_ns < oldest_allowed:
                reason = "run did not end within run_timeout"
            else:
                return
            if runs.get(oldest.execution_id) is oldest:
                del runs[oldest.execution_id]
            else:  # ended meanwhile by its own thread
                continue
            kind = reason.split(" ", 1)[0]
            if kind not in self._limit_warned:  # once per tracker and limit: no log storm
                self._limit_warned.add(kind)
                _normalize.warn(f"run {oldest.run_id} ended as stuck: {reason}")
            self._finish(oldest, False, "", None, RunStatus.STUCK, remove=False, end_reason=reason)

    def _finish(
        self,
        live: LiveRun,
        success: Any,
        narrative: Any,
        output_data: Any,
        status: RunStatus | str | None,
        *,
        remove: bool = True,
        end_reason: str | None = None,
    ) -> None:
        end_ns = time.time_ns()
        with live.lock:
            if live.end_ns is not None:
                return
            live.end_ns = end_ns
            open_decisions = [d for d in live.decisions.values() if d.end_ns is None]
            outcomes = [d.outcome for d in live.decisions.values()]
            intents_failed = [
                str(d.attributes[sc.DECISION_INTENT])
                for d in live.decisions.values()
                if d.outcome is None or not d.outcome[sc.OUTCOME_SUCCESS]
            ]
            problems = [
                (str(a[sc.PROBLEM_SEVERITY]), str(a[sc.PROBLEM_DESCRIPTION]))
                for a, _ in live.problems
            ]
            nodes = list(live.nodes)
        for decision in open_decisions:
            decision.end_ns = end_ns
            decision.span.end(end_time=end_ns)
        if status is None:
            status_value = "completed" if success else "failed"
        else:
            status_value = _normalize.text(status, "end_run(): status")
            if status_value not in {s.value for s in RunStatus}:
                _normalize.warn(f"end_run(): unknown status {status_value!r}; recorded as 'failed'")
                status_value = "failed"
        successful = sum(1 for o in outcomes if o is not None and o[sc.OUTCOME_SUCCESS])
        failed = sum(1 for o in outcomes if o is not None and not o[sc.OUTCOME_SUCCESS])
        narrative = redact_text(
            _normalize.text(narrative, "end_run(): narrative")
        ) or _records.narrative(
            status_value, len(outcomes), successful, failed, problems, intents_failed
        )
        end_attributes: _codec.Attributes = {
            sc.RUN_STATUS: status_value,
            sc.RUN_NARRATIVE: narrative,
            sc.RUN_DECISION_COUNT: len(outcomes),
            sc.RUN_SUCCESS_COUNT: successful,
            sc.RUN_FAILURE_COUNT: failed,
            sc.RUN_TOTAL_TOKENS: sum(o[sc.OUTCOME_TOKENS] for o in outcomes if o is not None),
            sc.RUN_PROBLEM_COUNT: len(problems),
            sc.RUN_NODES: nodes,
        }
        if end_reason is not None:
            end_attributes[sc.RUN_END_REASON] = end_reason
        if output_data:
            end_attributes[sc.RUN_OUTPUT] = _normalize.json_object_attr(
                output_data, "end_run(): output_data"
            )
        live.end_attributes = end_attributes
        span = live.span
        span.set_attributes(end_attributes)
        if status_value in ("failed", "stuck"):
            span.set_status(Status(StatusCode.ERROR, f"run {status_value}"))
        span.end(end_time=end_ns)
        if remove and self._runs.get(live.execution_id) is live:
            del self._runs[live.execution_id]
        if ctx.current_run.get() is live:
            ctx.current_run.set(None)

    def _decide(
        self,
        live: LiveRun,
        intent: Any,
        options: Any,
        chosen: Any,
        reasoning: Any,
        node_id: Any,
        decision_type: Any,
        constraints: Any,
        context: Any,
    ) -> str:
        start_ns = time.time_ns()
        where = "decide()"
        intent = intent if type(intent) is str else _normalize.text(intent, f"{where}: intent")
        if not live.recording:
            return self._decide_unrecorded(live, intent, chosen, node_id, start_ns)
        options_json = option_ids = None
        if type(options) is _normalize.PreparedOptions:  # a decorator's static list
            normalized = options.options
            options_json = options.json()
            option_ids = options.ids
        else:
            normalized = _normalize.normalize_options(options, where)
        if node_id is None:
            node_id = ctx.current_node.get() or live.current_node
        elif type(node_id) is not str:
            node_id = _normalize.text(node_id, f"{where}: node_id")
        decision_type = (
            decision_type.value
            if type(decision_type) is DecisionType
            else _normalize.decision_type_value(decision_type, where)
        )
        with live.lock:
            if live.end_ns is not None:
                _normalize.warn(f"{where} called for run {live.run_id} after it ended: {intent}")
                return ""
            decision_id = f"dec_{len(live.decisions)}"
            if node_id not in live.nodes:
                live.nodes.append(node_id)
            attributes = _codec.decision_attributes(
                run_id=live.run_id,
                decision_id=decision_id,
                intent=intent,
                options=normalized,
                chosen=chosen
                if type(chosen) is str
                else _normalize.text(chosen, f"{where}: chosen"),
                reasoning=reasoning
                if type(reasoning) is str
                else _normalize.text(reasoning, f"{where}: reasoning"),
                node_id=node_id,
                decision_type=decision_type,
                constraints=_normalize.string_list(constraints, f"{where}: constraints"),
                context=context,
                where=where,
                options_json=options_json,
                option_ids=option_ids,
            )
            current = trace.get_current_span().get_span_context()
            parent = None if current.trace_id == live.trace_id else live.context
            span = self._tracer.start_span(
                f"{sc.DECISION_SPAN_NAME_PREFIX} {intent}",
                context=parent,
                attributes=attributes,
                start_time=start_ns,
            )
            live.decisions[decision_id] = LiveDecision(
                decision_id, span, attributes, start_ns, normalized
            )
        if self._outcome_aggregator is not None:
            decision = Decision.model_validate(_codec.decision_record(attributes, start_ns, None))
            self._notify(
                "record_decision",
                stream_id=self.stream_id,
                execution_id=live.execution_id,
                decision=decision,
            )
        return decision_id

    def _decide_unrecorded(
        self, live: LiveRun, intent: str, chosen: Any, node_id: Any, start_ns: int
    ) -> str:
        """A decision in a run that is not recorded: an id and the live essentials only.

        The decision's "span" is the run's own non-recording span, so code that makes
        it current (decorators) keeps propagating the run's trace context.
        """
        if node_id is None:
            node_id = ctx.current_node.get() or live.current_node
        with live.lock:
            if live.end_ns is not None:
                return ""
            decision_id = f"dec_{len(live.decisions)}"
            attributes: _codec.Attributes = {
                sc.DECISION_ID: decision_id,
                sc.DECISION_INTENT: intent,
                sc.NODE_ID: node_id if type(node_id) is str else str(node_id),
                sc.DECISION_CHOSEN_ID: chosen if type(chosen) is str else str(chosen),
            }
            live.decisions[decision_id] = LiveDecision(decision_id, live.span, attributes, start_ns)
            if attributes[sc.NODE_ID] not in live.nodes:
                live.nodes.append(attributes[sc.NODE_ID])
        return decision_id

    def _record_outcome(
        self,
        live: LiveRun,
        decision_id: Any,
        success: Any,
        *,
        result: Any = None,
        error: Any = None,
        summary: Any = "",
        state_changes: Any = None,
        tokens_used: Any = 0,
        latency_ms: Any = 0,
        error_type: Any = None,
        input_tokens: Any = None,
        output_tokens: Any = None,
        chosen: Any = None,
        reasoning: Any = None,
        quiet: bool = False,
    ) -> None:
        """Record an outcome (and a late choice) and end the decision span.

        ``quiet``: the result was captured, not handed over (decorators), so converting
        or truncating it is expected and not warned about.
        """
        end_ns = time.time_ns()
        where = "record_outcome()"
        decision = live.decisions.get(decision_id)
        if decision is None:
            _normalize.warn(f"{where}: run {live.run_id} has no decision {decision_id!r}")
            return
        if type(success) is not bool:
            _normalize.warn(f"{where}: success should be a bool, got {type(success).__name__}")
            success = bool(success)
        if not live.recording:
            with live.lock:
                if decision.outcome is None and decision.end_ns is None:
                    decision.outcome = {
                        sc.OUTCOME_SUCCESS: success,
                        sc.OUTCOME_TOKENS: tokens_used if type(tokens_used) is int else 0,
                    }
                    decision.end_ns = end_ns
            return
        if input_tokens is not None:
            input_tokens = _normalize.integer(input_tokens, f"{where}: input_tokens")
        if output_tokens is not None:
            output_tokens = _normalize.integer(output_tokens, f"{where}: output_tokens")
        tokens = _normalize.integer(tokens_used, f"{where}: tokens_used")
        if not tokens and (input_tokens or output_tokens):
            tokens = (input_tokens or 0) + (output_tokens or 0)
        attributes = _codec.outcome_attributes(
            success=success,
            result=result,
            quiet=quiet,
            error=None if error is None else _normalize.text(error, f"{where}: error"),
            summary=_normalize.text(summary, f"{where}: summary"),
            state_changes=state_changes,
            tokens_used=tokens,
            latency_ms=_normalize.integer(latency_ms, f"{where}: latency_ms"),
            error_type=None if error_type is None else _normalize.text(error_type, "error_type"),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            where=where,
        )
        choice = None
        if chosen is not None or reasoning is not None:
            choice = self._choice(decision, chosen, reasoning)
        with live.lock:
            if decision.outcome is not None or decision.end_ns is not None:
                _normalize.warn(f"{where}: decision {decision_id} of {live.run_id} already ended")
                return
            if choice:
                updated = {**decision.attributes, **choice}
                if sc.DECISION_CHOSEN_ID in choice and sc.DECISION_CHOSEN_CONFIDENCE not in choice:
                    updated.pop(sc.DECISION_CHOSEN_CONFIDENCE, None)
                decision.attributes = updated
            decision.outcome = attributes
            decision.end_ns = end_ns
        span = decision.span
        span.set_attributes({**attributes, **choice} if choice else attributes)
        if not success:
            span.set_status(Status(StatusCode.ERROR, attributes.get(sc.OUTCOME_ERROR)))
        span.end(end_time=end_ns)
        if self._outcome_aggregator is not None:
            record = _codec.decision_record({**decision.attributes, **attributes}, 0, end_ns)
            self._notify(
                "record_outcome",
                stream_id=self.stream_id,
                execution_id=live.execution_id,
                decision_id=decision_id,
                outcome=Outcome.model_validate(record["outcome"]),
            )

    @staticmethod
    def _choice(decision: LiveDecision, chosen: Any, reasoning: Any) -> _codec.Attributes:
        """Attributes that set a decision's choice (and reasoning) after it started."""
        where = "record_outcome()"
        update: _codec.Attributes = {}
        if reasoning is not None:
            text = reasoning if type(reasoning) is str else _normalize.text(reasoning, where)
            update[sc.DECISION_REASONING] = redact_text(text) if text else text
        if chosen is None:
            return update
        chosen = chosen if type(chosen) is str else _normalize.text(chosen, f"{where}: chosen")
        update[sc.DECISION_CHOSEN_ID] = chosen
        options = decision.options or ()
        for option in options:
            if option["id"] == chosen:
                update[sc.DECISION_CHOSEN_CONFIDENCE] = option["confidence"]
                break
        else:
            if options and chosen:
                ids = [option["id"] for option in options]
                _normalize.warn(f"{where}: chosen option {chosen!r} is not among the options {ids}")
        return update

    def _report_problem(
        self,
        live: LiveRun,
        severity: Any,
        description: Any,
        decision_id: Any,
        root_cause: Any,
        suggested_fix: Any,
    ) -> str:
        time_ns = time.time_ns()
        where = "report_problem()"
        with live.lock:
            if live.end_ns is not None:
                _normalize.warn(f"{where} called for run {live.run_id} after it ended")
                return ""
            problem_id = f"prob_{len(live.problems)}"
            attributes = _codec.problem_attributes(
                problem_id=problem_id,
                severity=_normalize.text(severity, f"{where}: severity"),
                description=_normalize.text(description, f"{where}: description"),
                decision_id=None if decision_id is None else _normalize.text(decision_id, where),
                root_cause=None if root_cause is None else _normalize.text(root_cause, where),
                suggested_fix=None
                if suggested_fix is None
                else _normalize.text(suggested_fix, where),
            )
            live.problems.append((attributes, time_ns))
            live.span.add_event(sc.PROBLEM_EVENT, attributes, timestamp=time_ns)
        return problem_id

    def _notify(self, method: str, **kwargs: Any) -> None:
        """Call the outcome aggregator, fenced off: its errors are logged, not raised."""
        hook: Callable[..., Any] = getattr(self._outcome_aggregator, method)
        try:
            hook(**kwargs)
        except Exception:
            logger.exception("decisiontrace: outcome_aggregator.%s raised", method)
