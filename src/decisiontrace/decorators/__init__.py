"""``@node``, ``@decision`` and ``@agent``: decision telemetry from decorated functions.

The kind of function (plain, coroutine, generator, async generator) is decided once, at
decoration time (``_kinds``), and each kind gets its own wrapt wrapper. Everything a call
needs is computed when the function is decorated, so a call outside any run costs
wrapt's call plus one ContextVar lookup.

- ``_decision``: ``@decision``, its call paths for the four kinds; ``_recording``: what
  a decision records (spec callables fenced off, the outcome from the call);
- ``_node``: ``@node``; ``_run``: runs a decorator starts (``@agent``, ``auto_run``) and
  the default tracker;
- ``_generators``: generators and async generators driven one resumption at a time;
- ``_choose``: ``choose()``, the choice declared inside a decorated function.
"""

from decisiontrace.decorators._choose import choose
from decisiontrace.decorators._decision import decision
from decisiontrace.decorators._node import node
from decisiontrace.decorators._run import agent, default_tracker, set_default_tracker

__all__ = ["agent", "choose", "decision", "default_tracker", "node", "set_default_tracker"]
