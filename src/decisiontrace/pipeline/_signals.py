"""SIGTERM: store what the run-record processors hold before the process goes away.

By default SIGTERM kills a Python process on the spot: no ``atexit``, no ``finally``, so
finished runs still queued for the writer thread and runs still open would be lost.
When the first :class:`~decisiontrace.pipeline.processor.RunRecordProcessor` is built in the
main thread and SIGTERM has its default disposition, a handler is installed that shuts
down every live processor (open runs stored as ``cancelled``), then restores the
default disposition and sends SIGTERM again, so the process ends exactly as it would
have (killed by the signal, exit status 143 in a shell).

When the application installed a Python handler first, that handler decides how the
process ends (a graceful drain, ``sys.exit``...): ours flushes every processor and then
calls it; shutting down is left to interpreter exit, so runs made while draining are
still stored. A handler installed outside Python, or SIG_IGN, is left alone.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref
from types import FrameType
from typing import Any, Protocol

from decisiontrace._internal.errors import background_error

logger = logging.getLogger("decisiontrace")

#: How long the handler waits, in all, for the processors to store what they hold.
SIGTERM_TIMEOUT_MILLIS = 3_000
#: Why a run still open when SIGTERM arrived was stored as cancelled.
SIGTERM_REASON = "process terminated by SIGTERM with the run still open"


class _Stoppable(Protocol):
    def force_flush(self, timeout_millis: int = ...) -> bool: ...

    def _shutdown_with(self, reason: str, timeout_millis: int) -> None: ...


_processors: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_installed = False
_handling = False
_previous: Any = None


def watch(processor: _Stoppable) -> None:
    """Store ``processor``'s runs on SIGTERM; install the handler if nobody else has one.

    The handler is installed at most once per process, and only from the main thread
    (Python allows no other). A later replacement by the application is respected.
    """
    global _installed, _previous
    _processors.add(processor)
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        if _installed:
            return
        try:
            current = signal.getsignal(signal.SIGTERM)
            # None: a handler installed from C; SIG_IGN: the process chose to ignore it.
            if current is signal.SIG_DFL or (callable(current) and current is not _on_sigterm):
                _previous = current
                signal.signal(signal.SIGTERM, _on_sigterm)
                _installed = True
        except (ValueError, OSError):  # not the main interpreter, or no signals here
            logger.debug("decisiontrace: could not install a SIGTERM handler", exc_info=True)


def _remaining(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _handling
    if _handling:  # a chained handler called us back: nothing more to do
        return
    _handling = True
    previous = _previous
    try:
        deadline = time.monotonic() + SIGTERM_TIMEOUT_MILLIS / 1000
        for processor in list(_processors):
            try:
                if previous is signal.SIG_DFL:
                    processor._shutdown_with(SIGTERM_REASON, _remaining(deadline))
                else:
                    processor.force_flush(_remaining(deadline))
            except Exception as error:  # in a signal handler: raising reaches nobody
                background_error("storing runs on SIGTERM", error)
    finally:
        _handling = False
    if previous is signal.SIG_DFL:
        # Terminate as the default disposition would have: by the signal itself.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if callable(previous):
        previous(signum, frame)


__all__ = ["SIGTERM_REASON", "SIGTERM_TIMEOUT_MILLIS", "watch"]
