"""Interpreter exit and SIGTERM with runs in flight, in real child processes.

Each child records finished runs with a writer that would not write them for 30 s on
its own, and leaves runs open: one with a decision still waiting for its outcome, one
on another thread in the middle of a ``with tracker.run(...)`` block. Whatever ends
the process, the finished runs must be in the store and the open ones stored as
``cancelled`` with the reason, their unfinished decision included.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

from ._support import child_script, finish, integrity, read_line, spawn

AGENT = """
store, processor, provider, tracker = pipeline(sys.argv[1], flush_interval=30, **OPTIONS)
finished = [finished_run(tracker, f"done-{index}") for index in range(3)]
open_run = tracker.start_run(goal_id="open", execution_id="open")
tracker.decide(execution_id="open", intent="waiting", options=[{"id": "a"}], chosen="a",
               reasoning="the outcome never comes")
inside = threading.Event()
in_block = []

def worker():
    with tracker.run("in-block") as scope:
        in_block.append(scope.run_id)
        inside.set()
        time.sleep(60)

threading.Thread(target=worker, daemon=True).start()
inside.wait(10)
say(json.dumps({"finished": finished, "open": [open_run, *in_block]}))
"""

EXIT_REASON = "process exited with the run still open"
SIGTERM_REASON = "process terminated by SIGTERM with the run still open"


def start(tmp_path: Path, ending: str, options: str = "{}", before: str = ""):  # type: ignore[no-untyped-def]
    body = f"OPTIONS = {options}\n{before}\n{AGENT}\n{ending}"
    child = spawn(child_script(tmp_path, body), str(tmp_path / "runs.db"))
    return child, json.loads(read_line(child))


def check_stored(tmp_path: Path, ids: dict[str, list[str]], reason: str) -> None:
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)
    for run_id in ids["finished"]:
        run = store.load_run(run_id)
        assert run is not None and run.status == dt.RunStatus.COMPLETED
        assert len(run.decisions) == 3
    open_run, in_block = ids["open"]
    for run_id in (open_run, in_block):
        run = store.load_run(run_id)
        assert run is not None and run.status == dt.RunStatus.CANCELLED
        assert run.model_dump()["end_reason"] == reason
    waiting = store.load_run(open_run)
    assert waiting is not None
    [decision] = waiting.decisions
    assert decision.intent == "waiting" and decision.outcome is None
    assert integrity(db) == "ok"
    store.close()


def test_normal_exit_stores_finished_runs_and_cancels_open_ones(tmp_path: Path) -> None:
    child, ids = start(tmp_path, "sys.exit(0)")
    returncode, _, stderr = finish(child)
    assert returncode == 0, stderr
    check_stored(tmp_path, ids, EXIT_REASON)


def test_exit_by_an_uncaught_exception_stores_them_too(tmp_path: Path) -> None:
    child, ids = start(tmp_path, "raise RuntimeError('the agent crashed')")
    returncode, _, stderr = finish(child)
    assert returncode == 1 and "the agent crashed" in stderr
    check_stored(tmp_path, ids, EXIT_REASON)


SLEEP = "time.sleep(60)"


def test_sigterm_stores_finished_runs_and_cancels_open_ones_then_terminates(
    tmp_path: Path,
) -> None:
    child, ids = start(tmp_path, SLEEP)
    child.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(child)
    assert returncode == -signal.SIGTERM, stderr  # still killed by the signal, as by default
    check_stored(tmp_path, ids, SIGTERM_REASON)


def test_sigterm_is_chained_to_the_application_handler(tmp_path: Path) -> None:
    before = """
def on_sigterm(signum, frame):
    sys.stderr.write("application handler ran\\n")
    sys.exit(7)

signal.signal(signal.SIGTERM, on_sigterm)
"""
    child, ids = start(tmp_path, SLEEP, before=before)
    child.send_signal(signal.SIGTERM)
    returncode, _, stderr = finish(child)
    assert returncode == 7 and "application handler ran" in stderr
    # Its handler exits the interpreter normally: the exit hook cancels the open runs.
    check_stored(tmp_path, ids, EXIT_REASON)


@pytest.mark.parametrize(
    ("options", "before"),
    [("{'handle_sigterm': False}", ""), ("{}", "signal.signal(signal.SIGTERM, signal.SIG_IGN)")],
    ids=["opted-out", "sigterm-ignored"],
)
def test_sigterm_handling_can_be_declined(tmp_path: Path, options: str, before: str) -> None:
    child, _ = start(tmp_path, SLEEP, options=options, before=before)
    child.send_signal(signal.SIGTERM)
    if before:  # ignored: the process lives on, and we leave its disposition alone
        with pytest.raises(AssertionError, match="did not end"):
            finish(child, timeout=1.0)
        return
    returncode, _, _ = finish(child)
    assert returncode == -signal.SIGTERM
    store = SQLiteStore(tmp_path / "runs.db")
    assert store.list_runs() == []  # killed outright: nothing was written
