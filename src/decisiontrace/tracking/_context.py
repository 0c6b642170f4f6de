"""The ContextVars that scope an execution: which run is current, which node is running.

One typed ContextVar per concern, module level. asyncio tasks and ``asyncio.to_thread``
copy them; ``ThreadPoolExecutor`` and ``run_in_executor`` do not, hence
:func:`bind_context` and :class:`ContextThreadPoolExecutor`.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from decisiontrace.tracking._live import LiveRun

P = ParamSpec("P")
R = TypeVar("R")

#: The run the current code belongs to (set by ``tracker.run`` and ``start_run``).
current_run: contextvars.ContextVar[LiveRun | None] = contextvars.ContextVar(
    "decisiontrace_current_run", default=None
)
#: The node currently executing (set by ``@node`` and ``set_node`` inside a run).
current_node: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "decisiontrace_current_node", default=None
)


@contextmanager
def node_scope(node_id: str) -> Iterator[None]:
    """Make ``node_id`` the current node for the block."""
    token = current_node.set(node_id)
    try:
        yield
    finally:
        current_node.reset(token)


def bind_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Return ``fn`` bound to a copy of the caller's context (current run, node, span).

    Use it to carry the current execution into a thread pool::

        executor.submit(decisiontrace.bind_context(work), item)
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.run(fn, *args, **kwargs)

    return bound


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose tasks run in the submitter's context.

    Each ``submit`` copies the caller's contextvars, so decisions made in the worker
    belong to the submitter's run and nest under its current span.
    """

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)
