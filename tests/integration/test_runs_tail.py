"""``runs tail`` in a real process: it shows runs as another process stores them, keeps
to its filters, and stops cleanly on SIGINT (Ctrl-C)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import pytest

from decisiontrace.models import Run, RunStatus
from decisiontrace.stores import open_store


def make_run(number: int, status: str, goal: str = "support") -> Run:
    return Run(
        id=f"run_tail_20260510_14030{number}_{number:08x}",
        goal_id=goal,
        status=RunStatus(status),
        started_at=datetime(2026, 5, 10, 14, 3, number),
        completed_at=datetime(2026, 5, 10, 14, 3, number, 500_000),
    )


def lines_of(stream: IO[str]) -> tuple[queue.Queue[str], threading.Thread]:
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            found.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return found, reader


def drain(found: queue.Queue[str]) -> str:
    lines: list[str] = []
    while not found.empty():
        lines.append(found.get_nowait())
    return "".join(lines)


def next_json(found: queue.Queue[str]) -> dict[str, Any]:
    return dict(json.loads(found.get(timeout=30)))


# Started from a terminal SIGINT is at its default; started in the background of a
# script it is inherited as ignored, and Ctrl-C (SIGINT) must stop it all the same.
@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
def test_tail_follows_the_store_and_stops_on_ctrl_c(
    tmp_path: Path, inherited: signal.Handlers
) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with open_store(url) as store:
        store.save_run(make_run(1, "completed"))
    with subprocess.Popen(
        [sys.executable, "-m", "decisiontrace", "--store", url, "runs", "tail",
         "--status", "failed", "--interval", "0.1", "--json", "-n", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
        env={**os.environ, "COLUMNS": "120", "PYTHONFAULTHANDLER": "1"},
    ) as process:  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        found, reader = lines_of(process.stdout)
        errors, error_reader = lines_of(process.stderr)  # drained: a full pipe would block it
        try:
            with open_store(url) as store:
                store.save_run(make_run(2, "completed"))  # filtered out
                store.save_run(make_run(3, "failed"))
                first = next_json(found)
                store.save_run(make_run(4, "failed", goal="billing"))
                second = next_json(found)
            process.send_signal(signal.SIGINT)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGABRT)  # faulthandler: every thread's stack
                process.wait(timeout=30)
                raise AssertionError("runs tail ignored Ctrl-C:\n" + drain(errors)) from None
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        reader.join(timeout=30)
        error_reader.join(timeout=30)
        stderr = drain(errors)
    assert first["run_id"] == "run_tail_20260510_140303_00000003"
    assert first["status"] == "failed"
    assert datetime.fromisoformat(first["started_at"]).utcoffset() is not None
    assert second["run_id"] == "run_tail_20260510_140304_00000004"
    assert code == 0
    assert "Traceback" not in stderr
    assert found.empty()  # the completed runs were never shown
