"""What ``@agent`` keeps of a call: its bound arguments and its return value.

Values are taken as the agent passed them and made recordable without being consumed
(:func:`decisiontrace.spanmodel._jsonsafe.dumps` describes iterators, streams, files and other
values it must not read), each bounded in size, and redacted where every structured
value is (the codec). Nothing here raises into the agent: a call whose arguments do not
bind records no input, and the call itself then fails as it would undecorated.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

from decisiontrace.spanmodel._jsonsafe import TRUNCATED_KEY, dumps, loads

#: Longest JSON text kept for one argument or return value (a larger one is replaced by
#: a truncation marker with a preview); the run's whole input stays within the 64 KiB
#: every structured value is held to.
MAX_VALUE_CHARS = 16 * 1024
# Never recorded: the object a method is bound to is not an input of the call.
_RECEIVERS = frozenset(("self", "cls"))


def signature_of(func: Callable[..., Any]) -> inspect.Signature | None:
    """The function's signature, or None when Python cannot tell it (some builtins)."""
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def recordable(value: Any) -> Any:
    """``value`` itself when it is plain data within the size bound, else what records
    it: the bounded, sanitized JSON form (non-plain values as a description)."""
    text, problem = dumps(value, MAX_VALUE_CHARS)
    if problem is None:
        return value
    return loads(text)


class CallRecorder:
    """Turns one decorated function's calls into ``input_data``/``output_data``.

    Args:
        func: the decorated function.
        exclude: argument names never recorded (secrets, large handles).
        record_input: record the bound arguments at all.
        record_output: record the return value at all.
        description_from: name of the argument whose value is the goal description.
    """

    __slots__ = (
        "description_from", "exclude", "receiver", "record_input", "record_output", "signature",
    )  # fmt: skip

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        exclude: Iterable[str],
        record_input: bool,
        record_output: bool,
        description_from: str | None,
    ) -> None:
        self.signature = signature_of(func) if record_input or description_from else None
        first = next(iter(self.signature.parameters), None) if self.signature else None
        # A method's receiver comes separately (wrapt's ``instance``) when it is called
        # on an instance or class: put it back in place to bind the rest right.
        self.receiver = first in _RECEIVERS
        self.exclude = frozenset(exclude) | _RECEIVERS
        self.record_input = record_input
        self.record_output = record_output
        self.description_from = description_from

    def arguments(self, instance: Any, args: tuple[Any, ...], kwargs: Any) -> dict[str, Any]:
        """The call's arguments by parameter name (defaults not applied), or {}."""
        signature = self.signature
        if signature is None:
            return {}
        if instance is not None and self.receiver:
            args = (instance, *args)
        try:
            bound = signature.bind_partial(*args, **kwargs)
        except TypeError:
            return {}
        return dict(bound.arguments)

    def input_data(self, arguments: dict[str, Any]) -> dict[str, Any] | None:
        """The run's ``input_data``: every bound argument not excluded, bounded."""
        if not self.record_input:
            return None
        exclude = self.exclude
        return {name: recordable(value) for name, value in arguments.items() if name not in exclude}

    def description(self, arguments: dict[str, Any], default: str) -> str:
        """The goal description: the named argument's text when it has one, else ``default``."""
        if self.description_from is None:
            return default
        value = arguments.get(self.description_from)
        return value if isinstance(value, str) and value else default

    def output_data(self, result: Any) -> dict[str, Any] | None:
        """The run's ``output_data``: a returned dict as is, anything else as ``result``."""
        if not self.record_output:
            return None
        recorded = recordable(result)
        if type(result) is dict and isinstance(recorded, dict) and TRUNCATED_KEY not in recorded:
            return recorded
        return {"result": recorded}

    def generator_output(self, returned: Any, items: int) -> dict[str, Any] | None:
        """A generator's ``output_data``: how many items it gave (never the items), and
        what it returned, if anything."""
        if not self.record_output:
            return None
        output: dict[str, Any] = {"items": items}
        if returned is not None:
            output["result"] = recordable(returned)
        return output
