"""Runs travel with the trace context: a second SDK pipeline plays the other process.

Each "process" is a real TracerProvider with its own resource (service.name), its own
RunRecordProcessor and store; the context crosses between them only as a dict of
headers, through the global propagator, as it does over HTTP.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import decisiontrace as dt
from decisiontrace.pipeline._pending import record_from_compact
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore
from decisiontrace.tracking import _remote, propagation
from tests.conftest import span_dict


@dataclass
class Process:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    processor: dt.RunRecordProcessor
    store: MemoryStore
    tracker: dt.DecisionTracker

    def flush(self) -> None:
        assert self.processor.force_flush(10_000)


def _process(service: str, **tracker_args: Any) -> Process:
    store = MemoryStore()
    processor = dt.RunRecordProcessor(store, flush_interval=0.05, handle_sigterm=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = dt.DecisionTracker(service, tracer_provider=provider, **tracker_args)
    return Process(provider, exporter, processor, store, tracker)


@pytest.fixture
def agent() -> Iterator[Process]:
    process = _process("agent")
    yield process
    process.provider.shutdown()


@pytest.fixture
def tool() -> Iterator[Process]:
    process = _process("tool")
    yield process
    process.provider.shutdown()


def _call_in_run(agent: Process) -> tuple[str, dict[str, str], int]:
    """A run in the agent that 'calls' the tool: returns run id, headers, caller span id."""
    headers: dict[str, str] = {}
    with agent.tracker.run("support", "Answer tickets") as run:
        decision_id = agent.tracker.decide(
            intent="Ask the tool", options=[{"id": "tool"}], chosen="tool", reasoning="needs it"
        )
        propagate.inject(headers)
        caller = trace.get_current_span().get_span_context().span_id
        agent.tracker.record_outcome(decision_id=decision_id, success=True)
    return run.run_id, headers, caller


def test_inject_inside_a_run_carries_traceparent_and_the_run(agent: Process) -> None:
    run_id, headers, _ = _call_in_run(agent)
    assert headers["traceparent"].startswith("00-")
    context = propagate.extract(headers)
    ref = _remote.parse(baggage.get_baggage(sc.BAGGAGE_RUN, context))
    assert ref is not None
    assert ref.run_id == run_id
    assert ref.goal_id == "support"
    run_span = next(s for s in agent.exporter.get_finished_spans() if s.parent is None)
    assert trace.get_current_span(context).get_span_context().trace_id == run_span.context.trace_id


def test_tool_records_a_fragment_of_the_agents_run(agent: Process, tool: Process) -> None:
    @dt.node("lookup")
    @dt.decision("Pick a source", options=["kb", "web"], tracker=tool.tracker)
    def pick_source() -> str:
        return "kb"

    run_id, headers, caller = _call_in_run(agent)
    with propagation.attached(headers):
        assert pick_source() == "kb"
        decision_id = tool.tracker.decide(
            intent="Rank", options=[{"id": "a"}], chosen="a", reasoning="best"
        )
        tool.tracker.record_outcome(
            decision_id=decision_id, success=False, error="x", tokens_used=7
        )
        problem_id = tool.tracker.report_problem(severity="warning", description="slow index")
    tool.flush()
    agent.flush()

    # What the tool's store holds of the run: one fragment (load_run merges them).
    (data,) = tool.store.load_fragments(run_id)
    assert data["status"] == "running"
    assert data["goal_id"] == "support"
    assert data["fragment_id"].startswith(f"tool:{os.getpid()}:")
    ids = [d["id"] for d in data["decisions"]]
    assert ids[0].startswith("dec_0@tool:") and ids[1].startswith("dec_1@tool:")
    assert decision_id == ids[1]
    assert [d["service"] for d in data["decisions"]] == ["tool", "tool"]
    assert [d["node_id"] for d in data["decisions"]] == ["lookup", "unknown"]
    assert data["decisions"][0]["chosen_option_id"] == "kb"
    assert data["decisions"][1]["outcome"]["tokens_used"] == 7
    assert data["metrics"]["total_tokens"] == 7
    assert [p["id"] for p in data["problems"]] == [problem_id]
    assert problem_id.startswith("prob_0@tool:")
    # The agent's own record is untouched: its decisions only, no fragment id.
    root = agent.store.load_run(run_id)
    assert root is not None
    assert [d.id for d in root.decisions] == ["dec_0"]
    assert "fragment_id" not in root.model_dump()
    # The tool's spans are children of the agent's span that made the call.
    spans = [span_dict(s) for s in tool.exporter.get_finished_spans()]
    decisions = [s for s in spans if s["attributes"].get(sc.SPAN_KIND) == sc.KIND_DECISION]
    assert [s["parent_id"] for s in decisions] == [caller, caller]
    assert all(s["attributes"][sc.RUN_ID] == run_id for s in decisions)
    problem = next(s for s in spans if s["attributes"].get(sc.SPAN_KIND) == sc.KIND_PROBLEM)
    assert problem["events"][0][0] == sc.PROBLEM_EVENT


def test_later_calls_grow_the_same_fragment(agent: Process, tool: Process) -> None:
    @dt.decision("Pick", options=["a", "b"], tracker=tool.tracker)
    def pick(choice: str) -> str:
        return choice

    run_id, headers, _ = _call_in_run(agent)
    with propagation.attached(headers):
        pick("a")
    tool.flush()
    (first,) = tool.store.load_fragments(run_id)
    with propagation.attached(headers):
        pick("b")
    tool.flush()
    (second,) = tool.store.load_fragments(run_id)  # the same fragment, grown
    assert [d["chosen_option_id"] for d in second["decisions"]] == ["a", "b"]
    assert second["fragment_id"] == first["fragment_id"]


def test_llm_tokens_under_a_remote_decision_count_for_it(agent: Process, tool: Process) -> None:
    llm = tool.provider.get_tracer("llm")

    @dt.decision("Answer", options=["reply"], tracker=tool.tracker)
    def answer() -> str:
        with llm.start_as_current_span("chat", attributes={"gen_ai.usage.input_tokens": 30}):
            pass
        return "reply"

    run_id, headers, _ = _call_in_run(agent)
    with propagation.attached(headers):
        answer()
    tool.flush()
    fragment = tool.store.load_run(run_id)
    assert fragment is not None
    assert fragment.decisions[0].outcome is not None
    assert fragment.decisions[0].outcome.tokens_used == 30


def test_trace_context_without_the_run_records_nothing(agent: Process, tool: Process) -> None:
    @dt.decision("Pick", options=["a"], tracker=tool.tracker)
    def pick() -> str:
        return "a"

    _, headers, _ = _call_in_run(agent)
    del headers["baggage"]
    with propagation.attached(headers):
        assert pick() == "a"
    tool.flush()
    assert tool.store.list_runs() == []
    assert tool.exporter.get_finished_spans() == ()


def test_end_run_does_not_end_another_process_run(
    agent: Process, tool: Process, caplog: pytest.LogCaptureFixture
) -> None:
    _, headers, _ = _call_in_run(agent)
    with propagation.attached(headers), caplog.at_level(logging.WARNING):
        tool.tracker.end_run(success=False)
        decision_id = tool.tracker.quick_decision(intent="go", action="act", reasoning="r")
    assert "started in another process" in caplog.text
    assert decision_id.startswith("dec_0@tool:")


def test_fragments_beyond_the_limit_are_closed(agent: Process) -> None:
    tool = _process("tool", max_active_runs=1)
    try:
        _, first_headers, _ = _call_in_run(agent)
        _, second_headers, _ = _call_in_run(agent)
        with propagation.attached(first_headers):
            open_id = tool.tracker.quick_decision(intent="left open", action="a", reasoning="")
        with propagation.attached(second_headers):
            tool.tracker.quick_decision(intent="next run", action="a", reasoning="")
        ended = [s for s in tool.exporter.get_finished_spans() if s.name == "decision left open"]
        assert len(ended) == 1  # closed, without an outcome, when the fragment was forgotten
        assert sc.OUTCOME_SUCCESS not in (ended[0].attributes or {})
        assert open_id.startswith("dec_0@")
    finally:
        tool.provider.shutdown()


def test_fragment_compact_form_gives_back_the_same_record(agent: Process, tool: Process) -> None:
    _, headers, _ = _call_in_run(agent)
    with propagation.attached(headers):
        tool.tracker.quick_decision(intent="go", action="act", reasoning="r")
        tool.tracker.report_problem(severity="critical", description="down")
    seen: list[Any] = []

    class Keep(MemoryStore):
        def save_assembled(self, runs: Any) -> None:
            seen.extend(runs)
            super().save_assembled(runs)

    keep = Keep()
    processor = tool.processor
    processor.store = keep
    tool.tracker.emitter.close_fragment(tool.tracker.registry.fragments()[0])
    tool.flush()
    assert seen
    for pending in seen:
        assert record_from_compact(pending.compact()) == pending.record()
        assert pending.record()["problems"][0]["description"] == "down"


def test_a_propagator_without_baggage_is_warned_about_and_helpers_still_carry_the_run(
    agent: Process, tool: Process, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = propagate.get_global_textmap()
    propagate.set_global_textmap(CompositePropagator([TraceContextTextMapPropagator()]))
    monkeypatch.setattr(_remote, "_propagator_checked", False)
    try:
        headers: dict[str, str] = {}
        with caplog.at_level(logging.WARNING), agent.tracker.run("g"):
            plain: dict[str, str] = {}
            propagate.inject(plain)
            propagation.inject(headers)
        assert "does not carry W3C baggage" in caplog.text
        assert "baggage" not in plain
        assert "baggage" in headers
        with propagation.attached(headers):
            decision_id = tool.tracker.quick_decision(intent="go", action="a", reasoning="")
        assert decision_id.startswith("dec_0@tool:")
    finally:
        propagate.set_global_textmap(previous)


@pytest.mark.parametrize(
    ("run_id", "execution_id", "goal_id"),
    [
        ("run_s_20261201_120000_0a1b2c3d", "0" * 32, "support"),
        ("run_s.x~y-z", "exec-1", "Goal_With.Dots~and-dashes"),
        ("run_1", "e 1", "a goal with spaces"),
        ("run_1", "e&1=2", "goal?x=1&y=2"),
        ("run_1", "e", "café ✓"),
        ("run_1", "e", "bad \ud800 surrogate"),
        ("run_1", "e", "g" * 200),
        ("run_1", "e", "x/y+z%41"),
        ("", "", ""),
    ],
)
def test_the_baggage_value_is_the_url_encoding_of_the_run(
    run_id: str, execution_id: str, goal_id: str
) -> None:
    from urllib.parse import urlencode

    value = _remote.baggage_value(run_id, execution_id, goal_id)
    expected = urlencode(
        {"run": run_id, "exec": execution_id, "goal": goal_id[:128]}, errors="replace"
    )
    assert value == expected
    if run_id:
        ref = _remote.parse(value)
        assert ref is not None and ref.run_id == run_id


def test_baggage_values_that_are_not_ours_are_ignored() -> None:
    for value in (None, "", "garbage", "exec=1", "run=", 5, "run=" + "x" * 5000):
        assert _remote.parse(value) is None
    context = otel_context.Context()
    assert _remote.current_ref(context) is None
    assert W3CBaggagePropagator  # the helpers' fallback propagator is importable


def test_the_run_the_context_names_wins_over_a_stale_current_run(
    agent: Process, tool: Process
) -> None:
    @dt.decision("Pick", options=["a"], tracker=tool.tracker)
    def pick() -> str:
        return "a"

    def handle(headers: dict[str, str]) -> None:
        with propagation.attached(headers):
            pick()

    run_id, headers, _ = _call_in_run(agent)
    # start_run makes its run current with no reset: a worker thread may keep it.
    stale = tool.tracker.start_run(goal_id="old work", execution_id="worker")
    handle(headers)
    tool.tracker.end_run(success=True, execution_id="worker")
    tool.flush()
    fragment = tool.store.load_run(run_id)
    old = tool.store.load_run(stale)
    assert fragment is not None and old is not None
    assert len(fragment.decisions) == 1 and fragment.decisions[0].id.startswith("dec_0@tool:")
    assert old.decisions == []


def test_a_context_naming_a_run_of_this_process_records_into_that_run(agent: Process) -> None:
    @dt.decision("Pick", options=["a"], tracker=agent.tracker)
    def pick() -> str:
        return "a"

    headers: dict[str, str] = {}
    with agent.tracker.run("loopback") as run:
        propagate.inject(headers)
        # A request this process sends to itself, handled on another thread.
        worker = threading.Thread(target=lambda: _handle(headers, pick))
        worker.start()
        worker.join()
    agent.flush()
    stored = agent.store.load_run(run.run_id)
    assert stored is not None
    assert [d.id for d in stored.decisions] == ["dec_0"]


def _handle(headers: dict[str, str], fn: Any) -> None:
    with propagation.attached(headers):
        fn()
