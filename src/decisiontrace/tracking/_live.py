"""The live view of runs in flight: what the tracker keeps between span calls.

A live run holds its root span, its decisions (each with its span and the attributes it
was given) and its problems. Its record is decoded from those very attributes by the
codec the processor uses, which is why the live view equals the stored run.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span

from decisiontrace.models import Run
from decisiontrace.spanmodel import _codec, _decode, _ids
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.tracking import _remote

if TYPE_CHECKING:
    from decisiontrace.tracking.tracker import DecisionTracker

ROOT_CONTEXT = otel_context.Context()

#: The resource attribute (the SDK's ``resources.SERVICE_NAME``; importing the SDK
#: for it would cost ``import decisiontrace`` ~8 ms).
_SERVICE_NAME = "service.name"


class LiveDecision:
    """A decision in flight: its span and the attributes it was given."""

    __slots__ = (
        "attributes",
        "decision_id",
        "end_ns",
        "options",
        "outcome",
        "pending_choice",
        "span",
        "start_ns",
    )

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
        # (chosen, reasoning) declared with decisiontrace.choose() before the outcome
        self.pending_choice: tuple[str, str | None] | None = None

    def record(self) -> _codec.Record:
        """The decision as a stored-form dict."""
        attributes = self.attributes
        if self.outcome is not None:
            attributes = {**attributes, **self.outcome}
        return _decode.decision_record(
            attributes, self.start_ns, self.end_ns, span_id=self.span.get_span_context().span_id
        )


class LiveRun:
    """A run in flight: its root span, decisions and problems, and the current node.

    A run started in another process and recorded into here (a *fragment*, see
    ``decisiontrace.tracking._remote``) has a ``fragment_id`` and ``service``; its ``span`` is the
    remote parent span it was found under, and it never ends here.
    """

    __slots__ = (
        "attributes",
        "baggage",
        "context",
        "current_node",
        "decisions",
        "end_attributes",
        "end_ns",
        "execution_id",
        "fragment_id",
        "goal_id",
        "last_used_ns",
        "lock",
        "nodes",
        "problems",
        "recording",
        "run_id",
        "service",
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
        *,
        remote_context: otel_context.Context | None = None,
        fragment_id: str | None = None,
        service: str | None = None,
    ):
        self.tracker = tracker
        self.execution_id = execution_id
        self.run_id = run_id
        self.goal_id = goal_id
        self.span = span
        self.trace_id = span.get_span_context().trace_id
        # False without an SDK, or when a sampler dropped the run: then nothing will
        # store or export it, and decisions skip the encoding work (see _decide_unrecorded).
        self.fragment_id = fragment_id
        self.service = service
        self.last_used_ns = start_ns
        if remote_context is None:
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
        self.problems: list[tuple[_codec.Attributes, int]] = []
        self.current_node = "unknown"
        self.nodes: list[str] = []
        self.lock = threading.Lock()

    def next_decision_id(self) -> str:
        """The id of the next decision (call under ``lock``): ``dec_N``, or in a
        fragment ``dec_N@{fragment id}``, unique within the run across processes."""
        return _ids.decision_id(len(self.decisions), self.fragment_id)

    def next_problem_id(self) -> str:
        """The id of the next problem (call under ``lock``), as :meth:`next_decision_id`."""
        return _ids.problem_id(len(self.problems), self.fragment_id)

    def pause_decision(self, decision_id: str) -> None:
        """End a decision whose function a control-flow exception paused: no outcome,
        not a failure, ``paused`` set (the node runs again when the graph resumes)."""
        decision = self.decisions.get(decision_id)
        if decision is None:
            return
        end_ns = time.time_ns()
        with self.lock:
            if decision.outcome is not None or decision.end_ns is not None:
                return
            decision.end_ns = end_ns
            decision.attributes[sc.DECISION_PAUSED] = True
        decision.span.set_attribute(sc.DECISION_PAUSED, True)
        decision.span.end(end_time=end_ns)

    def note_node(self, node_id: str) -> None:
        """Count ``node_id`` as executed in this run (first-seen order)."""
        with self.lock:
            if node_id not in self.nodes:
                self.nodes.append(node_id)

    def record(self) -> _codec.Record:
        """The run as a stored-form dict, decoded from the attributes its spans carry."""
        with self.lock:
            decisions = [d.record() for d in self.decisions.values()]
            problems = [_decode.problem_record(a, t) for a, t in self.problems]
            nodes = list(self.nodes)
        return _decode.run_record(
            {**self.attributes, sc.RUN_NODES: nodes, **self.end_attributes},
            self.start_ns,
            self.end_ns,
            decisions,
            problems,
            trace_id=self.trace_id,
            span_id=self.span.get_span_context().span_id,
            service_name=_service_name(self.span),
        )

    def view(self) -> Run:
        """The run as a :class:`Run` model."""
        return Run.model_validate(self.record())


def _service_name(span: Span) -> str | None:
    """``service.name`` of an SDK span's resource (None for a non-recording span)."""
    resource = getattr(span, "resource", None)
    name = getattr(resource, "attributes", {}).get(_SERVICE_NAME)
    return name if isinstance(name, str) else None
