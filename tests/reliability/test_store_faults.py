"""Real SQLite faults under a running agent: locked, full, read-only, permission denied.

In every case the agent keeps going without waiting on the store, finished runs wait in
the processor's bounded queue and land once the fault clears, what had to be dropped
is counted and logged once, and nothing written before is damaged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore
from decisiontrace.stores.base import AssembledRun

from ._support import (
    child_script,
    finish,
    integrity,
    make_pipeline,
    read_line,
    spawn,
    wait_until,
)


class ObservedStore(SQLiteStore):
    """A real SQLite store that notes which threads write to it."""

    def __init__(self, path: Path, **options: float) -> None:
        super().__init__(path, **options)
        self.writer_threads: set[str] = set()

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        self.writer_threads.add(threading.current_thread().name)
        super().save_assembled(runs)


def record(tracker: dt.DecisionTracker, goal: str, count: int, payload: str = "") -> list[str]:
    run_ids = []
    for index in range(count):
        with tracker.run(goal, input_data={"index": index, "payload": payload}) as scope:
            decision_id = tracker.decide(
                intent="route", options=[{"id": "a"}, {"id": "b"}], chosen="a", reasoning="r"
            )
            tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=index)
        run_ids.append(scope.run_id)
    return run_ids


def record_without_waiting_on_the_store(
    tracker: dt.DecisionTracker, goal: str, count: int, payload: str = ""
) -> list[str]:
    """Record on another thread; fail if the agent is held up (the store stays broken)."""
    run_ids: list[str] = []
    agent = threading.Thread(
        target=lambda: run_ids.extend(record(tracker, goal, count, payload)), daemon=True
    )
    agent.start()
    agent.join(20)
    assert not agent.is_alive(), "the agent waited for the broken store"
    return run_ids


def error_lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and text in r.getMessage()
    ]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def test_a_database_locked_past_its_timeout(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = ObservedStore(db, timeout=0.1)
    pipeline = make_pipeline(store)
    earlier = record(pipeline.tracker, "before", 5)
    pipeline.flush()
    before = {run_id: store.load_run(run_id) for run_id in earlier}

    competitor = sqlite3.connect(db, isolation_level=None)
    competitor.execute("BEGIN EXCLUSIVE")
    try:
        during = record_without_waiting_on_the_store(pipeline.tracker, "during", 20)
        assert pipeline.processor.force_flush(500) is False
        assert all(store.load_run(run_id) is None for run_id in during)  # WAL: reads work
    finally:
        competitor.execute("ROLLBACK")
        competitor.close()
    pipeline.flush()
    assert all(store.load_run(run_id) is not None for run_id in during)
    assert {run_id: store.load_run(run_id) for run_id in earlier} == before
    assert integrity(db) == "ok"
    assert pipeline.processor.dropped_runs == 0
    assert store.writer_threads == {"decisiontrace-writer"}
    assert len(error_lines(caplog, "database is locked")) == 1
    pipeline.provider.shutdown()


def test_a_failing_store_is_retried_without_a_flush(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Nobody calls force_flush (a long-running service): the writer retries on its own.
    store = ObservedStore(db, timeout=0.05)
    pipeline = make_pipeline(store, flush_interval=0.05)
    competitor = sqlite3.connect(db, isolation_level=None)
    competitor.execute("BEGIN EXCLUSIVE")
    try:
        during = record_without_waiting_on_the_store(pipeline.tracker, "during", 3)
        wait_until(lambda: bool(error_lines(caplog, "database is locked")), what="a failed write")
    finally:
        competitor.execute("ROLLBACK")
        competitor.close()
    wait_until(
        lambda: all(store.load_run(run_id) is not None for run_id in during),
        what="the runs written by a retry",
    )
    assert pipeline.processor.dropped_runs == 0
    pipeline.provider.shutdown()


def limit_pages(store: SQLiteStore, pages: int | None) -> None:
    """SQLite's own size cap on every connection of the store: the disk is 'full'."""
    for connection in store._connections.in_this_process():
        if pages is None:
            connection.execute("PRAGMA max_page_count = 1073741823")
        else:
            (current,) = connection.execute("PRAGMA page_count").fetchone()
            connection.execute(f"PRAGMA max_page_count = {current}")


def test_a_full_disk(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStore(db)
    pipeline = make_pipeline(store)
    earlier = record(pipeline.tracker, "before", 5)
    pipeline.flush()
    before = {run_id: store.load_run(run_id) for run_id in earlier}

    limit_pages(store, pages=0)
    payload = os.urandom(12_000).hex()  # incompressible: needs new pages
    during = record_without_waiting_on_the_store(pipeline.tracker, "during", 10, payload)
    assert pipeline.processor.force_flush(500) is False
    assert all(store.load_run(run_id) is None for run_id in during)
    limit_pages(store, pages=None)  # space again

    pipeline.flush()
    assert all(store.load_run(run_id) is not None for run_id in during)
    assert {run_id: store.load_run(run_id) for run_id in earlier} == before
    assert integrity(db) == "ok"
    assert len(error_lines(caplog, "database or disk is full")) == 1
    pipeline.provider.shutdown()


def test_what_overflows_the_queue_is_dropped_oldest_first_counted_and_logged_once(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(db, timeout=0.05)
    pipeline = make_pipeline(store, max_unwritten_runs=5)
    competitor = sqlite3.connect(db, isolation_level=None)
    competitor.execute("BEGIN EXCLUSIVE")
    try:
        run_ids = []
        for index in range(12):
            run_ids += record(pipeline.tracker, f"g{index}", 1)
            # One run per writer pass, so the queue overflows one run at a time.
            waiting = min(index + 1, 5)
            wait_until(lambda waiting=waiting: pipeline.processor.queue_length == waiting)
        wait_until(lambda: pipeline.processor.dropped_runs == 7)
    finally:
        competitor.execute("ROLLBACK")
        competitor.close()
    pipeline.flush()
    assert [store.load_run(run_id) is not None for run_id in run_ids] == [False] * 7 + [True] * 5
    assert len(error_lines(caplog, "runs are being dropped")) == 1
    assert integrity(db) == "ok"
    pipeline.provider.shutdown()


# --- read-only file, permission denied: a writer running as another user ------------------

NOBODY = 65534

UNPRIVILEGED_WRITER = """
db = sys.argv[1]
store = SQLiteStore(db)   # as root: the schema exists, as in an agent that ran before
store.close()
# Imported while root: this Python's install (under /root) is unreadable to nobody, and
# `import decisiontrace` leaves the processor's module to its first use.
RunRecordProcessor = dt.RunRecordProcessor
os.setgid(65534)
os.setuid(65534)          # from here on the database is not writable for this process
processor = RunRecordProcessor(
    store, flush_interval=0.05, max_unwritten_runs=4, handle_sigterm=False
)
provider = TracerProvider()
provider.add_span_processor(processor)
tracker = dt.DecisionTracker("child", tracer_provider=provider)
started = time.monotonic()
run_ids = [finished_run(tracker, f"during-{index}") for index in range(6)]
elapsed = time.monotonic() - started
flushed_while_broken = processor.force_flush(500)
say(json.dumps({"run_ids": run_ids, "flushed": flushed_while_broken,
                "dropped": processor.dropped_runs, "elapsed": elapsed}))
sys.stdin.readline()      # the parent fixes the permissions
say(json.dumps({"flushed": processor.force_flush(15_000), "dropped": processor.dropped_runs}))
processor.shutdown(timeout_millis=2_000)
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="decisiontrace-perm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a writer as another user")
@pytest.mark.parametrize(
    "directory_mode",
    [0o777, 0o755],
    ids=["read-only-file", "permission-denied-directory"],
)
def test_a_writer_without_write_access_keeps_its_runs_until_access_is_granted(
    shared_dir: Path, tmp_path: Path, directory_mode: int
) -> None:
    db = shared_dir / "runs.db"
    pipeline = make_pipeline(SQLiteStore(db))
    earlier = record(pipeline.tracker, "before", 3)
    pipeline.flush()
    pipeline.provider.shutdown()
    before = {run_id: SQLiteStore(db).load_run(run_id) for run_id in earlier}
    db.chmod(0o644)  # root's file; "nobody" may read it, not write it
    shared_dir.chmod(directory_mode)

    child = spawn(child_script(tmp_path, UNPRIVILEGED_WRITER), str(db), stdin=-1)
    broken = json.loads(read_line(child))
    assert broken["flushed"] is False
    assert broken["dropped"] == 2  # 6 runs, room for 4: the 2 oldest are dropped
    reader = SQLiteStore(db)
    assert all(reader.load_run(run_id) is None for run_id in broken["run_ids"])

    for path in shared_dir.glob("runs.db*"):  # the -wal and -shm files too
        path.chmod(0o666)
    shared_dir.chmod(0o777)
    assert child.stdin is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    fixed = json.loads(read_line(child))
    returncode, _, stderr = finish(child)
    assert returncode == 0, stderr
    assert fixed == {"flushed": True, "dropped": 2}
    stored = [reader.load_run(run_id) is not None for run_id in broken["run_ids"]]
    assert stored == [False, False, True, True, True, True]
    assert {run_id: reader.load_run(run_id) for run_id in earlier} == before
    assert integrity(db) == "ok"
    assert stderr.count("runs are being dropped") == 1
    assert stderr.count("could not write") == 1
    reader.close()


def test_a_healthy_store_takes_a_burst_larger_than_the_queue_bound(db: Path) -> None:
    # The bound is for runs waiting on a failing store, not for one busy writer pass.
    pipeline = make_pipeline(SQLiteStore(db), max_unwritten_runs=5, flush_interval=30)
    run_ids = record(pipeline.tracker, "burst", 50)
    pipeline.flush()
    assert all(pipeline.store.load_run(run_id) is not None for run_id in run_ids)
    assert pipeline.processor.dropped_runs == 0
    pipeline.provider.shutdown()
