"""Running the demo: all tickets at once on an event loop and a thread pool, spans set
up by :func:`~decisiontrace.setup.configure` (and exported when an endpoint is set), and
a check that every run reached the store.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider

from decisiontrace.demo._agent import STREAM_ID, DemoFailure, Kit, handle_ticket
from decisiontrace.demo._tickets import Ticket, make_ticket
from decisiontrace.pipeline.sampling import KeepEveryRunSampler
from decisiontrace.setup import configure
from decisiontrace.stores import RunStore, open_store
from decisiontrace.tracking._context import ContextThreadPoolExecutor
from decisiontrace.tracking.tracker import DecisionTracker

__all__ = ["DemoResult", "Progress", "run_demo"]

#: Called after each ticket with (tickets done, tickets in all).
Progress = Callable[[int, int], None]


@dataclass
class DemoResult:
    """What :func:`run_demo` did.

    Attributes:
        store_url: the store the runs were written to.
        seed: the seed used.
        run_ids: the run of each ticket, by ticket id (``T-0001``...).
        status_counts: stored runs by status.
        missing: ticket ids whose run is not in the store (should be empty).
        exported_to: the OTLP endpoint the spans went to, or None.
        seconds: wall-clock time of the workload and the flush.
    """

    store_url: str
    seed: int
    run_ids: dict[str, str]
    status_counts: dict[str, int]
    missing: list[str]
    exported_to: str | None
    seconds: float


def _export_settings() -> tuple[str | None, str]:
    """(endpoint, exporter): OTLP when an endpoint variable is set, else as the user says.

    Without any endpoint variable the SDK would default to localhost:4317 and retry
    against nothing, so the demo exports nowhere unless ``OTEL_TRACES_EXPORTER`` asks.
    """
    endpoint = None
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = os.environ.get(name, "").strip()
        if value:
            endpoint = value
            break
    chosen = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if endpoint is not None:
        return endpoint, chosen or "otlp"
    return None, chosen or "none"


async def _work(kit: Kit, tickets: list[Ticket], progress: Progress | None) -> None:
    done = 0

    async def one(ticket: Ticket) -> None:
        nonlocal done
        try:
            await handle_ticket(kit, ticket)
        except DemoFailure:
            pass  # the run records it as failed, which is the point
        finally:
            done += 1
            if progress is not None:
                progress(done, len(tickets))

    await asyncio.gather(*(one(ticket) for ticket in tickets))


def run_demo(
    store_url: str | os.PathLike[str] | RunStore | None = None,
    *,
    seed: int = 7,
    tickets: int = 60,
    threads: int = 4,
    progress: Progress | None = None,
) -> DemoResult:
    """Run the support-ticket agent on ``tickets`` tickets and store every run.

    Spans go through a tracer provider of their own (the global one is left alone) set up
    by :func:`decisiontrace.setup.configure`, so with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set they are exported there too. Must not be
    called from a running event loop (it runs its own).

    Args:
        store_url: the store or its URL; default ``$DECISIONTRACE_STORE`` or the default store.
        seed: decides every choice and outcome; the same seed gives the same runs.
        tickets: how many tickets (runs); all of them run at once.
        threads: worker threads for the blocking knowledge-base reads.
        progress: called after each ticket with (done, total).

    Returns:
        A :class:`DemoResult`.

    Raises:
        ValueError: ``tickets`` or ``threads`` is below 1, or the store URL or an OTLP
            variable is invalid.
        StoreError: the store cannot be opened.
    """
    if isinstance(tickets, bool) or not isinstance(tickets, int) or tickets < 1:
        raise ValueError(f"tickets must be an int >= 1, got {tickets!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    store = open_store(store_url)
    url = store.url
    endpoint, exporter = _export_settings()
    resource = (
        Resource.create()
        if os.environ.get("OTEL_SERVICE_NAME")
        else Resource.create({SERVICE_NAME: "decisiontrace-demo"})
    )
    provider = TracerProvider(resource=resource, sampler=KeepEveryRunSampler())
    telemetry = configure(
        store=store,
        tracer_provider=provider,
        exporter=exporter,
        metrics_exporter=None if endpoint else "none",
    )
    started = time.monotonic()
    kit = Kit(
        tracker=DecisionTracker(STREAM_ID, tracer_provider=provider),
        llm=provider.get_tracer("decisiontrace.demo.llm"),
        pool=ContextThreadPoolExecutor(max_workers=threads, thread_name_prefix="demo-kb"),
        timing=random.Random(),
    )
    try:
        asyncio.run(_work(kit, [make_ticket(seed, n) for n in range(tickets)], progress))
    finally:
        kit.pool.shutdown()
        telemetry.shutdown()  # stores every run, exports what is queued
        provider.shutdown()
    seconds = time.monotonic() - started
    counts: dict[str, int] = {}
    missing = []
    try:
        # The processor closed the store when it shut down; it reopens on use.
        for ticket_id, run_id in sorted(kit.run_ids.items()):
            summary = store.load_summary(run_id)
            if summary is None:
                missing.append(ticket_id)
            else:
                counts[summary.status.value] = counts.get(summary.status.value, 0) + 1
    finally:
        if store is not store_url:
            store.close()
    return DemoResult(
        store_url=url,
        seed=seed,
        run_ids=dict(sorted(kit.run_ids.items())),
        status_counts=dict(sorted(counts.items())),
        missing=missing,
        exported_to=endpoint,
        seconds=seconds,
    )
