"""Locks that survive ``fork()``, and whether a process is still alive.

A lock another thread held at the moment of ``fork()`` stays held forever in the child,
which has only the forking thread: the child's first writer would deadlock. Every
:class:`ForkSafeLock` is replaced by a fresh one in a forked child. A
:class:`ForkGate` goes further: ``fork()`` waits until no thread is inside one.
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

#: How long ``fork()`` waits for a thread to leave a :class:`ForkGate` (seconds); past
#: that the fork goes on (the gate guards against a rare fault, not a fork that hangs).
FORK_WAIT = 30.0


class ForkGate:
    """Held around work that ``fork()`` must not cut in half; ``fork()`` waits for it.

    A SQLite write transaction is such work: SQLite keeps a process's file locks in its
    own memory, so a child forked while its parent held the write lock believes that
    lock is still held, and none of its connections can ever write. Threads inside a
    gate are not serialized against each other by it beyond what the lock does: one at
    a time, which the SQLite write lock imposes anyway.
    """

    __slots__ = ("__weakref__", "held_for_fork", "lock")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held_for_fork = False
        _all_gates.add(self)

    def __enter__(self) -> ForkGate:
        self.lock.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.lock.release()


_all_gates: weakref.WeakSet[ForkGate] = weakref.WeakSet()


def _close_gates_for_fork() -> None:
    for gate in list(_all_gates):
        gate.held_for_fork = gate.lock.acquire(timeout=FORK_WAIT)


def _open_gates_in_parent() -> None:
    for gate in list(_all_gates):
        if gate.held_for_fork:
            gate.held_for_fork = False
            gate.lock.release()


def _renew_in_child() -> None:
    for box in list(_all_locks):
        box.lock = threading.Lock()
    for gate in list(_all_gates):
        gate.lock = threading.Lock()
        gate.held_for_fork = False


os.register_at_fork(
    before=_close_gates_for_fork,
    after_in_parent=_open_gates_in_parent,
    after_in_child=_renew_in_child,
)


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
