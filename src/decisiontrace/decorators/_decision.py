"""``@decision``: one decision per call, on every kind of function.

Inside a run, ``@decision`` opens a decision span before the function runs, makes it the
current span while the function runs (so LLM and tool spans that other instrumentations
create nest under it, and the processor sums their ``gen_ai.usage.*`` tokens into the
stored outcome), and records the outcome when it returns or raises. The user's result and
exceptions pass through untouched. Outside a run the function just runs, unless
``auto_run``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from opentelemetry import context as otel_context
from opentelemetry import trace

from decisiontrace._internal.errors import internal_error
from decisiontrace.decorators._generators import Session, drive, items_text
from decisiontrace.decorators._kinds import Decorator, F, callable_or_none, tracker_or_none
from decisiontrace.decorators._recording import Recorder
from decisiontrace.decorators._run import default_tracker, generator_in_new_run, run_in_context
from decisiontrace.spanmodel._kinds import DecisionType
from decisiontrace.tracking import _context as ctx
from decisiontrace.tracking import _no_provider, _normalize, _unrecorded
from decisiontrace.tracking.tracker import DecisionTracker

if TYPE_CHECKING:
    from decisiontrace.tracking._live import LiveDecision, LiveRun

# Bound once: these run on every call.
_get_run = ctx.current_run.get
_get_node = ctx.current_node.get
_set_run = ctx.current_run.set
_reset_run = ctx.current_run.reset
_attach = otel_context.attach
_detach = otel_context.detach
_get_current = otel_context.get_current
_in_span = trace.set_span_in_context
_check_outside_run = _no_provider.check_outside_run


class _DecisionSession(Session):
    """One decision over a generator's whole iteration."""

    __slots__ = ("args", "context", "decision", "instance", "kwargs", "live", "node_id", "spec")

    def __init__(
        self,
        spec: DecisionSpec,
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
        self.node_id = spec.node_id or _get_node()
        self.context = _get_current()
        self.decision: LiveDecision | None = None

    def begin(self) -> None:
        parent = self.context
        token = _attach(parent)
        try:
            self.decision = self.spec.open(
                self.live, self.node_id, self.instance, self.args, self.kwargs
            )
        finally:
            _detach(token)
        self.instance = self.args = self.kwargs = None  # not needed any more
        if self.decision is not None:
            self.context = _in_span(self.decision.span, parent)

    def enter(self) -> Any:
        return _set_run(self.live), _attach(self.context)

    def leave(self, tokens: Any) -> None:
        _detach(tokens[1])
        _reset_run(tokens[0])

    def returned(self, value: Any, items: int) -> None:
        if self.decision is not None:
            self.spec.returned(self.live, self.decision, value, f"yielded {items_text(items)}")

    def closed(self, items: int) -> None:
        if self.decision is not None:
            self.spec.closed(
                self.live, self.decision, f"closed early after yielding {items_text(items)}"
            )

    def failed(self, exc: BaseException) -> None:
        if self.decision is not None:
            self.spec.failed(self.live, self.decision, exc)


class DecisionSpec(Recorder):
    """``@decision`` on one function: the call paths of the four kinds."""

    __slots__ = ()

    def call_sync(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = run_in_context(self.tracker)
        if live is None:
            if not self.auto_run:
                _check_outside_run()
                return wrapped(*args, **kwargs)
            return self._sync_in_new_run(wrapped, instance, args, kwargs)
        if not live.recording:
            return self._sync_unrecorded(live, wrapped, args, kwargs)
        decision = self.open(live, self.node_id, instance, args, kwargs)
        if decision is None:
            return wrapped(*args, **kwargs)
        token = _attach(_in_span(decision.span))  # the decision span is current meanwhile
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            self.failed(live, decision, exc)
            raise
        finally:
            if token is not None:
                _detach(token)
        self.returned(live, decision, result)
        return result

    def _sync_unrecorded(
        self, live: LiveRun, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        """``call_sync`` in a run nobody records: straight to ``_unrecorded`` (what
        ``open`` and ``returned`` do for such a run, without their checks for it).

        The run has no decision span: its "decision span" is the run's own
        non-recording span. Inside ``tracker.run`` the run's context is current already;
        with start_run it is not, and is made current so that spans started inside stay
        in the run's trace (and are dropped with it).
        """
        try:
            decision = _unrecorded.open_call(live, self.intent, self.node_id)
        except Exception as error:
            internal_error("@decision opening a decision", error)
            decision = None
        if decision is None:
            return wrapped(*args, **kwargs)
        token = _attach(_in_span(decision.span)) if _get_current() is not live.context else None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            self.failed(live, decision, exc)
            raise
        finally:
            if token is not None:
                _detach(token)
        try:
            _unrecorded.close_call(live, decision, self._chosen(decision, result))
        except Exception as error:
            internal_error("@decision recording the outcome", error)
        return result

    def _sync_in_new_run(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        with (self.tracker or default_tracker()).run(self.goal_id, self.intent):
            live = _get_run()
            if live is None or live.end_ns is not None:  # could not start (already logged)
                return wrapped(*args, **kwargs)
            return self.call_sync(wrapped, instance, args, kwargs)

    def call_coroutine(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = run_in_context(self.tracker)
        if live is None:
            if not self.auto_run:
                _check_outside_run()
                return wrapped(*args, **kwargs)
            return self._coroutine_in_new_run(wrapped, instance, args, kwargs)
        return self._coroutine(live, wrapped, instance, args, kwargs)

    async def _coroutine_in_new_run(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        async with (self.tracker or default_tracker()).run(self.goal_id, self.intent):
            live = _get_run()
            if live is None or live.end_ns is not None:  # could not start (already logged)
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
        decision = self.open(live, self.node_id, instance, args, kwargs)
        if decision is None:
            return await wrapped(*args, **kwargs)
        token = (  # as in call_sync
            _attach(_in_span(decision.span))
            if live.recording or _get_current() is not live.context
            else None
        )
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            self.failed(live, decision, exc)
            raise
        finally:
            if token is not None:
                _detach(token)
        self.returned(live, decision, result)
        return result

    def call_generator(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        live = run_in_context(self.tracker)
        if live is None and self.auto_run:
            return generator_in_new_run(
                self.tracker or default_tracker(),
                self.goal_id,
                self.intent,
                self.kind,
                lambda: self._generator(wrapped, instance, args, kwargs),
            )
        return self._generator(wrapped, instance, args, kwargs)

    def _generator(
        self, wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: Any
    ) -> Any:
        """The generator, driven with its decision when a run is current (else as is)."""
        live = run_in_context(self.tracker)
        gen = wrapped(*args, **kwargs)
        if live is None:
            _check_outside_run()
            return gen
        return drive(self.kind, gen, _DecisionSession(self, live, instance, args, kwargs))


class DecisionDecorator(Decorator):
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
        self.options: _normalize.PreparedOptions | list[Any] = []
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
            # Normalized and encoded once here, not on every call.
            prepared = _normalize.PreparedOptions(list(options), "@decision options")
            self.options = prepared
            self.option_ids = frozenset(prepared.ids)
        self.chosen_fn = callable_or_none(chosen, "chosen")
        self.reasoning_text = ""
        self.reasoning_fn: Callable[..., Any] | None = None
        if isinstance(reasoning, str):
            self.reasoning_text = reasoning
        else:
            self.reasoning_fn = callable_or_none(reasoning, "reasoning")
        self.tokens_fn = callable_or_none(tokens, "tokens")
        self.decision_type = decision_type
        self.node_id: str | None = node_id
        self.auto_run = auto_run
        self.tracker = tracker_or_none(tracker)

    def _spec(self, func: Any, kind: int) -> DecisionSpec:
        return DecisionSpec(self, func, kind)


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
    config = DecisionDecorator(
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
