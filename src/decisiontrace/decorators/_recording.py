"""What ``@decision`` records: the decision opened, the outcome taken from the call.

Every field a call needs is computed when the function is decorated. The user's spec
callables (options, chosen, reasoning, tokens) are fenced off: one that raises is logged
once per decorated function and field, and the decision is recorded without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from decisiontrace import semconv as sc
from decisiontrace.decorators._kinds import doc_line, qualname

if TYPE_CHECKING:
    from decisiontrace.decorators._decision import DecisionDecorator
    from decisiontrace.tracker import LiveRun

logger = logging.getLogger("decisiontrace")

_FAILED: Any = object()  # a spec callable raised


def error_text(exc: BaseException) -> str:
    """The exception's message, or its type name when the message is empty."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return text or type(exc).__qualname__


class Recorder:
    """``@decision`` on one function: everything a call needs, and how it is recorded."""

    __slots__ = (
        "auto_run", "chosen_fn", "decision_type", "goal_id", "intent", "kind", "node_id",
        "option_ids", "options", "options_fn", "qualname", "reasoning_fn", "reasoning_text",
        "tokens_fn", "tracker", "warned",
    )  # fmt: skip

    def __init__(self, config: DecisionDecorator, func: Any, kind: int) -> None:
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
        self.decision_type = config.decision_type
        self.node_id = config.node_id
        self.auto_run = config.auto_run
        self.tracker = config.tracker
        self.goal_id = self.qualname
        self.warned: set[str] = set()

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
            error=error_text(exc),
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
