"""Runs a decorator starts: the default tracker, ``auto_run`` and ``@agent``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context

from decisiontrace._internal.errors import internal_error
from decisiontrace.decorators._call import CallRecorder
from decisiontrace.decorators._generators import Session, drive
from decisiontrace.decorators._kinds import Decorator, F, doc_line, qualname, tracker_or_none
from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking import _remote
from decisiontrace.tracking.tracker import DecisionTracker

if TYPE_CHECKING:
    from decisiontrace.tracking._live import LiveRun

logger = logging.getLogger("decisiontrace")

# Bound once: these run on every call.
_get_run = ctx.current_run.get
_set_run = ctx.current_run.set
_reset_run = ctx.current_run.reset
_attach = otel_context.attach
_detach = otel_context.detach
_get_current = otel_context.get_current
_get_value = _remote.current_value


# --- the module default tracker -----------------------------------------------------------

_default_lock = threading.Lock()
_default: DecisionTracker | None = None
# The tracker set_default_tracker() installed: @agent records through it too.
_chosen_default: DecisionTracker | None = None


def default_tracker() -> DecisionTracker:
    """The tracker that ``auto_run`` uses when given none (and ``@agent`` after
    :func:`set_default_tracker`).

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

    A tracker set here also records the runs of every ``@agent`` given no tracker
    (without one, each ``@agent`` function records through a tracker of its own, whose
    stream is named after the function).

    Raises:
        TypeError: ``tracker`` is not a :class:`DecisionTracker` or None.
    """
    global _default, _chosen_default
    if tracker is not None and not isinstance(tracker, DecisionTracker):
        raise TypeError(f"tracker must be a DecisionTracker or None, got {type(tracker).__name__}")
    with _default_lock:
        _default = tracker
        _chosen_default = tracker


def run_in_context(tracker: DecisionTracker | None) -> LiveRun | None:
    """The run a decorated call records into, or None.

    The current run of this process, unless the current OpenTelemetry context names
    another run (a request from another process, see ``decisiontrace.tracking._remote``): then
    ``tracker`` (default: the default tracker) records into that run as a fragment.
    """
    live = _get_run()
    if live is not None:
        if live.end_ns is not None:
            live = None
        elif _get_current() is live.context:
            return live  # inside the run's own block: nothing else can be named
    value = _get_value()
    if value is None or (live is not None and value == live.baggage):
        return live  # the common cases: one context lookup
    try:
        return (tracker or default_tracker()).registry.remote_run(value) or live
    except Exception as error:
        internal_error("joining the run of the current context", error)
        return live


# --- runs started by a decorator --------------------------------------------------------------


def start_run(
    tracker: DecisionTracker,
    goal_id: str,
    description: str,
    input_data: dict[str, Any] | None = None,
) -> LiveRun | None:
    """Start a run without making it current (generators make it current per resumption)."""
    try:
        return tracker.registry.start(None, goal_id, description, input_data)
    except Exception as error:
        internal_error("@agent starting a run", error)
        return None


def end_run(
    live: LiveRun, exc: BaseException | None, output_data: dict[str, Any] | None = None
) -> None:
    """End a run the way ``tracker.run`` ends one when its block exits."""
    try:
        live.end_block(exc, output_data=output_data)
    except Exception as error:
        internal_error("@agent ending a run", error)


class _RunSession(Session):
    """A run a decorator started for a generator: current while it runs, ended after."""

    __slots__ = ("live", "output")

    def __init__(
        self, live: LiveRun, output: Callable[[Any, int], dict[str, Any] | None] | None = None
    ) -> None:
        self.live = live
        self.output = output

    def enter(self) -> Any:
        return _set_run(self.live), _attach(self.live.context)

    def leave(self, tokens: Any) -> None:
        _detach(tokens[1])
        _reset_run(tokens[0])

    def returned(self, value: Any, items: int) -> None:
        end_run(self.live, None, self._output(value, items))

    def closed(self, items: int) -> None:
        end_run(self.live, None, self._output(None, items))

    def failed(self, exc: BaseException) -> None:
        end_run(self.live, exc)

    def _output(self, value: Any, items: int) -> dict[str, Any] | None:
        if self.output is None:
            return None
        try:
            return self.output(value, items)
        except Exception as error:
            internal_error("recording a generator run's output", error)
            return None


def generator_in_new_run(
    tracker: DecisionTracker,
    goal_id: str,
    description: str,
    kind: int,
    make: Callable[[], Any],
    input_data: dict[str, Any] | None = None,
    output: Callable[[Any, int], dict[str, Any] | None] | None = None,
) -> Any:
    """Start a run and create the generator inside it (so decorators below see the run).

    ``output`` makes the run's ``output_data`` from the generator's return value and
    the number of items it gave.
    """
    live = start_run(tracker, goal_id, description, input_data)
    if live is None:
        return make()
    run_token = _set_run(live)
    otel_token = _attach(live.context)
    try:
        gen = make()
    except BaseException as exc:
        end_run(live, exc)
        raise
    finally:
        _detach(otel_token)
        _reset_run(run_token)
    return drive(kind, gen, _RunSession(live, output))


# --- @agent --------------------------------------------------------------------------------------


class _AgentSpec:
    """``@agent`` on one function: a run of its own unless one is current, recording the
    call's arguments as ``input_data`` and its result as ``output_data``."""

    __slots__ = ("call", "goal_description", "goal_id", "kind", "own", "stream_id", "tracker")

    def __init__(
        self,
        goal_id: str,
        goal_description: str,
        tracker: DecisionTracker | None,
        kind: int,
        stream_id: str,
        call: CallRecorder,
    ) -> None:
        self.goal_id = goal_id
        self.goal_description = goal_description
        self.tracker = tracker
        self.kind = kind
        self.stream_id = stream_id
        self.call = call
        self.own: DecisionTracker | None = None

    def _tracker(self) -> DecisionTracker:
        """The given tracker, else one set with set_default_tracker(), else this
        function's own tracker (its stream named after the function)."""
        tracker = self.tracker or _chosen_default or self.own
        if tracker is None:
            with _default_lock:
                if self.own is None:
                    self.own = DecisionTracker(self.stream_id)
                tracker = self.own
        return tracker

    def _start_args(
        self, instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> tuple[str, dict[str, Any] | None]:
        """(goal description, input_data) of a call; never raises."""
        try:
            call = self.call
            arguments = call.arguments(instance, args, kwargs)
            return call.description(arguments, self.goal_description), call.input_data(arguments)
        except Exception as error:
            internal_error("recording a run's arguments", error)
            return self.goal_description, None

    def _output(self, result: Any) -> dict[str, Any] | None:
        try:
            return self.call.output_data(result)
        except Exception as error:
            internal_error("recording a run's result", error)
            return None

    def call_sync(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = _get_run()
        if live is not None and live.end_ns is None:
            return wrapped(*args, **kwargs)
        description, input_data = self._start_args(instance, args, kwargs)
        with self._tracker().run(self.goal_id, description, input_data) as scope:
            result = wrapped(*args, **kwargs)
            scope.output_data = self._output(result)
            return result

    def call_coroutine(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = _get_run()
        if live is not None and live.end_ns is None:
            return wrapped(*args, **kwargs)
        return self._coroutine(wrapped, instance, args, kwargs)

    async def _coroutine(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        description, input_data = self._start_args(instance, args, kwargs)
        async with self._tracker().run(self.goal_id, description, input_data) as scope:
            result = await wrapped(*args, **kwargs)
            scope.output_data = self._output(result)
            return result

    def call_generator(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = _get_run()
        if live is not None and live.end_ns is None:
            return wrapped(*args, **kwargs)
        description, input_data = self._start_args(instance, args, kwargs)
        return generator_in_new_run(
            self._tracker(),
            self.goal_id,
            description,
            self.kind,
            lambda: wrapped(*args, **kwargs),
            input_data,
            self.call.generator_output,
        )


class _AgentDecorator(Decorator):
    __slots__ = (
        "description_from", "exclude", "goal_description", "goal_id", "record_input",
        "record_output", "stream_id", "tracker",
    )  # fmt: skip
    name = "agent"

    def __init__(
        self,
        goal_id: Any,
        goal_description: Any,
        tracker: Any,
        stream_id: Any,
        exclude: Any,
        record_input: Any,
        record_output: Any,
        description_from: Any,
    ) -> None:
        for name, value in (
            ("goal_id", goal_id),
            ("goal_description", goal_description),
            ("stream_id", stream_id),
            ("goal_description_from", description_from),
        ):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{name} must be a str or None, got {type(value).__name__}")
        if stream_id == "":
            raise ValueError("stream_id must not be empty")
        for name, value in (("record_input", record_input), ("record_output", record_output)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        if isinstance(exclude, str) or not all(isinstance(n, str) for n in exclude):
            raise TypeError("exclude must be a collection of argument names (str)")
        self.goal_id: str | None = goal_id
        self.goal_description: str | None = goal_description
        self.tracker = tracker_or_none(tracker)
        self.stream_id: str | None = stream_id
        self.exclude = tuple(exclude)
        self.record_input = record_input
        self.record_output = record_output
        self.description_from: str | None = description_from

    def _spec(self, func: Any, kind: int) -> _AgentSpec:
        name = getattr(func, "__name__", None)
        return _AgentSpec(
            self.goal_id or qualname(func),
            self.goal_description if self.goal_description is not None else doc_line(func),
            self.tracker,
            kind,
            self.stream_id or (name if isinstance(name, str) and name else qualname(func)),
            CallRecorder(
                func,
                exclude=self.exclude,
                record_input=self.record_input,
                record_output=self.record_output,
                description_from=self.description_from,
            ),
        )


def agent(
    goal_id: str | None = None,
    *,
    goal_description: str | None = None,
    goal_description_from: str | None = None,
    tracker: DecisionTracker | None = None,
    stream_id: str | None = None,
    exclude: Collection[str] = (),
    record_input: bool = True,
    record_output: bool = True,
) -> Callable[[F], F]:
    """Make a function an agent's entry point: each call outside a run is a run of its own.

    The run is current while the function runs (for a generator: while it is iterated)
    and ends completed when it returns, failed when it raises (the error is recorded as
    a critical problem), or cancelled on ``asyncio.CancelledError``. Called inside a
    run, the function just runs as part of it. A generator's run starts when the
    generator is created, so that decorators below it see the run.

    The call is recorded: its bound arguments (by parameter name, ``self``/``cls``
    left out) become the run's ``input_data``, and its return value the run's
    ``output_data`` (a returned dict as is, anything else under ``"result"``; for a
    generator, ``"items"``, the number of items it gave, and what it returned). Values
    are redacted like every recorded value, each cut to 16 KiB of JSON, and never
    consumed: an iterator, stream, generator, file or other object recording must not
    read is recorded as a description of its type, and reaches the caller untouched.

    Args:
        goal_id: the run's goal; defaults to the function's qualified name.
        goal_description: defaults to the value of the ``goal_description_from``
            argument, else the first line of the docstring.
        goal_description_from: name of an argument whose (str) value is the goal
            description of each call.
        tracker: records the run; defaults to the tracker set with
            :func:`set_default_tracker`, else a tracker of this function's own.
        stream_id: the stream of that own tracker (run ids are
            ``run_{stream_id}_...``); defaults to the function's name.
        exclude: argument names never recorded (secrets, clients, large handles).
        record_input: record the arguments at all.
        record_output: record the return value at all.

    Raises:
        TypeError: an argument has the wrong type, or the decorated object is not
            callable.
        ValueError: ``stream_id`` is empty.
    """
    return cast(
        Callable[[F], F],
        _AgentDecorator(
            goal_id,
            goal_description,
            tracker,
            stream_id,
            exclude,
            record_input,
            record_output,
            goal_description_from,
        ),
    )
