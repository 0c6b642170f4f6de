"""1000 concurrent runs in asyncio plus 8 threads, 50 decisions each: nothing crosses over.

Every decision carries the key of the run that made it, in its context and in its
result; the stored runs must hold exactly their own 50 decisions, in order, with exact
totals (decisions, successes, failures, tokens) per run and overall.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

from ._support import make_pipeline

ASYNC_RUNS = 1000
THREADS = 8
RUNS_PER_THREAD = 4
DECISIONS = 50


def tokens(index: int) -> int:
    return index % 7 + 1


def fails(index: int) -> bool:
    return index % 9 == 0


def decide(tracker: dt.DecisionTracker, key: str, index: int) -> None:
    decision_id = tracker.decide(
        intent=f"step {index}",
        options=[{"id": "a", "confidence": 0.6}, {"id": "b", "confidence": 0.4}],
        chosen="a",
        reasoning=key,
        context={"run": key, "index": index},
    )
    tracker.record_outcome(
        decision_id=decision_id,
        success=not fails(index),
        result={"run": key, "index": index},
        tokens_used=tokens(index),
    )


async def async_run(tracker: dt.DecisionTracker, key: str) -> str:
    async with tracker.run("async", input_data={"run": key}) as scope:
        for index in range(DECISIONS):
            decide(tracker, key, index)
            await asyncio.sleep(0)  # let every other run interleave here
    return scope.run_id


def thread_runs(tracker: dt.DecisionTracker, worker: int, out: dict[str, str]) -> None:
    for number in range(RUNS_PER_THREAD):
        key = f"thread-{worker}-{number}"
        with tracker.run("thread", input_data={"run": key}) as scope:
            for index in range(DECISIONS):
                decide(tracker, key, index)
        out[key] = scope.run_id


def test_every_decision_lands_in_its_own_run_and_totals_are_exact(tmp_path: Path) -> None:
    pipeline = make_pipeline(SQLiteStore(tmp_path / "runs.db"), flush_interval=0.05)
    tracker = pipeline.tracker
    run_ids: dict[str, str] = {}
    threads = [
        threading.Thread(target=thread_runs, args=(tracker, worker, run_ids))
        for worker in range(THREADS)
    ]
    for thread in threads:
        thread.start()

    async def main() -> list[str]:
        keys = [f"async-{number}" for number in range(ASYNC_RUNS)]
        ids = await asyncio.gather(*(async_run(tracker, key) for key in keys))
        run_ids.update(zip(keys, ids, strict=True))
        return ids

    asyncio.run(main())
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    pipeline.flush(60_000)

    assert len(run_ids) == len(set(run_ids.values())) == ASYNC_RUNS + THREADS * RUNS_PER_THREAD
    per_run_tokens = sum(tokens(index) for index in range(DECISIONS))
    per_run_failures = sum(fails(index) for index in range(DECISIONS))
    totals = {"decisions": 0, "failed": 0, "tokens": 0}
    for key, run_id in run_ids.items():
        run = pipeline.store.load_run(run_id)
        assert run is not None and run.status == dt.RunStatus.COMPLETED
        assert run.input_data == {"run": key}
        assert [d.id for d in run.decisions] == [f"dec_{i}" for i in range(DECISIONS)]
        for index, decision in enumerate(run.decisions):
            assert decision.input_context == {"run": key, "index": index}
            assert decision.reasoning == key
            assert decision.outcome is not None
            assert decision.outcome.result == {"run": key, "index": index}
        assert run.metrics.total_decisions == DECISIONS
        assert run.metrics.failed_decisions == per_run_failures
        assert run.metrics.successful_decisions == DECISIONS - per_run_failures
        assert run.metrics.total_tokens == per_run_tokens
        totals["decisions"] += run.metrics.total_decisions
        totals["failed"] += run.metrics.failed_decisions
        totals["tokens"] += run.metrics.total_tokens
    runs = len(run_ids)
    assert totals == {
        "decisions": runs * DECISIONS,
        "failed": runs * per_run_failures,
        "tokens": runs * per_run_tokens,
    }
    assert pipeline.processor.dropped_runs == pipeline.processor.dropped_spans == 0
    assert tracker.get_active_executions() == []
    pipeline.provider.shutdown()
