"""What ``@decision`` records: the decision opened, the outcome taken from the call.

Every field a call needs is computed when the function is decorated. The user's spec
callables (options, chosen, reasoning, tokens) are fenced off: one that raises is logged
once per decorated function and field, and the decision is recorded without it.

A run nobody records (no SDK installed, or sampled out) keeps only what its live view
shows (``tracking/_unrecorded.py``, which a call's decision and successful outcome go to
directly): the options and reasoning callables and the token count are not called
there; the choice is recorded as in any run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from decisiontrace._internal.errors import Once, internal_error, warn_once
from decisiontrace.decorators._kinds import doc_line, qualname
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.tracking import _unrecorded
from decisiontrace.tracking._pauses import is_pause

if TYPE_CHECKING:
    from decisiontrace.spanmodel._kinds import DecisionType
    from decisiontrace.tracking._live import LiveDecision, LiveRun
    from decisiontrace.tracking.tracker import DecisionTracker

logger = logging.getLogger("decisiontrace")

_FAILED: Any = object()  # a spec callable raised
_time_ns = time.time_ns


class DecisionConfig(Protocol):
    """The validated arguments of one ``decision(...)`` call (``DecisionDecorator``)."""

    intent: str | None
    options: Any
    options_fn: Callable[..., Any] | None
    option_ids: frozenset[str] | None
    chosen_fn: Callable[..., Any] | None
    reasoning_fn: Callable[..., Any] | None
    reasoning_text: str
    tokens_fn: Callable[..., Any] | None
    decision_type: DecisionType
    node_id: str | None
    auto_run: bool
    tracker: DecisionTracker | None


def error_text(exc: BaseException) -> str:
    """The exception's message, or its type name when the message is empty."""
    try:
        text = str(exc)
    except Exception:  # expected: the agent's exception, whose __str__ raised
        text = ""
    return text or type(exc).__qualname__


def _latency_ms(decision: LiveDecision) -> int:
    # The decision's own start (the span's start time), so no second clock is read.
    return max(0, (_time_ns() - decision.start_ns) // 1_000_000)


class Recorder:
    """``@decision`` on one function: everything a call needs, and how it is recorded."""

    __slots__ = (
        "auto_run", "chosen_fn", "decision_type", "goal_id", "intent", "kind", "node_id",
        "option_ids", "options", "options_fn", "qualname", "reasoning_fn", "reasoning_text",
        "tokens_fn", "tracker", "warned",
    )  # fmt: skip

    def __init__(self, config: DecisionConfig, func: Any, kind: int) -> None:
        self.kind = kind
        self.qualname = qualname(func)
        self.intent = config.intent or doc_line(func) or self.qualname
        self.options = config.options
        self.options_fn = config.options_fn
        self.option_ids = config.option_ids
        self.chosen_fn = config.chosen_fn
        self.reasoning_fn = config.reasoning_fn
        self.reasoning_text = config.reasoning_text
        self.tokens_fn = config.tokens_fn
        self.decision_type: str = config.decision_type.value  # read on every call
        self.node_id = config.node_id
        self.auto_run = config.auto_run
        self.tracker = config.tracker
        self.goal_id = self.qualname
        self.warned = Once()  # what this decorated function has warned about

    def _warn_once(self, what: str, message: str, *, exc_info: bool = False) -> None:
        warn_once(
            what,
            "decisiontrace: @decision %s: %s",
            self.qualname,
            message,
            once=self.warned,
            exc_info=exc_info,
        )

    def _spec_failed(self, what: str) -> Any:
        self._warn_once(what, f"{what}= raised; the decision is recorded without it", exc_info=True)
        return _FAILED

    def _of_result(self, what: str, fn: Callable[[Any], Any], result: Any) -> Any:
        """A spec callable of the result; ``_FAILED`` (warned once) if it raises."""
        try:
            return fn(result)
        except Exception:  # expected: the agent's callable raised (warned once)
            return self._spec_failed(what)

    # --- opening -------------------------------------------------------------------------

    def open(
        self,
        live: LiveRun,
        node_id: str | None,
        instance: Any,
        args: tuple[Any, ...] | None,
        kwargs: Any,
    ) -> LiveDecision | None:
        """Open the decision; None when it could not be (the function then just runs)."""
        try:
            if not live.recording:  # the options callable is not called for nothing
                return _unrecorded.open_call(live, self.intent, node_id)
            options = self.options
            if self.options_fn is not None:
                call_args = () if args is None else args
                if instance is not None:  # methods: the callable gets self/cls too
                    call_args = (instance, *call_args)
                try:
                    options = self.options_fn(*call_args, **(kwargs or {}))
                except Exception:  # expected: the agent's callable (warned once)
                    options = self._spec_failed("options")
                if options is _FAILED:
                    options = []
            return live.open_decision(
                self.intent,
                options,
                "",  # chosen: not known until the function returns
                self.reasoning_text,
                node_id,
                self.decision_type,
            )
        except Exception as error:
            internal_error("@decision opening a decision", error)
            return None

    # --- the outcome ---------------------------------------------------------------------

    def _chosen(self, decision: LiveDecision, result: Any) -> Any:
        """The chosen option id taken from the result, or None."""
        if self.chosen_fn is not None:
            chosen = self._of_result("chosen", self.chosen_fn, result)
            return None if chosen is _FAILED else chosen
        option_ids = self.option_ids
        if option_ids is None:  # options from a callable: the ids this call recorded
            option_ids = decision.attributes.get(sc.DECISION_OPTION_IDS, ())
        if isinstance(result, str) and result in option_ids:
            return result
        if option_ids:
            self._warn_once(
                "chosen",
                "the result is not one of the option ids and no chosen= was given; "
                "the chosen option is left empty",
            )
        return None

    def returned(
        self, live: LiveRun, decision: LiveDecision, result: Any, summary: str = ""
    ) -> None:
        """Record a successful outcome: choice and reasoning from the result, tokens."""
        recording = live.recording
        latency_ms = _latency_ms(decision) if recording else 0  # before the spec callables
        chosen: Any = None
        reasoning: Any = None
        tokens = 0
        input_tokens = output_tokens = None
        try:
            chosen = self._chosen(decision, result)
            if recording and self.reasoning_fn is not None:
                reasoning = self._of_result("reasoning", self.reasoning_fn, result)
                if reasoning is _FAILED:
                    reasoning = None
            if recording and self.tokens_fn is not None:
                counted = self._of_result("tokens", self.tokens_fn, result)
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
        except Exception as error:
            internal_error("@decision recording the choice", error)
        try:
            if not recording:  # the live essentials only: nothing else was computed
                _unrecorded.close_call(live, decision, chosen)
                return
            live.record_outcome(
                decision,
                True,
                result=result,
                summary=summary,
                tokens_used=tokens,
                latency_ms=latency_ms,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                chosen=chosen,
                reasoning=reasoning,
                quiet=True,  # the result was captured, so converting it is expected
            )
        except Exception as error:
            internal_error("@decision recording the outcome", error)

    def failed(self, live: LiveRun, decision: LiveDecision, exc: BaseException) -> None:
        """Record a failed outcome: the error's message and type (paused, for a
        control-flow exception such as LangGraph's interrupt)."""
        try:
            if is_pause(exc):
                live.pause_decision(decision)
                return
            recording = live.recording
            live.record_outcome(
                decision,
                False,
                error=error_text(exc) if recording else None,
                error_type=type(exc).__qualname__ if recording else None,
                latency_ms=_latency_ms(decision) if recording else 0,
                quiet=True,
            )
        except Exception as error:
            internal_error("@decision recording the outcome", error)

    def closed(self, live: LiveRun, decision: LiveDecision, summary: str) -> None:
        """Record a success without a result (a generator closed before it finished)."""
        try:
            live.record_outcome(
                decision,
                True,
                summary=summary,
                latency_ms=_latency_ms(decision) if live.recording else 0,
                quiet=True,
            )
        except Exception as error:
            internal_error("@decision recording the outcome", error)
