"""Handing finished runs to a storage object's own ``save_run``, as the original does.

The original tracker ends a run with ``asyncio.create_task(storage.save_run(run))`` on
the running event loop. :class:`SaveRunHandOver` does the same when ``end_run`` is
called with a loop running in its thread. With no loop (where the original raises),
the coroutine is started on one private event-loop thread shared by every tracker, and
``end_run`` waits until ``save_run`` has taken the run: has run up to its first
suspension (a batched storage has queued it) or, for a plain function, has returned.
It never waits longer than :data:`HAND_OVER_TIMEOUT`, and while an earlier hand-over
of the same storage is still stuck it does not wait at all: a ``save_run`` that hangs
costs the agent one timeout, not one per run. Failures are logged once per tracker,
with the run id, and never reach the agent.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from decisiontrace._internal.errors import Once, internal_error, warn_once
from decisiontrace.models import Run
from decisiontrace.spanmodel._jsonsafe import safe_repr, safe_str

logger = logging.getLogger("decisiontrace")

#: Seconds end_run waits, at most, for save_run to take a run when no loop runs.
HAND_OVER_TIMEOUT = 1.0
#: Seconds interpreter exit waits for hand-overs still running on the private loop.
EXIT_TIMEOUT = 5.0
#: Threads that call plain (not async) save_run functions, at most.
MAX_SAVE_THREADS = 4


class _PrivateLoop:
    """One event loop on a daemon thread, plus a small pool for plain save_run calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=MAX_SAVE_THREADS, thread_name_prefix="decisiontrace-save"
        )
        self.pending: set[concurrent.futures.Future[None]] = set()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="decisiontrace-handover", daemon=True
        )
        self.thread.start()

    def wait_pending(self, timeout: float) -> bool:
        """Wait until every hand-over started here has finished; True if all did."""
        pending = list(self.pending)
        if not pending:
            return True
        _done, not_done = concurrent.futures.wait(pending, timeout=timeout)
        return not not_done


_private: _PrivateLoop | None = None
_private_lock = threading.Lock()


def _private_loop() -> _PrivateLoop:
    global _private
    private = _private
    if private is None:
        with _private_lock:
            private = _private
            if private is None:
                private = _private = _PrivateLoop()
    return private


def _forget_private_loop() -> None:
    # A forked child has the parent's loop object but not its thread: start afresh.
    global _private, _private_lock
    _private = None
    _private_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_private_loop)


def wait_for_private_hand_overs(timeout: float) -> bool:
    """Wait for ``save_run`` calls running on the private loop; True if all finished."""
    private = _private
    return True if private is None else private.wait_pending(timeout)


@atexit.register
def _finish_hand_overs_at_exit() -> None:
    if not wait_for_private_hand_overs(EXIT_TIMEOUT):
        logger.error(
            "decisiontrace: some storage.save_run calls had not finished %.0f s into "
            "interpreter exit; their runs may not be saved",
            EXIT_TIMEOUT,
        )


class SaveRunHandOver:
    """Hands each finished run of one tracker to ``storage.save_run``.

    Args:
        storage: the object whose ``save_run(run)`` receives the runs.
        save_run: that bound method (looked up once, when the storage was resolved).
    """

    def __init__(self, storage: Any, save_run: Callable[[Run], Any]) -> None:
        self._storage = storage
        self._save_run = save_run
        self._is_async = inspect.iscoroutinefunction(save_run)
        self._once = Once()  # what this tracker's hand-overs have logged already
        self._last_taken: threading.Event | None = None
        # Tasks on the agent's loop, kept referenced until done (asyncio keeps weak ones).
        self._tasks: set[asyncio.Task[None]] = set()

    def hand_over(self, run: Run) -> None:
        """Give ``run`` to ``save_run`` (see the module docstring). Never raises."""
        try:
            if self._is_async:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
                if loop is not None:
                    self._schedule_on(loop, run)
                    return
            self._start_privately(run)
        except Exception as error:
            internal_error("handing a run to save_run", error)

    def _schedule_on(self, loop: asyncio.AbstractEventLoop, run: Run) -> None:
        """As the original: a task on the running loop; end_run does not wait for it."""
        started: list[bool] = []
        task = loop.create_task(self._save_async(run, started))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._after_loop_task(done, run, started))

    def _after_loop_task(self, task: asyncio.Task[None], run: Run, started: list[bool]) -> None:
        self._tasks.discard(task)
        if task.cancelled() and not started:
            # The agent's loop was closing (asyncio.run cancels what is left) before the
            # task ran: the original loses this run; we start it on the private loop.
            self._start_privately(run)

    def _start_privately(self, run: Run) -> None:
        private = _private_loop()
        taken = threading.Event()
        previous, self._last_taken = self._last_taken, taken
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        private.pending.add(future)
        future.add_done_callback(private.pending.discard)
        if self._is_async:
            private.loop.call_soon_threadsafe(self._start_task, private, run, taken, future)
        else:
            private.executor.submit(self._call_plain, private, run, taken, future)
        if previous is not None and not previous.is_set():
            return  # an earlier run is still not taken: do not make the agent wait again
        if not taken.wait(HAND_OVER_TIMEOUT):
            warn_once(
                "stuck",
                "decisiontrace: %s.save_run did not take run %s within %.1f s; not waiting "
                "for it (nor for later runs while it is stuck)",
                _describe(self._storage),
                run.id,
                HAND_OVER_TIMEOUT,
                once=self._once,
                level=logging.ERROR,
            )

    def _start_task(
        self,
        private: _PrivateLoop,
        run: Run,
        taken: threading.Event,
        future: concurrent.futures.Future[None],
    ) -> None:
        """On the private loop: start save_run; ``taken`` once it first yields or ends."""
        task = private.loop.create_task(self._save_async(run))
        task.add_done_callback(lambda _: future.set_result(None))
        # Scheduled after the task's first step: set once save_run has run up to its
        # first suspension, or to its end.
        private.loop.call_soon(taken.set)

    def _call_plain(
        self,
        private: _PrivateLoop,
        run: Run,
        taken: threading.Event,
        future: concurrent.futures.Future[None],
    ) -> None:
        """On a save thread: call a plain save_run (awaiting what it may return)."""
        try:
            result = self._save_run(run)
            if inspect.isawaitable(result):
                awaited = asyncio.run_coroutine_threadsafe(_awaited(result), private.loop)
                taken.set()
                awaited.result()
        except Exception as error:  # expected: the user's save_run failed
            self._log_failure(run, error)
        finally:
            taken.set()
            future.set_result(None)

    async def _save_async(self, run: Run, started: list[bool] | None = None) -> None:
        if started is not None:
            started.append(True)
        try:
            await self._save_run(run)
        except Exception as error:  # expected: the user's save_run failed
            self._log_failure(run, error)

    def _log_failure(self, run: Run, error: BaseException) -> None:
        warn_once(
            "failed",
            "decisiontrace: %s.save_run failed for run %s: %s; later failures of this "
            "tracker are not logged",
            _describe(self._storage),
            run.id,
            safe_str(error) or type(error).__name__,
            once=self._once,
            level=logging.ERROR,
        )


async def _awaited(awaitable: Any) -> None:
    await awaitable


def _describe(storage: Any) -> str:
    """The storage for a log line: its repr, unless that is only ``<X object at 0x..>``."""
    if getattr(type(storage), "__repr__", None) is object.__repr__:
        return type(storage).__name__
    return safe_repr(storage)


__all__ = ["HAND_OVER_TIMEOUT", "SaveRunHandOver", "wait_for_private_hand_overs"]
