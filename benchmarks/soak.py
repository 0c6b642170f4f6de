"""Soak: the demo workload for a set time, with memory and throughput printed as it goes.

    python benchmarks/soak.py                 # 60 s, a report every 5 s
    python benchmarks/soak.py --seconds 600 --every 30 --store sqlite:////tmp/soak.db

One tracer provider, one RunRecordProcessor and one tracker live for the whole soak, as
in a long-running agent; batches of support tickets (``decisiontrace.demo``'s agent, or a
built-in stand-in when the demo is not available) run one after another. Each report
line gives the process's RSS, the memory Python has allocated (tracemalloc), spans ended
per second since the last report, runs stored, runs and spans dropped, what waits in
the processor's queue and the runs still open. A leak shows as RSS and tracemalloc that
keep climbing after the first reports; a store that cannot keep up, as a growing queue.
Always exits 0: it reports, it does not judge.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.trace.export import SpanProcessor

import decisiontrace as dt
from decisiontrace.stores import open_store

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class SpanCounter(SpanProcessor):
    """Counts ended spans (every span, ours and the demo's LLM spans)."""

    def __init__(self) -> None:
        self.ended = 0

    def on_start(self, span: Span, parent_context: Any = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1


def rss_bytes() -> int:
    """Resident set size now (Linux), or 0 where /proc is not there."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


# --- workloads: one batch of tickets each call ---------------------------------------------


def demo_workload(
    tracker: dt.DecisionTracker, provider: TracerProvider, seed: int
) -> Callable[[int, int], None] | None:
    """Batches of the demo's tickets, or None if the demo package is not there."""
    try:
        from decisiontrace.demo._agent import DemoFailure, Kit, handle_ticket
        from decisiontrace.demo._tickets import make_ticket
    except ImportError:
        return None
    pool = dt.ContextThreadPoolExecutor(max_workers=4, thread_name_prefix="soak-kb")
    llm = provider.get_tracer("decisiontrace.demo.llm")

    def batch(first: int, size: int) -> None:
        # A fresh kit per batch: it remembers the run id of every ticket it handled.
        kit = Kit(tracker=tracker, llm=llm, pool=pool, timing=random.Random(first))

        async def one(number: int) -> None:
            with contextlib.suppress(DemoFailure):  # recorded as a failed run
                await handle_ticket(kit, make_ticket(seed, number))

        async def all_of_them() -> None:
            await asyncio.gather(*(one(number) for number in range(first, first + size)))

        asyncio.run(all_of_them())

    return batch


def local_workload(tracker: dt.DecisionTracker) -> Callable[[int, int], None]:
    """A stand-in support agent: classify, retrieve, respond, with the decorators."""

    @dt.decision("Classify the ticket", options=["billing", "bug", "howto"])
    async def classify(number: int) -> str:
        await asyncio.sleep(0)
        return ("billing", "bug", "howto")[number % 3]

    @dt.decision("Pick a knowledge source", options=["kb", "search"])
    def retrieve(category: str) -> str:
        return "kb" if category != "bug" else "search"

    @dt.node("responder")
    @dt.decision("Draft the reply", options=["reply", "escalate"])
    async def respond(number: int, source: str) -> str:
        await asyncio.sleep(0)
        if number % 11 == 0:
            raise RuntimeError("the model refused")
        return "reply" if source == "kb" else "escalate"

    async def ticket(number: int) -> None:
        async with tracker.run("resolve-ticket", input_data={"ticket": number}):
            category = await classify(number)
            source = retrieve(category)
            try:
                await respond(number, source)
            except RuntimeError:
                tracker.report_problem(severity="warning", description="reply refused")

    def batch(first: int, size: int) -> None:
        async def all_of_them() -> None:
            await asyncio.gather(*(ticket(number) for number in range(first, first + size)))

        asyncio.run(all_of_them())

    return batch


# --- the soak ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between reports")
    parser.add_argument("--batch", type=int, default=40, help="tickets run at once")
    parser.add_argument("--store", help="store URL (default: a temporary SQLite file)")
    parser.add_argument(
        "--workload", choices=["demo", "local"], default="demo", help="demo falls back to local"
    )
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS only (faster)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    scratch = None
    if args.store is None:
        scratch = tempfile.TemporaryDirectory(prefix="decisiontrace-soak-")
        args.store = f"sqlite:///{os.path.join(scratch.name, 'soak.db')}"
    store = open_store(args.store)
    counter = SpanCounter()
    processor = dt.RunRecordProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(counter)
    tracker = dt.DecisionTracker("soak", tracer_provider=provider)
    batch = None
    if args.workload == "demo":
        batch = demo_workload(tracker, provider, args.seed)
    workload = "demo" if batch is not None else "local"
    if batch is None:
        batch = local_workload(tracker)

    if not args.no_tracemalloc:
        tracemalloc.start()
    print(
        f"soak: {workload} workload, batches of {args.batch}, {args.seconds:g} s, "
        f"store {store.url}",
        flush=True,
    )
    header = (
        f"{'t (s)':>7} {'RSS MB':>8} {'py MB':>7} {'spans/s':>8} {'stored':>8} "
        f"{'dropped':>8} {'drop sp':>8} {'queue':>7} {'open':>5}"
    )
    print(header, flush=True)
    started = last_report = time.monotonic()
    last_spans = 0
    first_rss = None
    tickets = 0

    def report(now: float) -> None:
        nonlocal last_report, last_spans, first_rss
        interval = max(now - last_report, 1e-9)
        rss = rss_bytes() / 2**20
        traced = tracemalloc.get_traced_memory()[0] / 2**20 if tracemalloc.is_tracing() else 0.0
        first_rss = rss if first_rss is None else first_rss
        print(
            f"{now - started:7.1f} {rss:8.1f} {traced:7.1f} "
            f"{(counter.ended - last_spans) / interval:8.0f} {processor.written_runs:8d} "
            f"{processor.dropped_runs:8d} {processor.dropped_spans:8d} "
            f"{processor.queue_length:7d} {len(tracker.get_active_executions()):5d}",
            flush=True,
        )
        last_report, last_spans = now, counter.ended

    while time.monotonic() - started < args.seconds:
        batch(tickets, args.batch)
        tickets += args.batch
        now = time.monotonic()
        if now - last_report >= args.every:
            report(now)
    processor.force_flush(30_000)
    report(time.monotonic())
    provider.shutdown()
    print(
        f"soak: {tickets} tickets, {counter.ended} spans, {processor.written_runs} runs stored, "
        f"{processor.dropped_runs} runs and {processor.dropped_spans} spans dropped; "
        f"RSS {first_rss or 0:.1f} -> {rss_bytes() / 2**20:.1f} MB",
        flush=True,
    )
    if scratch is not None:
        store.close()
        scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
