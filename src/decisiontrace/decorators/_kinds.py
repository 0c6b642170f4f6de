"""Decoration time: what kind of function is decorated, and the defaults taken from it.

The kind (plain, coroutine, generator, async generator) is decided once, when the
function is decorated, so a call never inspects the function again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from decisiontrace.tracking.tracker import DecisionTracker

F = TypeVar("F")

SYNC, COROUTINE, GENERATOR, ASYNC_GENERATOR = range(4)


def kind_of(func: Any) -> int:
    """Which kind of function ``func`` is, looking through descriptors and wrappers."""
    for _ in range(64):
        if func is None:
            break
        if inspect.isasyncgenfunction(func):
            return ASYNC_GENERATOR
        if inspect.iscoroutinefunction(func):
            return COROUTINE
        if inspect.isgeneratorfunction(func):
            return GENERATOR
        func = getattr(func, "__func__", None) or getattr(func, "__wrapped__", None)
    return SYNC


def check_target(func: Any, decorator: str) -> int:
    """The kind of ``func``; raises ``TypeError`` when it cannot be decorated."""
    # classmethod objects are not callable themselves, but decorating one is fine.
    if not (callable(func) or isinstance(func, classmethod | staticmethod)):
        raise TypeError(f"@{decorator} can only decorate a callable, got {type(func).__name__}")
    return kind_of(func)


def qualname(func: Any) -> str:
    """The function's qualified name (a default goal id and intent)."""
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__qualname__


def doc_line(func: Any) -> str:
    """The first non-blank line of the docstring, or ""."""
    doc = getattr(func, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    return next((line.strip() for line in doc.splitlines() if line.strip()), "")


def callable_or_none(value: Any, name: str) -> Any:
    """``value`` when it is callable or None; raises ``TypeError`` otherwise."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
    return value


def tracker_or_none(tracker: Any) -> DecisionTracker | None:
    """``tracker`` when it is a DecisionTracker or None; raises ``TypeError`` otherwise."""
    if tracker is not None and not isinstance(tracker, DecisionTracker):
        raise TypeError(f"tracker must be a DecisionTracker or None, got {type(tracker).__name__}")
    return tracker


class Decorator:
    """What ``node(...)``, ``agent(...)`` and ``decision(...)`` return."""

    __slots__ = ()
    name = ""

    def _spec(self, func: Any, kind: int) -> Any:
        """The per-function object whose ``call_*`` methods are the wrappers."""
        raise NotImplementedError

    def wrapper_for(self, func: Any) -> Callable[..., Any]:
        """The wrapt wrapper ``(wrapped, instance, args, kwargs)`` for ``func``'s kind.

        Raises:
            TypeError: ``func`` is not callable.
        """
        kind = check_target(func, self.name)
        spec = self._spec(func, kind)
        wrappers = (spec.call_sync, spec.call_coroutine, spec.call_generator, spec.call_generator)
        return cast(Callable[..., Any], wrappers[kind])

    def __call__(self, func: Any) -> Any:
        import wrapt  # on first decoration: wrapt imports asyncio, ~20 ms of start-up

        return wrapt.FunctionWrapper(func, self.wrapper_for(func))
