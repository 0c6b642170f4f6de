"""``@node``, ``@decision`` and ``@agent``: decision telemetry from decorated functions.

The kind of function (plain, coroutine, generator, async generator) is decided once, at
decoration time, and each kind gets its own wrapt wrapper. Everything a call needs is
computed when the function is decorated, so a call outside any run costs wrapt's call
plus one ContextVar lookup.

Inside a run, ``@decision`` opens a decision span before the function runs, makes it the
current span while the function runs (so LLM and tool spans that other instrumentations
create nest under it, and the processor sums their ``gen_ai.usage.*`` tokens into the
stored outcome), and records the outcome when it returns or raises. The user's result and
exceptions pass through untouched.

Generators are driven one resumption at a time: the decision span (and the run and node)
are made current around each ``next``/``send``/``throw`` and never across a ``yield``, so
a generator finalized in another context (garbage collection, asyncio's
``shutdown_asyncgens``) never trips OpenTelemetry's "Failed to detach context".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar, cast

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace

from decisiontrace import _codec
from decisiontrace import _context as ctx
from decisiontrace import semconv as sc
from decisiontrace.models import DecisionType, RunStatus
from decisiontrace.tracker import DecisionTracker

if TYPE_CHECKING:
    from decisiontrace.tracker import LiveRun

__all__ = ["agent", "decision", "default_tracker", "node", "set_default_tracker"]

logger = logging.getLogger("decisiontrace")

F = TypeVar("F")

# Bound once: these run on every call.
_get_run = ctx.current_run.get
_set_run = ctx.current_run.set
_reset_run = ctx.current_run.reset
_set_node = ctx.current_node.set
_reset_node = ctx.current_node.reset
_attach = otel_context.attach
_detach = otel_context.detach
_in_span = trace.set_span_in_context
_clock = time.perf_counter_ns

_SYNC, _COROUTINE, _GENERATOR, _ASYNC_GENERATOR = range(4)
_FAILED: Any = object()  # a spec callable raised


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


# --- decoration-time helpers ----------------------------------------------------------------


def _kind_of(func: Any) -> int:
    """Which kind of function ``func`` is, looking through descriptors and wrappers."""
    for _ in range(64):
        if func is None:
            break
        if inspect.isasyncgenfunction(func):
            return _ASYNC_GENERATOR
        if inspect.iscoroutinefunction(func):
            return _COROUTINE
        if inspect.isgeneratorfunction(func):
            return _GENERATOR
        func = getattr(func, "__func__", None) or getattr(func, "__wrapped__", None)
    return _SYNC


def _check_target(func: Any, decorator: str) -> int:
    # classmethod objects are not callable themselves, but decorating one is fine.
    if not (callable(func) or isinstance(func, classmethod | staticmethod)):
        raise TypeError(f"@{decorator} can only decorate a callable, got {type(func).__name__}")
    return _kind_of(func)


def _qualname(func: Any) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return name if isinstance(name, str) else type(func).__qualname__


def _doc_line(func: Any) -> str:
    doc = getattr(func, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    return next((line.strip() for line in doc.splitlines() if line.strip()), "")


def _callable_or_none(value: Any, name: str) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")
    return value


def _tracker_or_none(tracker: Any) -> DecisionTracker | None:
    if tracker is not None and not isinstance(tracker, DecisionTracker):
        raise TypeError(f"tracker must be a DecisionTracker or None, got {type(tracker).__name__}")
    return tracker


class _Decorator:
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
        kind = _check_target(func, self.name)
        spec = self._spec(func, kind)
        wrappers = (spec.call_sync, spec.call_coroutine, spec.call_generator, spec.call_generator)
        return cast(Callable[..., Any], wrappers[kind])

    def __call__(self, func: Any) -> Any:
        return wrapt.FunctionWrapper(func, self.wrapper_for(func))


def _error_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return text or type(exc).__qualname__


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


# --- runs started by a decorator --------------------------------------------------------------


def _start_run(tracker: DecisionTracker, goal_id: str, description: str) -> LiveRun | None:
    """Start a run without making it current (generators make it current per resumption)."""
    try:
        return tracker._start(None, goal_id, description, None)
    except Exception:
        logger.exception("decisiontrace: could not start run for goal %r", goal_id)
        return None


def _end_run(tracker: DecisionTracker, live: LiveRun, exc: BaseException | None) -> None:
    """End a run the way ``tracker.run`` ends one when its block exits."""
    try:
        status: RunStatus | None = None
        if exc is not None:
            live.span.record_exception(exc)
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                status = RunStatus.CANCELLED
            else:
                tracker.report_problem(
                    execution_id=live.execution_id,
                    severity="critical",
                    description=f"{type(exc).__name__}: {exc}",
                )
        tracker._finish(live, exc is None, "", None, status)
    except Exception:
        logger.exception("decisiontrace: could not end run %s", live.run_id)


# --- generators: one resumption at a time -------------------------------------------------------


class _Session:
    """What a generator driver does around the iteration; the base does nothing."""

    __slots__ = ()

    def begin(self) -> None:
        """Called at the first resumption."""

    def enter(self) -> Any:
        """Make this session's context current; returns what ``leave`` needs."""

    def leave(self, tokens: Any) -> None:
        """Undo ``enter`` (same resumption, so the same context)."""

    def returned(self, value: Any, items: int) -> None:
        """The generator finished (``value`` is what it returned)."""

    def closed(self, items: int) -> None:
        """The consumer closed the generator before it finished."""

    def failed(self, exc: BaseException) -> None:
        """The generator raised ``exc``."""


def _drive_generator(gen: Generator[Any, Any, Any], session: _Session) -> Generator[Any, Any, Any]:
    """``yield from gen`` with ``session`` entered around every resumption of ``gen``."""
    session.begin()
    items = 0
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        tokens = session.enter()
        try:
            if to_throw is None:
                item = gen.send(to_send)
            else:
                try:
                    item = gen.throw(to_throw)
                finally:
                    to_throw = None
        except StopIteration as stop:
            session.returned(stop.value, items)
            return stop.value
        except BaseException as exc:
            session.failed(exc)
            raise
        finally:
            session.leave(tokens)
        items += 1
        try:
            to_send = yield item
        except GeneratorExit:
            tokens = session.enter()
            try:
                gen.close()
            except BaseException as exc:
                session.failed(exc)
                raise
            finally:
                session.leave(tokens)
            session.closed(items)
            raise
        except BaseException as exc:
            to_throw, to_send = exc, None


async def _drive_async_generator(
    agen: AsyncGenerator[Any, Any], session: _Session
) -> AsyncGenerator[Any, Any]:
    """``async for`` over ``agen``, re-yielding, with ``session`` entered per resumption."""
    session.begin()
    items = 0
    to_send: Any = None
    to_throw: BaseException | None = None
    while True:
        tokens = session.enter()
        try:
            if to_throw is None:
                item = await agen.asend(to_send)
            else:
                try:
                    item = await agen.athrow(to_throw)
                finally:
                    to_throw = None
        except StopAsyncIteration:
            session.returned(None, items)
            return
        except BaseException as exc:
            session.failed(exc)
            raise
        finally:
            session.leave(tokens)
        items += 1
        try:
            to_send = yield item
        except GeneratorExit:
            # aclose(), by the consumer or by asyncio's finalizer: close the inner one too.
            tokens = session.enter()
            try:
                await agen.aclose()
            except BaseException as exc:
                session.failed(exc)
                raise
            finally:
                session.leave(tokens)
            session.closed(items)
            raise
        except BaseException as exc:
            to_throw, to_send = exc, None


def _drive(kind: int, gen: Any, session: _Session) -> Any:
    if kind == _GENERATOR:
        return _drive_generator(gen, session)
    return _drive_async_generator(gen, session)


class _RunSession(_Session):
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
        _end_run(self.tracker, self.live, None)

    def closed(self, items: int) -> None:
        _end_run(self.tracker, self.live, None)

    def failed(self, exc: BaseException) -> None:
        _end_run(self.tracker, self.live, exc)


def _generator_in_new_run(
    tracker: DecisionTracker,
    goal_id: str,
    description: str,
    kind: int,
    make: Callable[[], Any],
) -> Any:
    """Start a run and create the generator inside it (so decorators below see the run)."""
    live = _start_run(tracker, goal_id, description)
    if live is None:
        return make()
    run_token = _set_run(live)
    otel_token = _attach(live.context)
    try:
        gen = make()
    except BaseException as exc:
        _end_run(tracker, live, exc)
        raise
    finally:
        _detach(otel_token)
        _reset_run(run_token)
    return _drive(kind, gen, _RunSession(tracker, live))


# --- @node ---------------------------------------------------------------------------------------


class _NodeSession(_Session):
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
        live = _get_run()
        if live is None or live.end_ns is not None:
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
        live = _get_run()
        if live is None or live.end_ns is not None:
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
        live = _get_run()
        if live is None or live.end_ns is not None:
            return wrapped(*args, **kwargs)
        live.note_node(self.node_id)
        token = _set_node(self.node_id)  # decorators below read the node when called
        try:
            gen = wrapped(*args, **kwargs)
        finally:
            _reset_node(token)
        return _drive(self.kind, gen, _NodeSession(live, self.node_id))


class _NodeDecorator(_Decorator):
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
    return cast(Callable[[F], F], _NodeDecorator(node_id))


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
        return _generator_in_new_run(
            self.tracker or default_tracker(),
            self.goal_id,
            self.goal_description,
            self.kind,
            lambda: wrapped(*args, **kwargs),
        )


class _AgentDecorator(_Decorator):
    __slots__ = ("goal_description", "goal_id", "tracker")
    name = "agent"

    def __init__(self, goal_id: Any, goal_description: Any, tracker: Any) -> None:
        for name, value in (("goal_id", goal_id), ("goal_description", goal_description)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        self.goal_id: str | None = goal_id
        self.goal_description: str | None = goal_description
        self.tracker = _tracker_or_none(tracker)

    def _spec(self, func: Any, kind: int) -> _AgentSpec:
        return _AgentSpec(
            self.goal_id or _qualname(func),
            self.goal_description if self.goal_description is not None else _doc_line(func),
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


# --- @decision -----------------------------------------------------------------------------------


class _DecisionSession(_Session):
    """One decision over a generator's whole iteration."""

    __slots__ = (
        "args", "context", "decision_id", "instance", "kwargs", "live", "node_id", "spec",
        "start",
    )  # fmt: skip

    def __init__(
        self,
        spec: _DecisionSpec,
        live: LiveRun,
        instance: Any,
        args: tuple[Any, ...],
        kwargs: Any,
    ) -> None:
        self.spec = spec
        self.live = live
        self.instance = instance
        self.args: tuple[Any, ...] | None = args
        self.kwargs = kwargs
        # Read now, when the generator is created in its caller's context.
        self.node_id = spec.node_id or ctx.current_node.get()
        self.context = otel_context.get_current()
        self.decision_id = ""
        self.start = 0

    def begin(self) -> None:
        parent = self.context
        token = _attach(parent)
        try:
            self.decision_id = self.spec._begin(
                self.live, self.node_id, self.instance, self.args, self.kwargs
            )
        finally:
            _detach(token)
        self.instance = self.args = self.kwargs = None  # not needed any more
        if self.decision_id:
            self.context = _in_span(self.live.decisions[self.decision_id].span, parent)
        self.start = _clock()

    def enter(self) -> Any:
        return _set_run(self.live), _attach(self.context)

    def leave(self, tokens: Any) -> None:
        _detach(tokens[1])
        _reset_run(tokens[0])

    def returned(self, value: Any, items: int) -> None:
        if self.decision_id:
            self.spec._returned(
                self.live,
                self.decision_id,
                value,
                _clock() - self.start,
                f"yielded {_items(items)}",
            )

    def closed(self, items: int) -> None:
        if self.decision_id:
            self.spec._record(
                self.live,
                self.decision_id,
                _clock() - self.start,
                success=True,
                summary=f"closed early after yielding {_items(items)}",
            )

    def failed(self, exc: BaseException) -> None:
        if self.decision_id:
            self.spec._failed(self.live, self.decision_id, exc, _clock() - self.start)


class _DecisionSpec:
    """``@decision`` on one function: everything a call needs, computed once."""

    __slots__ = (
        "auto_run", "chosen_fn", "decision_type", "goal_id", "intent", "kind", "node_id",
        "option_ids", "options", "options_fn", "qualname", "reasoning_fn", "reasoning_text",
        "tokens_fn", "tracker", "warned",
    )  # fmt: skip

    def __init__(self, config: _DecisionDecorator, func: Any, kind: int) -> None:
        self.kind = kind
        self.qualname = _qualname(func)
        self.intent = config.intent or _doc_line(func) or self.qualname
        self.options = config.options
        self.options_fn = config.options_fn
        self.option_ids = config.option_ids
        self.chosen_fn = config.chosen_fn
        self.reasoning_fn = config.reasoning_fn
        self.reasoning_text = config.reasoning_text
        self.tokens_fn = config.tokens_fn
        self.decision_type = config.decision_type
        self.node_id = config.node_id
        self.auto_run = config.auto_run
        self.tracker = config.tracker
        self.goal_id = self.qualname
        self.warned: set[str] = set()

    # --- the four kinds ---------------------------------------------------------------

    def call_sync(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = _get_run()
        if live is None or live.end_ns is not None:
            if not self.auto_run:
                return wrapped(*args, **kwargs)
            with (self.tracker or default_tracker()).run(self.goal_id, self.intent):
                live = _get_run()
                if live is None:  # the run could not start (already logged)
                    return wrapped(*args, **kwargs)
                return self._sync(live, wrapped, instance, args, kwargs)
        return self._sync(live, wrapped, instance, args, kwargs)

    def _sync(
        self,
        live: LiveRun,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: Any,
    ) -> Any:
        decision_id = self._begin(live, self.node_id, instance, args, kwargs)
        if not decision_id:
            return wrapped(*args, **kwargs)
        token = _attach(_in_span(live.decisions[decision_id].span))
        start = _clock()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            self._failed(live, decision_id, exc, _clock() - start)
            raise
        finally:
            _detach(token)
        self._returned(live, decision_id, result, _clock() - start)
        return result

    def call_coroutine(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = _get_run()
        if live is None or live.end_ns is not None:
            if not self.auto_run:
                return wrapped(*args, **kwargs)
            return self._coroutine_in_new_run(wrapped, instance, args, kwargs)
        return self._coroutine(live, wrapped, instance, args, kwargs)

    async def _coroutine_in_new_run(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        async with (self.tracker or default_tracker()).run(self.goal_id, self.intent):
            live = _get_run()
            if live is None:
                return await wrapped(*args, **kwargs)
            return await self._coroutine(live, wrapped, instance, args, kwargs)

    async def _coroutine(
        self,
        live: LiveRun,
        wrapped: Callable[..., Any],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: Any,
    ) -> Any:
        decision_id = self._begin(live, self.node_id, instance, args, kwargs)
        if not decision_id:
            return await wrapped(*args, **kwargs)
        token = _attach(_in_span(live.decisions[decision_id].span))
        start = _clock()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            self._failed(live, decision_id, exc, _clock() - start)
            raise
        finally:
            _detach(token)
        self._returned(live, decision_id, result, _clock() - start)
        return result

    def call_generator(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = _get_run()
        if live is None or live.end_ns is not None:
            if not self.auto_run:
                return wrapped(*args, **kwargs)
            return _generator_in_new_run(
                self.tracker or default_tracker(),
                self.goal_id,
                self.intent,
                self.kind,
                lambda: self.call_generator(wrapped, instance, args, kwargs),
            )
        gen = wrapped(*args, **kwargs)
        return _drive(self.kind, gen, _DecisionSession(self, live, instance, args, kwargs))

    # --- recording -------------------------------------------------------------------

    def _warn_once(self, what: str, message: str, *, exc_info: bool = False) -> None:
        if what not in self.warned:
            self.warned.add(what)
            logger.warning(
                "decisiontrace: @decision %s: %s", self.qualname, message, exc_info=exc_info
            )

    def _spec_call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a user's spec callable; if it raises, warn once and return ``_FAILED``."""
        try:
            return fn(*args, **kwargs)
        except Exception:
            self._warn_once(
                what, f"{what}= raised; the decision is recorded without it", exc_info=True
            )
            return _FAILED

    def _begin(
        self,
        live: LiveRun,
        node_id: str | None,
        instance: Any,
        args: tuple[Any, ...] | None,
        kwargs: Any,
    ) -> str:
        """Open the decision; "" when it could not be (the function then just runs)."""
        try:
            options = self.options
            if self.options_fn is not None:
                call_args = () if args is None else args
                if instance is not None:  # methods: the callable gets self/cls too
                    call_args = (instance, *call_args)
                options = self._spec_call("options", self.options_fn, *call_args, **(kwargs or {}))
                if options is _FAILED:
                    options = []
            return live.tracker.decide(
                execution_id=live.execution_id,
                intent=self.intent,
                options=options,
                chosen="",  # not known until the function returns
                reasoning=self.reasoning_text,
                node_id=node_id,
                decision_type=self.decision_type,
            )
        except Exception:
            logger.exception("decisiontrace: @decision %s could not open a decision", self.qualname)
            return ""

    def _returned(
        self, live: LiveRun, decision_id: str, result: Any, elapsed_ns: int, summary: str = ""
    ) -> None:
        """Record a successful outcome: choice and reasoning from the result, tokens."""
        tokens = 0
        input_tokens = output_tokens = None
        chosen: Any = None
        reasoning: Any = None
        try:
            if self.chosen_fn is not None:
                chosen = self._spec_call("chosen", self.chosen_fn, result)
                if chosen is _FAILED:
                    chosen = None
            else:
                option_ids = self.option_ids
                if option_ids is None:
                    option_ids = live.decisions[decision_id].attributes.get(
                        sc.DECISION_OPTION_IDS, ()
                    )
                if isinstance(result, str) and result in option_ids:
                    chosen = result
                elif option_ids:
                    self._warn_once(
                        "chosen",
                        "the result is not one of the option ids and no chosen= was given; "
                        "the chosen option is left empty",
                    )
            if self.reasoning_fn is not None:
                reasoning = self._spec_call("reasoning", self.reasoning_fn, result)
                if reasoning is _FAILED:
                    reasoning = None
            if self.tokens_fn is not None:
                counted = self._spec_call("tokens", self.tokens_fn, result)
                if type(counted) is int:
                    tokens = counted
                elif (
                    isinstance(counted, tuple | list)
                    and len(counted) == 2
                    and all(type(c) is int for c in counted)
                ):
                    input_tokens, output_tokens = counted
                elif counted is not _FAILED and counted is not None:
                    self._warn_once(
                        "tokens",
                        "tokens= should return an int or an (input, output) pair of ints, "
                        f"got {type(counted).__name__}; tokens are not recorded",
                    )
        except Exception:
            logger.exception(
                "decisiontrace: @decision %s: recording the choice failed", self.qualname
            )
        self._record(
            live,
            decision_id,
            elapsed_ns,
            success=True,
            result=result,
            summary=summary,
            tokens=tokens,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            chosen=chosen,
            reasoning=reasoning,
        )

    def _failed(self, live: LiveRun, decision_id: str, exc: BaseException, elapsed_ns: int) -> None:
        self._record(
            live,
            decision_id,
            elapsed_ns,
            success=False,
            error=_error_text(exc),
            error_type=type(exc).__qualname__,
        )

    def _record(
        self,
        live: LiveRun,
        decision_id: str,
        elapsed_ns: int,
        *,
        success: bool,
        result: Any = None,
        error: str | None = None,
        error_type: str | None = None,
        summary: str = "",
        tokens: int = 0,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        chosen: Any = None,
        reasoning: Any = None,
    ) -> None:
        """Record the outcome (with the choice, now known) and end the span; never raises."""
        try:
            live.tracker._record_outcome(
                live,
                decision_id,
                success,
                result=result,
                error=error,
                error_type=error_type,
                summary=summary,
                tokens_used=tokens,
                latency_ms=elapsed_ns // 1_000_000,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                chosen=chosen,
                reasoning=reasoning,
                quiet=True,  # the result was captured, so converting it is expected
            )
        except Exception:
            logger.exception(
                "decisiontrace: @decision %s: recording the outcome failed", self.qualname
            )


class _DecisionDecorator(_Decorator):
    """The validated arguments of one ``decision(...)`` call (the same keywords)."""

    __slots__ = (
        "auto_run", "chosen_fn", "decision_type", "intent", "node_id", "option_ids", "options",
        "options_fn", "reasoning_fn", "reasoning_text", "tokens_fn", "tracker",
    )  # fmt: skip
    name = "decision"

    def __init__(
        self,
        intent: Any = None,
        *,
        options: Any = None,
        chosen: Any = None,
        reasoning: Any = None,
        tokens: Any = None,
        decision_type: Any = DecisionType.CUSTOM,
        node_id: Any = None,
        auto_run: Any = False,
        tracker: Any = None,
    ) -> None:
        if intent is not None and not isinstance(intent, str):
            hint = "; write @decision() with parentheses" if callable(intent) else ""
            raise TypeError(f"intent must be a str or None, got {type(intent).__name__}{hint}")
        if node_id is not None and not isinstance(node_id, str):
            raise TypeError(f"node_id must be a str or None, got {type(node_id).__name__}")
        if not isinstance(auto_run, bool):
            raise TypeError(f"auto_run must be a bool, got {type(auto_run).__name__}")
        try:
            decision_type = DecisionType(decision_type)
        except ValueError:
            valid = ", ".join(t.value for t in DecisionType)
            raise ValueError(
                f"decision_type must be one of {valid}; got {decision_type!r}"
            ) from None
        self.intent: str | None = intent
        self.options: list[dict[str, Any]] = []
        self.options_fn: Callable[..., Any] | None = None
        self.option_ids: frozenset[str] | None = None
        if callable(options):
            self.options_fn = options
        elif options is not None:
            if isinstance(options, str | bytes | dict) or not isinstance(options, list | tuple):
                raise TypeError(
                    "options must be a list of option ids or option dicts, or a callable "
                    f"of the call's arguments; got {type(options).__name__}"
                )
            self.options = _codec.normalize_options(list(options), "@decision options")
            self.option_ids = frozenset(option["id"] for option in self.options)
        self.chosen_fn = _callable_or_none(chosen, "chosen")
        self.reasoning_text = ""
        self.reasoning_fn: Callable[..., Any] | None = None
        if isinstance(reasoning, str):
            self.reasoning_text = reasoning
        else:
            self.reasoning_fn = _callable_or_none(reasoning, "reasoning")
        self.tokens_fn = _callable_or_none(tokens, "tokens")
        self.decision_type = decision_type
        self.node_id: str | None = node_id
        self.auto_run = auto_run
        self.tracker = _tracker_or_none(tracker)

    def _spec(self, func: Any, kind: int) -> _DecisionSpec:
        return _DecisionSpec(self, func, kind)


def decision(
    intent: str | None = None,
    *,
    options: list[Any] | Callable[..., Any] | None = None,
    chosen: Callable[[Any], Any] | None = None,
    reasoning: str | Callable[[Any], Any] | None = None,
    tokens: Callable[[Any], int | tuple[int, int]] | None = None,
    decision_type: DecisionType | str = DecisionType.CUSTOM,
    node_id: str | None = None,
    auto_run: bool = False,
    tracker: DecisionTracker | None = None,
) -> Callable[[F], F]:
    """Record one decision per call of the decorated function, inside the current run.

    The decision span opens when the function is called (for a generator: when it is
    first resumed) and is the current span while the function runs, so spans created
    inside it (LLM calls, tools) nest under it; the tokens those report as
    ``gen_ai.usage.*`` are added to the stored outcome. The outcome is recorded when the
    function returns (success, with the result serialized and size-limited, and the
    latency) or raises (failure, with ``error`` the exception's message, or its type name
    when the message is empty, and ``error_type`` its type name); the exception is
    re-raised unchanged. Outside a run the function just runs, unless ``auto_run``.

    Generators: the decision covers the whole iteration; "the result" is the value the
    generator returns, and the summary says how many items it yielded. A generator
    closed before it finished (``break`` then ``close()``, ``aclose()``, garbage
    collection, asyncio shutting it down) is a success whose summary says it was closed
    early; one cancelled while it awaits is a failure with ``error_type``
    ``CancelledError``. A generator that is never iterated records no decision.

    Args:
        intent: what the decision is for; defaults to the first docstring line, else the
            function's qualified name.
        options: the options: a list of option ids or option dicts (see
            :class:`~decisiontrace.Option`), or a callable that gets the call's arguments
            (``self``/``cls`` included for methods) and returns such a list. A plain id
            ``"x"`` becomes ``{"id": "x", "description": "x", "action_type": "unknown"}``.
        chosen: a callable of the result returning the chosen option id. Without it, the
            result is the chosen id when it is one of the option ids. A chosen id that is
            not among the options is recorded as given, with a warning.
        reasoning: a str, or a callable of the result returning the reasoning.
        tokens: a callable of the result returning the tokens used: an int, or an
            ``(input, output)`` pair. Tokens of LLM spans inside the decision are added.
        decision_type: a :class:`DecisionType` or its value.
        node_id: the node the decision belongs to; defaults to the current ``@node``.
        auto_run: outside a run, start one (goal id: the function's qualified name).
        tracker: the tracker for ``auto_run`` runs; defaults to :func:`default_tracker`.
            Inside a run the decision always goes to the current run.

    A spec callable that raises is logged once (per decorated function and field) and
    the decision is recorded without that field; the function's result and exceptions
    are never altered.

    Raises:
        TypeError: an argument has the wrong type, a spec is not callable, or the
            decorated object is not callable.
        ValueError: ``decision_type`` is unknown.
    """
    config = _DecisionDecorator(
        intent,
        options=options,
        chosen=chosen,
        reasoning=reasoning,
        tokens=tokens,
        decision_type=decision_type,
        node_id=node_id,
        auto_run=auto_run,
        tracker=tracker,
    )
    return cast(Callable[[F], F], config)
