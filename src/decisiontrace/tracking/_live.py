"""A run in flight, and the interface that decorators, ``RunScope``, compat and
integrations record through.

A live run holds its root span, its decisions (each with its span while open and the
attributes it was given) and its problems. Its record is decoded from those very
attributes by the decoder the processor uses, which is why the live view equals the
stored run.

**The internal interface** (``docs/architecture.md``): code outside the tracker never
calls a private method of another class. It gets a :class:`LiveRun` from the tracker's
:class:`~decisiontrace.tracking._registry.RunRegistry` (``start``, ``lookup``,
``remote_run``) and records through the run's methods below, which hand the run to the
:class:`SpanWriter` that made it (the tracker's
:class:`~decisiontrace.tracking._emitter.SpanEmitter`). A run nobody records (no SDK,
or sampled out: ``recording`` is False) takes the same calls; the emitter keeps the
live essentials of it, in one place.

This module imports no other part of the tracker: the emitter is known here only by
the :class:`SpanWriter` protocol.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN_CONTEXT, NonRecordingSpan, Span

from decisiontrace.spanmodel import _codec, _decode, _ids, _packed
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.tracking import _remote
from decisiontrace.tracking._live_decision import ENDED_SPAN as ENDED_SPAN
from decisiontrace.tracking._live_decision import LiveDecision as LiveDecision
from decisiontrace.tracking._live_decision import pack as pack
from decisiontrace.tracking._live_decision import packed_attributes as packed_attributes
from decisiontrace.tracking._live_decision import unpack as unpack

if TYPE_CHECKING:
    from decisiontrace.models import Run
    from decisiontrace.spanmodel._kinds import RunStatus

ROOT_CONTEXT = otel_context.Context()
#: The span of a decision whose span is being started (outside the run's lock).
PENDING_SPAN: Span = NonRecordingSpan(INVALID_SPAN_CONTEXT)
#: The resource attribute (the SDK's ``resources.SERVICE_NAME``; importing the SDK
#: for it would cost ``import decisiontrace`` ~8 ms).
_SERVICE_NAME = "service.name"


class SpanWriter(Protocol):
    """What a live run needs from the component that made it: spans for its calls.

    Implemented by :class:`~decisiontrace.tracking._emitter.SpanEmitter`; each method
    takes the run first. None raises on bad input (it warns and records what it can).
    """

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
    ) -> LiveDecision | None: ...

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
    ) -> None: ...

    def report_problem(
        self,
        live: LiveRun,
        severity: Any,
        description: Any,
        decision_id: Any,
        root_cause: Any,
        suggested_fix: Any,
    ) -> str: ...

    def pause_decision(self, live: LiveRun, decision: LiveDecision) -> None: ...

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
    ) -> None: ...

    def end_block(
        self,
        live: LiveRun,
        exc: BaseException | None,
        *,
        success: bool = True,
        narrative: str = "",
        output_data: dict[str, Any] | None = None,
        paused: bool = False,
    ) -> None: ...


class LiveRun:
    """A run in flight: its root span, decisions and problems, and the current node.

    A run started in another process and recorded into here (a *fragment*, see
    ``decisiontrace.tracking._remote``) has a ``fragment_id`` and ``service``; its
    ``span`` is the remote parent span it was found under, and it never ends here.

    Read-only for callers: ``run_id``, ``execution_id``, ``goal_id``, ``span``,
    ``context`` (what to attach to make the run current), ``baggage``, ``recording``,
    ``end_ns`` (None while open), ``end_attributes``, ``decisions`` (by id, in the
    order they were made, each a :class:`LiveDecision`) and ``ended`` (None, or in a
    long run the decisions that ended with their outcome beyond its first
    ``PACK_AFTER``, packed: see :meth:`keep_ended`); :meth:`decision` finds either,
    :meth:`ended_snapshot` reads the packed ones. Recording goes through the methods.
    """

    __slots__ = (
        "attributes",
        "baggage",
        "context",
        "current_node",
        "decision_count",
        "decisions",
        "end_attributes",
        "end_ns",
        "ended",
        "execution_id",
        "fragment_id",
        "goal_id",
        "last_used_ns",
        "lock",
        "nodes",
        "problem_count",
        "problems",
        "recording",
        "run_id",
        "service",
        "span",
        "start_ns",
        "trace_id",
        "writer",
    )

    def __init__(
        self,
        writer: SpanWriter,
        execution_id: str,
        run_id: str,
        goal_id: str,
        span: Span,
        attributes: _codec.Attributes,
        start_ns: int,
        *,
        remote_context: otel_context.Context | None = None,
        fragment_id: str | None = None,
        service: str | None = None,
    ):
        self.writer = writer
        self.execution_id = execution_id
        self.run_id = run_id
        self.goal_id = goal_id
        self.span = span
        self.trace_id = span.get_span_context().trace_id
        self.fragment_id = fragment_id
        self.service = service
        self.last_used_ns = start_ns
        if remote_context is None:
            # False without an SDK, or when a sampler dropped the run: then nothing will
            # store or export it, and decisions skip the encoding work.
            self.recording = span.is_recording()
            # The run's baggage entry travels with its trace context to other processes.
            self.baggage = _remote.baggage_value(run_id, execution_id, goal_id)
            self.context = _remote.with_value(
                trace.set_span_in_context(span, ROOT_CONTEXT), self.baggage
            )
        else:  # a fragment: decisions go under the remote parent, recorded if sampled
            self.recording = True
            self.context = remote_context
            self.baggage = _remote.current_value(remote_context) or ""
        self.attributes = attributes
        self.start_ns = start_ns
        self.end_ns: int | None = None
        self.end_attributes: _codec.Attributes = {}
        self.decisions: dict[str, LiveDecision] = {}
        self.ended: _packed.PackedLog | None = None
        self.decision_count = 0
        self.problems: list[tuple[_codec.Attributes, int]] = []
        self.problem_count = 0
        self.current_node = "unknown"
        self.nodes: list[str] = []
        self.lock = threading.Lock()

    # --- ids (call under ``lock``) ------------------------------------------------------

    def next_decision_id(self) -> str:
        """The id of the next decision (call under ``lock``): ``dec_N``, or in a
        fragment ``dec_N@{fragment id}``, unique within the run across processes."""
        number = self.decision_count
        self.decision_count = number + 1
        return _ids.decision_id(number, self.fragment_id)

    def next_problem_id(self) -> str:
        """The id of the next problem (call under ``lock``), as :meth:`next_decision_id`."""
        number = self.problem_count
        self.problem_count = number + 1
        return _ids.problem_id(number, self.fragment_id)

    # --- the interface -----------------------------------------------------------------

    def open_decision(
        self,
        intent: Any,
        options: Any,
        chosen: Any,
        reasoning: Any,
        node_id: Any = None,
        decision_type: Any = "custom",
        constraints: Any = None,
        context: Any = None,
    ) -> LiveDecision | None:
        """Record a decision and open its span; None if the run ended (warned).

        ``node_id`` None: the current ``@node``, else the run's current node.
        """
        return self.writer.open_decision(
            self, intent, options, chosen, reasoning, node_id, decision_type, constraints,
            context,
        )  # fmt: skip

    def decision(self, decision_id: Any) -> LiveDecision | None:
        """The decision with this id, or None (whatever ``decision_id`` is); a packed
        one as a new, ended LiveDecision."""
        try:
            decision = self.decisions.get(decision_id)
        except Exception:  # expected: the agent's id, unhashable or a __hash__ that raises
            return None
        if decision is None and self.ended is not None and type(decision_id) is str:
            packed = self._find_ended(decision_id)
            return None if packed is None else unpack(packed)
        return decision

    def _find_ended(self, decision_id: str) -> _packed.Packed | None:
        """The packed decision with this id (a scan: only a second outcome asks)."""
        number, _, fragment = decision_id.partition(_ids.FRAGMENT_SEPARATOR)
        number_ = _ids.decision_number(number)
        if number_ is None or number_ >= self.decision_count:
            return None  # no id this run made: no scan
        if (fragment or None) != self.fragment_id:
            return None
        for packed in self.ended_snapshot():
            if packed_attributes(packed).get(sc.DECISION_ID) == decision_id:
                return packed
        return None

    def ended_snapshot(self) -> Iterator[_packed.Packed]:
        """The packed decisions as they are now (see :meth:`keep_ended`), read lazily."""
        ended = self.ended
        if ended is None:
            return iter(())
        with self.lock:
            snapshot = ended.snapshot()
        return _packed.unpacked(snapshot)

    def record_outcome(
        self,
        decision: LiveDecision,
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
        """Record a decision's outcome (and a late choice) and end its span.

        Keywords as ``DecisionTracker.record_outcome``'s, plus ``quiet``: the result was
        captured, not handed over (decorators), so converting it is not warned about.
        A choice declared with :meth:`choose` applies unless one is given here.
        """
        self.writer.record_outcome(
            self, decision, success, result, error, summary, state_changes, tokens_used,
            latency_ms, error_type, input_tokens, output_tokens, chosen, reasoning, quiet,
        )  # fmt: skip

    def choose(self, span: Span, chosen: str, reasoning: str | None) -> bool:
        """Declare the choice of the open decision whose span is ``span``; False if none."""
        with self.lock:
            # The decision made now is the open one whose span is current; scanning
            # from the newest, that is almost always the first one looked at.
            for decision in reversed(self.decisions.values()):
                if decision.span is span and decision.end_ns is None:
                    decision.pending_choice = (chosen, reasoning)
                    return True
        return False

    def report_problem(
        self,
        severity: Any,
        description: Any,
        decision_id: Any = None,
        root_cause: Any = None,
        suggested_fix: Any = None,
    ) -> str:
        """Report a problem (an event on the run span); its id, or "" if the run ended."""
        return self.writer.report_problem(
            self, severity, description, decision_id, root_cause, suggested_fix
        )

    def pause_decision(self, decision: LiveDecision) -> None:
        """End a decision whose function a control-flow exception paused: no outcome,
        not a failure, ``paused`` set (the node runs again when the graph resumes)."""
        self.writer.pause_decision(self, decision)

    def note_node(self, node_id: str) -> None:
        """Count ``node_id`` as executed in this run (first-seen order)."""
        if node_id in self.nodes:
            return
        with self.lock:
            if node_id not in self.nodes:
                self.nodes.append(node_id)

    def end(
        self,
        success: Any,
        narrative: Any = "",
        output_data: Any = None,
        status: RunStatus | str | None = None,
        *,
        end_reason: str | None = None,
    ) -> None:
        """End the run: close decisions still open, set status and narrative, end its span.

        ``status`` (e.g. ``stuck``, ``cancelled``) overrides ``success``; ``end_reason``
        says why a run ended without ``end_run``. A run ends once; later calls do nothing.
        """
        self.writer.end_run(self, success, narrative, output_data, status, end_reason=end_reason)

    def end_block(
        self,
        exc: BaseException | None,
        *,
        success: bool = True,
        narrative: str = "",
        output_data: dict[str, Any] | None = None,
        paused: bool = False,
    ) -> None:
        """End a run whose block (``tracker.run``, ``@agent``, a graph) exited, maybe by
        ``exc``: failed with the exception recorded, cancelled on cancellation, paused
        (resumable) when ``paused`` or when ``exc`` is a pause (LangGraph's interrupts)."""
        self.writer.end_block(
            self, exc, success=success, narrative=narrative, output_data=output_data,
            paused=paused,
        )  # fmt: skip

    def reopen(self, run_id: str, goal_id: str, attributes: _codec.Attributes) -> bool:
        """Make this run, still without decisions, a new run (the original framework's
        second ``start_run`` for one execution); False if it ended or has decisions."""
        with self.lock:
            if self.end_ns is not None or self.decision_count:
                return False
            self.run_id = run_id
            self.goal_id = goal_id
            self.attributes = attributes
            self.current_node = "unknown"  # the original resets the node on start_run
        self.span.set_attributes(attributes)
        return True

    def keep_ended(self, decision: LiveDecision) -> None:
        """Keep a decision that ended with its outcome: its SDK span is the processors'
        now, so the live view keeps the span's id only (the span's events, links and
        attribute copy were ~2.4 KB per decision, and objects the garbage collector
        rescanned for as long as the run was open); in a long run, the decision
        packed (:func:`pack`: its object and dict were ~0.6 KB more, scanned too) and
        moved to ``ended``, whose chunks hold no object per decision."""
        if self.decision_count > _packed.PACK_AFTER:
            packed = pack(decision)
            with self.lock:
                self.keep_packed(decision.decision_id, packed)
        else:
            decision.span = ENDED_SPAN
            decision.options = None  # only a late choice reads them, and it came or not

    def keep_packed(self, decision_id: str, packed: _packed.Packed) -> None:
        """Move an ended decision from ``decisions`` to ``ended``, packed (call under
        ``lock``; with the lock, a snapshot sees it in one place or the other)."""
        ended = self.ended
        if ended is None:
            ended = self.ended = _packed.PackedLog()
        ended.append(packed)
        self.decisions.pop(decision_id, None)

    # --- the live view -----------------------------------------------------------------

    def record(self) -> _codec.Record:
        """The run as a stored-form dict, decoded from the attributes its spans carry."""
        with self.lock:  # a snapshot under the lock; decoding outside it
            decisions = list(self.decisions.values())
            ended = None if self.ended is None else self.ended.snapshot()
            problems = list(self.problems)
            nodes = list(self.nodes)
            end_ns = self.end_ns
            end_attributes = self.end_attributes
        records = [d.record() for d in decisions if d.span is not PENDING_SPAN]
        if ended is not None:  # decoding sorts the decisions by when they were made
            records.extend(unpack(packed).record() for packed in _packed.unpacked(ended))
        return _decode.run_record(
            {**self.attributes, sc.RUN_NODES: nodes, **end_attributes},
            self.start_ns,
            end_ns,
            records,
            [_decode.problem_record(a, t) for a, t in problems],
            trace_id=self.trace_id,
            span_id=self.span.get_span_context().span_id,
            service_name=_service_name(self.span),
        )

    def view(self) -> Run:
        """The run as a :class:`Run` model (pydantic and the models load on the first)."""
        from decisiontrace.models import Run

        return Run.model_validate(self.record())


def _service_name(span: Span) -> str | None:
    """``service.name`` of an SDK span's resource (None for a non-recording span)."""
    resource = getattr(span, "resource", None)
    name = getattr(resource, "attributes", {}).get(_SERVICE_NAME)
    return name if isinstance(name, str) else None


__all__ = [
    "ENDED_SPAN",
    "PENDING_SPAN",
    "ROOT_CONTEXT",
    "LiveDecision",
    "LiveRun",
    "SpanWriter",
    "pack",
    "packed_attributes",
    "unpack",
]
