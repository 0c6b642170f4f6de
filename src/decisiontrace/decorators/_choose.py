"""``choose()``: declare the chosen option while a decision is being made."""

from __future__ import annotations

from opentelemetry import trace

from decisiontrace._internal.errors import internal_error
from decisiontrace.decorators._run import run_in_context
from decisiontrace.tracking import _normalize


def choose(option_id: str, reasoning: str | None = None) -> None:
    """Declare the chosen option of the decision being made now.

    Call it inside a ``@decision`` function once the choice is made, before acting on
    it: the choice is then recorded even if the function raises afterwards (the return
    value, which otherwise tells the choice, never comes). A ``chosen=`` callable or a
    return value that is an option id is not needed then; if one also gives a choice,
    the one given with the outcome wins. Outside a decision it warns and does nothing.

    Example::

        @decisiontrace.decision("Pick a source", options=["kb", "search"])
        def pick_source(question: str) -> str:
            decisiontrace.choose("kb", reasoning="the KB covers how-to questions")
            return search_kb(question)   # may raise: the choice is still recorded
    """
    try:
        live = run_in_context(None)
        span = trace.get_current_span()
        if live is not None:
            chosen = _normalize.text(option_id, "choose(): option_id")
            why = None if reasoning is None else _normalize.text(reasoning, "choose()")
            if live.choose(span, chosen, why):
                return
        _normalize.warn(f"choose({option_id!r}) called outside a decision; nothing recorded")
    except Exception as error:
        internal_error("choose()", error)
