"""Stores own their stored form: a stored run reads the same whatever the span model
becomes, and stores of decisiontrace 0.1 still open (issue 12, part 3)."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from pydantic_core import to_json

import decisiontrace as dt
from decisiontrace.pipeline import _pending
from decisiontrace.spanmodel import _decode
from decisiontrace.stores import SQLiteStore
from decisiontrace.stores import _stored_form as stored_form
from decisiontrace.stores._aggregates import TABLES as aggregate_tables

from .conftest import StoreUnderTest


def _record_runs(store: Any) -> list[str]:
    """Two runs through the real pipeline (tracker, SDK, processor, save_assembled):
    one whole, one with a late-token update and a problem."""
    processor = dt.RunRecordProcessor(store, flush_interval=0.05, handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("agent", tracer_provider=provider)
    run_ids = []
    for index in range(2):
        with tracker.run(f"goal-{index}", input_data={"ticket": index}) as scope:
            decision = tracker.decide(
                intent="route",
                options=[
                    {"id": "a", "description": "first", "confidence": 0.8},
                    {"id": "b", "description": "second"},
                ],
                chosen="a",
                reasoning="a fits",
                node_id="router",
            )
            tracker.record_outcome(decision_id=decision, success=index == 0, tokens_used=7)
            if index:
                tracker.report_problem(severity="warning", description="slow")
            run_ids.append(scope.run_id)
    assert processor.force_flush(30_000)
    provider.shutdown()
    return run_ids


def _a_new_span_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The span model's version changes, and its decoder with it."""
    monkeypatch.setattr(_pending, "COMPACT_FORMAT", "decisiontrace.spans/2")

    def refuses(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a stored run was decoded by the span model")

    monkeypatch.setattr(_decode, "decision_record", refuses)
    monkeypatch.setattr(_decode, "run_record", refuses)


def test_a_stored_run_loads_the_same_after_the_span_model_changes(
    store_under_test: StoreUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_under_test.open()
    run_ids = _record_runs(store)
    before = {run_id: store.load_record(run_id) for run_id in run_ids}
    assert all(before.values())
    _a_new_span_model(monkeypatch)
    again = store_under_test.open()  # another handle: nothing cached
    for run_id in run_ids:
        assert again.load_record(run_id) == before[run_id]
        assert again.load_run(run_id) == dt.Run.model_validate(before[run_id])
    assert {s.run_id for s in again.list_runs()} == set(run_ids)


def _old_database(path: Path, record: dict[str, Any], compact: dict[str, Any]) -> None:
    """A database as decisiontrace 0.1 wrote it: schema 4, a run as JSON text (form 1)
    and a run in compact span form (form 2)."""
    connection = sqlite3.connect(path)
    connection.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '4');
        CREATE TABLE runs (run_id TEXT PRIMARY KEY NOT NULL, goal_id TEXT, status TEXT,
            started_at TEXT, completed_at TEXT, nodes TEXT, record TEXT, summary TEXT,
            schema_version INTEGER, fragments INTEGER);
        """
    )
    connection.execute(
        "INSERT INTO runs (run_id, record, schema_version) VALUES (?, ?, 1)",
        ("run_text", to_json({**record, "id": "run_text"}).decode()),
    )
    connection.execute(
        "INSERT INTO runs (run_id, record, schema_version) VALUES (?, ?, 2)",
        (compact["id"], zlib.compress(to_json(compact["data"]), 1)),
    )
    connection.commit()
    connection.close()


def test_a_store_of_version_0_1_opens_and_is_rewritten_in_the_store_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    captured: list[Any] = []

    class Capture(dt.stores.MemoryStore):
        def save_assembled(self, runs: Any) -> None:
            captured.extend(runs)
            super().save_assembled(runs)

    memory = Capture()
    [first, _] = _record_runs(memory)
    expected = captured[-1].record()
    record = memory.load_record(first)
    assert record is not None
    path = tmp_path / "old.db"
    _old_database(path, record, {"id": expected["id"], "data": captured[-1].compact()})

    store = SQLiteStore(path)  # upgrades: every row in the current form
    assert store.load_record("run_text") == {**record, "id": "run_text"}
    assert store.load_record(expected["id"]) == expected
    connection = sqlite3.connect(path)
    forms = {form for (form,) in connection.execute("SELECT schema_version FROM runs")}
    assert forms == {stored_form.CURRENT}
    assert connection.execute("SELECT count(*) FROM decisions").fetchone() == (2,)
    assert connection.execute("SELECT sum(decisions) FROM decision_counts").fetchone() == (2,)
    assert connection.execute("SELECT sum(decisions) FROM decision_counts").fetchone() == (2,)
    connection.close()
    assert {s.run_id for s in store.list_runs()} == {"run_text", expected["id"]}
    store.close()

    _a_new_span_model(monkeypatch)  # from now on, nothing needs the span model
    reopened = SQLiteStore(path)
    assert reopened.load_record(expected["id"]) == expected
    reopened.close()


def test_a_postgresql_store_of_version_0_1_is_rewritten_in_the_store_form(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from decisiontrace.stores.postgres import PostgreSQLStore

    captured: list[Any] = []

    class Capture(dt.stores.MemoryStore):
        def save_assembled(self, runs: Any) -> None:
            captured.extend(runs)

    _record_runs(Capture())
    expected = captured[-1].record()
    store = PostgreSQLStore(postgres_url)
    store.save_records([expected])
    s = f'"{store.schema}"'
    store.close()
    # Back to what 0.1 left: schema version 1, the run in compact span form (form 2).
    with psycopg.connect(postgres_url.split("?")[0], autocommit=True) as connection:
        for table in ("decisions", *aggregate_tables):
            connection.execute(f"DROP TABLE {s}.{table}")
        connection.execute(f"DELETE FROM {s}.schema_version WHERE version >= 2")
        connection.execute(
            f"UPDATE {s}.runs SET record = %s, record_format = 2",
            (zlib.compress(to_json(captured[-1].compact()), 1),),
        )
    _a_new_span_model(monkeypatch)
    with pytest.raises(AssertionError, match="decoded by the span model"):
        PostgreSQLStore(postgres_url)  # the old row needs the span model, once
    monkeypatch.undo()
    reopened = PostgreSQLStore(postgres_url)
    _a_new_span_model(monkeypatch)
    assert reopened.load_record(expected["id"]) == expected
    with psycopg.connect(postgres_url.split("?")[0]) as connection:
        assert connection.execute(f"SELECT record_format FROM {s}.runs").fetchall() == [(3,)]
        assert connection.execute(f"SELECT count(*) FROM {s}.decisions").fetchone() == (1,)
        assert connection.execute(f"SELECT sum(decisions) FROM {s}.decision_counts").fetchone() == (
            1,
        )
        assert connection.execute(f"SELECT sum(decisions) FROM {s}.decision_counts").fetchone() == (
            1,
        )
    reopened.close()


class _Text(str):
    pass


class _Number(int):
    pass


_json_ready = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),  # beyond 64 bits too
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
        st.text(max_size=4).map(_Text),
        st.integers(min_value=-5, max_value=5).map(_Number),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), children, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=_json_ready)
def test_the_stores_json_is_pydantic_cores_whichever_encoder_writes_it(value: Any) -> None:
    """orjson writes what it can, pydantic-core the rest (subclasses, ints beyond 64
    bits, non-text keys): the bytes are the same either way."""
    assert stored_form.json_bytes(value) == to_json(value)


def test_text_json_cannot_hold_is_refused_with_a_type_error() -> None:
    with pytest.raises(TypeError):
        stored_form.json_bytes({"text": "\ud800"})
    with pytest.raises(TypeError):
        stored_form.json_bytes({"x": object()})
