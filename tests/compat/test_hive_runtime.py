"""The compat tracker inside the original framework's runtime, as that runtime drives it.

The original's execution manager builds ``StreamDecisionTracker(stream_id=...,
storage=...)`` with its own storage object (``ConcurrentStorage``: an async
``save_run(run, immediate=False)`` that queues runs for a batch-writer task of its own,
``start()``/``stop()``), and per execution calls ``start_run`` twice (the execution
manager, then the orchestrator) and ``end_run`` twice (the orchestrator, then the
execution manager with the output), all inside the event loop. ``BatchedStorage``
below has that shape; ``run_execution`` makes those calls in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from decisiontrace.compat.hive import StreamDecisionTracker, StreamRuntimeAdapter
from decisiontrace.models import Run, RunStatus
from decisiontrace.stores import JSONFilesStore

from ..conftest import REFERENCE

RUN_SCHEMA: dict[str, Any] = json.loads((REFERENCE / "run.schema.json").read_text("utf-8"))


class BatchedStorage:
    """The original ``ConcurrentStorage``'s shape: batched writes on a task of its own.

    ``save_run`` queues the run (written by the batch task) while started, and writes it
    at once otherwise or with ``immediate``. ``stop()`` writes what is still queued.
    Each write is the run's JSON, as the original writes ``runs/{run_id}.json``.
    """

    def __init__(self, base_path: Path, batch_interval: float = 0.05) -> None:
        self.base_path = base_path
        self.saved: list[str] = []  # run ids in the order save_run was called
        self._queue: asyncio.Queue[Run] = asyncio.Queue()
        self._interval = batch_interval
        self._task: asyncio.Task[None] | None = None
        self._running = False

    async def start(self) -> None:
        self._running = True
        self._task = asyncio.create_task(self._batch_writer())

    async def stop(self) -> None:
        self._running = False
        await self._flush_pending()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def save_run(self, run: Run, immediate: bool = False) -> None:
        self.saved.append(run.id)
        if immediate or not self._running:
            await self._write(run)
        else:
            await self._queue.put(run)

    async def _batch_writer(self) -> None:
        while self._running:
            batch: list[Run] = []
            try:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), self._interval))
                    while not self._queue.empty():
                        batch.append(self._queue.get_nowait())
                except TimeoutError:
                    pass
                while batch:
                    await self._write(batch[0])
                    batch.pop(0)
            except asyncio.CancelledError:  # stopped mid-batch: write the rest first
                for run in batch:
                    self._write_sync(run)
                raise

    async def _flush_pending(self) -> None:
        while not self._queue.empty():
            await self._write(self._queue.get_nowait())

    async def _write(self, run: Run) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._write_sync, run)

    def _write_sync(self, run: Run) -> None:
        runs = self.base_path / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        (runs / f"{run.id}.json").write_text(run.model_dump_json(indent=2), "utf-8")

    def load(self, run_id: str) -> dict[str, Any]:
        return json.loads((self.base_path / "runs" / f"{run_id}.json").read_text("utf-8"))

    def stored_ids(self) -> list[str]:
        return sorted(p.stem for p in (self.base_path / "runs").glob("*.json"))


async def run_execution(
    tracker: StreamDecisionTracker, execution_id: str, decisions: int = 2, success: bool = True
) -> str:
    """One execution as the original runtime records it; returns the orchestrator's run id."""
    adapter = StreamRuntimeAdapter(tracker, execution_id)
    # The execution manager: "Start run to set trace context".
    adapter.start_run(goal_id="goal-1", goal_description="Answer", input_data={"q": execution_id})
    await asyncio.sleep(0)  # session state written, executor built
    # The orchestrator, in execute().
    run_id = adapter.start_run(
        goal_id="goal-1", goal_description="Answer", input_data={"q": execution_id}
    )
    for step in range(decisions):
        adapter.set_node(f"node-{step}")
        decision_id = adapter.decide(
            intent=f"step {step}",
            options=[{"id": "a", "description": "A"}, {"id": "b", "description": "B"}],
            chosen="a",
            reasoning="a is better",
        )
        await asyncio.sleep(0)
        adapter.record_outcome(decision_id, success=True, result={"step": step}, tokens_used=7)
    adapter.report_problem("warning", "tool slow")
    # The orchestrator ends the run, then the execution manager ends it with the output.
    adapter.end_run(success=success, narrative=f"Completed {decisions} steps via 1 workers")
    adapter.end_run(
        success=success,
        narrative=f"Execution {'succeeded' if success else 'failed'}",
        output_data={"answer": execution_id},
    )
    return run_id


def test_every_execution_is_in_the_storage_once_stop_returns(tmp_path: Path) -> None:
    storage = BatchedStorage(tmp_path)
    tracker = StreamDecisionTracker(stream_id="webhook", storage=storage)

    async def runtime() -> list[str]:
        await storage.start()
        run_ids = await asyncio.gather(
            *(run_execution(tracker, f"exec-{i}", success=i % 3 != 0) for i in range(12))
        )
        await storage.stop()  # the runtime's own shutdown: runs must all be in by now
        return list(run_ids)

    run_ids = asyncio.run(runtime())

    assert storage.stored_ids() == sorted(run_ids)  # one run per execution, no empty ones
    for i, run_id in enumerate(run_ids):
        record = storage.load(run_id)
        jsonschema.validate(record, RUN_SCHEMA)
        run = Run.model_validate(record)  # what the original's load_run does with the file
        assert run.id == run_id
        assert run.input_data == {"q": f"exec-{i}"}
        assert [d.intent for d in run.decisions] == ["step 0", "step 1"]
        assert [d.node_id for d in run.decisions] == ["node-0", "node-1"]
        assert all(d.outcome is not None and d.outcome.success for d in run.decisions)
        assert [d.outcome.result for d in run.decisions if d.outcome] == [{"step": 0}, {"step": 1}]
        assert [p.description for p in run.problems] == ["tool slow"]
        assert run.metrics.total_tokens == 14
        # The execution manager's end_run came last: its values are the ones stored.
        assert run.output_data == {"answer": f"exec-{i}"}
        succeeded = i % 3 != 0
        assert run.status is (RunStatus.COMPLETED if succeeded else RunStatus.FAILED)
        assert run.narrative == f"Execution {'succeeded' if succeeded else 'failed'}"
    assert tracker.get_active_executions() == []


def test_the_first_start_run_of_an_execution_stores_nothing(tmp_path: Path) -> None:
    storage = BatchedStorage(tmp_path)
    tracker = StreamDecisionTracker("webhook", storage)

    async def runtime() -> tuple[str, str]:
        await storage.start()
        first = tracker.start_run("exec-1", "goal-1", "first", {"n": 1})
        tracker.report_problem("exec-1", "minor", "reported before the orchestrator started")
        second = tracker.start_run("exec-1", "goal-2", "second", {"n": 2})
        tracker.end_run("exec-1", True)
        await asyncio.sleep(0)  # the save task runs, as it does at the runtime's next await
        await storage.stop()
        return first, second

    first, second = asyncio.run(runtime())

    assert first != second
    assert storage.saved == [second]
    assert storage.stored_ids() == [second]
    run = Run.model_validate(storage.load(second))
    assert (run.goal_id, run.goal_description, run.input_data) == ("goal-2", "second", {"n": 2})
    assert [p.description for p in run.problems] == ["reported before the orchestrator started"]
    assert run.status is RunStatus.COMPLETED


def test_a_run_with_decisions_is_still_kept_when_its_execution_starts_again(
    tmp_path: Path,
) -> None:
    storage = BatchedStorage(tmp_path)
    tracker = StreamDecisionTracker("webhook", storage)

    async def runtime() -> tuple[str, str]:
        await storage.start()
        first = tracker.start_run("exec-1", "goal")
        tracker.quick_decision("exec-1", "do", "it", "because")
        second = tracker.start_run("exec-1", "goal")
        tracker.end_run("exec-1", True)
        await asyncio.sleep(0)  # the save task runs, as it does at the runtime's next await
        await storage.stop()
        return first, second

    first, second = asyncio.run(runtime())
    assert storage.stored_ids() == sorted([first, second])
    assert Run.model_validate(storage.load(first)).status is RunStatus.CANCELLED


def test_end_run_without_a_loop_hands_the_run_over_before_returning(tmp_path: Path) -> None:
    storage = BatchedStorage(tmp_path)  # never started: save_run writes at once
    tracker = StreamDecisionTracker("sync", storage)
    run_id = tracker.start_run("e", "goal")
    tracker.quick_decision("e", "do", "it", "because")
    tracker.end_run("e", True, "done")

    assert storage.saved == [run_id]  # the original raised here: no running event loop
    assert tracker.flush(10.0)
    assert storage.load(run_id)["narrative"] == "done"


def test_a_plain_save_run_function_gets_each_run(tmp_path: Path) -> None:
    class PlainStorage:
        def __init__(self) -> None:
            self.runs: list[Run] = []

        def save_run(self, run: Run) -> None:
            self.runs.append(run)

    storage = PlainStorage()
    tracker = StreamDecisionTracker("plain", storage)

    async def agent() -> str:
        run_id = tracker.start_run("e", "goal")
        tracker.end_run("e", False, output_data={"x": 1})
        return run_id

    run_id = asyncio.run(agent())
    [run] = storage.runs
    assert (run.id, run.status, run.output_data) == (run_id, RunStatus.FAILED, {"x": 1})
    jsonschema.validate(run.model_dump(mode="json"), RUN_SCHEMA)


def test_an_object_with_only_base_path_gets_the_json_files_layout(tmp_path: Path) -> None:
    tracker = StreamDecisionTracker("webhook", SimpleNamespace(base_path=tmp_path))

    async def runtime() -> str:
        return await run_execution(tracker, "exec-1")

    run_id = asyncio.run(runtime())
    assert tracker.flush(10.0)
    record = json.loads((tmp_path / "runs" / f"{run_id}.json").read_text("utf-8"))
    jsonschema.validate(record, RUN_SCHEMA)
    assert record["output_data"] == {"answer": "exec-1"}
    assert record["narrative"] == "Execution succeeded"
    assert len(record["decisions"]) == 2
    assert JSONFilesStore(tmp_path).list_runs() != []
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [f"{run_id}.json"]


@pytest.mark.parametrize("storage", [object(), 42, SimpleNamespace(base_path=None)])
def test_unusable_storage_is_logged_once_per_tracker_and_recording_goes_on(
    storage: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        tracker = StreamDecisionTracker("nowhere", storage)  # construction never refuses it
        assert caplog.records == []
        for execution in ("a", "b"):
            tracker.start_run(execution, "goal")
            decision = tracker.quick_decision(execution, "do", "it", "because")
            tracker.record_outcome(execution, decision, True)
            tracker.end_run(execution, True)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "nowhere" in errors[0]
    assert "runs are recorded as spans but not stored" in errors[0]
    assert decision == "dec_0"


class FlakyStorage(BatchedStorage):
    """Raises for the runs of executions named ``bad-*``, or hangs for ``hang-*``."""

    def __init__(self, base_path: Path, release: threading.Event) -> None:
        super().__init__(base_path)
        self.release = release

    async def save_run(self, run: Run, immediate: bool = False) -> None:
        if run.input_data.get("q", "").startswith("bad"):
            raise OSError("disk on fire")
        if run.input_data.get("q", "").startswith("hang"):
            while not self.release.is_set():
                await asyncio.sleep(0.01)
        await super().save_run(run, immediate)


def test_a_failing_save_run_is_logged_once_with_the_run_id_and_others_are_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    storage = FlakyStorage(tmp_path, release)
    tracker = StreamDecisionTracker("flaky", storage)

    async def runtime() -> dict[str, str]:
        await storage.start()
        ids = {name: await run_execution(tracker, name) for name in ("bad-1", "ok-1", "bad-2")}
        ids["ok-2"] = await run_execution(tracker, "ok-2")
        await storage.stop()
        return ids

    with caplog.at_level(logging.ERROR, logger="decisiontrace"):
        ids = asyncio.run(runtime())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert ids["bad-1"] in errors[0]
    assert "disk on fire" in errors[0]
    assert storage.stored_ids() == sorted([ids["ok-1"], ids["ok-2"]])


def test_a_hanging_save_run_never_holds_the_agent_and_others_are_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()
    storage = FlakyStorage(tmp_path, release)  # not started: writes at once
    tracker = StreamDecisionTracker("hangs", storage)

    def execution(name: str) -> str:
        run_id = tracker.start_run(name, "goal", "", {"q": name})
        tracker.end_run(name, True)
        return run_id

    with caplog.at_level(logging.ERROR, logger="decisiontrace"):
        hung = [execution(f"hang-{i}") for i in range(3)]  # no event loop in this thread
        ok = execution("ok-1")
        assert not tracker.flush(0.2)  # the hung ones are still in save_run
        release.set()
        assert tracker.flush(10.0)
    assert storage.stored_ids() == sorted([*hung, ok])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_a_blocking_plain_save_run_is_logged_once_and_every_run_still_reaches_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()

    class BlockingStorage:
        def __init__(self) -> None:
            self.runs: list[str] = []

        def save_run(self, run: Run) -> None:
            release.wait(60)
            self.runs.append(run.id)

    storage = BlockingStorage()
    tracker = StreamDecisionTracker("blocks", storage)
    with caplog.at_level(logging.ERROR, logger="decisiontrace"):
        run_ids = []
        for i in range(6):  # more runs than save threads: the rest wait their turn
            run_ids.append(tracker.start_run(f"e{i}", "goal"))
            tracker.end_run(f"e{i}", True)
        assert storage.runs == []
        release.set()
        assert tracker.flush(10.0)
    assert sorted(storage.runs) == sorted(run_ids)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert run_ids[0] in errors[0]
    assert "did not take run" in errors[0]


def test_close_ends_open_runs_as_cancelled_and_hands_them_over(tmp_path: Path) -> None:
    storage = BatchedStorage(tmp_path)  # not started: writes at once
    tracker = StreamDecisionTracker("closing", storage)
    run_id = tracker.start_run("e", "goal")
    tracker.quick_decision("e", "do", "it", "because")

    tracker.close()

    run = Run.model_validate(storage.load(run_id))
    assert run.status is RunStatus.CANCELLED
    assert [d.intent for d in run.decisions] == ["do"]
    assert tracker.get_active_executions() == []


def test_a_second_end_run_after_the_run_was_saved_saves_it_again_with_the_last_values(
    tmp_path: Path,
) -> None:
    storage = BatchedStorage(tmp_path)  # not started: each save writes at once
    tracker = StreamDecisionTracker("twice", storage)
    run_id = tracker.start_run("e", "goal")
    tracker.end_run("e", True, "first")
    assert tracker.flush(10.0)
    assert storage.load(run_id)["narrative"] == "first"

    tracker.end_run("e", False, output_data={"late": True})
    assert tracker.flush(10.0)
    record = storage.load(run_id)
    assert (record["status"], record["output_data"]) == ("failed", {"late": True})
    assert record["narrative"].startswith("Run failed.")  # generated, as the original does
    assert storage.saved == [run_id, run_id]


def test_a_run_handed_to_a_loop_that_stops_before_the_task_runs_is_still_saved() -> None:
    class AsyncListStorage:
        def __init__(self) -> None:
            self.runs: list[str] = []

        async def save_run(self, run: Run) -> None:
            self.runs.append(run.id)

    storage = AsyncListStorage()
    tracker = StreamDecisionTracker("stopping-loop", storage)
    loop = asyncio.new_event_loop()
    run_ids: list[str] = []

    def agent() -> None:
        run_ids.append(tracker.start_run("e", "goal"))
        tracker.end_run("e", True)
        loop.stop()  # the save task is scheduled but will not run in this loop

    loop.call_soon(agent)
    loop.run_forever()
    pending = asyncio.all_tasks(loop)
    for task in pending:  # what asyncio.run does to the tasks left when it ends
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()

    assert tracker.flush(10.0)
    assert storage.runs == run_ids  # the original loses it


def test_construction_never_touches_storage_and_a_hostile_one_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    touched: list[str] = []

    class Hostile:
        def __getattr__(self, name: str) -> Any:
            touched.append(name)
            raise RuntimeError(f"no {name} here")

    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        tracker = StreamDecisionTracker("hostile", Hostile())
        adapter = StreamRuntimeAdapter(tracker, "e")
        assert touched == []
        adapter.start_run("goal")
        adapter.quick_decision("do", "it", "because")
        adapter.end_run(True)
        tracker.start_run("f", "goal")
        tracker.end_run("f", True)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "no save_run here" in errors[0]


def test_a_failing_save_run_is_logged_once_per_tracker(caplog: pytest.LogCaptureFixture) -> None:
    class FailingStorage:
        def save_run(self, run: Run) -> None:
            raise OSError(f"disk full for {run.id}")

    with caplog.at_level(logging.ERROR, logger="decisiontrace"):
        for name in ("first", "second"):
            tracker = StreamDecisionTracker(name, FailingStorage())
            for index in range(3):
                tracker.start_run(f"e{index}", "goal")
                tracker.end_run(f"e{index}", True)
            assert tracker.flush(10.0)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2, errors  # one per tracker, not one per run
    assert all("save_run failed for run" in e and "disk full" in e for e in errors)
