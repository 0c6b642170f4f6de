"""LangGraph: every graph invocation is a run, interrupts pause it, resumes link to it.

``instrument()`` wraps ``invoke``, ``ainvoke``, ``stream`` and ``astream`` of compiled
graphs (LangGraph's ``Pregel``, which ``StateGraph.compile()`` returns) with wrapt;
``instrument(graph)`` wraps one graph only. ``uninstrument()`` undoes either. Each
invocation outside a run starts one, current while the graph runs, so that decorated
node functions (``@dt.node`` / ``@dt.decision``) record into it; an invocation inside
a run (a subgraph, a graph called from an ``@dt.agent`` function) records into that run.

An interrupt (``interrupt()``, ``NodeInterrupt``, a breakpoint) ends the run paused:
status ``completed`` with ``paused: true``, and the interrupted decision paused
without an outcome, never failed. Invoking the same thread (``thread_id`` in the
config) again with ``Command(resume=...)`` (or ``None``) starts a run in the same
execution, with a span link to the paused run's span and ``resumed_from`` naming it.
``docs/integrations/langgraph.md`` is the user's guide.

LangGraph is imported by :func:`instrument`, never by importing this module.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry.trace import Link, SpanContext

from decisiontrace._internal.errors import internal_error
from decisiontrace.decorators._generators import (
    Session,
    drive_async_generator,
    drive_generator,
)
from decisiontrace.decorators._run import default_tracker
from decisiontrace.models import RunStatus
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking.tracker import DecisionTracker

__all__ = ["instrument", "is_instrumented", "uninstrument"]

logger = logging.getLogger("decisiontrace")

_METHODS = ("invoke", "ainvoke", "stream", "astream")
#: Paused threads remembered for a resume (the oldest are forgotten beyond this).
MAX_PAUSED_THREADS = 10_000


class _Settings:
    """What an instrumentation records with."""

    __slots__ = ("goal_description", "goal_id", "tracker")

    def __init__(
        self, tracker: DecisionTracker | None, goal_id: str | None, goal_description: str
    ) -> None:
        self.tracker = tracker
        self.goal_id = goal_id
        self.goal_description = goal_description


class _Paused:
    """A run that ended paused: what a resume of its thread links to."""

    __slots__ = ("execution_id", "run_id", "span_context")

    def __init__(self, execution_id: str, run_id: str, span_context: SpanContext) -> None:
        self.execution_id = execution_id
        self.run_id = run_id
        self.span_context = span_context


_paused_lock = threading.Lock()
_paused: OrderedDict[tuple[int, str], _Paused] = OrderedDict()


def _remember(key: tuple[int, str], paused: _Paused | None) -> None:
    with _paused_lock:
        _paused.pop(key, None)
        if paused is not None:
            _paused[key] = paused
            while len(_paused) > MAX_PAUSED_THREADS:
                _paused.popitem(last=False)


def _recall(key: tuple[int, str]) -> _Paused | None:
    with _paused_lock:
        return _paused.get(key)


def _in_run() -> bool:
    live = ctx.current_run.get()
    return live is not None and live.end_ns is None


def _is_langgraph(value: object, name: str) -> bool:
    kind = type(value)
    return kind.__name__ == name and kind.__module__.startswith("langgraph.")


class _Invocation:
    """One graph invocation as a run: started, made current, ended paused or not."""

    __slots__ = ("config", "graph", "key", "live", "resumes", "tracker")

    def __init__(
        self, settings: _Settings, graph: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        self.graph = graph
        self.tracker = settings.tracker or default_tracker()
        value = args[0] if args else kwargs.get("input")
        config = args[1] if len(args) > 1 else kwargs.get("config")
        self.config: Mapping[str, Any] | None = config if isinstance(config, Mapping) else None
        configurable = self.config.get("configurable") if self.config is not None else None
        thread_id = configurable.get("thread_id") if isinstance(configurable, Mapping) else None
        checkpointer = getattr(graph, "checkpointer", None)
        # Threads live in a checkpointer: the same thread id in another one is another thread.
        self.key = (
            None if thread_id is None else (id(checkpointer) if checkpointer else 0, str(thread_id))
        )
        resumes = None
        if self.key is not None and (value is None or _is_langgraph(value, "Command")):
            resumes = _recall(self.key)
        self.resumes = resumes
        goal_id = settings.goal_id or _graph_name(graph)
        extra: dict[str, Any] = {}
        if thread_id is not None:
            extra[sc.RUN_THREAD_ID] = str(thread_id)
        if resumes is not None:
            extra[sc.RUN_RESUMED_FROM] = resumes.run_id
        if isinstance(value, dict):
            input_data: Any = value
        elif _is_langgraph(value, "Command"):
            # The resume value is what the run gets as input; the Command is LangGraph's.
            resume = getattr(value, "resume", None)
            input_data = {} if resume is None else {"resume": resume}
        else:
            input_data = {} if value is None else {"input": value}
        self.live = self.tracker.registry.start(
            resumes.execution_id if resumes is not None else None,
            goal_id,
            settings.goal_description,
            input_data,
            links=[Link(resumes.span_context)] if resumes is not None else (),
            extra_attributes=extra,
        )

    def enter(self) -> Any:
        return ctx.current_run.set(self.live), otel_context.attach(self.live.context)

    def leave(self, tokens: Any) -> None:
        otel_context.detach(tokens[1])
        ctx.current_run.reset(tokens[0])

    def _needs_state(self) -> bool:
        return self.key is not None and getattr(self.graph, "checkpointer", None) not in (
            None,
            False,
        )

    def paused_sync(self) -> bool:
        """Whether the thread waits on an interrupt, from the graph's checkpoint."""
        if not self._needs_state():
            return False
        try:
            return bool(getattr(self.graph.get_state(self.config), "next", ()))
        except Exception:  # expected: the user's graph or checkpointer failed
            logger.debug("decisiontrace: get_state failed", exc_info=True)
            return False

    async def paused_async(self) -> bool:
        """As :meth:`paused_sync`, with the checkpointer's async interface."""
        if not self._needs_state():
            return False
        try:
            return bool(getattr(await self.graph.aget_state(self.config), "next", ()))
        except Exception:  # expected: the user's graph or checkpointer failed
            logger.debug("decisiontrace: aget_state failed", exc_info=True)
            return False

    def finish(self, exc: BaseException | None, paused: bool, closed: bool = False) -> None:
        """End the run: paused, completed, failed or (stream left unread) cancelled."""
        try:
            live = self.live
            if closed and not paused:
                live.end(
                    False, "", None, RunStatus.CANCELLED,
                    end_reason="the caller stopped reading the graph's stream",
                )  # fmt: skip
            else:
                live.end_block(exc, paused=paused)
            if self.key is not None:
                ended_paused = bool(live.end_attributes.get(sc.RUN_PAUSED))
                _remember(
                    self.key,
                    _Paused(live.execution_id, live.run_id, live.span.get_span_context())
                    if ended_paused
                    else None,
                )
        except Exception as error:
            internal_error("ending the run of a LangGraph invocation", error)


def _graph_name(graph: Any) -> str:
    try:
        name = graph.get_name()
    except Exception:  # expected: the user's graph object
        name = None
    return name if isinstance(name, str) and name else "LangGraph"


def _begin(
    settings: _Settings, graph: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> _Invocation | None:
    try:
        return _Invocation(settings, graph, args, kwargs)
    except Exception as error:
        internal_error("starting a run for a LangGraph invocation", error)
        return None


class _StreamSession(Session):
    """The run current around each resumption of a graph's stream; the end is noted."""

    __slots__ = ("closed_early", "error", "invocation")

    def __init__(self, invocation: _Invocation) -> None:
        self.invocation = invocation
        self.error: BaseException | None = None
        self.closed_early = False

    def enter(self) -> Any:
        return self.invocation.enter()

    def leave(self, tokens: Any) -> None:
        self.invocation.leave(tokens)

    def closed(self, items: int) -> None:
        self.closed_early = True

    def failed(self, exc: BaseException) -> None:
        self.error = exc


def _run_stream(gen: Generator[Any, Any, Any], invocation: _Invocation) -> Generator[Any, Any, Any]:
    session = _StreamSession(invocation)
    try:
        return (yield from drive_generator(gen, session))
    finally:
        paused = session.error is None and invocation.paused_sync()
        invocation.finish(session.error, paused, session.closed_early)


async def _run_astream(
    agen: AsyncGenerator[Any, Any], invocation: _Invocation
) -> AsyncGenerator[Any, Any]:
    session = _StreamSession(invocation)
    driven = drive_async_generator(agen, session)
    try:
        async for item in driven:
            yield item
    finally:
        try:
            await driven.aclose()  # a consumer that stopped early: close the graph's stream
        finally:
            paused = session.error is None and await invocation.paused_async()
            invocation.finish(session.error, paused, session.closed_early)


def _wrapper(method: str, settings: _Settings, graph: Any = None) -> Callable[..., Any]:
    """The wrapt wrapper of one method; ``graph`` is set when wrapping one graph."""

    def invoke(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
        if _in_run():
            return wrapped(*args, **kwargs)
        invocation = _begin(settings, graph if graph is not None else instance, args, kwargs)
        if invocation is None:
            return wrapped(*args, **kwargs)
        tokens = invocation.enter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            invocation.leave(tokens)
            invocation.finish(exc, False)
            raise
        invocation.leave(tokens)
        invocation.finish(None, invocation.paused_sync())
        return result

    def ainvoke(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
        if _in_run():
            return wrapped(*args, **kwargs)
        return _ainvoke(wrapped, graph if graph is not None else instance, args, kwargs)

    async def _ainvoke(wrapped: Any, target: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
        invocation = _begin(settings, target, args, kwargs)
        if invocation is None:
            return await wrapped(*args, **kwargs)
        tokens = invocation.enter()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            invocation.leave(tokens)
            invocation.finish(exc, False)
            raise
        invocation.leave(tokens)
        invocation.finish(None, await invocation.paused_async())
        return result

    def stream(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: Any) -> Any:
        if _in_run():
            return wrapped(*args, **kwargs)
        invocation = _begin(settings, graph if graph is not None else instance, args, kwargs)
        if invocation is None:
            return wrapped(*args, **kwargs)
        tokens = invocation.enter()
        try:
            gen = wrapped(*args, **kwargs)  # created inside the run, as LangGraph may start work
        except BaseException as exc:
            invocation.leave(tokens)
            invocation.finish(exc, False)
            raise
        invocation.leave(tokens)
        if method == "astream":
            return _run_astream(gen, invocation)
        return _run_stream(gen, invocation)

    return {"invoke": invoke, "ainvoke": ainvoke, "stream": stream, "astream": stream}[method]


# --- instrument / uninstrument --------------------------------------------------------------

_lock = threading.Lock()
# wrapt keeps attributes named _self_* on the wrapper itself, not on the wrapped function.
_MARK = "_self_decisiontrace_langgraph"


def _pregel() -> type:
    try:
        from langgraph.pregel import Pregel
    except ImportError as exc:
        raise ImportError(
            "decisiontrace.integrations.langgraph needs LangGraph: pip install langgraph"
        ) from exc
    return Pregel


def _wrap(owner: Any, method: str, settings: _Settings, graph: Any = None) -> None:
    original = getattr(owner, method)
    wrapper = wrapt.FunctionWrapper(original, _wrapper(method, settings, graph))
    setattr(wrapper, _MARK, True)
    setattr(owner, method, wrapper)


def instrument(
    graph: Any = None,
    *,
    tracker: DecisionTracker | None = None,
    goal_id: str | None = None,
    goal_description: str = "",
) -> None:
    """Make every invocation of compiled LangGraph graphs a run.

    Wraps ``invoke``, ``ainvoke``, ``stream`` and ``astream`` of every compiled graph
    (``langgraph.pregel.Pregel``), or only of ``graph`` when given. Calling it again
    replaces the settings; it never wraps twice.

    Args:
        graph: one compiled graph to instrument; None for all of them.
        tracker: records the runs; defaults to :func:`decisiontrace.default_tracker`.
        goal_id: the runs' goal; defaults to the graph's name (``graph.get_name()``).
        goal_description: the runs' goal description.

    Raises:
        ImportError: LangGraph is not installed.
        TypeError: an argument has the wrong type, or ``graph`` is not a compiled graph.
    """
    if tracker is not None and not isinstance(tracker, DecisionTracker):
        raise TypeError(f"tracker must be a DecisionTracker, got {type(tracker).__name__}")
    for name, value in (("goal_id", goal_id), ("goal_description", goal_description)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    pregel = _pregel()
    if graph is not None and not isinstance(graph, pregel):
        raise TypeError(f"graph must be a compiled LangGraph graph, got {type(graph).__name__}")
    settings = _Settings(tracker, goal_id, goal_description)
    with _lock:
        _unwrap(pregel if graph is None else graph, from_instance=graph is not None)
        for method in _METHODS:
            if graph is None:
                _wrap(pregel, method, settings)
            else:
                _wrap(graph, method, settings, graph)


def uninstrument(graph: Any = None) -> None:
    """Undo :func:`instrument` for all graphs, or for ``graph``. Does nothing if not
    instrumented."""
    pregel = _pregel()
    with _lock:
        _unwrap(pregel if graph is None else graph, from_instance=graph is not None)


def is_instrumented(graph: Any = None) -> bool:
    """True when :func:`instrument` applies to all graphs (or to ``graph``)."""
    pregel = _pregel()
    owners = [pregel] if graph is None else [pregel, graph]
    return any(
        all(getattr(vars(owner).get(method), _MARK, False) for method in _METHODS)
        for owner in owners
        if hasattr(owner, "__dict__")
    )


def _unwrap(owner: Any, *, from_instance: bool) -> None:
    where = vars(owner)
    for method in _METHODS:
        current = where.get(method)
        if current is None or not getattr(current, _MARK, False):
            continue
        if from_instance:
            delattr(owner, method)  # the class's method shows through again
        else:
            setattr(owner, method, current.__wrapped__)
