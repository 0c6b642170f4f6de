"""Log correlation: records made inside a run carry its trace, span, run, goal and node ids.

The original tracker called ``set_trace_context`` at ``start_run`` so its log formatter
could print those ids; :class:`RunContextFilter` gives every record the same fields from
the current run and the current OpenTelemetry span.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan

import decisiontrace as dt
from decisiontrace.compat.hive import StreamDecisionTracker
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.tracking import _context
from decisiontrace.tracking.log_context import FIELDS
from tests.conftest import Pipeline

LOGGER_NAME = "tests.log_context"
LOG = logging.getLogger(LOGGER_NAME)
EMPTY = dict.fromkeys(FIELDS, "")


class Collector(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def fields(self) -> list[dict[str, str]]:
        return [ids(record) for record in self.records]


def ids(record: logging.LogRecord) -> dict[str, str]:
    return {name: getattr(record, name) for name in FIELDS}


def run_span(pipeline: Pipeline, run_id: str) -> ReadableSpan:
    [span] = [
        s
        for s in pipeline.spans()
        if (s.attributes or {}).get(sc.SPAN_KIND) == sc.KIND_RUN
        and (s.attributes or {}).get(sc.RUN_ID) == run_id
    ]
    return span


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    assert span.context is not None
    return format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")


@pytest.fixture(autouse=True)
def outside_any_run() -> Iterator[None]:
    """Start each test outside a run, whatever an earlier test left in this context."""
    run_token = _context.current_run.set(None)
    node_token = _context.current_node.set(None)
    yield
    _context.current_node.reset(node_token)
    _context.current_run.reset(run_token)


@pytest.fixture
def collector() -> Iterator[Collector]:
    """A handler with a RunContextFilter on the test logger."""
    handler = Collector()
    handler.addFilter(dt.RunContextFilter())
    LOG.addHandler(handler)
    LOG.setLevel(logging.DEBUG)
    yield handler
    LOG.removeHandler(handler)
    LOG.setLevel(logging.NOTSET)


@pytest.fixture
def root_handler() -> Iterator[Collector]:
    """A collecting handler on the root logger; RunContextFilters are removed afterwards."""
    root = logging.getLogger()
    handler = Collector()
    root.addHandler(handler)
    LOG.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    LOG.setLevel(logging.NOTSET)
    for other in root.handlers:
        for log_filter in list(other.filters):
            if isinstance(log_filter, dt.RunContextFilter):
                other.removeFilter(log_filter)


def test_outside_a_run_every_field_is_an_empty_string(collector: Collector) -> None:
    LOG.info("hello")

    assert collector.fields() == [EMPTY]
    formatter = logging.Formatter("[%(trace_id)s|%(run_id)s|%(node_id)s] %(message)s")
    assert formatter.format(collector.records[0]) == "[||] hello"


def test_records_in_a_run_carry_its_ids(pipeline: Pipeline, collector: Collector) -> None:
    tracker = dt.DecisionTracker("logs", tracer_provider=pipeline.provider)
    tracer = pipeline.provider.get_tracer("tests")
    with tracker.run("goal-1", "Log things", execution_id="exec-1") as scope:
        LOG.info("started")
        tracker.set_node("planner")
        LOG.info("planning")
        with tracer.start_as_current_span("llm call") as child:
            LOG.info("calling the model")
        tracker.decide(intent="Plan", options=[{"id": "a"}], chosen="a", reasoning="only one")
        LOG.warning("after a decision")
    LOG.info("after the run")

    trace_id, span_id = hex_ids(run_span(pipeline, scope.run_id))
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert trace_id != "0" * 32
    child_span_id = format(child.get_span_context().span_id, "016x")
    in_run = {"trace_id": trace_id, "run_id": scope.run_id, "execution_id": "exec-1"}
    in_run["goal_id"] = "goal-1"
    assert collector.fields() == [
        {**in_run, "span_id": span_id, "node_id": "unknown"},
        {**in_run, "span_id": span_id, "node_id": "planner"},
        {**in_run, "span_id": child_span_id, "node_id": "planner"},
        {**in_run, "span_id": span_id, "node_id": "planner"},
        EMPTY,
    ]


def test_records_from_other_loggers_get_the_fields_through_the_handler(
    pipeline: Pipeline, collector: Collector
) -> None:
    tracker = dt.DecisionTracker("logs", tracer_provider=pipeline.provider)
    library = logging.getLogger(f"{LOGGER_NAME}.some.library")
    with tracker.run("goal-lib", execution_id="exec-lib") as scope:
        library.info("from a library")

    [record] = collector.records
    assert record.name == f"{LOGGER_NAME}.some.library"
    assert (record.run_id, record.execution_id, record.goal_id) == (  # type: ignore[attr-defined]
        scope.run_id,
        "exec-lib",
        "goal-lib",
    )


def test_concurrent_runs_in_tasks_log_their_own_ids(
    pipeline: Pipeline, collector: Collector
) -> None:
    tracker = dt.DecisionTracker("logs", tracer_provider=pipeline.provider)

    async def execution(number: int) -> str:
        async with tracker.run(f"goal-{number}", execution_id=f"exec-{number}") as scope:
            tracker.set_node(f"node-{number}")
            for _ in range(3):
                LOG.info("tick", extra={"number": number})
                await asyncio.sleep(0)
            return scope.run_id

    async def main() -> list[str]:
        return await asyncio.gather(*(execution(n) for n in range(5)))

    run_ids = asyncio.run(main())
    assert len(collector.records) == 15
    for record in collector.records:
        number: int = record.number  # type: ignore[attr-defined]
        trace_id, span_id = hex_ids(run_span(pipeline, run_ids[number]))
        assert ids(record) == {
            "trace_id": trace_id,
            "span_id": span_id,
            "run_id": run_ids[number],
            "execution_id": f"exec-{number}",
            "goal_id": f"goal-{number}",
            "node_id": f"node-{number}",
        }


def test_compat_start_run_sets_the_log_context_like_set_trace_context(
    pipeline: Pipeline, collector: Collector
) -> None:
    tracker = StreamDecisionTracker("compat", pipeline.store, tracer_provider=pipeline.provider)
    run_id = tracker.start_run("exec-1", "goal-c", "Compat goal")
    LOG.info("after start_run")
    tracker.set_node("exec-1", "classifier")
    LOG.info("after set_node")
    tracker.end_run("exec-1", True)
    LOG.info("after end_run")

    trace_id, span_id = hex_ids(run_span(pipeline, run_id))
    in_run = {"trace_id": trace_id, "span_id": span_id, "run_id": run_id}
    in_run |= {"execution_id": "exec-1", "goal_id": "goal-c"}
    assert collector.fields() == [
        {**in_run, "node_id": "unknown"},
        {**in_run, "node_id": "classifier"},
        EMPTY,
    ]


def test_compat_run_ids_in_logs_stay_consistent_inside_an_ambient_span(
    pipeline: Pipeline, collector: Collector
) -> None:
    tracker = StreamDecisionTracker("compat", pipeline.store, tracer_provider=pipeline.provider)
    with pipeline.provider.get_tracer("web").start_as_current_span("GET /ticket"):
        run_id = tracker.start_run("exec-1", "goal-c")
        LOG.info("inside the request, inside the run")
        tracker.end_run("exec-1", True)

    trace_id, span_id = hex_ids(run_span(pipeline, run_id))
    [record] = collector.records
    assert ids(record)["run_id"] == run_id
    assert (ids(record)["trace_id"], ids(record)["span_id"]) == (trace_id, span_id)


def test_compat_executions_in_separate_tasks_log_their_own_run(
    pipeline: Pipeline, collector: Collector
) -> None:
    tracker = StreamDecisionTracker("compat", pipeline.store, tracer_provider=pipeline.provider)

    async def execution(number: int) -> str:
        run_id = tracker.start_run(f"exec-{number}", "goal")
        await asyncio.sleep(0)
        LOG.info("working", extra={"number": number})
        await asyncio.sleep(0)
        tracker.end_run(f"exec-{number}", True)
        return run_id

    async def main() -> list[str]:
        return await asyncio.gather(*(execution(n) for n in range(4)))

    run_ids = asyncio.run(main())
    assert len(set(run_ids)) == 4
    assert {r.number: r.run_id for r in collector.records} == dict(  # type: ignore[attr-defined]
        enumerate(run_ids)
    )
    for record in collector.records:
        trace_id, _span_id = hex_ids(run_span(pipeline, record.run_id))  # type: ignore[attr-defined]
        assert record.trace_id == trace_id  # type: ignore[attr-defined]


def test_install_log_context_attaches_one_filter_per_root_handler(
    pipeline: Pipeline, root_handler: Collector
) -> None:
    first = dt.install_log_context()
    second = dt.install_log_context()

    assert isinstance(first, dt.RunContextFilter)
    assert isinstance(second, dt.RunContextFilter)
    assert [f for f in root_handler.filters if isinstance(f, dt.RunContextFilter)] == [first]

    tracker = dt.DecisionTracker("root", tracer_provider=pipeline.provider)
    LOG.info("outside")
    with tracker.run("goal-root", execution_id="exec-root") as scope:
        LOG.info("inside")
    outside, inside = (r for r in root_handler.records if r.name == LOGGER_NAME)
    assert ids(outside) == EMPTY
    assert (inside.run_id, inside.execution_id) == (scope.run_id, "exec-root")  # type: ignore[attr-defined]


def test_install_log_context_respects_a_filter_already_there(root_handler: Collector) -> None:
    existing = dt.RunContextFilter()
    root_handler.addFilter(existing)

    dt.install_log_context()

    assert [f for f in root_handler.filters if isinstance(f, dt.RunContextFilter)] == [existing]


def test_install_log_context_on_a_given_logger_leaves_root_alone(root_handler: Collector) -> None:
    own = logging.getLogger(f"{LOGGER_NAME}.own")
    handler = Collector()
    own.addHandler(handler)
    try:
        installed = dt.install_log_context(own)
        dt.install_log_context(own)
    finally:
        own.removeHandler(handler)

    assert [f for f in handler.filters if isinstance(f, dt.RunContextFilter)] == [installed]
    assert not any(isinstance(f, dt.RunContextFilter) for f in root_handler.filters)
