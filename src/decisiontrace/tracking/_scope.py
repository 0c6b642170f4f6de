"""``with tracker.run(...)``: a run scoped to a block, current for everything inside it."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

from decisiontrace._internal.errors import internal_error
from decisiontrace.tracking import _context as ctx

if TYPE_CHECKING:
    from contextvars import Token

    from decisiontrace.models import Run
    from decisiontrace.tracking._live import LiveRun
    from decisiontrace.tracking._registry import RunRegistry


class RunScope:
    """A run for the length of a ``with`` / ``async with`` block.

    Inside the block the run is the current execution (recording calls need no
    ``execution_id``) and its root span is the current OpenTelemetry span. On exit the
    run ends: completed, or failed when the block raises (the exception is recorded on
    the span and as a critical problem), or cancelled on ``asyncio.CancelledError`` and
    ``KeyboardInterrupt``. Before the block ends, code may set ``output_data``,
    ``narrative`` and ``success`` on the scope to shape how the run ends.
    """

    def __init__(
        self,
        registry: RunRegistry,
        goal_id: str,
        goal_description: str,
        input_data: dict[str, Any] | None,
        execution_id: str | None,
    ) -> None:
        self._registry = registry
        self._args = (execution_id, goal_id, goal_description, input_data)
        self._live: LiveRun | None = None
        self._run_token: Token[LiveRun | None] | None = None
        self._otel_token: object = None
        self.output_data: dict[str, Any] | None = None
        self.narrative = ""
        self.success: bool | None = None

    @property
    def run_id(self) -> str:
        """The run id ("" before the block starts or if the run could not start)."""
        return self._live.run_id if self._live is not None else ""

    @property
    def execution_id(self) -> str:
        """The execution id of this run."""
        return self._live.execution_id if self._live is not None else ""

    def get_run(self) -> Run | None:
        """The run so far; after the block, the run as it ended."""
        if self._live is None:
            return None
        try:
            return self._live.view()
        except Exception as error:
            internal_error("RunScope.get_run", error)
            return None

    def __enter__(self) -> RunScope:
        try:
            live = self._registry.start(*self._args)
        except Exception as error:
            internal_error("RunScope starting a run", error)
            return self
        self._live = live
        self._run_token = ctx.current_run.set(live)
        self._otel_token = otel_context.attach(live.context)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        live = self._live
        if live is None:
            return
        try:
            self._end(live, exc)
        except Exception as error:
            internal_error("RunScope ending a run", error)
        finally:
            if self._otel_token is not None:
                otel_context.detach(self._otel_token)  # type: ignore[arg-type]
                self._otel_token = None
            if self._run_token is not None:
                ctx.current_run.reset(self._run_token)
                self._run_token = None

    async def __aenter__(self) -> RunScope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)

    def _end(self, live: LiveRun, exc: BaseException | None) -> None:
        live.end_block(
            exc,
            success=True if self.success is None else self.success,
            narrative=self.narrative,
            output_data=self.output_data,
        )
