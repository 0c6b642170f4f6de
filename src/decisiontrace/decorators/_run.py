"""Runs a decorator starts: the default tracker, ``auto_run`` and ``@agent``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context

from decisiontrace import _context as ctx
from decisiontrace import _remote
from decisiontrace.decorators._generators import Session, drive
from decisiontrace.decorators._kinds import Decorator, F, doc_line, qualname, tracker_or_none
from decisiontrace.tracker import DecisionTracker

if TYPE_CHECKING:
    from decisiontrace._live import LiveRun

logger = logging.getLogger("decisiontrace")

# Bound once: these run on every call.
_get_run = ctx.current_run.get
_set_run = ctx.current_run.set
_reset_run = ctx.current_run.reset
_attach = otel_context.attach
_detach = otel_context.detach
_get_value = _remote.current_value


# --- the module default tracker -----------------------------------------------------------

_default_lock = threading.Lock()
_default: DecisionTracker | None = None


def default_tracker() -> DecisionTracker:
    """The tracker that ``auto_run`` and ``@agent`` use when given none.

    Created on first use as ``DecisionTracker("default")`` on the global tracer provider
    (it follows the provider installed later, as OpenTelemetry's proxy tracer does).
    """
    global _default
    tracker = _default
    if tracker is None:
        with _default_lock:
            if _default is None:
                _default = DecisionTracker("default")
            tracker = _default
    return tracker


def set_default_tracker(tracker: DecisionTracker | None) -> None:
    """Replace the default tracker; ``None`` goes back to a lazily created one.

    Raises:
        TypeError: ``tracker`` is not a :class:`DecisionTracker` or None.
    """
    global _default
    if tracker is not None and not isinstance(tracker, DecisionTracker):
        raise TypeError(f"tracker must be a DecisionTracker or None, got {type(tracker).__name__}")
    with _default_lock:
        _default = tracker


def run_in_context(tracker: DecisionTracker | None) -> LiveRun | None:
    """The run a decorated call records into, or None.

    The current run of this process, unless the current OpenTelemetry context names
    another run (a request from another process, see ``decisiontrace._remote``): then
    ``tracker`` (default: the default tracker) records into that run as a fragment.
    """
    live = _get_run()
    if live is not None and live.end_ns is not None:
        live = None
    value = _get_value()
    if value is None or (live is not None and value == live.baggage):
        return live  # the common cases: one context lookup
    try:
        return (tracker or default_tracker())._remote_run(value) or live
    except Exception:
        logger.exception("decisiontrace: could not join the run of the current context")
        return live


# --- runs started by a decorator --------------------------------------------------------------


def start_run(tracker: DecisionTracker, goal_id: str, description: str) -> LiveRun | None:
    """Start a run without making it current (generators make it current per resumption)."""
    try:
        return tracker._start(None, goal_id, description, None)
    except Exception:
        logger.exception("decisiontrace: could not start run for goal %r", goal_id)
        return None


def end_run(tracker: DecisionTracker, live: LiveRun, exc: BaseException | None) -> None:
    """End a run the way ``tracker.run`` ends one when its block exits."""
    try:
        tracker._end_scope(live, exc)
    except Exception:
        logger.exception("decisiontrace: could not end run %s", live.run_id)


class _RunSession(Session):
    """A run a decorator started for a generator: current while it runs, ended after."""

    __slots__ = ("live", "tracker")

    def __init__(self, tracker: DecisionTracker, live: LiveRun) -> None:
        self.tracker = tracker
        self.live = live

    def enter(self) -> Any:
        return _set_run(self.live), _attach(self.live.context)

    def leave(self, tokens: Any) -> None:
        _detach(tokens[1])
        _reset_run(tokens[0])

    def returned(self, value: Any, items: int) -> None:
        end_run(self.tracker, self.live, None)

    def closed(self, items: int) -> None:
        end_run(self.tracker, self.live, None)

    def failed(self, exc: BaseException) -> None:
        end_run(self.tracker, self.live, exc)


def generator_in_new_run(
    tracker: DecisionTracker,
    goal_id: str,
    description: str,
    kind: int,
    make: Callable[[], Any],
) -> Any:
    """Start a run and create the generator inside it (so decorators below see the run)."""
    live = start_run(tracker, goal_id, description)
    if live is None:
        return make()
    run_token = _set_run(live)
    otel_token = _attach(live.context)
    try:
        gen = make()
    except BaseException as exc:
        end_run(tracker, live, exc)
        raise
    finally:
        _detach(otel_token)
        _reset_run(run_token)
    return drive(kind, gen, _RunSession(tracker, live))


# --- @agent --------------------------------------------------------------------------------------


class _AgentSpec:
    """``@agent`` on one function: a run of its own unless one is current."""

    __slots__ = ("goal_description", "goal_id", "kind", "tracker")

    def __init__(
        self, goal_id: str, goal_description: str, tracker: DecisionTracker | None, kind: int
    ) -> None:
        self.goal_id = goal_id
        self.goal_description = goal_description
        self.tracker = tracker
        self.kind = kind

    def call_sync(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = _get_run()
        if live is not None and live.end_ns is None:
            return wrapped(*args, **kwargs)
        with (self.tracker or default_tracker()).run(self.goal_id, self.goal_description):
            return wrapped(*args, **kwargs)

    def call_coroutine(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = _get_run()
        if live is not None and live.end_ns is None:
            return wrapped(*args, **kwargs)
        return self._coroutine(wrapped, args, kwargs)

    async def _coroutine(
        self, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        async with (self.tracker or default_tracker()).run(self.goal_id, self.goal_description):
            return await wrapped(*args, **kwargs)

    def call_generator(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = _get_run()
        if live is not None and live.end_ns is None:
            return wrapped(*args, **kwargs)
        return generator_in_new_run(
            self.tracker or default_tracker(),
            self.goal_id,
            self.goal_description,
            self.kind,
            lambda: wrapped(*args, **kwargs),
        )


class _AgentDecorator(Decorator):
    __slots__ = ("goal_description", "goal_id", "tracker")
    name = "agent"

    def __init__(self, goal_id: Any, goal_description: Any, tracker: Any) -> None:
        for name, value in (("goal_id", goal_id), ("goal_description", goal_description)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        self.goal_id: str | None = goal_id
        self.goal_description: str | None = goal_description
        self.tracker = tracker_or_none(tracker)

    def _spec(self, func: Any, kind: int) -> _AgentSpec:
        return _AgentSpec(
            self.goal_id or qualname(func),
            self.goal_description if self.goal_description is not None else doc_line(func),
            self.tracker,
            kind,
        )


def agent(
    goal_id: str | None = None,
    *,
    goal_description: str | None = None,
    tracker: DecisionTracker | None = None,
) -> Callable[[F], F]:
    """Make a function an agent's entry point: each call outside a run is a run of its own.

    The run is current while the function runs (for a generator: while it is iterated)
    and ends completed when it returns, failed when it raises (the error is recorded as
    a critical problem), or cancelled on ``asyncio.CancelledError``. Called inside a
    run, the function just runs as part of it. A generator's run starts when the
    generator is created, so that decorators below it see the run.

    Args:
        goal_id: the run's goal; defaults to the function's qualified name.
        goal_description: defaults to the first line of the docstring.
        tracker: records the run; defaults to :func:`default_tracker` at call time.

    Raises:
        TypeError: an argument has the wrong type, or the decorated object is not
            callable.
    """
    return cast(Callable[[F], F], _AgentDecorator(goal_id, goal_description, tracker))
