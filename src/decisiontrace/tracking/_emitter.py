"""The span emitter: recording calls on a live run turned into spans.

:class:`SpanEmitter` starts a run's root span, a child span per decision (open until
its outcome), problem events, and ends them, keeping the live state that mirrors them
(:mod:`decisiontrace.tracking._live`). It is the :class:`~decisiontrace.tracking._live.
SpanWriter` of every run it starts, so decorators, ``RunScope``, compat and integrations
reach it through the run's methods. Which runs exist (limits, lookup, runs of other
processes) is the :class:`~decisiontrace.tracking._registry.RunRegistry`'s business,
told of every ended run through :attr:`SpanEmitter.ended_hooks`.

On the caller's path the arguments are checked and encoded first; a run's lock is held
only to take the decision's id (and to hand over its span): no encoding, redaction or
span start (processors' ``on_start``) happens under it.

A run nobody records (no SDK installed, or sampled out) takes the same calls and keeps
only what its live view shows: each decision's id, intent, node, chosen option and
success (:mod:`decisiontrace.tracking._unrecorded`, the one home of that behaviour).
Problems are events or spans of their own (:mod:`decisiontrace.tracking._problems`).
What a run's end says (status, narrative, totals) is worked out by
:mod:`decisiontrace.tracking._run_end`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from decisiontrace._internal.errors import Once, warn_once
from decisiontrace.pipeline._tokens import LEDGER
from decisiontrace.spanmodel import _codec, _decode
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._jsonsafe import safe_str
from decisiontrace.spanmodel._kinds import RunStatus
from decisiontrace.tracking import (
    _arguments,
    _no_provider,
    _normalize,
    _problems,
    _remote,
    _run_end,
    _unrecorded,
)
from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking._live import (
    ENDED_SPAN,
    PENDING_SPAN,
    ROOT_CONTEXT,
    LiveDecision,
    LiveRun,
)
from decisiontrace.tracking._pauses import is_pause

logger = logging.getLogger("decisiontrace")

_time_ns = time.time_ns
_get_node = ctx.current_node.get
_get_current_span = trace.get_current_span
_get_current_context = otel_context.get_current


class SpanEmitter:
    """Emits the spans of one tracker's runs and decisions and keeps their live state.

    Args:
        stream_id: the stream (part of run ids and run span names).
        tracer: where spans go; :attr:`tracer` may be replaced later (compat points it
            at the storage it resolves when the first run starts).
        outcome_aggregator: the original's aggregator, or None.
        run_id_prefix: run ids are ``{prefix}{YYYYmmdd_HHMMSS}_{8 hex}``.

    Attributes:
        keep_ended_spans: keep the SDK span of an ended decision in the live view (compat
            assembles a run's record from its spans when it ends); by default an ended
            decision keeps only its span id.
        ended_hooks: called with each run as it ends (after its span ended), in order.
    """

    def __init__(
        self, stream_id: str, tracer: trace.Tracer, outcome_aggregator: Any, run_id_prefix: str
    ) -> None:
        self.stream_id = stream_id
        self.tracer = tracer
        self.outcome_aggregator = outcome_aggregator
        self.run_id_prefix = run_id_prefix
        self.keep_ended_spans = False
        self.ended_hooks: list[Callable[[LiveRun], None]] = []
        self._warned = Once()  # what this tracker has warned about once
        self._span_name = f"{sc.RUN_SPAN_NAME_PREFIX} {stream_id}"

    # --- runs ------------------------------------------------------------------------------

    def start_run(
        self,
        execution_id: Any,
        goal_id: Any,
        goal_description: Any,
        input_data: Any,
        *,
        links: Sequence[Link] = (),
        extra_attributes: _codec.Attributes | None = None,
    ) -> LiveRun:
        """Start a run's root span (a new trace, linked to the caller's span)."""
        start_ns = _time_ns()
        _remote.check_propagator()
        attributes = _arguments.run_start_attributes(
            self.run_id_prefix, self.stream_id, execution_id, goal_id, goal_description,
            input_data, start_ns,
        )  # fmt: skip
        if extra_attributes:
            attributes.update(extra_attributes)
        caller = _get_current_span().get_span_context()
        span_links = [Link(caller), *links] if caller.is_valid else list(links)
        span = self.tracer.start_span(
            self._span_name,
            context=ROOT_CONTEXT,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=span_links or None,
            start_time=start_ns,
        )
        span_context = span.get_span_context()
        if not span_context.is_valid:  # the API's no-op span: no SDK
            _no_provider.warn()
        elif not span.is_recording():  # a sampler dropped the run: never a silent loss
            warn_once(
                "dropped",
                "decisiontrace: run %s will not be stored: the TracerProvider's sampler "
                "dropped its span (said once per tracker); decisiontrace.configure() makes "
                "the provider record every run, or give it KeepEveryRunSampler(export_sampler=...)",
                attributes[sc.RUN_ID],
                once=self._warned,
            )
        return LiveRun(
            self,
            attributes[sc.EXECUTION_ID],
            attributes[sc.RUN_ID],
            attributes[sc.GOAL_ID],
            span,
            attributes,
            start_ns,
        )

    def end_run(
        self,
        live: LiveRun,
        success: Any,
        narrative: Any = "",
        output_data: Any = None,
        status: RunStatus | str | None = None,
        *,
        end_reason: str | None = None,
        paused: bool = False,
    ) -> None:
        """End a run: close its open decisions, set status and narrative, end its span."""
        end_ns = _time_ns()
        with live.lock:
            if live.end_ns is not None:
                return
            live.end_ns = end_ns
            decisions = list(live.decisions.values())
            ended = None if live.ended is None else live.ended.snapshot()
            open_spans = _end_open_decisions(decisions, end_ns)
            problems = [
                (str(a[sc.PROBLEM_SEVERITY]), str(a[sc.PROBLEM_DESCRIPTION]))
                for a, _ in live.problems
            ]
            nodes = list(live.nodes)
        for span in open_spans:
            span.end(end_time=end_ns)
        status_value = _run_end.status(success, status)
        end_attributes = _run_end.end_attributes(
            status_value, decisions, ended, problems, nodes, narrative, output_data,
            # LLM tokens that counted for the run but none of its decisions (see _tokens).
            llm_tokens=LEDGER.take_run(live.trace_id),
            end_reason=end_reason, paused=paused,
        )  # fmt: skip
        live.end_attributes = end_attributes
        span = live.span
        span.set_attributes(end_attributes)
        span_status = _codec.run_span_status(status_value)
        if span_status is not None:
            span.set_status(span_status)
        span.end(end_time=end_ns)
        if ctx.current_run.get() is live:
            ctx.current_run.set(None)
        for hook in self.ended_hooks:
            hook(live)

    def end_block(
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
        is a pause (:func:`~decisiontrace.tracking._pauses.is_pause`, LangGraph's
        interrupts). An exception that cannot even be printed still ends the run.
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
                    self.report_problem(
                        live, "critical", f"{type(exc).__name__}: {safe_str(exc)}", None, None, None
                    )
        self.end_run(live, success, narrative, output_data, status, paused=paused)

    def close_fragment(self, live: LiveRun) -> None:
        """End a fragment's open decisions (without outcome); it never ends the run."""
        end_ns = _time_ns()
        with live.lock:
            if live.end_ns is not None:
                return
            live.end_ns = end_ns
            open_spans = _end_open_decisions(live.decisions.values(), end_ns)
        for span in open_spans:
            span.end(end_time=end_ns)

    # --- decisions -------------------------------------------------------------------------

    def open_decision(
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
    ) -> LiveDecision | None:
        """Record a decision and start its span; None if the run already ended."""
        start_ns = _time_ns()
        where = "decide()"
        if type(intent) is not str:
            intent = _normalize.text(intent, f"{where}: intent")
        if node_id is None:
            node_id = _get_node() or live.current_node
        if not live.recording:
            return _unrecorded.decision(live, intent, chosen, node_id, start_ns)
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
        # The parent: the current span when it is in the run's trace (a decision made
        # inside a user's span nests under it), else the run span.
        parent = _get_current_context()
        if parent is not live.context:  # live.context: the run span is current
            current = _get_current_span(parent).get_span_context()
            if current.trace_id != live.trace_id:
                parent = live.context
        # Under the lock: the id and the decision's place in the run, nothing else.
        with live.lock:
            if live.end_ns is not None:
                ended = True
            else:
                ended = False
                decision_id = live.next_decision_id()
                attributes[sc.DECISION_ID] = decision_id
                if node_id not in live.nodes:
                    live.nodes.append(node_id)
                decision = LiveDecision(decision_id, PENDING_SPAN, attributes, start_ns, normalized)
                live.decisions[decision_id] = decision
        if ended:
            _normalize.warn(f"{where} called for run {live.run_id} after it ended: {intent}")
            return None
        span = self.tracer.start_span(
            f"{sc.DECISION_SPAN_NAME_PREFIX} {intent}",
            context=parent,
            attributes=attributes,
            start_time=start_ns,
        )
        span_id = span.get_span_context().span_id
        with live.lock:
            decision.span = span
            decision.span_id = span_id
            closed_ns = decision.end_ns
        if closed_ns is not None:  # the run ended while the span started
            span.end(end_time=closed_ns)
        if self.outcome_aggregator is not None:
            from decisiontrace.models import Decision  # the models load with the first

            record = Decision.model_validate(_decode.decision_record(attributes, start_ns, None))
            self._notify(
                "record_decision",
                stream_id=self.stream_id,
                execution_id=live.execution_id,
                decision=record,
            )
        return decision

    def record_outcome(
        self,
        live: LiveRun,
        decision: LiveDecision,
        success: Any,
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
        """Record an outcome (and a late choice) and end the decision span."""
        end_ns = _time_ns()
        where = "record_outcome()"
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
            _unrecorded.outcome(live, decision, success, tokens_used, chosen, end_ns)
            return
        span = decision.span
        if decision.end_ns is not None or span is PENDING_SPAN or span is ENDED_SPAN:
            _normalize.warn(
                f"{where}: decision {decision.decision_id} of {live.run_id} already ended"
            )
            return
        # Tokens of LLM spans that ended under the decision so far, so that the exported
        # span carries the stored total (docs/span-model.md, "Tokens from LLM spans").
        llm_tokens = LEDGER.take_decision(decision.span_id)
        attributes = _arguments.outcome_attributes(
            success, result, error, summary, state_changes, tokens_used, latency_ms,
            error_type, input_tokens, output_tokens, llm_tokens, quiet=quiet, where=where,
        )  # fmt: skip
        choice = None
        if chosen is not None or reasoning is not None:
            choice = _codec.choice_attributes(decision.options, chosen, reasoning)
        with live.lock:
            if decision.outcome is not None or decision.end_ns is not None:
                ended = True
            else:
                ended = False
                if choice:
                    updated = decision.attributes
                    updated.update(choice)
                    if (
                        sc.DECISION_CHOSEN_ID in choice
                        and sc.DECISION_CHOSEN_CONFIDENCE not in choice
                    ):
                        updated.pop(sc.DECISION_CHOSEN_CONFIDENCE, None)
                merged = decision.attributes
                merged.update(attributes)
                decision.outcome = merged
                decision.end_ns = end_ns
        if ended:
            _normalize.warn(
                f"{where}: decision {decision.decision_id} of {live.run_id} already ended"
            )
            return
        span.set_attributes({**attributes, **choice} if choice else attributes)
        span_status = _codec.outcome_span_status(success, attributes.get(sc.OUTCOME_ERROR))
        if span_status is not None:
            span.set_status(span_status)
        span.end(end_time=end_ns)
        if not self.keep_ended_spans:
            live.keep_ended(decision)
        if self.outcome_aggregator is not None:
            from decisiontrace.models import Outcome

            record = _decode.decision_record({**decision.attributes, **attributes}, 0, end_ns)
            self._notify(
                "record_outcome",
                stream_id=self.stream_id,
                execution_id=live.execution_id,
                decision_id=decision.decision_id,
                outcome=Outcome.model_validate(record["outcome"]),
            )

    def pause_decision(self, live: LiveRun, decision: LiveDecision) -> None:
        """End a decision paused by a control-flow exception: no outcome, ``paused``."""
        end_ns = _time_ns()
        with live.lock:
            if decision.outcome is not None or decision.end_ns is not None:
                return
            decision.end_ns = end_ns
            decision.attributes[sc.DECISION_PAUSED] = True
        span = decision.span
        if span is not PENDING_SPAN and span is not ENDED_SPAN and live.recording:
            span.set_attribute(sc.DECISION_PAUSED, True)
            span.end(end_time=end_ns)

    # --- problems ------------------------------------------------------------------------------

    def report_problem(
        self,
        live: LiveRun,
        severity: Any,
        description: Any,
        decision_id: Any,
        root_cause: Any,
        suggested_fix: Any,
    ) -> str:
        """Record a problem: an event on the run span (a span of its own in a fragment)."""
        return _problems.report(
            self.tracer, live, severity, description, decision_id, root_cause, suggested_fix
        )

    def _notify(self, method: str, **kwargs: Any) -> None:
        """Call the outcome aggregator, fenced off: its errors are logged, not raised."""
        hook: Callable[..., Any] = getattr(self.outcome_aggregator, method)
        try:
            hook(**kwargs)
        except Exception:  # expected: the user's aggregator raised; logged, not raised
            logger.exception("decisiontrace: outcome_aggregator.%s raised", method)


def _end_open_decisions(decisions: Iterable[LiveDecision], end_ns: int) -> list[Any]:
    """Mark the decisions still open as ended at ``end_ns`` (under the run's lock); the
    SDK spans to end (after it)."""
    open_spans = []
    for decision in decisions:
        if decision.end_ns is None:
            decision.end_ns = end_ns
            if decision.span is not PENDING_SPAN and decision.span is not ENDED_SPAN:
                open_spans.append(decision.span)
    return open_spans


def _is_cancellation(exc: BaseException) -> bool:
    """An asyncio task cancelled (asyncio is not imported for it: a program that never
    imported asyncio cannot be cancelled by it, and ``import decisiontrace`` stays light)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


__all__ = ["SpanEmitter"]
