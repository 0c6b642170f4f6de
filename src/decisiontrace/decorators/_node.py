"""``@node``: the current node while a node function runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from decisiontrace.decorators._generators import Session, drive
from decisiontrace.decorators._kinds import Decorator, F
from decisiontrace.decorators._run import run_in_context
from decisiontrace.tracking import _context as ctx

if TYPE_CHECKING:
    from decisiontrace.tracking._live import LiveRun

# Bound once: these run on every call.
_get_run = ctx.current_run.get
_set_run = ctx.current_run.set
_reset_run = ctx.current_run.reset
_set_node = ctx.current_node.set
_reset_node = ctx.current_node.reset


class _NodeSession(Session):
    __slots__ = ("live", "node_id")

    def __init__(self, live: LiveRun, node_id: str) -> None:
        self.live = live
        self.node_id = node_id

    def enter(self) -> Any:
        return _set_run(self.live), _set_node(self.node_id)

    def leave(self, tokens: Any) -> None:
        _reset_node(tokens[1])
        _reset_run(tokens[0])


class _NodeSpec:
    """``@node`` on one function."""

    __slots__ = ("kind", "node_id")

    def __init__(self, node_id: str, kind: int) -> None:
        self.node_id = node_id
        self.kind = kind

    def call_sync(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = run_in_context(None)
        if live is None:
            return wrapped(*args, **kwargs)
        live.note_node(self.node_id)
        token = _set_node(self.node_id)
        try:
            return wrapped(*args, **kwargs)
        finally:
            _reset_node(token)

    def call_coroutine(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = run_in_context(None)
        if live is None:
            return wrapped(*args, **kwargs)
        return self._coroutine(live, wrapped, args, kwargs)

    async def _coroutine(
        self, live: LiveRun, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live.note_node(self.node_id)
        token = _set_node(self.node_id)
        try:
            return await wrapped(*args, **kwargs)
        finally:
            _reset_node(token)

    def call_generator(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = run_in_context(None)
        if live is None:
            return wrapped(*args, **kwargs)
        live.note_node(self.node_id)
        token = _set_node(self.node_id)  # decorators below read the node when called
        try:
            gen = wrapped(*args, **kwargs)
        finally:
            _reset_node(token)
        return drive(self.kind, gen, _NodeSession(live, self.node_id))


class NodeDecorator(Decorator):
    """The validated argument of one ``node(...)`` call."""

    __slots__ = ("node_id",)
    name = "node"

    def __init__(self, node_id: Any) -> None:
        if not isinstance(node_id, str):
            raise TypeError(
                f"node() takes a node id (str), got {type(node_id).__name__}; "
                'write @node("my_node")'
            )
        if not node_id:
            raise ValueError("node id must not be empty")
        self.node_id = node_id

    def _spec(self, func: Any, kind: int) -> _NodeSpec:
        return _NodeSpec(self.node_id, kind)


def node(node_id: str) -> Callable[[F], F]:
    """Mark a node function of an agent.

    While the function runs inside a run, it is the current node: decisions made in it
    (by hand or by decorated functions it calls) carry ``node_id`` unless they name
    another, and the node is listed in the run's ``nodes_executed``. Outside a run the
    function just runs. Works on functions, coroutines, generators, async generators,
    methods, classmethods and staticmethods.

    Args:
        node_id: the node's id.

    Raises:
        TypeError: ``node_id`` is not a str, or the decorated object is not callable.
        ValueError: ``node_id`` is empty.
    """
    return cast(Callable[[F], F], NodeDecorator(node_id))
