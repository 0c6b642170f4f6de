"""Reading commands never create or change a file: missing stores stay missing, a
0-byte database stays 0 bytes, a database is byte for byte the same afterwards."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from decisiontrace.cli.app import main
from tests.cli import DemoStore, fill_demo_store

READING = [
    ["runs", "list"],
    ["runs", "list", "--json"],
    ["stats"],
    ["stats", "--json"],
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return fill_demo_store(tmp_path_factory.mktemp("reading"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", READING)
def test_a_zero_byte_database_stays_zero_bytes(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    result = CliRunner().invoke(main, ["--store", str(path), *command])
    assert result.exit_code == 0, result.output
    assert path.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


@pytest.mark.parametrize("command", READING)
def test_a_missing_store_is_not_created(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "nothing" / "runs.db"
    result = CliRunner().invoke(main, ["--store", str(path), *command])
    assert result.exit_code == 2
    assert "no store at" in result.stderr
    assert not (tmp_path / "nothing").exists()


def test_reading_leaves_the_database_unchanged(demo: DemoStore, tmp_path: Path) -> None:
    path = tmp_path / "copy.db"
    shutil.copy(demo.url.removeprefix("sqlite:///"), path)
    before = digest(path)
    run_id = demo.runs[0].id
    for command in [
        *READING,
        ["runs", "show", run_id],
        ["runs", "show", run_id, "--json"],
        ["export", run_id],
        ["diff", run_id, demo.runs[1].id],
    ]:
        result = CliRunner().invoke(main, ["--store", str(path), *command])
        assert result.exit_code == 0, (command, result.output)
    assert digest(path) == before


def test_an_older_database_is_read_without_being_upgraded(demo: DemoStore, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    run = demo.runs[0]
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY NOT NULL, record TEXT)")
        connection.execute(
            "INSERT INTO runs VALUES (?, ?)", (run.id, json.dumps(run.model_dump(mode="json")))
        )
    connection.close()
    before = digest(path)
    result = CliRunner().invoke(main, ["--store", str(path), "runs", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert [s["run_id"] for s in json.loads(result.stdout)] == [run.id]
    assert digest(path) == before


@pytest.mark.parametrize("command", READING)
def test_an_empty_run_folder_gets_no_subfolders(tmp_path: Path, command: list[str]) -> None:
    folder = tmp_path / "runs-folder"
    folder.mkdir()
    result = CliRunner().invoke(main, ["--store", str(folder), *command])
    assert result.exit_code == 0, result.output
    assert list(folder.iterdir()) == []


def test_a_run_folder_opened_for_reading_refuses_writes(tmp_path: Path) -> None:
    from decisiontrace.stores import StoreError, open_store

    store = open_store(str(tmp_path), read_only=True)
    assert store.list_summaries() == []
    with pytest.raises(StoreError, match="for reading only"):
        store.save_records([{"id": "run_1", "goal_id": "g", "status": "completed"}])
    assert list(tmp_path.iterdir()) == []
