"""One error policy for decisiontrace's own failures.

Two kinds of trouble reach a recording call, and they are handled differently:

- *The agent handed us something hostile or wrong* (a value whose ``__repr__`` raises,
  an option list of the wrong type): that is the agent's input, not our bug. The code
  reading it warns with :func:`warn_input` (once per kind of bad input and call site)
  and records what it can, always, tests included.
- *Our code has a bug*: every entry point the agent calls and every span-processor hook
  runs under :class:`guard` (or calls :func:`internal_error` from its own ``except``
  on the hot path, where a ``try`` costs nothing until it catches). The failure is
  logged once per kind, with its traceback, and never raised into the agent, whose
  work matters more than its telemetry. Under the test suite (``DECISIONTRACE_RAISE_
  INTERNAL_ERRORS=1``, set by ``tests/conftest.py``) it is re-raised instead, so a bug a
  guard would hide fails a test.
- *Our code has a bug on a background thread* (the processor's writer): raising there
  would reach nobody and kill the thread, so :func:`background_error` logs it as
  :func:`internal_error` does and, under the test suite, also keeps it in a list that
  ``tests/conftest.py`` checks after each test (:func:`take_background_errors`), failing
  the test. A store that fails is none of these: it is an expected condition, which the
  writer retries and logs on its own.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

logger = logging.getLogger("decisiontrace")

#: Set to 1 (the test suite does) to re-raise internal errors instead of logging them.
RAISE_ENV = "DECISIONTRACE_RAISE_INTERNAL_ERRORS"

P = ParamSpec("P")
R = TypeVar("R")


class Once:
    """The keys already reported, so each is reported once (thread-safe, bounded).

    One per process by default (:data:`PROCESS`); a component that should report
    again for each instance (a processor, a compat tracker) holds its own.
    """

    __slots__ = ("_limit", "_lock", "_seen")

    def __init__(self, limit: int = 1024) -> None:
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._limit = limit

    def first(self, key: str) -> bool:
        """True the first time ``key`` is seen (always True past ``limit`` keys)."""
        with self._lock:
            if key in self._seen:
                return False
            if len(self._seen) < self._limit:  # unbounded keys must not grow memory
                self._seen.add(key)
            return True

    def clear(self) -> None:
        """Forget every key (tests start each from a clean slate)."""
        with self._lock:
            self._seen.clear()

    def forget(self, key: str) -> None:
        """Report ``key`` again the next time (e.g. a store that failed, recovered)."""
        with self._lock:
            self._seen.discard(key)


#: What this process has reported once already.
PROCESS = Once()


def warn_once(
    key: str,
    message: str,
    *args: object,
    once: Once | None = None,
    level: int = logging.WARNING,
    exc_info: BaseException | bool = False,
) -> bool:
    """Log ``message`` (``%``-formatted with ``args``) the first time ``key`` is seen.

    Returns whether it was logged.
    """
    if not (once or PROCESS).first(key):
        return False
    logger.log(level, message, *args, exc_info=exc_info)
    return True


def warn_input(message: str, *, once: Once | None = None) -> bool:
    """Warn about bad input to a recording call, once per kind of input and call site.

    The *kind* is where the check that found the problem sits and how it was reached
    (the chain of decisiontrace's frames: which field of which call), the *call site*
    the agent's line that made the call. The first occurrence of each pair is logged at
    WARNING, always; later ones at DEBUG, so an agent repeating one mistake in a loop
    gets one clear line, not a flood, and a different mistake, or the same one made
    elsewhere, is still reported. Nothing is computed on the well-formed path: only
    when there is something to say. Returns whether it was logged at WARNING.
    """
    if warn_once(_input_key(sys._getframe(1)), "decisiontrace: %s", message, once=once):
        return True
    logger.debug("decisiontrace: %s", message)
    return False


#: Modules whose frames are ours (or a wrapper's of ours), not the agent's.
_OWN_MODULES = ("decisiontrace.", "wrapt.")


def _input_key(frame: Any) -> str:
    """Our frames from ``frame`` up to the agent's first frame, as one string."""
    parts = []
    for _ in range(64):  # bounded: a pathological stack must not cost more
        if frame is None:
            break
        code = frame.f_code
        parts.append(f"{code.co_filename}:{frame.f_lineno}")
        if not (frame.f_globals.get("__name__", "") + ".").startswith(_OWN_MODULES):
            break  # the agent's line: the call site
        frame = frame.f_back
    return "input:" + "|".join(parts)


def raising() -> bool:
    """Whether internal errors are re-raised (the test suite), read when one happens."""
    return os.environ.get(RAISE_ENV, "") not in ("", "0")


def internal_error(kind: str, error: Exception, *, once: Once | None = None) -> None:
    """Report a bug of ours caught at an entry point: log it once per ``kind`` (with its
    traceback), or re-raise it when :func:`raising`. Call it from an ``except`` block."""
    if raising():
        raise error
    if not warn_once(
        f"internal:{kind}",
        "decisiontrace: %s failed",
        kind,
        once=once,
        level=logging.ERROR,
        exc_info=error,
    ):
        logger.debug("decisiontrace: %s failed again: %r", kind, error)


#: Internal errors caught on background threads under the test suite, not yet taken.
_background: list[tuple[str, BaseException]] = []
_background_lock = threading.Lock()


def background_error(kind: str, error: Exception, *, once: Once | None = None) -> None:
    """Report a bug of ours caught on a background thread: log it once per ``kind`` (with
    its traceback) and, when :func:`raising`, keep it for :func:`take_background_errors`.
    Never raises. Call it from an ``except`` block."""
    if raising():
        with _background_lock:
            _background.append((kind, error))
    if not warn_once(
        f"internal:{kind}",
        "decisiontrace: %s failed",
        kind,
        once=once,
        level=logging.ERROR,
        exc_info=error,
    ):
        logger.debug("decisiontrace: %s failed again: %r", kind, error)


def take_background_errors() -> list[tuple[str, BaseException]]:
    """The internal errors :func:`background_error` kept since the last call (and forget them)."""
    with _background_lock:
        taken = list(_background)
        _background.clear()
    return taken


class guard:  # lower case: used like a function, ``with guard("x"):``
    """Guard an entry point: :func:`internal_error` for what it raises.

    As a context manager the block's exception is swallowed (after reporting); as a
    decorator the function returns ``default`` instead. ``BaseException`` that is not
    an ``Exception`` (cancellation, ``KeyboardInterrupt``, ``SystemExit``) passes.
    Instances hold no state per use: create them once at module level.

    Example::

        _FLUSH = guard("force_flush", default=False)

        @_FLUSH
        def force_flush(self, timeout_millis: int = 30_000) -> bool: ...

        with guard("listener"):
            listener(records)
    """

    __slots__ = ("default", "kind", "once")

    def __init__(self, kind: str, *, default: Any = None, once: Once | None = None) -> None:
        self.kind = kind
        self.default = default
        self.once = once

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if not isinstance(exc, Exception):
            return False
        internal_error(self.kind, exc, once=self.once)
        return True

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        kind, once, default = self.kind, self.once, self.default

        @functools.wraps(function)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return function(*args, **kwargs)
            except Exception as error:
                internal_error(kind, error, once=once)
                return default  # type: ignore[no-any-return]

        return guarded


__all__ = [
    "PROCESS",
    "RAISE_ENV",
    "Once",
    "background_error",
    "guard",
    "internal_error",
    "raising",
    "take_background_errors",
    "warn_input",
    "warn_once",
]
