"""SQLiteStore against a real database file, real threads and real processes."""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from datetime import timedelta, timezone
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from decisiontrace.models import Run, RunStatus, RunSummary
from decisiontrace.stores import SQLiteStore, StoreError
from decisiontrace.stores.sqlite import SCHEMA_VERSION

from ._records import EXAMPLE, EXAMPLE_SUMMARY, T0, make_record


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "runs.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(db_path)
    yield opened
    opened.close()


def raw_rows(path: Path, query: str) -> list[tuple[Any, ...]]:
    """Rows read with a separate plain connection, bypassing the store."""
    connection = sqlite3.connect(path)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


# -- round trip ----------------------------------------------------------------------------


def test_creates_parent_directories_in_wal_mode(store: SQLiteStore, db_path: Path) -> None:
    assert db_path.is_file()
    assert raw_rows(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert raw_rows(db_path, "SELECT key, value FROM meta") == [
        ("schema_version", str(SCHEMA_VERSION))
    ]


def test_round_trip_returns_the_saved_record_and_run(store: SQLiteStore) -> None:
    store.save_records([EXAMPLE])

    assert store.load_record(EXAMPLE["id"]) == EXAMPLE
    run = store.load_run(EXAMPLE["id"])
    assert run == Run.model_validate(EXAMPLE)
    assert run is not None
    # Computed fields must be dropped on load, not kept as extra fields.
    assert run.__pydantic_extra__ == {}
    assert run.metrics.__pydantic_extra__ == {}
    assert [decision.__pydantic_extra__ for decision in run.decisions] == [{}, {}]
    assert run.model_dump(mode="json") == EXAMPLE
    assert store.load_summary(EXAMPLE["id"]) == RunSummary.model_validate(EXAMPLE_SUMMARY)


def test_save_run_model_round_trip(store: SQLiteStore) -> None:
    run = Run.model_validate(make_record("run_model"))
    store.save_run(run)
    assert store.load_run("run_model") == run


def test_unknown_run_is_none(store: SQLiteStore) -> None:
    assert store.load_record("run_missing") is None
    assert store.load_run("run_missing") is None
    assert store.load_summary("run_missing") is None


def test_columns_hold_compact_json_summary_and_nodes(store: SQLiteStore, db_path: Path) -> None:
    store.save_records([EXAMPLE])
    [row] = raw_rows(
        db_path,
        "SELECT run_id, goal_id, status, started_at, completed_at, nodes, record, summary, "
        "schema_version FROM runs",
    )
    assert row == (
        EXAMPLE["id"],
        "support-goal",
        "failed",
        "2026-11-24T22:19:52.077100",
        "2026-11-24T22:19:52.077203",
        '["classifier","responder"]',
        zlib.compress(json.dumps(EXAMPLE, separators=(",", ":"), ensure_ascii=False).encode(), 1),
        json.dumps(EXAMPLE_SUMMARY, separators=(",", ":"), ensure_ascii=False),
        3,  # the record as compressed JSON (1: JSON text, 2: spans, both of 0.1)
    )


def test_resave_replaces_without_duplicates(store: SQLiteStore, db_path: Path) -> None:
    store.save_records([make_record("run_a", status=RunStatus.RUNNING)])
    store.save_records([make_record("run_a", status=RunStatus.COMPLETED, goal_id="other")])

    assert raw_rows(db_path, "SELECT run_id, status, goal_id FROM runs") == [
        ("run_a", "completed", "other")
    ]
    assert store.list_runs(status=RunStatus.RUNNING) == []
    assert [s.run_id for s in store.list_runs(status="completed")] == ["run_a"]


def test_last_record_of_a_batch_wins(store: SQLiteStore) -> None:
    store.save_records(
        [make_record("run_a", goal_id="first"), make_record("run_a", goal_id="second")]
    )
    assert [s.goal_id for s in store.list_runs()] == ["second"]


# -- atomicity -----------------------------------------------------------------------------


def test_batch_with_unserializable_record_saves_nothing(store: SQLiteStore) -> None:
    store.save_records([make_record("run_kept")])
    bad = make_record("run_bad")
    bad["output_data"] = {"tags": object()}  # not JSON

    with pytest.raises(TypeError):
        store.save_records([make_record("run_new"), bad])

    assert store.load_record("run_new") is None
    assert store.load_record("run_bad") is None
    assert store.load_record("run_kept") == make_record("run_kept")


def test_batch_failing_inside_the_transaction_is_rolled_back(
    store: SQLiteStore, db_path: Path
) -> None:
    store.save_records([make_record("run_kept")])
    no_id = make_record("ignored")
    no_id["id"] = None  # violates NOT NULL after run_new was already inserted

    with pytest.raises(sqlite3.IntegrityError):
        store.save_records([make_record("run_new"), no_id])

    assert raw_rows(db_path, "SELECT run_id FROM runs") == [("run_kept",)]
    # The connection is usable again: no transaction was left open.
    store.save_records([make_record("run_after")])
    assert {row[0] for row in raw_rows(db_path, "SELECT run_id FROM runs")} == {
        "run_kept",
        "run_after",
    }


# -- queries -------------------------------------------------------------------------------


@pytest.fixture
def populated(store: SQLiteStore) -> SQLiteStore:
    hour = timedelta(hours=1)
    store.save_records(
        [
            make_record("run_1", goal_id="g1", status=RunStatus.COMPLETED, started_at=T0),
            make_record("run_2", goal_id="g1", status=RunStatus.FAILED, started_at=T0 + hour),
            make_record(
                "run_3",
                goal_id="g2",
                status=RunStatus.COMPLETED,
                started_at=T0 + 2 * hour,
                nodes=("planner", "writer"),
            ),
            make_record(
                "run_4",
                goal_id="g2",
                status=RunStatus.RUNNING,
                started_at=T0 + 3 * hour,
                nodes=("planner", "planner"),
            ),
            make_record("run_5", goal_id="g1", status=RunStatus.COMPLETED, started_at=T0 - hour),
        ]
    )
    return store


def ids(summaries: list[RunSummary]) -> list[str]:
    return [summary.run_id for summary in summaries]


def test_lists_newest_first(populated: SQLiteStore) -> None:
    assert ids(populated.list_runs()) == ["run_4", "run_3", "run_2", "run_1", "run_5"]


def test_filters_by_goal_and_status(populated: SQLiteStore) -> None:
    assert ids(populated.list_runs(goal_id="g1")) == ["run_2", "run_1", "run_5"]
    assert ids(populated.list_runs(status=RunStatus.COMPLETED)) == ["run_3", "run_1", "run_5"]
    assert ids(populated.list_runs(status="completed")) == ["run_3", "run_1", "run_5"]
    assert ids(populated.list_runs(goal_id="g1", status="completed")) == ["run_1", "run_5"]
    assert populated.list_runs(goal_id="nope") == []


def test_filters_by_node(populated: SQLiteStore) -> None:
    assert ids(populated.list_runs(node_id="planner")) == ["run_4", "run_3"]
    assert ids(populated.list_runs(node_id="writer")) == ["run_3"]
    assert ids(populated.list_runs(node_id="classifier", goal_id="g1")) == [
        "run_2",
        "run_1",
        "run_5",
    ]
    # A prefix of a node id is not that node.
    assert populated.list_runs(node_id="plan") == []


def test_filters_by_since_naive_and_aware(populated: SQLiteStore) -> None:
    since = T0 + timedelta(hours=1)
    assert ids(populated.list_runs(since=since)) == ["run_4", "run_3", "run_2"]
    # The same instant given with a time zone selects the same runs.
    aware = since.astimezone().astimezone(timezone(timedelta(hours=-7)))
    assert ids(populated.list_runs(since=aware)) == ["run_4", "run_3", "run_2"]
    assert ids(populated.list_runs(since=since + timedelta(microseconds=1))) == [
        "run_4",
        "run_3",
    ]


def test_limit(populated: SQLiteStore) -> None:
    assert ids(populated.list_runs(limit=2)) == ["run_4", "run_3"]
    assert ids(populated.list_runs(goal_id="g1", limit=1)) == ["run_2"]
    assert populated.list_runs(limit=0) == []


def test_summaries_match_the_record(populated: SQLiteStore) -> None:
    [summary] = populated.list_runs(goal_id="g2", status="running")
    record = make_record(
        "run_4",
        goal_id="g2",
        status=RunStatus.RUNNING,
        started_at=T0 + timedelta(hours=3),
        nodes=("planner", "planner"),
    )
    assert summary == RunSummary.from_run(Run.model_validate(record))
    assert summary.status is RunStatus.RUNNING


# -- concurrency ---------------------------------------------------------------------------


def test_threads_write_concurrently(store: SQLiteStore, db_path: Path) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def write(thread_number: int) -> None:
        try:
            start.wait()
            for batch in range(5):
                store.save_records(
                    [make_record(f"run_t{thread_number}_{batch}_{i}") for i in range(5)]
                )
                store.list_runs(limit=3)
        except BaseException as exc:  # collected so the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    expected = {f"run_t{t}_{b}_{i}" for t in range(8) for b in range(5) for i in range(5)}
    rows = raw_rows(db_path, "SELECT run_id, COUNT(*) FROM runs GROUP BY run_id")
    assert {run_id for run_id, _ in rows} == expected
    assert {count for _, count in rows} == {1}


def test_connections_of_ended_threads_are_closed(store: SQLiteStore) -> None:
    def read() -> None:
        store.load_record("run_x")

    for _ in range(5):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    # The main thread's connection plus at most the last ended thread's.
    assert len(store._connections.in_this_process()) <= 2


def _write_in_child(path: str, prefix: str, count: int, start: Barrier) -> None:
    """Child process body: open the database at the same moment as the others and write."""
    start.wait()
    store = SQLiteStore(path, timeout=60)
    try:
        for batch_start in range(0, count, 10):
            batch = []
            for i in range(batch_start, batch_start + 10):
                record = copy.deepcopy(EXAMPLE)
                record["id"] = f"{prefix}_{i}"
                batch.append(record)
            store.save_records(batch)
    finally:
        store.close()


def test_processes_write_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(4)
    processes = [
        context.Process(target=_write_in_child, args=(str(path), f"run_p{n}", 100, start))
        for n in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)

    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    rows = raw_rows(path, "SELECT run_id, COUNT(*) FROM runs GROUP BY run_id")
    assert {run_id for run_id, _ in rows} == {f"run_p{n}_{i}" for n in range(4) for i in range(100)}
    assert {count for _, count in rows} == {1}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_writes_with_its_own_connection(store: SQLiteStore) -> None:
    store.save_records([make_record("run_parent")])
    parent_connection = store._connections.here()

    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            store.save_records([make_record("run_child")])
            child_connection = store._connections.here()
            own = store._connections.in_this_process()
            if child_connection is not parent_connection and own == [child_connection]:
                code = 0
        finally:
            os._exit(code)

    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert store.load_record("run_child") == make_record("run_child")
    # The parent's connection still works after the child exited.
    store.save_records([make_record("run_parent_after")])
    assert store._connections.here() is parent_connection
    # Equal start times: ties are broken by run id, descending.
    assert ids(store.list_runs()) == ["run_parent_after", "run_parent", "run_child"]


class SlowWriteStore(SQLiteStore):
    """A real SQLite store whose write transactions say when they are inside, then
    take their time before committing."""

    inside = threading.Event()

    def _transaction(self, statements: Any, then: Any = None) -> None:
        def slowly(connection: sqlite3.Connection) -> None:
            if then is not None:
                then(connection)
            self.inside.set()
            threading.Event().wait(0.3)

        super()._transaction(statements, then=slowly)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_during_a_write_leaves_the_child_able_to_write(db_path: Path) -> None:
    # SQLite keeps a process's file locks in its own memory: forked in the middle of its
    # parent's write transaction, a child believed the write lock held and never wrote.
    store = SlowWriteStore(db_path, timeout=3)
    writer = threading.Thread(target=store.save_records, args=([make_record("run_parent")],))
    writer.start()
    assert store.inside.wait(10)
    pid = os.fork()  # waits for the transaction to end
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            child = SQLiteStore(db_path, timeout=3)
            child.save_records([make_record("run_child")])
            code = 0
        finally:
            os._exit(code)
    writer.join(10)
    _, wait_status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert {s.run_id for s in store.list_runs()} == {"run_parent", "run_child"}
    store.close()


# -- opening -------------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_raises_store_error(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not a database\x00\xff" * 200)

    with pytest.raises(StoreError, match=r"x\.db") as raised:
        SQLiteStore(path)
    assert "\n" not in str(raised.value)


def test_a_directory_in_place_of_the_file_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreError, match=r"dir\.db"):
        SQLiteStore(tmp_path / "dir.db")


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_rejects_paths_that_name_no_file(path: str) -> None:
    with pytest.raises(ValueError, match="database file"):
        SQLiteStore(path)


def test_rejects_a_negative_timeout(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timeout"):
        SQLiteStore(tmp_path / "runs.db", timeout=-1)


def test_url_keeps_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = SQLiteStore("sub/runs.db")
    absolute = SQLiteStore(tmp_path / "abs.db")
    try:
        assert relative.url == "sqlite:///sub/runs.db"
        assert absolute.url == f"sqlite:///{tmp_path}/abs.db"
        assert absolute.url.startswith("sqlite:////")
        assert (tmp_path / "sub" / "runs.db").is_file()
    finally:
        relative.close()
        absolute.close()


def test_close_then_use_reopens(store: SQLiteStore) -> None:
    store.save_records([make_record("run_a")])
    store.close()
    assert store._connections.in_this_process() == []
    assert store.load_record("run_a") == make_record("run_a")


def test_context_manager_closes(db_path: Path) -> None:
    with SQLiteStore(db_path) as opened:
        opened.save_records([make_record("run_a")])
        assert isinstance(opened, SQLiteStore)
        assert len(opened._connections.in_this_process()) == 1
    assert opened._connections.in_this_process() == []


def test_opens_a_database_of_an_older_schema(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.execute(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY NOT NULL, goal_id TEXT, status TEXT, "
        "started_at TEXT, record TEXT)"
    )
    connection.execute(
        "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
        (EXAMPLE["id"], "support-goal", "failed", EXAMPLE["started_at"], json.dumps(EXAMPLE)),
    )
    connection.commit()
    connection.close()

    with SQLiteStore(path) as opened:
        assert opened.load_run(EXAMPLE["id"]) == Run.model_validate(EXAMPLE)
        # Derived columns were filled in, so the node filter finds the old run.
        assert ids(opened.list_runs(node_id="responder")) == [EXAMPLE["id"]]
        assert opened.list_runs(status="failed") == [RunSummary.model_validate(EXAMPLE_SUMMARY)]
        opened.save_records([make_record("run_new")])

    columns = {row[1] for row in raw_rows(path, "PRAGMA table_info(runs)")}
    assert {"nodes", "summary", "completed_at", "schema_version"} <= columns
    assert raw_rows(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


def test_a_newer_schema_is_read_with_a_warning(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SQLiteStore(db_path) as first:
        first.save_records([EXAMPLE])
    connection = sqlite3.connect(db_path)
    connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()

    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        reopened = SQLiteStore(db_path)
    try:
        assert reopened.load_record(EXAMPLE["id"]) == EXAMPLE
        assert "schema 99" in caplog.text
    finally:
        reopened.close()
    # The newer version number is left alone.
    assert raw_rows(db_path, "SELECT value FROM meta") == [("99",)]
