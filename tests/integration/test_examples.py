"""The examples run as real programs and leave their runs in the default store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from decisiontrace import RunStatus, open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: OTEL_* variables a test set on purpose (monkeypatch), passed on to the example.
_SET: set[str] = set()


def run_example(name: str, store_url: str) -> str:
    # As a new user runs them: no OTEL_* variable unless a test sets one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_") or k in _SET}
    env["DECISIONTRACE_STORE"] = store_url
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Failed to export" not in done.stderr
    return done.stdout


@pytest.mark.parametrize("url_form", ["sqlite", "json-files"])
def test_quickstart_stores_its_run(tmp_path: Path, url_form: str) -> None:
    url = f"sqlite:///{tmp_path}/runs.db" if url_form == "sqlite" else (tmp_path / "runs").as_uri()
    output = run_example("quickstart.py", url)
    [summary] = open_store(url).list_runs()
    assert summary.run_id in output
    assert summary.status == RunStatus.COMPLETED
    run = open_store(url).load_run(summary.run_id)
    assert run is not None
    assert run.metrics.nodes_executed == ["classifier", "responder"]
    assert run.output_data == {"answer": "Use the 'Forgot password' link."}


def test_concurrent_example_keeps_every_execution_apart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    output = run_example("concurrent_async.py", url)
    assert "every run has exactly its own 2 decisions" in output
    summaries = open_store(url).list_runs()
    assert len(summaries) == 140
    assert {s.decision_count for s in summaries} == {2}


def test_decorated_agent_stores_a_run_per_ticket_with_llm_tokens(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    run_example("decorated_agent.py", url)
    store = open_store(url)
    summaries = store.list_runs()
    assert len(summaries) == 50
    assert {s.status for s in summaries} <= {RunStatus.COMPLETED, RunStatus.FAILED}
    assert any(s.status == RunStatus.FAILED for s in summaries)
    run = store.load_run(summaries[0].run_id)
    assert run is not None
    assert run.metrics.total_tokens > 0  # from the fake LLM spans under the decisions


def test_export_example_prints_spans_to_the_console(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setattr(f"{__name__}._SET", {"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"})
    output = run_example("export_otlp.py", url)
    assert '"decisiontrace.span_kind": "run"' in output
    stored = open_store(url).list_runs()
    assert stored
    assert all(s.run_id in output for s in stored)


def test_export_example_without_variables_stores_and_exports_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/runs.db"
    output = run_example("export_otlp.py", url)
    assert "decisiontrace.span_kind" not in output  # nothing printed or sent
    with open_store(url) as store:
        statuses = sorted(s.status.value for s in store.list_runs())
    assert statuses == ["completed", "completed", "failed"]
