"""The original's ``StreamDecisionTracker``, recording through decisiontrace (see ``hive``)."""

from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from typing import Any

from opentelemetry import trace

from decisiontrace._internal.errors import internal_error
from decisiontrace.compat._core import amended, compat_tracker, on_run_ended, restart
from decisiontrace.compat._storage import Sink, StoreSink, assemble, resolve, with_run
from decisiontrace.models import DecisionType, Run, RunStatus
from decisiontrace.spanmodel._jsonsafe import safe_repr
from decisiontrace.stores.base import RunStore
from decisiontrace.tracking._live import LiveDecision, LiveRun

logger = logging.getLogger("decisiontrace")
#: Ended runs per tracker that a later end_run for the same execution can still amend.
_AMENDABLE_RUNS = 64
_CLOSED_REASON = "tracker closed with the run still open"
Storage = Any

__all__ = ["StreamDecisionTracker"]


class _EndedRun:
    """A run that ended, kept for a second end_run: its spans, maybe already amended."""

    __slots__ = ("decision_spans", "handed", "pending", "run_span")

    def __init__(self, live: LiveRun) -> None:
        self.run_span: Any = live.span
        # compat keeps ended SDK spans (keep_ended_spans): no decision of its is packed
        self.decision_spans: list[Any] = [
            d.span for d in live.decisions.values() if isinstance(d, LiveDecision)
        ]
        self.pending: Any = None  # the assembled run, once built
        self.handed: Run | None = None  # the Run given to save_run

    def assembled(self) -> Any:
        if self.pending is None:
            self.pending = assemble(self.run_span, self.decision_spans)
            self.run_span = None
            self.decision_spans = []
        return self.pending


class StreamDecisionTracker:
    """Tracks runs of many concurrent executions of one stream, by ``execution_id``.

    Args:
        stream_id: unique identifier of the stream.
        storage: what the original accepted, looked at only when the first run starts:
            a decisiontrace store, store URL or path (a directory gets the original's
            JSON-files layout, a ``.db`` file or ``sqlite:///`` URL SQLite); any object
            with ``save_run(run)`` (plain or async), which gets every finished run as a
            Run; or an object with a ``base_path`` directory (JSON-files layout there).
            Anything else: one error is logged and runs are not stored.
        outcome_aggregator: optional; its ``record_decision`` and ``record_outcome``
            are called exactly as the original calls them.
        tracer_provider: optional; see the module docstring.
        run_id_prefix: run ids start with it (default ``run_{stream_id}_``; the
            original's single-run tracker names runs ``run_...``).

    Besides the original's methods, the single-run API (``compat/_adapter.py``) uses
    :attr:`storage`, :attr:`owns_provider`, :meth:`run_store`, :meth:`flush` and
    ``record_outcome(..., error_type=...)``.
    """

    def __init__(
        self,
        stream_id: str,
        storage: Storage,
        outcome_aggregator: Any = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        run_id_prefix: str | None = None,
    ) -> None:
        self.stream_id = stream_id
        self._storage = storage
        self._sink: Sink | None = None
        self._external = tracer_provider is not None
        self._external_provider = tracer_provider
        self._tracker = compat_tracker(
            stream_id,
            tracer_provider=tracer_provider,
            outcome_aggregator=outcome_aggregator,
            run_id_prefix=run_id_prefix,
        )
        self._ended: OrderedDict[str, _EndedRun] = OrderedDict()
        self._ended_lock = threading.Lock()  # runs end on the agent's threads, any of them
        if not self._external:
            ref = weakref.ref(self)  # no cycle: a dropped tracker is freed at once

            def run_ended(live: LiveRun) -> None:
                tracker = ref()
                if tracker is not None:
                    tracker._run_ended(live)

            on_run_ended(self._tracker, run_ended)

    @property
    def storage(self) -> Storage:
        """The storage as it was given."""
        return self._storage

    @property
    def owns_provider(self) -> bool:
        """False when a ``tracer_provider`` was given: its owner stores, flushes and
        shuts down; True when this tracker writes its runs through its own pipeline."""
        return not self._external

    def run_store(self) -> RunStore | None:
        """The decisiontrace store this tracker's runs are written to, or None (with a
        ``tracer_provider``, or a storage that is not a store, e.g. a ``save_run``
        object). Looks at the storage now if no run has started yet."""
        if self._external:
            return None
        sink = self._resolve_storage()
        return sink.pipeline.store if isinstance(sink, StoreSink) else None

    def _resolve_storage(self) -> Sink:
        sink = self._sink
        if sink is None:
            sink, problem = resolve(self._storage)
            if problem is not None:
                logger.error(
                    "decisiontrace: storage %s of stream %r cannot store runs (%s); "
                    "its runs are recorded as spans but not stored",
                    safe_repr(self._storage),
                    self.stream_id,
                    problem,
                )
            self._tracker.emitter.tracer = sink.tracer  # spans go where this storage is written
            self._sink = sink
        return sink

    def _run_ended(self, live: LiveRun) -> None:
        """Every run this tracker ends: kept for a second end_run, handed to the sink."""
        sink = self._sink
        if sink is None:
            return
        ended = _EndedRun(live)
        ended_runs = self._ended
        with self._ended_lock:
            ended_runs.pop(live.execution_id, None)
            ended_runs[live.execution_id] = ended
            while len(ended_runs) > _AMENDABLE_RUNS:
                ended_runs.popitem(last=False)
        if sink.takes_records:
            ended.handed = sink.run_ended(ended.assembled())

    def _amend(self, ended: _EndedRun, success: Any, narrative: Any, output_data: Any) -> None:
        """A second end_run: the run it ended is changed and stored again."""
        pending = ended.assembled()
        if pending.run is None or self._sink is None:
            return
        ended.pending = with_run(pending, amended(pending.run, success, narrative, output_data))
        ended.handed = self._sink.run_amended(ended.pending, ended.handed)

    # === RUN LIFECYCLE ===

    def start_run(
        self,
        execution_id: str,
        goal_id: str,
        goal_description: str = "",
        input_data: dict[str, Any] | None = None,
    ) -> str:
        """Start a run for an execution; returns the run id.

        A second start_run for an execution whose run has no decision yet replaces that
        run, as the original does: nothing is stored for it.
        """
        if not self._external:
            self._resolve_storage()
        core = self._tracker
        live = core.registry.lookup(execution_id)
        if live is not None and live.end_ns is None and not live.decisions:
            try:
                run_id = restart(core, live, goal_id, goal_description, input_data)
            except Exception as error:
                internal_error("start_run", error)
                run_id = ""
            if run_id:
                return run_id
        return core.start_run(
            execution_id=execution_id,
            goal_id=goal_id,
            goal_description=goal_description,
            input_data=input_data,
        )

    def end_run(
        self,
        execution_id: str,
        success: bool,
        narrative: str = "",
        output_data: dict[str, Any] | None = None,
    ) -> None:
        """End the run of an execution; it is stored in the background.

        With a ``save_run`` storage the run is handed to it before this returns. A
        second end_run for an execution whose run already ended updates that run's
        status, narrative and output and stores it again, as the original does.
        """
        core = self._tracker
        if core.registry.lookup(execution_id) is None:
            try:
                ended = self._ended.get(execution_id)
            except TypeError:  # an unhashable id: the core tracker warns about it
                ended = None
            if ended is not None:
                try:
                    self._amend(ended, success, narrative, output_data)
                except Exception as error:
                    internal_error("end_run", error)
                return
        core.end_run(
            execution_id=execution_id,
            success=success,
            narrative=narrative,
            output_data=output_data,
        )

    def set_node(self, execution_id: str, node_id: str) -> None:
        """Set the current node of an execution."""
        self._tracker.set_node(node_id, execution_id=execution_id)

    def get_run(self, execution_id: str) -> Run | None:
        """The live run of an execution, or None."""
        return self._tracker.get_run(execution_id)

    # === DECISION RECORDING ===

    def decide(
        self,
        execution_id: str,
        intent: str,
        options: list[dict[str, Any]],
        chosen: str,
        reasoning: str,
        node_id: str | None = None,
        decision_type: DecisionType = DecisionType.CUSTOM,
        constraints: list[str] | None = None,
        context: dict[str, Any] | None = None,
    ) -> str:
        """Record a decision; returns its id, or "" if the execution has no run."""
        return self._tracker.decide(
            execution_id=execution_id,
            intent=intent,
            options=options,
            chosen=chosen,
            reasoning=reasoning,
            node_id=node_id,
            decision_type=decision_type,
            constraints=constraints,
            context=context,
        )

    def record_outcome(
        self,
        execution_id: str,
        decision_id: str,
        success: bool,
        result: Any = None,
        error: str | None = None,
        summary: str = "",
        state_changes: dict[str, Any] | None = None,
        tokens_used: int = 0,
        latency_ms: int = 0,
        *,
        error_type: str | None = None,
    ) -> None:
        """Record the outcome of a decision; ``error_type`` (an addition, e.g. an
        exception's class name) becomes the outcome's ``error.type``."""
        self._tracker.record_outcome(
            execution_id=execution_id,
            decision_id=decision_id,
            success=success,
            result=result,
            error=error,
            summary=summary,
            state_changes=state_changes,
            tokens_used=tokens_used,
            latency_ms=latency_ms,
            error_type=error_type,
        )

    # === PROBLEM RECORDING ===

    def report_problem(
        self,
        execution_id: str,
        severity: str,
        description: str,
        decision_id: str | None = None,
        root_cause: str | None = None,
        suggested_fix: str | None = None,
    ) -> str:
        """Report a problem; returns its id, or "" if the execution has no run."""
        return self._tracker.report_problem(
            execution_id=execution_id,
            severity=severity,
            description=description,
            decision_id=decision_id,
            root_cause=root_cause,
            suggested_fix=suggested_fix,
        )

    # === CONVENIENCE METHODS ===

    def quick_decision(
        self,
        execution_id: str,
        intent: str,
        action: str,
        reasoning: str,
        node_id: str | None = None,
    ) -> str:
        """Record a decision with the single option ``"action"``."""
        return self._tracker.quick_decision(
            execution_id=execution_id,
            intent=intent,
            action=action,
            reasoning=reasoning,
            node_id=node_id,
        )

    # === STATS AND MONITORING ===

    def get_active_executions(self) -> list[str]:
        """Execution ids with a run in progress."""
        return self._tracker.get_active_executions()

    def get_stats(self) -> dict[str, Any]:
        """``stream_id``, ``active_executions`` and ``execution_ids``."""
        return self._tracker.get_stats()

    # === ADDITIONS ===

    def close(self) -> None:
        """End this tracker's runs still open as cancelled, and wait until they are stored.

        The shared providers and writers stay up for other trackers. No-op with a
        ``tracer_provider`` (its owner shuts it down).
        """
        if self._external:
            return
        core = self._tracker
        for live in core.registry.active():
            live.end(False, "", None, RunStatus.CANCELLED, end_reason=_CLOSED_REASON)
        self.flush()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every ended run is stored; True when all are, in time.

        Runs handed to an async ``save_run`` on the agent's own event loop are that
        loop's to run: this does not wait for them.
        """
        if self._external_provider is not None:
            force_flush = getattr(self._external_provider, "force_flush", None)
            return True if force_flush is None else bool(force_flush(int(timeout_s * 1e3)))
        return True if self._sink is None else self._sink.flush(timeout_s)
