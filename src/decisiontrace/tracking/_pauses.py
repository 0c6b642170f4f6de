"""Exceptions that pause an agent on purpose rather than fail it.

LangGraph stops a node with an exception when it is interrupted (``interrupt()``,
``NodeInterrupt``) or hands control elsewhere (``ParentCommand``): all of them derive
from ``langgraph.errors.GraphBubbleUp``, and LangGraph catches them again. A decision
ended by one is paused, not failed. They are recognised by class name and module, so
that decisiontrace never imports LangGraph.
"""

from __future__ import annotations

#: (module prefix, class name) of the base classes of pausing exceptions.
_PAUSE_BASES = frozenset({("langgraph.errors", "GraphBubbleUp")})

_known: dict[type, bool] = {}


def is_pause(exc: BaseException) -> bool:
    """True for an exception that pauses rather than fails (LangGraph's GraphBubbleUp)."""
    kind = type(exc)
    known = _known.get(kind)
    if known is None:
        known = any((base.__module__, base.__name__) in _PAUSE_BASES for base in kind.__mro__)
        if len(_known) < 1_000:  # exception classes made on the fly stay bounded
            _known[kind] = known
    return known
