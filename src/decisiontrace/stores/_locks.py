"""A thread lock that survives ``fork()``, and whether a process is still alive.

A lock another thread held at the moment of ``fork()`` stays held forever in the child,
which has only the forking thread: the child's first writer would deadlock. Every
:class:`ForkSafeLock` is replaced by a fresh one in a forked child.
"""

from __future__ import annotations

import os
import threading
import weakref
from types import TracebackType


class ForkSafeLock:
    """A ``threading.Lock`` (as a context manager) renewed in forked children."""

    __slots__ = ("__weakref__", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        _all_locks.add(self)

    def __enter__(self) -> ForkSafeLock:
        self.lock.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.lock.release()


_all_locks: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def _renew_in_child() -> None:
    for box in list(_all_locks):
        box.lock = threading.Lock()


os.register_at_fork(after_in_child=_renew_in_child)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (a reused pid looks alive: its
    journal entries wait)."""
    if pid == os.getpid():
        return True
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True
