"""os.fork and multiprocessing 'fork' with runs in flight.

The child must get its own writer thread and SQLite connection, write its own runs and
nothing of its parent's, and never deadlock on a lock another parent thread held at
the moment of the fork. Every wait has a timeout; a child that hangs fails the test.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

from ._support import Pipeline, integrity, make_pipeline, rows

CHILD_RUNS = 5


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    built = make_pipeline(SQLiteStore(tmp_path / "runs.db"), flush_interval=0.05)
    yield built
    built.provider.shutdown()


def child_work(pipeline: Pipeline, goal: str) -> None:
    for index in range(CHILD_RUNS):
        with pipeline.tracker.run(goal, input_data={"index": index}):
            pipeline.tracker.quick_decision(intent="child step", action="a", reasoning="r")


def wait_for_child(pid: int, timeout: float = 20.0) -> int:
    """The child's exit status; kill it and fail if it has not ended in ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung (deadlock?)")


class Busy:
    """Runs in flight in the parent while it forks: one open, others being recorded."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.stop = threading.Event()
        self.run_ids: list[str] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        tracker = self.pipeline.tracker
        while not self.stop.is_set():
            with tracker.run("parent-busy") as scope:
                tracker.quick_decision(intent="parent step", action="a", reasoning="r")
            self.run_ids.append(scope.run_id)

    def __enter__(self) -> Busy:
        tracker = self.pipeline.tracker
        self.open_run = tracker.start_run(goal_id="parent-open", execution_id="parent-open")
        tracker.quick_decision(
            execution_id="parent-open", intent="before fork", action="a", reasoning="r"
        )
        self.thread.start()
        while len(self.run_ids) < 20:
            time.sleep(0.005)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(10)
        self.pipeline.tracker.end_run(success=True, execution_id="parent-open")


def check_store(pipeline: Pipeline, busy: Busy, child_goals: list[str]) -> None:
    pipeline.flush()
    db = Path(pipeline.store.url.removeprefix("sqlite:///"))
    counted = dict(rows(db, "SELECT goal_id, count(*) FROM runs GROUP BY goal_id"))
    for goal in child_goals:
        assert counted.pop(goal) == CHILD_RUNS
    assert counted == {"parent-busy": len(busy.run_ids), "parent-open": 1}
    parent_open = pipeline.store.load_run(busy.open_run)
    assert parent_open is not None and parent_open.status == dt.RunStatus.COMPLETED
    assert integrity(db) == "ok"


def test_os_fork_with_runs_in_flight(pipeline: Pipeline) -> None:
    with Busy(pipeline) as busy:
        pid = os.fork()
        if pid == 0:  # the child: its own runs, then out without running pytest's code
            code = 1
            try:
                processor = pipeline.processor
                # Counted since construction: what the parent had written when it forked
                # (none, or some when its writer thread was quicker than the busy loop).
                inherited = processor.written_runs
                child_work(pipeline, "child")
                processor.shutdown(timeout_millis=10_000)
                # Exactly its own runs: nothing queued by the parent, not the parent's
                # open run (cancelled by this shutdown, were it the child's).
                code = 0 if processor.written_runs - inherited == CHILD_RUNS else 3
            finally:
                os._exit(code)
        assert wait_for_child(pid) == 0
    check_store(pipeline, busy, ["child"])


def test_a_forked_child_ignores_the_runs_it_inherited(pipeline: Pipeline) -> None:
    tracker = pipeline.tracker
    tracker.start_run(goal_id="parent-open", execution_id="parent-open")
    tracker.quick_decision(execution_id="parent-open", intent="parent", action="a", reasoning="r")
    pid = os.fork()
    if pid == 0:  # the child ends the parent's run (its copy of it), then one run of its own
        code = 1
        try:
            tracker.quick_decision(
                execution_id="parent-open", intent="child", action="a", reasoning="r"
            )
            tracker.end_run(success=False, execution_id="parent-open")
            child_work(pipeline, "child")
            processor = pipeline.processor
            processor.shutdown(timeout_millis=10_000)
            code = 0 if processor.written_runs == CHILD_RUNS else 3
        finally:
            os._exit(code)
    assert wait_for_child(pid) == 0
    tracker.end_run(success=True, execution_id="parent-open")
    pipeline.flush()
    db = Path(pipeline.store.url.removeprefix("sqlite:///"))
    assert dict(rows(db, "SELECT goal_id, count(*) FROM runs GROUP BY goal_id")) == {
        "child": CHILD_RUNS,
        "parent-open": 1,
    }
    run = pipeline.store.load_run(
        rows(db, "SELECT run_id FROM runs WHERE goal_id = 'parent-open'")[0][0]
    )
    assert run is not None and run.status == dt.RunStatus.COMPLETED
    assert [d.intent for d in run.decisions] == ["parent"]


def mp_child(pipeline: Pipeline, goal: str) -> None:
    # Returns without flushing: the processor stores the runs as the child exits.
    child_work(pipeline, goal)


def test_multiprocessing_fork_with_runs_in_flight(tmp_path: Path) -> None:
    # A writer that would take 30 s on its own: the child must store its runs at exit.
    pipeline = make_pipeline(SQLiteStore(tmp_path / "runs.db"), flush_interval=30)
    context = multiprocessing.get_context("fork")
    with Busy(pipeline) as busy:
        children = [
            context.Process(target=mp_child, args=(pipeline, f"mp-{index}")) for index in range(2)
        ]
        for child in children:
            child.start()
        for child in children:
            child.join(20)
            if child.is_alive():
                child.kill()
                child.join(5)
                raise AssertionError("a multiprocessing child hung")
            assert child.exitcode == 0
    check_store(pipeline, busy, ["mp-0", "mp-1"])
    pipeline.provider.shutdown()


def test_a_store_lock_held_by_another_thread_at_fork_time_does_not_deadlock_the_child(
    pipeline: Pipeline,
) -> None:
    store = pipeline.store
    assert isinstance(store, SQLiteStore)
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with store._connections.lock:
            holding.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock, daemon=True)
    holder.start()
    assert holding.wait(5)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child_work(pipeline, "child")  # its writer opens a connection: takes the lock
            code = 0 if pipeline.processor.force_flush(10_000) else 2
        finally:
            os._exit(code)
    try:
        assert wait_for_child(pid) == 0
    finally:
        release.set()
        holder.join(5)
    check = dict(
        rows(
            Path(store.url.removeprefix("sqlite:///")),
            "SELECT goal_id, count(*) FROM runs GROUP BY goal_id",
        )
    )
    assert check == {"child": CHILD_RUNS}
