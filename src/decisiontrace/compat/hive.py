"""The original framework's tracker API, recording through decisiontrace.

An agent written against the original switches by changing its imports only::

    from decisiontrace.compat.hive import StreamDecisionTracker, StreamRuntimeAdapter

Signatures, positional order, return values, id formats and the
``outcome_aggregator`` calls are the original's. What changes underneath: every run
and decision is an OpenTelemetry span, the record is rebuilt from those spans by a
:class:`~decisiontrace.processor.RunRecordProcessor` and written to ``storage``, bad
input warns instead of raising, and ``end_run`` works without an event loop.

Unless a ``tracer_provider`` is given, each tracker records through a private
``TracerProvider`` whose only processor stores runs in ``storage``. With a
``tracer_provider``, the spans go there and the caller decides what stores them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from decisiontrace.models import DecisionType, Run
from decisiontrace.processor import RunRecordProcessor
from decisiontrace.stores import JSONFilesStore, RunStore, open_store
from decisiontrace.tracker import DecisionTracker as _CoreTracker

T = TypeVar("T")
logger = logging.getLogger("decisiontrace")
#: How long the single-run tracker's end_run waits for its run to be written.
_END_RUN_FLUSH_MS = 5_000
Storage = RunStore | str | os.PathLike[str]

__all__ = ["DecisionTracker", "StreamDecisionTracker", "StreamRuntimeAdapter"]


def _private_provider(store: RunStore) -> tuple[TracerProvider, RunRecordProcessor]:
    processor = RunRecordProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return provider, processor


class StreamDecisionTracker:
    """Tracks runs of many concurrent executions of one stream, by ``execution_id``.

    Args:
        stream_id: unique identifier of the stream.
        storage: a store, or a path: a directory gets the original's JSON-files layout
            (``runs/{run_id}.json``), a ``.db`` file or ``sqlite:///`` URL SQLite.
        outcome_aggregator: optional; its ``record_decision`` and ``record_outcome``
            are called exactly as the original calls them.
        tracer_provider: optional; see the module docstring.
    """

    def __init__(
        self,
        stream_id: str,
        storage: Storage,
        outcome_aggregator: Any = None,
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self.stream_id = stream_id
        self._storage = storage if isinstance(storage, RunStore) else open_store(storage)
        self._processor: RunRecordProcessor | None = None
        if tracer_provider is None:
            tracer_provider, self._processor = _private_provider(self._storage)
        self._provider = tracer_provider
        self._tracker = _CoreTracker(
            stream_id, tracer_provider=tracer_provider, outcome_aggregator=outcome_aggregator
        )

    # === RUN LIFECYCLE ===

    def start_run(
        self,
        execution_id: str,
        goal_id: str,
        goal_description: str = "",
        input_data: dict[str, Any] | None = None,
    ) -> str:
        """Start a run for an execution; returns the run id."""
        return self._tracker.start_run(
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
        """End the run of an execution; it is stored in the background."""
        self._tracker.end_run(
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
    ) -> None:
        """Record the outcome of a decision."""
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
        """Flush and stop the private provider (its writer thread); no-op otherwise."""
        if self._processor is not None:
            self._provider.shutdown()  # type: ignore[attr-defined]

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every ended run is in storage (private provider only)."""
        if self._processor is None:
            return bool(
                getattr(self._provider, "force_flush", lambda _: True)(int(timeout_s * 1e3))
            )
        return self._processor.force_flush(int(timeout_s * 1000))


class StreamRuntimeAdapter:
    """The single-run API over one execution of a :class:`StreamDecisionTracker`."""

    def __init__(self, stream_runtime: StreamDecisionTracker, execution_id: str) -> None:
        self._runtime = stream_runtime
        self._execution_id = execution_id
        self._current_node = "unknown"

    @property
    def storage(self) -> RunStore:
        """The store runs are written to."""
        return self._runtime._storage

    @property
    def execution_id(self) -> str:
        """The execution this adapter records for."""
        return self._execution_id

    @property
    def current_run(self) -> Run | None:
        """The live run of this execution, or None."""
        return self._runtime.get_run(self._execution_id)

    def start_run(
        self,
        goal_id: str,
        goal_description: str = "",
        input_data: dict[str, Any] | None = None,
    ) -> str:
        """Start this execution's run; returns the run id."""
        return self._runtime.start_run(
            execution_id=self._execution_id,
            goal_id=goal_id,
            goal_description=goal_description,
            input_data=input_data,
        )

    def end_run(
        self,
        success: bool,
        narrative: str = "",
        output_data: dict[str, Any] | None = None,
    ) -> None:
        """End this execution's run."""
        self._runtime.end_run(
            execution_id=self._execution_id,
            success=success,
            narrative=narrative,
            output_data=output_data,
        )

    def set_node(self, node_id: str) -> None:
        """Set the node later decisions are attributed to."""
        self._current_node = node_id
        self._runtime.set_node(self._execution_id, node_id)

    def decide(
        self,
        intent: str,
        options: list[dict[str, Any]],
        chosen: str,
        reasoning: str,
        node_id: str | None = None,
        decision_type: DecisionType = DecisionType.CUSTOM,
        constraints: list[str] | None = None,
        context: dict[str, Any] | None = None,
    ) -> str:
        """Record a decision; returns its id."""
        return self._runtime.decide(
            execution_id=self._execution_id,
            intent=intent,
            options=options,
            chosen=chosen,
            reasoning=reasoning,
            node_id=node_id or self._current_node,
            decision_type=decision_type,
            constraints=constraints,
            context=context,
        )

    def record_outcome(
        self,
        decision_id: str,
        success: bool,
        result: Any = None,
        error: str | None = None,
        summary: str = "",
        state_changes: dict[str, Any] | None = None,
        tokens_used: int = 0,
        latency_ms: int = 0,
    ) -> None:
        """Record the outcome of a decision."""
        self._runtime.record_outcome(
            execution_id=self._execution_id,
            decision_id=decision_id,
            success=success,
            result=result,
            error=error,
            summary=summary,
            state_changes=state_changes,
            tokens_used=tokens_used,
            latency_ms=latency_ms,
        )

    def report_problem(
        self,
        severity: str,
        description: str,
        decision_id: str | None = None,
        root_cause: str | None = None,
        suggested_fix: str | None = None,
    ) -> str:
        """Report a problem; returns its id."""
        return self._runtime.report_problem(
            execution_id=self._execution_id,
            severity=severity,
            description=description,
            decision_id=decision_id,
            root_cause=root_cause,
            suggested_fix=suggested_fix,
        )

    def quick_decision(
        self,
        intent: str,
        action: str,
        reasoning: str,
        node_id: str | None = None,
    ) -> str:
        """Record a decision with the single option ``"action"``."""
        return self._runtime.quick_decision(
            execution_id=self._execution_id,
            intent=intent,
            action=action,
            reasoning=reasoning,
            node_id=node_id or self._current_node,
        )


class DecisionTracker(StreamRuntimeAdapter):
    """The original single-run tracker: one run at a time, saved as JSON files.

    It is the adapter's view of the one execution (``""``) of a private stream, whose
    runs are named ``run_{YYYYmmdd_HHMMSS}_{8 hex}``; ``end_run`` returns once
    ``storage_path/runs/{run_id}.json`` is written.

    Args:
        storage_path: directory for the original's JSON-files layout (created if missing).
        tracer_provider: optional; see the module docstring.
    """

    def __init__(
        self,
        storage_path: str | os.PathLike[str],
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        Path(storage_path).mkdir(parents=True, exist_ok=True)
        stream = StreamDecisionTracker(
            "single", JSONFilesStore(storage_path), tracer_provider=tracer_provider
        )
        stream._tracker._run_id_prefix = "run_"
        super().__init__(stream, "")

    def end_run(
        self,
        success: bool,
        narrative: str = "",
        output_data: dict[str, Any] | None = None,
    ) -> None:
        """End the run and write it to ``storage_path/runs/{run_id}.json`` before returning."""
        super().end_run(success, narrative, output_data)
        processor = self._runtime._processor
        if processor is not None and not processor.force_flush(_END_RUN_FLUSH_MS):
            logger.error(
                "decisiontrace: run not yet written to %s; it stays queued and is retried",
                self.storage.url,
            )

    def close(self) -> None:
        """Flush and stop the private provider (its writer thread); no-op otherwise."""
        self._runtime.close()

    def decide_and_execute(
        self,
        intent: str,
        options: list[dict[str, Any]],
        chosen: str,
        reasoning: str,
        executor: Callable[[], T],
        **decide_kwargs: Any,
    ) -> tuple[str, T]:
        """Record a decision, run ``executor()``, record its outcome; ``(decision_id, result)``.

        An exception from ``executor`` is recorded as a failed outcome (its message as
        the error) and re-raised unchanged.
        """
        decision_id = self.decide(intent, options, chosen, reasoning, **decide_kwargs)
        started = time.perf_counter()
        try:
            result = executor()
        except Exception as error:
            self._runtime._tracker.record_outcome(
                execution_id=self.execution_id,
                decision_id=decision_id,
                success=False,
                error=str(error),
                latency_ms=int((time.perf_counter() - started) * 1000),
                error_type=type(error).__qualname__,
            )
            raise
        self.record_outcome(
            decision_id,
            success=True,
            result=result,
            latency_ms=int((time.perf_counter() - started) * 1000),
        )
        return decision_id, result
