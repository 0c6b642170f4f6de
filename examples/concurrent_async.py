"""Many executions at once: 100 asyncio tasks and 4 threads share one tracker.

    python examples/concurrent_async.py

Each execution's decisions land in its own run, however they interleave.
"""

from __future__ import annotations

import asyncio
import random
import threading

from opentelemetry.sdk.trace import TracerProvider

import decisiontrace as dt

ROUTES = ["howto", "bug", "billing"]


async def handle_ticket(tracker: dt.DecisionTracker, ticket: int) -> str:
    rng = random.Random(ticket)
    async with tracker.run("support-goal", input_data={"ticket": ticket}) as run:
        tracker.set_node("classifier")
        chosen = rng.choice(ROUTES)
        decision_id = tracker.decide(
            intent="Classify ticket",
            options=[{"id": r, "confidence": 0.9 if r == chosen else 0.05} for r in ROUTES],
            chosen=chosen,
            reasoning="best match",
        )
        await asyncio.sleep(rng.random() / 100)  # the "LLM call"
        tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=100)
        tracker.set_node("responder")
        decision_id = tracker.quick_decision(intent="Answer", action="reply", reasoning="done")
        await asyncio.sleep(rng.random() / 100)
        failed = rng.random() < 0.1
        tracker.record_outcome(
            decision_id=decision_id, success=not failed, error="timeout" if failed else None
        )
        run.success = not failed
    return run.run_id


def thread_worker(tracker: dt.DecisionTracker, first: int, run_ids: list[str]) -> None:
    run_ids.extend(asyncio.run(_batch(tracker, range(first, first + 10))))


async def _batch(tracker: dt.DecisionTracker, tickets: range) -> list[str]:
    return list(await asyncio.gather(*(handle_ticket(tracker, t) for t in tickets)))


def main() -> None:
    store = dt.open_store()
    provider = TracerProvider()
    provider.add_span_processor(dt.RunRecordProcessor(store))
    tracker = dt.DecisionTracker("concurrent", tracer_provider=provider)

    run_ids: list[str] = []
    threads = [
        threading.Thread(target=thread_worker, args=(tracker, 1000 + 10 * i, run_ids))
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    run_ids.extend(asyncio.run(_batch(tracker, range(100))))
    for thread in threads:
        thread.join()
    provider.shutdown()

    runs = [store.load_run(run_id) for run_id in run_ids]
    mixed = [r for r in runs if r is None or len(r.decisions) != 2]
    by_status: dict[str, int] = {}
    for run in runs:
        if run is not None:
            by_status[run.status.value] = by_status.get(run.status.value, 0) + 1
    print(f"{len(run_ids)} runs stored in {store.url}: {by_status}")
    print("every run has exactly its own 2 decisions" if not mixed else f"MIXED: {mixed}")


if __name__ == "__main__":
    main()
