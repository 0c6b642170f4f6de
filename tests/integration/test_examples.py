"""The examples run as real programs and leave their runs in the default store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from decisiontrace import RunStatus, open_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, store_url: str) -> str:
    env = {**os.environ, "DECISIONTRACE_STORE": store_url}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
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
