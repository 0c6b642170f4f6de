"""The original's ``StreamRuntimeAdapter`` and single-run ``DecisionTracker`` (see ``hive``)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry import trace

from decisiontrace.compat._stream import StreamDecisionTracker
from decisiontrace.models import DecisionType, Run
from decisiontrace.spanmodel import _ids
from decisiontrace.stores import JSONFilesStore

T = TypeVar("T")
logger = logging.getLogger("decisiontrace")
#: How long the single-run tracker's end_run waits for its run to be written.
_END_RUN_FLUSH_MS = 5_000

__all__ = ["DecisionTracker", "StreamRuntimeAdapter"]


class StreamRuntimeAdapter:
    """The single-run API over one execution of a :class:`StreamDecisionTracker`."""

    def __init__(self, stream_runtime: StreamDecisionTracker, execution_id: str) -> None:
        self._runtime = stream_runtime
        self._execution_id = execution_id
        self._current_node = "unknown"

    @property
    def storage(self) -> Any:
        """The tracker's storage, as it was given."""
        return self._runtime.storage

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
        path = os.path.abspath(os.fspath(storage_path))
        # The path, not a store object: trackers of one folder share its writer.
        stream = StreamDecisionTracker(
            "single", path, tracer_provider=tracer_provider, run_id_prefix=_ids.run_id_prefix(None)
        )
        super().__init__(stream, "")
        store = stream.run_store()
        self._store = store if isinstance(store, JSONFilesStore) else JSONFilesStore(path)

    @property
    def storage(self) -> JSONFilesStore:
        """The JSON-files store at ``storage_path``."""
        return self._store

    def end_run(
        self,
        success: bool,
        narrative: str = "",
        output_data: dict[str, Any] | None = None,
    ) -> None:
        """End the run and write it to ``storage_path/runs/{run_id}.json`` before returning."""
        super().end_run(success, narrative, output_data)
        runtime = self._runtime
        if runtime.owns_provider and not runtime.flush(_END_RUN_FLUSH_MS / 1000):
            logger.error(
                "decisiontrace: run not yet written to %s; it stays queued and is retried",
                self.storage.url,
            )

    def close(self) -> None:
        """End the run if still open (as cancelled) and wait until it is written."""
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
            self._runtime.record_outcome(
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
