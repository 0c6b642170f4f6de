"""The span engine under the tracker: starting and ending run and decision spans.

:class:`SpanEngine` turns recording calls, already resolved to a live run and checked,
into spans: a root span per run, a child span per decision (open until its outcome),
problem events, and the live state that mirrors them. The public API around it, with
its never-raise wrappers, is :class:`~decisiontrace.tracking.tracker.DecisionTracker`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, SpanKind

from decisiontrace._internal.errors import Once, warn_once
from decisiontrace.models import Decision, Outcome, RunStatus
from decisiontrace.pipeline._tokens import LEDGER
from decisiontrace.spanmodel import _codec, _decode, _records
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._jsonsafe import safe_repr, safe_str
from decisiontrace.spanmodel._redact import redact_text
from decisiontrace.tracking import _arguments, _no_provider, _normalize, _remote
from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking._live import ROOT_CONTEXT, LiveDecision, LiveRun
from decisiontrace.tracking._pauses import is_pause

if TYPE_CHECKING:
    from decisiontrace.tracking.tracker import DecisionTracker

logger = logging.getLogger("decisiontrace")


class SpanEngine:
    """Emits the spans of runs and decisions and keeps their live state."""

    stream_id: str
    _tracer: trace.Tracer
    _runs: dict[str, LiveRun]
    _run_id_prefix: str
    _outcome_aggregator: Any
    _max_active_runs: int
    _run_timeout_ns: int
    _limit_warned: Once
    #: Keep the SDK spans of ended decisions in the live view (the compat tracker
    #: assembles a run's record from them when it ends).
    _keep_ended_spans: ClassVar[bool] = False

    def _start(
        self,
        execution_id: str | None,
        goal_id: Any,
        goal_description: Any,
        input_data: Any,
        *,
        links: Sequence[Link] = (),
        extra_attributes: _codec.Attributes | None = None,
    ) -> LiveRun:
        start_ns = time.time_ns()
        _remote.check_propagator()
        attributes = _arguments.run_start_attributes(
            self._run_id_prefix, self.stream_id, execution_id, goal_id, goal_description,
            input_data, start_ns,
        )  # fmt: skip
        run_id = attributes[sc.RUN_ID]
        execution_id = attributes[sc.EXECUTION_ID]
        goal_id = attributes[sc.GOAL_ID]
        if extra_attributes:
            attributes.update(extra_attributes)
        caller = trace.get_current_span().get_span_context()
        span_links = [Link(caller), *links] if caller.is_valid else list(links)
        span = self._tracer.start_span(
            f"{sc.RUN_SPAN_NAME_PREFIX} {self.stream_id}",
            context=ROOT_CONTEXT,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=span_links or None,
            start_time=start_ns,
        )
        if not span.is_recording() and span.get_span_context().is_valid:
            self._warn_dropped(run_id)
        if not span.get_span_context().is_valid:  # the API's no-op span: no SDK
            _no_provider.warn()
        # The engine is only ever the base of a DecisionTracker.
        tracker = cast("DecisionTracker", self)
        live = LiveRun(tracker, execution_id, run_id, goal_id, span, attributes, start_ns)
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

    def _warn_dropped(self, run_id: str) -> None:
        """Say once per tracker that a sampler dropped a run span: never a silent loss."""
        warn_once(
            "dropped",
            "decisiontrace: run %s will not be stored: the TracerProvider's sampler dropped "
            "its span (said once per tracker); decisiontrace.configure() makes the provider "
            "record every run, or give it KeepEveryRunSampler(export_sampler=...)",
            run_id,
            once=self._limit_warned,
        )

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
            warn_once(  # once per tracker and limit: no log storm
                kind,
                "decisiontrace: run %s ended as stuck: %s",
                oldest.run_id,
                reason,
                once=self._limit_warned,
            )
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
        paused: bool = False,
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
                if (d.outcome is None and not d.attributes.get(sc.DECISION_PAUSED))
                or (d.outcome is not None and not d.outcome[sc.OUTCOME_SUCCESS])
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
            status_value = _codec.ended_status(bool(success))
        else:
            status_value = _normalize.text(status, "end_run(): status")
            if status_value not in {s.value for s in RunStatus}:
                _normalize.warn(f"end_run(): unknown status {status_value!r}; recorded as 'failed'")
                status_value = "failed"
        totals = _records.Totals()
        for o in outcomes:
            if o is None:
                totals.add(None)
            else:
                totals.add(o[sc.OUTCOME_SUCCESS], o[sc.OUTCOME_TOKENS])
        narrative = redact_text(
            _normalize.text(narrative, "end_run(): narrative")
        ) or _records.narrative(
            status_value, totals.decisions, totals.successful, totals.failed, problems,
            intents_failed,
        )  # fmt: skip
        completed_text = "Run completed successfully."
        if paused and narrative.startswith(completed_text):
            narrative = "Run paused, resumable." + narrative[len(completed_text) :]
        end_attributes = _codec.run_end_attributes(
            status=status_value,
            narrative=narrative,
            totals=totals,
            problem_count=len(problems),
            nodes=nodes,
            # LLM tokens that counted for the run but none of its decisions (see _tokens).
            llm_tokens=LEDGER.take_run(live.span.get_span_context().trace_id),
            output_data=output_data,
            end_reason=end_reason,
            paused=paused,
        )
        live.end_attributes = end_attributes
        span = live.span
        span.set_attributes(end_attributes)
        span_status = _codec.run_span_status(status_value)
        if span_status is not None:
            span.set_status(span_status)
        span.end(end_time=end_ns)
        if remove and self._runs.get(live.execution_id) is live:
            del self._runs[live.execution_id]
        if ctx.current_run.get() is live:
            ctx.current_run.set(None)

    def _end_scope(
        self,
        live: LiveRun,
        exc: BaseException | None,
        *,
        success: bool = True,
        narrative: str = "",
        output_data: dict[str, Any] | None = None,
        paused: bool = False,
    ) -> None:
        """End a run whose block (``tracker.run``, ``@agent``) exited, maybe by ``exc``.

        Failed with the exception on the span and as a critical problem; cancelled on
        cancellation; completed and paused (resumable) when ``paused`` or when ``exc``
        is a pause (:func:`~decisiontrace.tracking._pauses.is_pause`, LangGraph's interrupts). An
        exception that cannot even be printed still ends the run.
        """
        status: RunStatus | None = None
        if exc is not None and is_pause(exc):
            paused, exc = True, None
        if exc is not None:
            success = False
            with contextlib.suppress(Exception):  # the SDK formats it; that may raise
                live.span.record_exception(exc)
            if isinstance(exc, KeyboardInterrupt) or _is_cancellation(exc):
                status = RunStatus.CANCELLED
            else:
                with contextlib.suppress(Exception):
                    self._report_problem(
                        live, "critical", f"{type(exc).__name__}: {safe_str(exc)}", None, None, None
                    )
        self._finish(live, success, narrative, output_data, status, paused=paused)

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
        if node_id is None:
            node_id = ctx.current_node.get() or live.current_node
        # Encoding and redaction happen outside the run's lock; only the id (dec_N, by
        # count) is taken under it, with the span start so that ids follow span order.
        attributes, normalized = _arguments.decision_attributes(
            live.run_id, intent, options, chosen, reasoning, node_id, decision_type,
            constraints, context, where,
        )  # fmt: skip
        node_id = attributes[sc.NODE_ID]
        if live.fragment_id is not None:  # recorded into another process's run
            live.last_used_ns = start_ns
            attributes[sc.FRAGMENT_ID] = live.fragment_id
            attributes[sc.FRAGMENT_SERVICE] = live.service or ""
            attributes[sc.GOAL_ID] = live.goal_id
        current = trace.get_current_span().get_span_context()
        parent = None if current.trace_id == live.trace_id else live.context
        name = f"{sc.DECISION_SPAN_NAME_PREFIX} {intent}"
        with live.lock:
            if live.end_ns is not None:
                _normalize.warn(f"{where} called for run {live.run_id} after it ended: {intent}")
                return ""
            decision_id = live.next_decision_id()
            attributes[sc.DECISION_ID] = decision_id
            if node_id not in live.nodes:
                live.nodes.append(node_id)
            span = self._tracer.start_span(
                name, context=parent, attributes=attributes, start_time=start_ns
            )
            live.decisions[decision_id] = LiveDecision(
                decision_id, span, attributes, start_ns, normalized
            )
        if self._outcome_aggregator is not None:
            decision = Decision.model_validate(_decode.decision_record(attributes, start_ns, None))
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
            decision_id = live.next_decision_id()
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
        try:
            decision = live.decisions.get(decision_id)
        except Exception:  # expected: the agent's id, unhashable or a __hash__ that raises
            decision = None
        if decision is None:
            _normalize.warn(f"{where}: run {live.run_id} has no decision {safe_repr(decision_id)}")
            return
        if type(success) is not bool:
            _normalize.warn(f"{where}: success should be a bool, got {type(success).__name__}")
            success = bool(success)
        pending = decision.pending_choice
        if pending is not None:  # declared with decisiontrace.choose(); explicit wins
            if chosen is None:
                chosen = pending[0]
            if reasoning is None:
                reasoning = pending[1]
        if not live.recording:
            with live.lock:
                if decision.outcome is None and decision.end_ns is None:
                    decision.outcome = {
                        sc.OUTCOME_SUCCESS: success,
                        sc.OUTCOME_TOKENS: tokens_used if type(tokens_used) is int else 0,
                    }
                    decision.end_ns = end_ns
                    if chosen is not None:
                        decision.attributes = {
                            **decision.attributes,
                            sc.DECISION_CHOSEN_ID: _normalize.text(chosen, f"{where}: chosen"),
                        }
            return
        # Tokens of LLM spans that ended under the decision so far, so that the exported
        # span carries the stored total (docs/span-model.md, "Tokens from LLM spans").
        llm_tokens = LEDGER.take_decision(decision.span.get_span_context().span_id)
        attributes = _arguments.outcome_attributes(
            success, result, error, summary, state_changes, tokens_used, latency_ms,
            error_type, input_tokens, output_tokens, llm_tokens, quiet=quiet, where=where,
        )  # fmt: skip
        choice = None
        if chosen is not None or reasoning is not None:
            choice = _codec.choice_attributes(decision.options, chosen, reasoning)
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
        span_status = _codec.outcome_span_status(success, attributes.get(sc.OUTCOME_ERROR))
        if span_status is not None:
            span.set_status(span_status)
        span.end(end_time=end_ns)
        if not self._keep_ended_spans:
            # The ended SDK span is the processors' now: the live view keeps its ids only
            # (its events, links and attribute copies were ~2.4 KB per decision, and
            # objects the garbage collector rescanned for as long as the run was open).
            decision.span = NonRecordingSpan(span.get_span_context())
            decision.options = None  # only a late choice reads them, and it came or not
        if self._outcome_aggregator is not None:
            record = _decode.decision_record({**decision.attributes, **attributes}, 0, end_ns)
            self._notify(
                "record_outcome",
                stream_id=self.stream_id,
                execution_id=live.execution_id,
                decision_id=decision_id,
                outcome=Outcome.model_validate(record["outcome"]),
            )

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
            problem_id = live.next_problem_id()
            attributes = _arguments.problem_attributes(
                problem_id, severity, description, decision_id, root_cause, suggested_fix, where
            )
            live.problems.append((attributes, time_ns))
            if live.fragment_id is None:
                live.span.add_event(sc.PROBLEM_EVENT, attributes, timestamp=time_ns)
                return problem_id
        # No run span here: the problem travels on a span of its own.
        self._problem_span(live, attributes, time_ns)
        return problem_id

    def _problem_span(self, live: LiveRun, attributes: _codec.Attributes, time_ns: int) -> None:
        """A problem of a fragment: a zero-length span carrying the problem event."""
        live.last_used_ns = time_ns
        current = trace.get_current_span().get_span_context()
        span = self._tracer.start_span(
            f"{sc.PROBLEM_SPAN_NAME_PREFIX} {attributes[sc.PROBLEM_SEVERITY]}",
            context=None if current.trace_id == live.trace_id else live.context,
            attributes={
                sc.SPAN_KIND: sc.KIND_PROBLEM,
                sc.RUN_ID: live.run_id,
                sc.GOAL_ID: live.goal_id,
                sc.FRAGMENT_ID: live.fragment_id or "",
                sc.FRAGMENT_SERVICE: live.service or "",
            },
            start_time=time_ns,
        )
        span.add_event(sc.PROBLEM_EVENT, attributes, timestamp=time_ns)
        span.end(end_time=time_ns)

    def _notify(self, method: str, **kwargs: Any) -> None:
        """Call the outcome aggregator, fenced off: its errors are logged, not raised."""
        hook: Callable[..., Any] = getattr(self._outcome_aggregator, method)
        try:
            hook(**kwargs)
        except Exception:  # expected: the user's aggregator raised; logged, not raised
            logger.exception("decisiontrace: outcome_aggregator.%s raised", method)


def _is_cancellation(exc: BaseException) -> bool:
    """An asyncio task cancelled (asyncio is not imported for it: a program that never
    imported asyncio cannot be cancelled by it, and ``import decisiontrace`` stays light)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)
