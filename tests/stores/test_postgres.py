"""What only the PostgreSQL store does: URLs, setup, its schema, faults, the CLI on it.

The contract every store keeps is in test_contract.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from decisiontrace.stores import StoreError, open_store
from decisiontrace.stores.postgres import PostgreSQLStore, redact, split_url
from tests.conftest import postgres_base_url, with_parameters

from ._records import make_record

pytest.importorskip("psycopg")
import psycopg


def test_the_password_never_leaves_the_url() -> None:
    assert redact("postgresql://u:s3cret@h:5432/db?schema=x") == "postgresql://u@h:5432/db?schema=x"
    assert redact("postgres://u@h/db") == "postgres://u@h/db"
    assert split_url("postgres://u@h/db?schema=s&sslmode=disable") == (
        "postgresql://u@h/db?sslmode=disable",
        "s",
    )


def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError) as raised:
        open_store("postgresql://someone:s3cret@127.0.0.1:1/db")
    message = str(raised.value)
    assert "postgresql://someone@127.0.0.1:1/db" in message
    assert "s3cret" not in message
    assert "\n" not in message


def test_wrong_credentials_are_one_clear_error(postgres_url: str) -> None:
    parts = postgres_url.split("://", 1)[1].split("@", 1)[1]
    with pytest.raises(StoreError, match="no_such_role") as raised:
        open_store(f"postgresql://no_such_role:pw@{parts}")
    assert ":pw@" not in str(raised.value)


def decisiontrace(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command line, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "decisiontrace", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_the_cli_exits_2_with_the_reason_when_the_database_is_unreachable() -> None:
    result = decisiontrace("runs", "list", "--store", "postgresql://u:s3cret@127.0.0.1:1/db")
    assert result.returncode == 2
    assert "postgresql://u@127.0.0.1:1/db" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "s3cret" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_without_the_driver_the_error_names_the_extra(tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['psycopg'] = None\n"  # as if psycopg were not installed
        "from decisiontrace.stores import open_store, StoreError\n"
        "try:\n    open_store('postgresql://u@127.0.0.1:1/db')\n"
        "except StoreError as error:\n    print(error)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert "decisiontrace[postgres]" in result.stdout


def test_the_schema_is_created_versioned_indexed_and_opened_again(postgres_url: str) -> None:
    store = open_store(postgres_url)
    assert isinstance(store, PostgreSQLStore)
    base = postgres_base_url()
    with psycopg.connect(base) as connection:
        versions = connection.execute(
            f'SELECT version FROM "{store.schema}".schema_version'
        ).fetchall()
        indexes = {
            name
            for (name,) in connection.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = %s", (store.schema,)
            )
        }
    assert versions == [(1,), (2,), (3,), (4,), (5,)]
    # One index per filter list_runs and the CLI offer: goal, status, since, node.
    assert {"runs_goal_id", "runs_status", "runs_started_at", "runs_nodes"} <= indexes
    store.close()
    # Opened by several processes at once on a new schema: one migrates, none fails.
    fresh = with_parameters(base, schema=f"{store.schema}_b")
    script = f"from decisiontrace.stores import open_store; open_store({fresh!r}).close()"
    children = [
        subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    try:
        for child in children:
            _, stderr = child.communicate(timeout=60)
            assert child.returncode == 0, stderr
        again = open_store(fresh)
        again.save_records([make_record("run_x")])
        assert again.load_record("run_x") == make_record("run_x")
        again.close()
    finally:
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA IF EXISTS "{store.schema}_b" CASCADE')


def test_the_cli_and_report_read_postgresql(postgres_url: str, tmp_path: Path) -> None:
    store = open_store(postgres_url)
    store.save_records([make_record("run_cli_1"), make_record("run_cli_2", goal_id="other")])
    listed = decisiontrace("runs", "list", "--json", "--store", postgres_url)
    assert listed.returncode == 0, listed.stderr
    assert sorted(s["run_id"] for s in json.loads(listed.stdout)) == ["run_cli_1", "run_cli_2"]
    shown = decisiontrace("runs", "show", "run_cli_1", "--store", postgres_url)
    assert shown.returncode == 0, shown.stderr
    assert "classifier" in shown.stdout
    # DECISIONTRACE_STORE names it as well as --store does.
    from_env = decisiontrace("runs", "list", "--json", DECISIONTRACE_STORE=postgres_url)
    assert from_env.returncode == 0, from_env.stderr
    assert len(json.loads(from_env.stdout)) == 2
    stats = decisiontrace("stats", "--json", "--store", postgres_url)
    assert stats.returncode == 0, stats.stderr
    assert "classifier" in stats.stdout
    page = tmp_path / "report.html"
    report = decisiontrace("report", "--html", str(page), "--store", postgres_url)
    assert report.returncode == 0, report.stderr
    assert "run_cli_1" in page.read_text(encoding="utf-8")
    store.close()


def _terminate_backends(application_name: str) -> int:
    """Kill every server process serving the store's connections (the server stays up)."""
    with psycopg.connect(postgres_base_url(), autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return len(rows)


def test_runs_recorded_while_connections_are_killed_are_all_written(postgres_url: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    import decisiontrace as dt

    application_name = dict(
        pair.split("=", 1) for pair in postgres_url.split("?", 1)[1].split("&")
    )["application_name"]
    store = open_store(postgres_url)
    processor = dt.RunRecordProcessor(store, flush_interval=0.01, handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("faults", tracer_provider=provider)
    stop = threading.Event()
    killed: list[int] = []

    def keep_killing() -> None:
        while not stop.is_set():
            killed.append(_terminate_backends(application_name))
            time.sleep(0.02)

    killer = threading.Thread(target=keep_killing, daemon=True)
    killer.start()
    run_ids = []
    try:
        for index in range(60):
            with tracker.run(f"goal-{index % 3}") as scope:
                decision = tracker.decide(
                    intent="go", options=[{"id": "a"}], chosen="a", reasoning="r"
                )
                tracker.record_outcome(decision_id=decision, success=True, tokens_used=2)
            run_ids.append(scope.run_id)
            time.sleep(0.005)
    finally:
        stop.set()
        killer.join(10)
    assert sum(killed) > 0  # connections really were cut while runs were written
    assert processor.force_flush(60_000)
    assert sorted(s.run_id for s in store.list_runs()) == sorted(run_ids)
    for run_id in run_ids:
        run = store.load_run(run_id)
        assert run is not None and run.metrics.total_tokens == 2
    assert processor.dropped_runs == 0
    provider.shutdown()
    store.close()


def test_a_forked_child_uses_connections_of_its_own(postgres_url: str) -> None:
    store = open_store(postgres_url)
    store.save_records([make_record("run_parent")])
    pid = os.fork()
    if pid == 0:  # the child: write and read through its own pool, then leave at once
        code = 0
        try:
            store.save_records([make_record("run_child")])
            code = 0 if store.load_record("run_parent") is not None else 3
        except BaseException:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connections still work after the child's exit.
    assert store.load_record("run_child") == make_record("run_child")
    store.close()


def test_a_batch_the_server_fails_at_its_last_statement_is_not_written(postgres_url: str) -> None:
    # A batch's statements are pipelined: an error of one whose answer nobody reads (the
    # merged run's refresh, the fragment path's last statement) comes at the pipeline's
    # end. It must still raise (the writer keeps the batch and retries), and roll back.
    store = open_store(postgres_url)
    assert isinstance(store, PostgreSQLStore)
    schema = store.schema
    with psycopg.connect(postgres_base_url(), autocommit=True) as connection:
        connection.execute(
            f'CREATE FUNCTION "{schema}".poison() RETURNS trigger AS $$ BEGIN '
            "IF NEW.goal_id = convert_to('poison', 'UTF8') THEN "
            "RAISE EXCEPTION 'poisoned refresh'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        connection.execute(
            f'CREATE TRIGGER poison BEFORE UPDATE ON "{schema}".runs '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".poison()'
        )
    poisoned = make_record("run_poisoned", goal_id="poison")
    poisoned["fragment_id"] = "tool:1/0000000000000001"
    try:
        with pytest.raises(psycopg.Error, match="poisoned refresh"):
            store.save_records([poisoned])
        assert store.load_fragments("run_poisoned") == []
        # The pool's connection is out of its pipeline and transaction: the next batch
        # (fragment path too) is written.
        fine = make_record("run_fine")
        fine["fragment_id"] = "tool:1/0000000000000002"
        store.save_records([fine, make_record("run_root")])
        assert [f["id"] for f in store.load_fragments("run_fine")] == ["run_fine"]
        assert store.load_record("run_root") == make_record("run_root")
    finally:
        store.close()


def test_a_large_batch_with_fragments_and_roots_reads_its_own_answers(postgres_url: str) -> None:
    # In a libpq pipeline, psycopg could hand a fetch on the cursor that had just sent
    # a large executemany the answer of one of its INSERTs ("the last operation didn't
    # produce records"): the batch's reads go through cursors of their own.
    store = open_store(postgres_url)
    try:
        roots = [make_record(f"run_{n:04d}") for n in range(1000)]
        store.save_records(roots)
        again = [*roots[:500], *(make_record(f"run_new_{n:04d}") for n in range(500))]
        fragment = make_record("run_0007")
        fragment["fragment_id"] = "tool:1/0000000000000001"
        store.save_records([*again, fragment])
        assert len(store.list_runs()) == 1500
        assert [f["fragment_id"] for f in store.load_fragments("run_0007")] == [
            "tool:1/0000000000000001"
        ]
        tallies = store.decision_tallies()
        assert tallies is not None  # counted once each, though 500 runs were saved twice
        merged = store.load_record("run_0007")
        assert merged is not None
        expected = 1499 * len(roots[0]["decisions"]) + len(merged["decisions"])
        assert sum(row[5] for row in tallies.counts) == expected
    finally:
        store.close()
