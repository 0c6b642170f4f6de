"""JSONFilesStore on a real folder: the original framework's layout, atomic files, hostile ids."""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator
from datetime import timedelta, timezone
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from decisiontrace.models import Run, RunStatus, RunSummary
from decisiontrace.stores import JSONFilesStore, StoreError, open_store

from ._records import EXAMPLE, EXAMPLE_ID, EXAMPLE_SUMMARY, T0, make_record


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(root: Path) -> Iterator[JSONFilesStore]:
    opened = JSONFilesStore(root)
    yield opened
    opened.close()


def read(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def all_files(folder: Path) -> set[str]:
    """Every file below ``folder``, as paths relative to it."""
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if not path.is_dir()}


def ids(summaries: list[RunSummary]) -> list[str]:
    return [summary.run_id for summary in summaries]


# -- layout --------------------------------------------------------------------------------


def test_writes_the_layout_the_framework_reads(store: JSONFilesStore, root: Path) -> None:
    store.save_records([EXAMPLE])

    run_file = root / "runs" / f"{EXAMPLE_ID}.json"
    assert read(run_file) == EXAMPLE
    assert run_file.read_text("utf-8").startswith('{\n  "id": ')  # indent=2
    # The framework loads these files with pydantic's model_validate_json.
    assert Run.model_validate_json(run_file.read_text("utf-8")) == Run.model_validate(EXAMPLE)
    assert read(root / "summaries" / f"{EXAMPLE_ID}.json") == EXAMPLE_SUMMARY
    assert read(root / "indexes" / "by_goal" / "support-goal.json") == [EXAMPLE_ID]
    assert read(root / "indexes" / "by_status" / "failed.json") == [EXAMPLE_ID]
    assert read(root / "indexes" / "by_node" / "classifier.json") == [EXAMPLE_ID]
    assert read(root / "indexes" / "by_node" / "responder.json") == [EXAMPLE_ID]
    assert all_files(root) == {
        ".lock",
        f"runs/{EXAMPLE_ID}.json",
        f"summaries/{EXAMPLE_ID}.json",
        "indexes/by_goal/support-goal.json",
        "indexes/by_status/failed.json",
        "indexes/by_node/classifier.json",
        "indexes/by_node/responder.json",
    }


def test_round_trip(store: JSONFilesStore) -> None:
    store.save_records([EXAMPLE])

    assert store.load_record(EXAMPLE_ID) == EXAMPLE
    run = store.load_run(EXAMPLE_ID)
    assert run == Run.model_validate(EXAMPLE)
    assert run is not None
    assert run.__pydantic_extra__ == {}
    assert run.metrics.__pydantic_extra__ == {}
    assert [decision.__pydantic_extra__ for decision in run.decisions] == [{}, {}]
    assert store.load_summary(EXAMPLE_ID) == RunSummary.model_validate(EXAMPLE_SUMMARY)
    assert store.load_record("run_missing") is None


def test_indexes_collect_runs_in_save_order(store: JSONFilesStore, root: Path) -> None:
    store.save_records([make_record("run_1"), make_record("run_2")])
    store.save_records([make_record("run_3", nodes=("classifier", "writer"))])

    assert read(root / "indexes" / "by_goal" / "support-goal.json") == ["run_1", "run_2", "run_3"]
    assert read(root / "indexes" / "by_node" / "responder.json") == ["run_1", "run_2"]
    assert read(root / "indexes" / "by_node" / "writer.json") == ["run_3"]


def test_resave_moves_the_run_between_indexes(store: JSONFilesStore, root: Path) -> None:
    store.save_records([make_record("run_a", status=RunStatus.RUNNING), make_record("run_b")])
    store.save_records(
        [
            make_record(
                "run_a", status=RunStatus.COMPLETED, goal_id="other", nodes=("classifier", "x")
            )
        ]
    )

    indexes = root / "indexes"
    assert read(indexes / "by_status" / "running.json") == []
    assert read(indexes / "by_status" / "completed.json") == ["run_a"]
    assert read(indexes / "by_status" / "failed.json") == ["run_b"]
    assert read(indexes / "by_goal" / "support-goal.json") == ["run_b"]
    assert read(indexes / "by_goal" / "other.json") == ["run_a"]
    assert read(indexes / "by_node" / "responder.json") == ["run_b"]
    assert read(indexes / "by_node" / "classifier.json") == ["run_a", "run_b"]
    assert ids(store.list_runs()) == ["run_b", "run_a"]
    assert store.list_runs(status="running") == []


def test_no_temporary_files_are_left(store: JSONFilesStore, root: Path) -> None:
    for batch in range(3):
        store.save_records([make_record(f"run_{batch}_{i}") for i in range(4)])
    assert [name for name in all_files(root) if not name.endswith(".json")] == [".lock"]


def test_a_failed_write_removes_its_temporary_file(store: JSONFilesStore, root: Path) -> None:
    # A folder where the run file should go makes the final rename fail.
    (root / "runs" / "run_blocked.json").mkdir()

    with pytest.raises(IsADirectoryError):
        store.save_records([make_record("run_blocked")])

    assert os.listdir(root / "runs") == ["run_blocked.json"]


def test_a_record_json_cannot_hold_saves_nothing(store: JSONFilesStore, root: Path) -> None:
    bad = make_record("run_bad")
    bad["output_data"] = {"tags": {"a"}}

    with pytest.raises(TypeError):
        store.save_records([make_record("run_good"), bad])

    assert os.listdir(root / "runs") == []


# -- hostile ids ---------------------------------------------------------------------------

HOSTILE_RUN_IDS = ["../evil", "a/b", "a\\b", "a\x00b", "..", ".hidden", "", "../../../tmp/evil"]


@pytest.mark.parametrize("run_id", HOSTILE_RUN_IDS)
def test_hostile_run_ids_are_refused_and_the_rest_saved(
    tmp_path: Path, root: Path, run_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = JSONFilesStore(root)
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        store.save_records([make_record(run_id), make_record("run_ok")])

    assert store.load_record("run_ok") == make_record("run_ok")
    assert store.load_record(run_id) is None
    assert os.listdir(root / "runs") == ["run_ok.json"]
    assert os.listdir(tmp_path) == ["store"]  # nothing written beside the store
    assert read(root / "indexes" / "by_goal" / "support-goal.json") == ["run_ok"]
    [message] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert repr(run_id) in message


@pytest.mark.parametrize(
    ("field", "value"),
    [("goal_id", "../evil"), ("status", "../../evil"), ("goal_id", "a/b"), ("node", "..")],
)
def test_hostile_goal_status_and_node_ids_are_refused(
    tmp_path: Path, root: Path, field: str, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = JSONFilesStore(root)
    bad = make_record("run_bad")
    if field == "node":
        bad["decisions"][0]["node_id"] = value
    else:
        bad[field] = value
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        store.save_records([bad, make_record("run_ok")])

    assert os.listdir(root / "runs") == ["run_ok.json"]
    assert os.listdir(tmp_path) == ["store"]
    assert not any("evil" in name for name in all_files(root))
    assert "'run_bad'" in caplog.text
    assert repr(value) in caplog.text


def test_a_symlink_planted_to_escape_is_refused(
    tmp_path: Path, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = JSONFilesStore(root)
    outside = tmp_path / "outside.json"
    outside.write_text("untouched", "utf-8")
    (root / "runs" / "run_link.json").symlink_to(outside)

    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        store.save_records([make_record("run_link")])

    assert outside.read_text("utf-8") == "untouched"
    assert "leaves the store folder" in caplog.text


@pytest.mark.parametrize(
    "run_id", ["$(rm -rf x)", "run; ls", "a b`c`", "run|x&y>z", "run_ünïcode", "a..b.c"]
)
def test_ids_with_shell_characters_inside_the_folder_are_saved(
    store: JSONFilesStore, root: Path, run_id: str
) -> None:
    store.save_records([make_record(run_id, goal_id=f"goal {run_id}")])

    assert read(root / "runs" / f"{run_id}.json") == make_record(run_id, goal_id=f"goal {run_id}")
    assert read(root / "indexes" / "by_goal" / f"goal {run_id}.json") == [run_id]
    assert store.load_record(run_id) == make_record(run_id, goal_id=f"goal {run_id}")


# -- reading -------------------------------------------------------------------------------


def test_a_corrupt_run_file_raises_store_error_naming_it(
    store: JSONFilesStore, root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store.save_records([make_record("run_ok"), make_record("run_broken")])
    (root / "runs" / "run_broken.json").write_text('{"id": "run_bro', "utf-8")

    with pytest.raises(StoreError, match=r"run_broken\.json"):
        store.load_record("run_broken")
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        assert ids(store.list_runs()) == ["run_ok"]
    assert "run_broken.json" in caplog.text


@pytest.fixture
def populated(store: JSONFilesStore) -> JSONFilesStore:
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


def test_lists_newest_first_with_filters(populated: JSONFilesStore) -> None:
    assert ids(populated.list_runs()) == ["run_4", "run_3", "run_2", "run_1", "run_5"]
    assert ids(populated.list_runs(goal_id="g1")) == ["run_2", "run_1", "run_5"]
    assert ids(populated.list_runs(status=RunStatus.COMPLETED)) == ["run_3", "run_1", "run_5"]
    assert ids(populated.list_runs(status="completed", goal_id="g1")) == ["run_1", "run_5"]
    assert ids(populated.list_runs(node_id="planner")) == ["run_4", "run_3"]
    assert ids(populated.list_runs(node_id="writer", status="completed")) == ["run_3"]
    assert ids(populated.list_runs(limit=2)) == ["run_4", "run_3"]
    assert populated.list_runs(goal_id="nope") == []
    assert populated.list_runs(goal_id="../g1") == []


def test_since_naive_and_aware(populated: JSONFilesStore) -> None:
    since = T0 + timedelta(hours=1)
    assert ids(populated.list_runs(since=since)) == ["run_4", "run_3", "run_2"]
    aware = since.astimezone().astimezone(timezone.utc)
    assert ids(populated.list_runs(since=aware)) == ["run_4", "run_3", "run_2"]


def test_a_stale_index_entry_does_not_fool_the_filter(
    populated: JSONFilesStore, root: Path
) -> None:
    # Another writer (the original framework never removes entries) left run_1 listed.
    stale = root / "indexes" / "by_status" / "failed.json"
    stale.write_text(json.dumps(["run_2", "run_1"]), "utf-8")
    assert ids(populated.list_runs(status="failed")) == ["run_2"]


def test_summaries_are_the_records_summaries(populated: JSONFilesStore) -> None:
    [summary] = populated.list_runs(node_id="writer")
    record = make_record(
        "run_3",
        goal_id="g2",
        status=RunStatus.COMPLETED,
        started_at=T0 + timedelta(hours=2),
        nodes=("planner", "writer"),
    )
    assert summary == RunSummary.from_run(Run.model_validate(record))


def test_url_reopens_the_same_folder(tmp_path: Path) -> None:
    folder = tmp_path / "my runs"
    store = JSONFilesStore(folder)
    store.save_records([EXAMPLE])

    assert store.url == folder.as_uri()
    assert store.url.startswith("file:///")
    reopened = open_store(store.url)
    assert isinstance(reopened, JSONFilesStore)
    assert reopened.load_record(EXAMPLE_ID) == EXAMPLE


def test_a_file_in_place_of_the_folder_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "runs_here").write_text("x", "utf-8")
    with pytest.raises(StoreError, match="runs_here"):
        JSONFilesStore(tmp_path / "runs_here")


# -- concurrency ---------------------------------------------------------------------------


def test_threads_share_the_indexes(store: JSONFilesStore, root: Path) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def write(number: int) -> None:
        try:
            start.wait()
            for i in range(5):
                store.save_records([make_record(f"run_t{number}_{i}")])
        except BaseException as exc:  # collected so the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    listed = read(root / "indexes" / "by_goal" / "support-goal.json")
    assert sorted(listed) == sorted(f"run_t{n}_{i}" for n in range(6) for i in range(5))


def _write_in_child(folder: str, prefix: str, count: int, start: Barrier) -> None:
    """Child process body: write runs of one goal, in step with the other children."""
    store = JSONFilesStore(folder)
    start.wait()
    for i in range(count):
        record = copy.deepcopy(EXAMPLE)
        record["id"] = f"{prefix}_{i}"
        store.save_records([record])


def test_processes_share_the_indexes(root: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(3)
    processes = [
        context.Process(target=_write_in_child, args=(str(root), f"run_p{n}", 15, start))
        for n in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)

    assert [process.exitcode for process in processes] == [0, 0, 0]
    expected = sorted(f"run_p{n}_{i}" for n in range(3) for i in range(15))
    assert sorted(read(root / "indexes" / "by_goal" / "support-goal.json")) == expected
    assert sorted(read(root / "indexes" / "by_node" / "classifier.json")) == expected
    assert sorted(name[: -len(".json")] for name in os.listdir(root / "runs")) == expected


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_inherit_a_held_lock(tmp_path: Path) -> None:
    import os
    import signal
    import threading
    import time

    store = JSONFilesStore(tmp_path / "s")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with store._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: the holder thread does not exist here
        try:
            store.save_records([make_record("run_child")])
        finally:
            os._exit(0 if store.load_record("run_child") is not None else 1)
    release.set()
    holder.join()
    deadline = time.monotonic() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child deadlocked on a lock held at fork time")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.load_record("run_child") is not None
