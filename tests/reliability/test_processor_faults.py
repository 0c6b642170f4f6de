"""A run-record processor that fails inside on_start/on_end must not take the agent down.

The SDK calls span processors inside ``span.start``/``span.end()`` on the agent's
thread and does not catch what they raise. Faults are injected into a real processor
(its queue or its bookkeeping raising, as under memory exhaustion) and into its store;
the agent's own code and the other span processors must not notice.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import decisiontrace as dt
from decisiontrace._internal.errors import RAISE_ENV
from decisiontrace.stores import SQLiteStore
from decisiontrace.stores.base import AssembledRun

from ._support import Pipeline, make_pipeline


class ExplodingQueue(deque[Any]):
    """A queue that fails to take anything, as an allocation under memory pressure would."""

    def append(self, item: Any) -> None:
        raise MemoryError("queue append failed")


class ExplodingDict(dict[int, Any]):
    """Bookkeeping that fails on every write."""

    def __setitem__(self, key: int, value: Any) -> None:
        raise MemoryError("dict insert failed")


class AppError(Exception):
    """The agent's own failure."""


@pytest.fixture(autouse=True)
def _production_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """These faults stand for bugs of ours: what holds is production's behaviour (logged,
    never raised), not the test suite's (raised, see ``decisiontrace._internal.errors``)."""
    monkeypatch.delenv(RAISE_ENV)


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    built = make_pipeline(SQLiteStore(tmp_path / "runs.db"))
    yield built
    built.provider.shutdown()


def break_on_end(pipeline: Pipeline) -> None:
    pipeline.processor._writer._inbox = ExplodingQueue()


def break_on_start(pipeline: Pipeline) -> None:
    pipeline.processor._open.runs = ExplodingDict()
    pipeline.processor._tokens.notes = ExplodingDict()


def processor_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "RunRecordProcessor" in r.getMessage()
    ]


@pytest.mark.parametrize("fault", [break_on_end, break_on_start])
def test_span_end_never_raises_and_the_application_exception_is_preserved(
    pipeline: Pipeline, fault: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fault(pipeline)
    tracer = pipeline.provider.get_tracer("agent")
    error = AppError("the agent's own failure")
    for _ in range(20):
        span = tracer.start_span("plain", attributes={"decisiontrace.span_kind": "run"})
        span.end()  # must not raise
        with (
            pytest.raises(AppError) as raised,
            tracer.start_as_current_span(
                "decision", attributes={"decisiontrace.span_kind": "decision"}
            ),
        ):
            raise error
        assert raised.value is error and raised.value.__context__ is None
    # The exporter, added after the broken processor, still saw every span.
    assert len(pipeline.exporter.get_finished_spans()) == 40
    # One log line for the failing method, not one per span.
    assert len(processor_errors(caplog)) == 1


@pytest.mark.parametrize("fault", [break_on_end, break_on_start])
def test_the_tracker_and_decorators_keep_working_over_a_broken_processor(
    pipeline: Pipeline, fault: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fault(pipeline)
    tracker = pipeline.tracker

    @dt.decision("act", options=["a", "b"])
    def act(fail: bool) -> str:
        if fail:
            raise AppError("act failed")
        return "a"

    @dt.agent("goal", tracker=tracker)
    def agent(fail: bool) -> str:
        return act(fail)

    for _ in range(10):
        assert agent(False) == "a"
        with pytest.raises(AppError, match="act failed"):
            agent(True)
        with tracker.run("g") as scope:
            decision_id = tracker.decide(
                intent="i", options=[{"id": "a"}], chosen="a", reasoning=""
            )
            tracker.record_outcome(decision_id=decision_id, success=True)
        assert scope.get_run() is not None
    names = sorted({span.name for span in pipeline.exporter.get_finished_spans()})
    assert names == ["decision act", "decision i", "invoke_agent reliability"]
    assert len(processor_errors(caplog)) == 1


class FailingStore(SQLiteStore):
    """A real SQLite store whose writes raise something unexpected."""

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        raise RuntimeError("store bug")

    def close(self) -> None:
        raise RuntimeError("close bug")


def test_a_store_that_raises_never_reaches_the_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = make_pipeline(FailingStore(tmp_path / "runs.db"))
    tracker = pipeline.tracker
    for _ in range(20):
        with tracker.run("g"):
            tracker.quick_decision(intent="i", action="a", reasoning="r")
    assert pipeline.processor.force_flush(200) is False  # kept, waiting to be retried
    pipeline.processor.shutdown(timeout_millis=300)  # close() raises: logged, not raised
    pipeline.provider.shutdown()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert sum("could not write" in message for message in errors) == 1
    assert sum("store bug" in message for message in errors) == 1
    assert len(pipeline.exporter.get_finished_spans()) == 40
