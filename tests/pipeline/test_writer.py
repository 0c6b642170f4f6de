"""The processor's writer: the hot path hands it spans undecoded and within the queue's
bound; bugs on its thread fail the test suite; a failing store is not such a bug."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import decisiontrace as dt
from decisiontrace._internal import errors
from decisiontrace._internal.errors import RAISE_ENV
from decisiontrace.spanmodel import _decode
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore
from decisiontrace.stores.base import AssembledRun


class BlockedStore(MemoryStore):
    """A real in-memory store whose writes wait until released (a locked database)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        self.entered.set()
        self.release.wait(30)
        super().save_assembled(runs)


class FailingStore(MemoryStore):
    """A real in-memory store whose writes fail while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = True

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        if self.failing:
            raise OSError("disk full")
        super().save_assembled(runs)


class MeasuredQueue(deque[Any]):
    """The writer's queue, noting the most items it ever held."""

    most = 0

    def append(self, item: Any) -> None:
        super().append(item)
        self.most = max(self.most, len(self))

    def extend(self, items: Any) -> None:
        super().extend(items)
        self.most = max(self.most, len(self))


def open_run(tracer: trace.Tracer, run_id: str) -> trace.Span:
    """A run span from code other than the tracker, with one decision ended, left open."""
    run = tracer.start_span(
        "run", attributes={sc.SPAN_KIND: sc.KIND_RUN, sc.RUN_ID: run_id, sc.GOAL_ID: "g"}
    )
    tracer.start_span(
        "decision",
        context=trace.set_span_in_context(run),
        attributes={sc.SPAN_KIND: sc.KIND_DECISION, sc.RUN_ID: run_id, sc.DECISION_ID: "dec_1"},
    ).end()
    return run


@pytest.fixture
def blocked() -> Iterator[tuple[TracerProvider, dt.RunRecordProcessor, BlockedStore]]:
    store = BlockedStore()
    processor = dt.RunRecordProcessor(
        store, flush_interval=0.01, max_queue_size=40, max_open_runs=3, handle_sigterm=False
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    yield provider, processor, store
    store.release.set()
    provider.shutdown()


def test_the_queue_never_exceeds_its_bound_under_a_flood_with_a_blocked_store(
    blocked: tuple[TracerProvider, dt.RunRecordProcessor, BlockedStore],
) -> None:
    provider, processor, store = blocked
    queue = processor._writer._inbox = MeasuredQueue()
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    with tracker.run("first"):
        pass
    assert store.entered.wait(10), "the writer never reached the store"
    tracer = provider.get_tracer("other")
    # Finished runs fill the queue; runs left open past max_open_runs are given up by
    # on_start, which must hand them over within the same bound.
    for index in range(30):
        with tracker.run("g"):
            tracker.quick_decision(intent="i", action="a", reasoning="r")
        open_run(tracer, f"open_{index}")
    assert queue.most <= 40
    assert processor.dropped_spans > 0
    store.release.set()
    assert processor.force_flush(10_000)
    stuck = [s.run_id for s in store.list_runs() if s.status == dt.RunStatus.STUCK]
    assert stuck, "no run given up in on_start reached the store"
    for run_id in stuck:
        run = store.load_run(run_id)
        assert run is not None and [d.id for d in run.decisions] == ["dec_1"]


class CountedSpanData(_decode.SpanData):
    """The decoder's span form, counting the threads that build one."""

    __slots__ = ()
    threads: ClassVar[dict[int, int]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        ident = threading.get_ident()
        self.threads[ident] = self.threads.get(ident, 0) + 1
        super().__init__(*args, **kwargs)


def test_on_start_and_on_end_decode_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    CountedSpanData.threads = {}
    monkeypatch.setattr(_decode, "SpanData", CountedSpanData)
    store = MemoryStore()
    processor = dt.RunRecordProcessor(
        store, flush_interval=0.01, max_open_runs=2, run_timeout=3600, handle_sigterm=False
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    tracer = provider.get_tracer("other")
    # 4 given up as they start, and open_4 when the first tracker run starts.
    left_open = [open_run(tracer, f"open_{index}") for index in range(6)]
    for _ in range(5):
        with tracker.run("g"):
            tracker.quick_decision(intent="i", action="a", reasoning="r")
    assert processor.force_flush(10_000)
    agent = threading.get_ident()
    assert CountedSpanData.threads.get(agent, 0) == 0
    thread = processor._writer.thread
    assert thread is not None and CountedSpanData.threads.get(thread.ident or 0, 0) > 0
    stuck = {s.run_id for s in store.list_runs() if s.status == dt.RunStatus.STUCK}
    assert stuck == {f"open_{index}" for index in range(5)}
    for span in left_open:
        span.end()
    provider.shutdown()


def test_a_bug_on_the_writer_thread_is_collected_for_the_test_suite() -> None:
    store = MemoryStore()
    processor = dt.RunRecordProcessor(store, flush_interval=0.01, handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)

    def broken(**kwargs: Any) -> list[Any]:
        raise KeyError("a bug in assembly")

    processor._assembler.take_ready_runs = broken  # type: ignore[method-assign]
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    with tracker.run("g"):
        pass
    processor.force_flush(5_000)  # the pass fails: the guard cannot raise into us
    caught = errors.take_background_errors()
    assert caught and caught[0][0] == "RunRecordProcessor writer pass"
    assert isinstance(caught[0][1], KeyError)
    provider.shutdown()
    errors.take_background_errors()


def test_a_bug_on_the_writer_thread_is_only_logged_in_production(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(RAISE_ENV)
    processor = dt.RunRecordProcessor(MemoryStore(), flush_interval=0.01, handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)

    def broken(**kwargs: Any) -> list[Any]:
        raise KeyError("a bug in assembly")

    processor._assembler.take_ready_runs = broken  # type: ignore[method-assign]
    with dt.DecisionTracker("s", tracer_provider=provider).run("g"):
        pass
    processor.force_flush(5_000)
    assert errors.take_background_errors() == []
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("writer pass failed" in r.getMessage() for r in failures)
    provider.shutdown()


def test_a_failing_store_is_retried_and_is_not_an_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingStore()
    processor = dt.RunRecordProcessor(store, flush_interval=0.01, handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with dt.DecisionTracker("s", tracer_provider=provider).run("g") as run:
        pass
    assert processor.force_flush(300) is False
    assert processor.store_failing
    assert errors.take_background_errors() == []
    store.failing = False
    assert processor.force_flush(10_000)  # retried without anyone asking
    assert not processor.store_failing
    assert store.load_run(run.run_id) is not None
    messages = [r.getMessage() for r in caplog.records]
    assert any("could not write 1 runs" in m for m in messages)
    assert any("writable again" in m for m in messages)
    provider.shutdown()


class PickyStore(MemoryStore):
    """A real in-memory store that cannot encode runs of the goal "bad"."""

    def __init__(self, error: type[Exception]) -> None:
        super().__init__()
        self.error = error

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        if any(run.record()["goal_id"] == "bad" for run in runs):
            raise self.error("cannot encode this run")
        super().save_assembled(runs)


@pytest.mark.parametrize("error", [TypeError, ValueError, OverflowError])
def test_a_run_the_store_cannot_encode_is_dropped_and_the_others_are_written(
    error: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    # Retrying such a run would fail for ever, and keep every flush waiting behind it.
    store = PickyStore(error)
    processor = dt.RunRecordProcessor(store, flush_interval=60, handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    goals = ["good", "bad", "good"]
    runs = []
    for goal in goals:
        with tracker.run(goal) as run:
            runs.append(run.run_id)
    assert processor.force_flush(10_000)
    assert [store.load_run(run_id) is not None for run_id in runs] == [True, False, True]
    assert (processor.dropped_runs, processor.store_failing) == (1, False)
    assert any("could not be encoded" in r.getMessage() for r in caplog.records)
    provider.shutdown()
