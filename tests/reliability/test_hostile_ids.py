"""Run, goal, node and option ids with path separators, '..', NUL, shell or SQL syntax.

Through the real pipeline: the JSON-files store writes nothing outside its directory
(not even through a planted symlink), and SQLite keeps every id as data, never as SQL.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import decisiontrace as dt
from decisiontrace.stores import JSONFilesStore, SQLiteStore

from ._support import Pipeline, integrity, make_pipeline, rows

HOSTILE = [
    "../../escaped",
    "..",
    "a/../../b",
    "/etc/passwd",
    "..\\..\\windows",
    "nul\x00byte",
    ".hidden",
    "$(touch pwned)",
    "`rm -rf ~`; echo",
    "x'); DROP TABLE runs;--",
    "' OR '1'='1",
    'quote"s and \\ backslash',
    "%2e%2e%2fencoded",
    "ünïcødé/✓",
    "a" * 300,
]


def record(pipeline: Pipeline, hostile: str) -> str:
    tracker = pipeline.tracker
    with tracker.run(hostile, input_data={"id": hostile}) as scope:
        tracker.set_node(hostile)
        decision_id = tracker.decide(
            intent=hostile,
            options=[{"id": hostile, "description": hostile}, {"id": "safe"}],
            chosen=hostile,
            reasoning=hostile,
        )
        tracker.record_outcome(decision_id=decision_id, success=True, result={"id": hostile})
    return scope.run_id


def tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A folder with the store inside and a canary file beside it."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "canary.json").write_text("{}")
    return tmp_path


def test_the_json_files_store_writes_nothing_outside_its_directory(
    sandbox: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store_dir = sandbox / "store"
    store = JSONFilesStore(store_dir)
    # A planted symlink: saving run "planted" must not write through it.
    os.symlink(sandbox / "outside" / "canary.json", store_dir / "runs" / "planted.json")
    before = tree(sandbox)
    caplog.set_level(logging.WARNING, logger="decisiontrace")

    for hostile in HOSTILE:
        # As the stream id, the hostile text is part of the run id itself.
        pipeline = make_pipeline(store)
        pipeline.tracker = dt.DecisionTracker(hostile, tracer_provider=pipeline.provider)
        record(pipeline, hostile)
        pipeline.flush()
        pipeline.provider.shutdown()
    store.save_records(
        [
            {**store.load_record(s.run_id), "id": "planted"}  # type: ignore[dict-item]
            for s in store.list_runs(limit=1)
        ]
    )

    created = tree(sandbox) - before
    assert all(path.startswith("store" + os.sep) for path in created), created
    assert (sandbox / "outside" / "canary.json").read_text() == "{}"
    assert not any(sandbox.parent.glob("escaped*"))
    assert not (sandbox.parent / "b").exists()
    assert not Path("pwned").exists()
    refused = [r.getMessage() for r in caplog.records if "not saving run" in r.getMessage()]
    assert refused  # refused with a warning, not silently


@pytest.mark.parametrize("hostile", HOSTILE, ids=range(len(HOSTILE)))
def test_sqlite_keeps_every_id_as_data(tmp_path: Path, hostile: str) -> None:
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    pipeline = make_pipeline(store)
    other = record(pipeline, "ordinary")
    run_id = record(pipeline, hostile)
    pipeline.flush()

    run = store.load_run(run_id)
    assert run is not None
    assert run.goal_id == hostile and run.input_data == {"id": hostile}
    [decision] = run.decisions
    assert (decision.node_id, decision.intent, decision.chosen_option_id) == (hostile,) * 3
    assert decision.options[0].id == hostile
    assert decision.outcome is not None and decision.outcome.result == {"id": hostile}
    assert [s.run_id for s in store.list_runs(goal_id=hostile)] == [run_id]
    assert [s.run_id for s in store.list_runs(node_id=hostile)] == [run_id]
    assert store.load_run(other) is not None  # nothing dropped, nothing deleted
    assert rows(db, "SELECT count(*) FROM runs") == [(2,)]
    assert integrity(db) == "ok"
    pipeline.provider.shutdown()


def test_sqlite_lookups_by_hostile_ids_find_nothing_and_harm_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "runs.db")
    pipeline = make_pipeline(store)
    run_id = record(pipeline, "ordinary")
    pipeline.flush()
    for hostile in HOSTILE:
        assert store.load_run(hostile) is None
        assert store.list_runs(goal_id=hostile, status=hostile, node_id=hostile) == []
    assert store.load_run(run_id) is not None
    pipeline.provider.shutdown()
