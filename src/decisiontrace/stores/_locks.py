"""Locks that survive ``fork()``.

A lock another thread held at the moment of ``fork()`` stays held forever in the child,
which has only the forking thread: the child's first writer would deadlock. Every
:class:`ForkSafeLock` is replaced by a fresh one in a forked child; ``fork()`` waits
for those made with ``fork_waits``.
"""

from __future__ import annotations

import os
import threading
import weakref
from types import TracebackType

#: How long ``fork()`` waits for a thread to leave a lock made with ``fork_waits``
#: (seconds); past that the fork goes on (it guards against a rare fault, and a fork
#: that hangs would be worse).
FORK_WAIT = 30.0


class ForkSafeLock:
    """A ``threading.Lock`` (as a context manager) renewed in forked children.

    With ``fork_waits``, ``fork()`` also waits until no thread holds it: for work a fork
    must not cut in half. A SQLite write transaction is such work: SQLite keeps a
    process's file locks in its own memory, so a child forked while its parent held the
    write lock believes that lock is still held, and none of its connections can ever
    write.
    """

    __slots__ = ("__weakref__", "held_for_fork", "lock")

    def __init__(self, *, fork_waits: bool = False) -> None:
        self.lock = threading.Lock()
        self.held_for_fork = False
        _all_locks.add(self)
        if fork_waits:
            _fork_waits_for.add(self)

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
_fork_waits_for: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


def _wait_before_fork() -> None:
    for box in list(_fork_waits_for):
        box.held_for_fork = box.lock.acquire(timeout=FORK_WAIT)


def _release_in_parent() -> None:
    for box in list(_fork_waits_for):
        if box.held_for_fork:
            box.held_for_fork = False
            box.lock.release()


def _renew_in_child() -> None:
    for box in list(_all_locks):
        box.lock = threading.Lock()
        box.held_for_fork = False


os.register_at_fork(
    before=_wait_before_fork, after_in_parent=_release_in_parent, after_in_child=_renew_in_child
)
