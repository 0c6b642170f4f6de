"""SIGKILL in the middle of writes: the database survives, no run is half there.

Nothing runs on SIGKILL, so what was not written is lost, unless journal mode wrote the
decisions as they happened: then the next processor on the store brings them back as
a ``stuck`` run.
"""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest

import decisiontrace as dt
from decisiontrace.pipeline._journal import RECOVERED_REASON
from decisiontrace.stores import SQLiteStore

from ._support import child_script, finish, integrity, make_pipeline, read_line, rows, spawn

DECISIONS = 6

BUSY_WRITER = f"""
store, processor, provider, tracker = pipeline(sys.argv[1], flush_interval=0.005)

def work(worker):
    index = 0
    while True:
        finished_run(tracker, f"w{{worker}}-{{index}}", decisions={DECISIONS})
        index += 1
        time.sleep(0.001)  # an agent waits on something now and then

for worker in range(2):
    threading.Thread(target=work, args=(worker,), daemon=True).start()
say("writing")
time.sleep(60)
"""


def test_sigkill_mid_write_leaves_a_sound_database_and_only_whole_runs(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    script = child_script(tmp_path, BUSY_WRITER)
    killed_with = []
    for _ in range(3):
        child = spawn(script, str(db))
        assert read_line(child) == "writing"
        deadline = time.monotonic() + 20
        start = rows(db, "SELECT count(*) FROM runs")[0][0]
        while rows(db, "SELECT count(*) FROM runs")[0][0] < start + 30:
            assert time.monotonic() < deadline, "the child wrote nothing"
            time.sleep(0.01)
        time.sleep(random.uniform(0, 0.05))  # somewhere in the stream of transactions
        child.send_signal(signal.SIGKILL)
        returncode, _, _ = finish(child)
        assert returncode == -signal.SIGKILL
        killed_with.append(rows(db, "SELECT count(*) FROM runs")[0][0])

    assert integrity(db) == "ok"
    store = SQLiteStore(db)  # reopens (and recovers the WAL) like any later process
    summaries = store.list_runs()
    assert len(summaries) == killed_with[-1] >= 90
    for summary in summaries:
        run = store.load_run(summary.run_id)
        assert run is not None and run.status == dt.RunStatus.COMPLETED
        assert [d.id for d in run.decisions] == [f"dec_{i}" for i in range(DECISIONS)]
        assert all(d.outcome is not None for d in run.decisions)
        assert run.metrics.total_tokens == sum(range(1, DECISIONS + 1))
    # Still writable, by a new writer.
    pipeline = make_pipeline(store)
    with pipeline.tracker.run("after") as scope:
        pass
    pipeline.flush()
    assert store.load_run(scope.run_id) is not None
    pipeline.provider.shutdown()


IN_FLIGHT = """
store, processor, provider, tracker = pipeline(sys.argv[1], flush_interval=0.02, **OPTIONS)
finished = finished_run(tracker, "finished")
with tracker.run("in-flight", input_data={"ticket": "T-9"}) as scope:
    tracker.set_node("classifier")
    first = tracker.decide(intent="classify", options=[{"id": "bug"}, {"id": "howto"}],
                           chosen="bug", reasoning="stack trace", context={"lang": "en"})
    tracker.record_outcome(decision_id=first, success=True, result={"label": "bug"},
                           tokens_used=40)
    tracker.decide(intent="reply", options=[{"id": "kb"}], chosen="kb", reasoning="kb")
    processor.force_flush(5_000)  # the writer has seen (and journaled) both
    time.sleep(0.2)
    say(json.dumps({"finished": finished, "in_flight": scope.run_id}))
    time.sleep(60)
"""


@pytest.mark.parametrize(
    ("journal", "recover_with"),
    [(True, True), (True, "resume"), (False, True)],
    # "resume" (the ingest service's) takes the spans of runs that were open in the
    # killed process to be stuck runs too: their process will send nothing more.
    ids=["journal", "journal-resuming-processor", "no-journal"],
)
def test_with_the_journal_the_decisions_made_before_sigkill_come_back_as_a_stuck_run(
    tmp_path: Path, journal: bool, recover_with: bool | str
) -> None:
    db = tmp_path / "runs.db"
    body = f"OPTIONS = {{'journal': {journal}}}\n{IN_FLIGHT}"
    child = spawn(child_script(tmp_path, body), str(db))
    ids = json.loads(read_line(child))
    child.send_signal(signal.SIGKILL)
    finish(child)

    store = SQLiteStore(db)
    assert store.load_run(ids["in_flight"]) is None  # never completed, never saved
    pipeline = make_pipeline(store, journal=recover_with)  # recovers what the journal holds
    pipeline.flush()
    finished = store.load_run(ids["finished"])
    assert finished is not None and finished.status == dt.RunStatus.COMPLETED
    recovered = store.load_run(ids["in_flight"])
    if not journal:
        assert recovered is None  # without the journal, a killed process loses it
        pipeline.provider.shutdown()
        return
    assert recovered is not None
    assert recovered.status == dt.RunStatus.STUCK
    assert recovered.model_dump()["end_reason"] == RECOVERED_REASON
    assert (recovered.goal_id, recovered.input_data) == ("in-flight", {"ticket": "T-9"})
    classify, reply = recovered.decisions
    assert (classify.intent, classify.node_id, classify.chosen_option_id) == (
        "classify",
        "classifier",
        "bug",
    )
    assert classify.outcome is not None and classify.outcome.result == {"label": "bug"}
    assert classify.input_context == {"lang": "en"}
    assert (reply.intent, reply.outcome) == ("reply", None)
    assert recovered.metrics.total_tokens == 40
    assert rows(db, "SELECT count(*) FROM journal") == [(0,)]  # cleared with the save
    assert integrity(db) == "ok"
    pipeline.provider.shutdown()


def test_the_journal_of_a_live_process_is_not_taken(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    body = f"OPTIONS = {{'journal': True}}\n{IN_FLIGHT}"
    child = spawn(child_script(tmp_path, body), str(db))
    ids = json.loads(read_line(child))
    try:
        pipeline = make_pipeline(SQLiteStore(db), journal=True)
        pipeline.flush()
        assert pipeline.store.load_run(ids["in_flight"]) is None  # still the child's
        assert rows(db, "SELECT count(*) FROM journal")[0][0] > 0
        pipeline.provider.shutdown()
    finally:
        child.kill()
        finish(child)


def test_journal_mode_needs_a_store_that_keeps_a_journal(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="journal"):
        dt.RunRecordProcessor(dt.open_store(str(tmp_path / "json-store")), journal=True)
