"""A store writer that hangs: the agent never waits for it, and shutdown keeps its timeout.

The hang is real: another connection holds SQLite's write lock while the store's own
busy timeout (30 s, the default) keeps the writer thread blocked inside SQLite.
"""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from decisiontrace.stores import SQLiteStore

from ._support import (
    Pipeline,
    child_script,
    finish,
    make_pipeline,
    read_line,
    rows,
    spawn,
    wait_until,
)


@pytest.fixture
def locked_db(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A database whose write lock another connection holds until the test ends."""
    db = tmp_path / "runs.db"
    SQLiteStore(db).close()  # the schema exists
    competitor = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    competitor.execute("BEGIN EXCLUSIVE")
    yield db, competitor
    if competitor.in_transaction:
        competitor.execute("ROLLBACK")
    competitor.close()


def record_runs(pipeline: Pipeline, count: int) -> list[str]:
    run_ids = []
    for _ in range(count):
        with pipeline.tracker.run("g") as scope:
            pipeline.tracker.quick_decision(intent="i", action="a", reasoning="r")
        run_ids.append(scope.run_id)
    return run_ids


def writer_is_inside_the_store(pipeline: Pipeline) -> bool:
    """The writer thread is blocked in a SQLite call (not waiting for work)."""
    thread = pipeline.processor._writer.thread
    if thread is None or thread.ident is None:
        return False
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "_transaction":
            return True
        frame = frame.f_back
    return False


def test_on_end_only_enqueues_and_shutdown_returns_within_its_timeout(
    locked_db: tuple[Path, sqlite3.Connection],
) -> None:
    db, competitor = locked_db
    pipeline = make_pipeline(SQLiteStore(db))  # 30 s busy timeout: the writer hangs
    first = record_runs(pipeline, 1)
    wait_until(lambda: writer_is_inside_the_store(pipeline), what="the writer to hang")

    done = threading.Event()
    run_ids: list[str] = []

    def agent() -> None:
        run_ids.extend(record_runs(pipeline, 200))
        done.set()

    threading.Thread(target=agent, daemon=True).start()
    assert done.wait(20), "span.end() waited for the hung writer"
    assert writer_is_inside_the_store(pipeline)  # the runs above were only queued

    started = time.monotonic()
    pipeline.processor.shutdown(timeout_millis=500)
    assert time.monotonic() - started < 3.0

    # Once the lock goes, the writer (still running, a daemon) writes what it had.
    competitor.execute("ROLLBACK")
    thread = pipeline.processor._writer.thread
    assert thread is not None
    thread.join(40)
    assert not thread.is_alive()
    (count,) = rows(db, "SELECT count(*) FROM runs")[0]
    assert count == len(first) + len(run_ids)


def test_force_flush_returns_false_within_its_timeout(
    locked_db: tuple[Path, sqlite3.Connection],
) -> None:
    db, competitor = locked_db
    pipeline = make_pipeline(SQLiteStore(db))
    record_runs(pipeline, 3)
    started = time.monotonic()
    assert pipeline.processor.force_flush(300) is False
    assert time.monotonic() - started < 2.0
    competitor.execute("ROLLBACK")
    pipeline.flush(40_000)
    assert rows(db, "SELECT count(*) FROM runs")[0][0] == 3
    pipeline.provider.shutdown()


HUNG_AT_SIGTERM = """
store, processor, provider, tracker = pipeline(sys.argv[1], flush_interval=0.05)
finished_run(tracker, "first")
while processor._writer._inbox:            # the writer takes the run and hangs in the store
    time.sleep(0.01)
time.sleep(0.2)
finished_run(tracker, "second")
say("ready")
time.sleep(60)
"""


def test_sigterm_with_a_hung_writer_still_terminates_promptly(
    locked_db: tuple[Path, sqlite3.Connection], tmp_path: Path
) -> None:
    db, _ = locked_db
    child = spawn(child_script(tmp_path, HUNG_AT_SIGTERM), str(db))
    assert read_line(child) == "ready"
    started = time.monotonic()
    child.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(child, timeout=20)
    assert returncode == -signal.SIGTERM, stderr
    # Bounded by the handler's own timeout (3 s), not by the store's 30 s.
    assert time.monotonic() - started < 10
    assert "could not be written before shutdown" in stderr
