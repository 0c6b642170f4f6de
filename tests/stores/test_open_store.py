"""open_store: every accepted URL form, the environment variable, and the errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from decisiontrace.stores import (
    STORE_ENV_VAR,
    JSONFilesStore,
    MemoryStore,
    RunStore,
    SQLiteStore,
    StoreError,
    default_store_url,
    open_store,
)

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
EXAMPLE: dict[str, Any] = json.loads((REFERENCE / "example-run.json").read_text("utf-8"))


@pytest.fixture
def opened() -> Iterator[list[RunStore]]:
    """Stores to close after the test."""
    stores: list[RunStore] = []
    yield stores
    for store in stores:
        store.close()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may open the real default store in the user's home."""
    monkeypatch.delenv(STORE_ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


def test_a_store_passes_through() -> None:
    store = MemoryStore()
    assert open_store(store) is store


def test_sqlite_relative_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[RunStore]
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///sub/runs.db")
    opened.append(store)

    assert isinstance(store, SQLiteStore)
    assert store.url == "sqlite:///sub/runs.db"
    assert (tmp_path / "sub" / "runs.db").is_file()


def test_sqlite_absolute_url(tmp_path: Path, opened: list[RunStore]) -> None:
    url = f"sqlite:///{tmp_path}/abs/runs.db"
    assert url.startswith("sqlite:////")
    store = open_store(url)
    opened.append(store)

    assert isinstance(store, SQLiteStore)
    assert (tmp_path / "abs" / "runs.db").is_file()
    store.save_records([EXAMPLE])
    reopened = open_store(store.url)
    opened.append(reopened)
    assert reopened.load_record(EXAMPLE["id"]) == EXAMPLE


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///:memory:", "in-memory database"),
        ("sqlite://", "names no file"),
        ("sqlite:///", "names no file"),
        ("sqlite://host/runs.db", "names a host"),
        ("file://relative/dir", "names host 'relative'"),
        ("file://", "names no folder"),
        ("memory://something", "takes no path"),
        ("ftp://example.com/runs", "unknown store URL scheme 'ftp'"),
        ("", "empty"),
    ],
)
def test_bad_urls_raise_value_error(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url)


def test_unknown_scheme_lists_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="accepted forms") as raised:
        open_store("mysql://db/runs")
    for form in ("sqlite:///", "sqlite:////", "file:///", "memory://", ".sqlite3", "postgresql://"):
        assert form in str(raised.value)


def test_a_value_of_the_wrong_type_raises_type_error() -> None:
    with pytest.raises(TypeError, match="int"):
        open_store(42)  # type: ignore[arg-type]


def test_file_url_opens_a_json_folder(tmp_path: Path) -> None:
    folder = tmp_path / "json runs"
    store = open_store(folder.as_uri())  # percent-encoded space

    assert isinstance(store, JSONFilesStore)
    assert (folder / "runs").is_dir()
    assert (folder / "indexes" / "by_goal").is_dir()


def test_file_url_with_localhost(tmp_path: Path) -> None:
    store = open_store(f"file://localhost{tmp_path}/local")
    assert isinstance(store, JSONFilesStore)
    assert (tmp_path / "local" / "runs").is_dir()


def test_memory_url_gives_a_fresh_store() -> None:
    first = open_store("memory://")
    first.save_records([EXAMPLE])
    second = open_store("memory://")

    assert isinstance(first, MemoryStore)
    assert first.url == "memory://"
    assert first.load_record(EXAMPLE["id"]) == EXAMPLE
    assert second.load_record(EXAMPLE["id"]) is None


@pytest.mark.parametrize("name", ["runs.db", "runs.sqlite", "runs.sqlite3", "RUNS.DB"])
def test_plain_database_paths_open_sqlite(
    tmp_path: Path, name: str, opened: list[RunStore]
) -> None:
    as_string = open_store(str(tmp_path / "str" / name))
    as_path = open_store(tmp_path / "pathlike" / name)
    opened += [as_string, as_path]

    assert isinstance(as_string, SQLiteStore)
    assert isinstance(as_path, SQLiteStore)
    assert (tmp_path / "str" / name).is_file()
    assert (tmp_path / "pathlike" / name).is_file()


def test_other_plain_paths_open_a_json_folder(tmp_path: Path) -> None:
    as_string = open_store(str(tmp_path / "folder"))
    as_path = open_store(tmp_path / "runs.json.d")

    assert isinstance(as_string, JSONFilesStore)
    assert isinstance(as_path, JSONFilesStore)
    assert (tmp_path / "folder" / "runs").is_dir()
    assert (tmp_path / "runs.json.d" / "summaries").is_dir()


def test_plain_path_expands_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[RunStore]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_store("~/home.db")
    opened.append(store)
    assert (tmp_path / "home.db").is_file()


def test_environment_variable_names_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[RunStore]
) -> None:
    monkeypatch.setenv(STORE_ENV_VAR, f"sqlite:///{tmp_path}/from_env.db")
    store = open_store()
    opened.append(store)

    assert isinstance(store, SQLiteStore)
    assert store.url == f"sqlite:///{tmp_path}/from_env.db"
    assert (tmp_path / "from_env.db").is_file()


def test_environment_variable_with_a_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_ENV_VAR, str(tmp_path / "env_folder"))
    assert isinstance(open_store(None), JSONFilesStore)
    assert (tmp_path / "env_folder" / "runs").is_dir()


def test_empty_environment_variable_falls_back_to_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[RunStore]
) -> None:
    monkeypatch.setenv(STORE_ENV_VAR, "")
    store = open_store()
    opened.append(store)

    assert isinstance(store, SQLiteStore)
    assert store.url == f"sqlite:///{tmp_path}/xdg/decisiontrace/runs.db"
    assert (tmp_path / "xdg" / "decisiontrace" / "runs.db").is_file()


def test_default_store_url_uses_xdg_data_home(tmp_path: Path) -> None:
    assert default_store_url() == f"sqlite:///{tmp_path}/xdg/decisiontrace/runs.db"


@pytest.mark.parametrize("xdg", [None, "", "relative/data"])
def test_default_store_url_falls_back_to_local_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, xdg: str | None
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if xdg is None:
        monkeypatch.delenv("XDG_DATA_HOME")
    else:
        monkeypatch.setenv("XDG_DATA_HOME", xdg)

    url = default_store_url()

    assert url == f"sqlite:///{tmp_path}/home/.local/share/decisiontrace/runs.db"
    assert url.startswith("sqlite:////")
    assert not (tmp_path / "home").exists()  # nothing is created until opened


def test_a_corrupt_database_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "bad.db").write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreError, match=r"bad\.db"):
        open_store(f"sqlite:///{tmp_path}/bad.db")


def test_memory_store_copies_filters_and_saves_batches_whole() -> None:
    store = open_store("memory://")
    other = dict(EXAMPLE, id="run_other", goal_id="other", started_at="2027-01-01T00:00:00")
    store.save_records([EXAMPLE, other])
    bad = dict(EXAMPLE, id="run_bad", output_data={"tags": {"a"}})

    with pytest.raises(TypeError):
        store.save_records([dict(EXAMPLE, id="run_new"), bad])

    assert store.load_record("run_new") is None
    loaded = store.load_record(EXAMPLE["id"])
    assert loaded == EXAMPLE
    assert loaded is not None
    loaded["goal_id"] = "changed"  # a copy: the stored record is not affected
    assert store.load_record(EXAMPLE["id"]) == EXAMPLE
    assert [s.run_id for s in store.list_runs()] == ["run_other", EXAMPLE["id"]]
    assert [s.run_id for s in store.list_runs(goal_id="other")] == ["run_other"]
    assert [s.run_id for s in store.list_runs(node_id="responder", limit=1)] == ["run_other"]
    assert store.list_runs(status="completed") == []
