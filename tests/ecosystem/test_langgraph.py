"""LangGraph: graph invocations as runs, interrupts paused, resumes linked (real LangGraph).

Nodes are plain functions (no LLM), the checkpointer is LangGraph's in-memory one.
"""

from __future__ import annotations

import asyncio
import json
import operator
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, TypedDict

import pytest
from click.testing import CliRunner
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import decisiontrace as dt
from decisiontrace.cli.app import main
from decisiontrace.models import Run, RunStatus
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import open_store


def test_importing_decisiontrace_never_imports_langgraph() -> None:
    code = (
        "import sys, decisiontrace, decisiontrace.integrations, "
        "decisiontrace.integrations.langgraph; "
        "print(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('langgraph', 'langchain_core')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


langgraph = pytest.importorskip("langgraph", reason="langgraph is not installed (ecosystem extra)")

from langgraph.checkpoint.memory import InMemorySaver  # noqa: E402
from langgraph.graph import END, START, StateGraph  # noqa: E402
from langgraph.types import Command, interrupt  # noqa: E402

from decisiontrace.integrations import langgraph as dt_langgraph  # noqa: E402


class State(TypedDict, total=False):
    ticket: str
    route: str
    approved: bool


class Checks(TypedDict, total=False):
    ticket: str
    notes: Annotated[list[str], operator.add]


@dt.node("classify")
@dt.decision("Route ticket", options=["refund", "howto"], chosen=lambda r: r["route"])
def classify(state: State) -> dict[str, Any]:
    return {"route": "refund"}


def yes_or_no(result: dict[str, Any]) -> str:
    return "yes" if result["approved"] else "no"


@dt.node("approve")
@dt.decision("Approve refund", options=["yes", "no"], chosen=yes_or_no)
def approve(state: State) -> dict[str, Any]:
    answer = interrupt({"question": f"refund {state['ticket']}?"})
    return {"approved": bool(answer)}


@dt.node("broken")
@dt.decision("Look up order", options=["db"], chosen=lambda r: "db")
def broken(state: State) -> dict[str, Any]:
    raise LookupError("order database down")


def build(*nodes: Any, name: str = "refunds", checkpointer: bool = True) -> Any:
    graph = StateGraph(State)
    previous = START
    for node in nodes:
        graph.add_node(node.__name__, node)
        graph.add_edge(previous, node.__name__)
        previous = node.__name__
    graph.add_edge(previous, END)
    return graph.compile(checkpointer=InMemorySaver() if checkpointer else None, name=name)


class Recorded:
    """A tracker on a provider with a run-record processor and an in-memory exporter."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'runs.db'}"
        self.store = open_store(self.url)
        self.processor = dt.RunRecordProcessor(self.store, flush_interval=0.05)
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracker = dt.DecisionTracker("support", tracer_provider=self.provider)

    def runs(self) -> list[Run]:
        assert self.processor.force_flush(10_000)
        runs = [self.store.load_run(s.run_id) for s in self.store.list_runs()]
        return sorted((r for r in runs if r is not None), key=lambda r: r.started_at)

    def run_spans(self) -> list[ReadableSpan]:
        return [
            s
            for s in self.exporter.get_finished_spans()
            if (s.attributes or {}).get(sc.SPAN_KIND) == sc.KIND_RUN
        ]


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[Recorded]:
    recorded = Recorded(tmp_path)
    dt_langgraph.instrument(tracker=recorded.tracker)
    yield recorded
    dt_langgraph.uninstrument()
    recorded.provider.shutdown()
    recorded.store.close()


def extra(model: Any) -> dict[str, Any]:
    return dict(model.model_extra or {})


def assert_paused_then_resumed(recorded: Recorded, thread_id: str) -> tuple[Run, Run]:
    first, second = recorded.runs()
    # The interrupted run: not failed, paused, its interrupted decision paused.
    assert first.status == RunStatus.COMPLETED
    assert extra(first)["paused"] is True
    assert extra(first)["thread_id"] == thread_id
    assert "resumed_from" not in extra(first)
    assert first.problems == []
    assert first.metrics.failed_decisions == 0
    assert first.narrative.startswith("Run paused, resumable.")
    route, paused = first.decisions
    assert route.chosen_option_id == "refund" and route.outcome and route.outcome.success
    assert paused.intent == "Approve refund"
    assert paused.outcome is None and extra(paused)["paused"] is True
    # The resumed run: same execution, linked to the first, the decision finished.
    assert extra(second)["resumed_from"] == first.id
    assert extra(second)["thread_id"] == thread_id
    assert "paused" not in extra(second)
    assert second.status == RunStatus.COMPLETED
    (approved,) = second.decisions
    assert approved.chosen_option_id == "yes" and approved.outcome and approved.outcome.success
    spans = {s.attributes[sc.RUN_ID]: s for s in recorded.run_spans() if s.attributes}
    first_span, second_span = spans[first.id], spans[second.id]
    assert first_span.attributes is not None and second_span.attributes is not None
    assert first_span.attributes[sc.EXECUTION_ID] == second_span.attributes[sc.EXECUTION_ID]
    assert first_span.attributes[sc.RUN_PAUSED] is True
    assert first_span.status.status_code is not StatusCode.ERROR
    assert first_span.context is not None
    assert [link.context.span_id for link in second_span.links] == [first_span.context.span_id]
    decision_spans = [
        s for s in recorded.exporter.get_finished_spans() if s.name == "decision Approve refund"
    ]
    assert decision_spans[0].status.status_code is not StatusCode.ERROR
    assert decision_spans[0].attributes and decision_spans[0].attributes[sc.DECISION_PAUSED]
    return first, second


def test_invoke_interrupt_then_resume_is_one_execution_in_two_linked_runs(
    recorded: Recorded,
) -> None:
    graph = build(classify, approve)
    config = {"configurable": {"thread_id": "ticket-1"}}
    first = graph.invoke({"ticket": "T-1"}, config)
    assert "__interrupt__" in first  # LangGraph's own answer is untouched
    done = graph.invoke(Command(resume=True), config)
    assert done == {"ticket": "T-1", "route": "refund", "approved": True}
    paused, resumed = assert_paused_then_resumed(recorded, "ticket-1")
    assert paused.goal_id == "refunds"  # the graph's name
    assert paused.input_data == {"ticket": "T-1"} and resumed.input_data == {"resume": True}


def test_stream_interrupt_then_resume(recorded: Recorded) -> None:
    graph = build(classify, approve)
    config = {"configurable": {"thread_id": "ticket-2"}}
    chunks = list(graph.stream({"ticket": "T-2"}, config, stream_mode="updates"))
    assert [next(iter(chunk)) for chunk in chunks] == ["classify", "__interrupt__"]
    chunks = list(graph.stream(Command(resume=True), config, stream_mode="updates"))
    assert chunks == [{"approve": {"approved": True}}]
    assert_paused_then_resumed(recorded, "ticket-2")


def test_ainvoke_and_astream_interrupt_then_resume(recorded: Recorded) -> None:
    graph = build(classify, approve)

    async def main() -> None:
        config = {"configurable": {"thread_id": "ticket-3"}}
        await graph.ainvoke({"ticket": "T-3"}, config)
        resumed = graph.astream(Command(resume=True), config, stream_mode="values")
        chunks = [c async for c in resumed]
        assert chunks[-1] == {"ticket": "T-3", "route": "refund", "approved": True}

    asyncio.run(main())
    assert_paused_then_resumed(recorded, "ticket-3")


def test_a_node_that_raises_fails_its_decision_and_the_run(recorded: Recorded) -> None:
    graph = build(classify, broken, checkpointer=False)
    with pytest.raises(LookupError, match="order database down"):
        graph.invoke({"ticket": "T-4"})
    (run,) = recorded.runs()
    assert run.status == RunStatus.FAILED
    assert "paused" not in extra(run) and "thread_id" not in extra(run)
    failed = run.decisions[-1]
    assert failed.outcome is not None and not failed.outcome.success
    assert "paused" not in extra(failed)


def test_each_invocation_is_a_run_until_uninstrumented(recorded: Recorded) -> None:
    graph = build(classify, checkpointer=False)
    graph.invoke({"ticket": "a"})
    graph.invoke({"ticket": "b"})
    assert dt_langgraph.is_instrumented()
    dt_langgraph.uninstrument()
    assert not dt_langgraph.is_instrumented()
    assert graph.invoke({"ticket": "c"}) == {"ticket": "c", "route": "refund"}
    runs = recorded.runs()
    assert [r.input_data["ticket"] for r in runs] == ["a", "b"]
    assert all(len(r.decisions) == 1 and "thread_id" not in extra(r) for r in runs)


def test_a_fresh_input_on_a_paused_thread_is_not_a_resume(recorded: Recorded) -> None:
    graph = build(classify, checkpointer=True)
    config = {"configurable": {"thread_id": "chat"}}
    graph.invoke({"ticket": "a"}, config)
    graph.invoke({"ticket": "b"}, config)
    first, second = recorded.runs()
    assert "resumed_from" not in extra(second)
    assert first.id != second.id and extra(second)["thread_id"] == "chat"


def test_parallel_nodes_record_into_the_invocations_run(recorded: Recorded) -> None:
    threads: set[str] = set()

    def note(name: str) -> Any:
        @dt.node(name)
        @dt.decision(f"Check {name}", options=["ok"], chosen=lambda r: "ok")
        def check(state: Checks) -> dict[str, Any]:
            threads.add(threading.current_thread().name)
            return {"notes": [name]}

        return check

    graph = StateGraph(Checks)
    for name in ("fraud", "stock", "policy"):
        graph.add_node(name, note(name))
        graph.add_edge(START, name)
        graph.add_edge(name, END)
    compiled = graph.compile(name="checks")
    compiled.invoke({"ticket": "T-5"})
    (run,) = recorded.runs()
    assert sorted(d.node_id for d in run.decisions) == ["fraud", "policy", "stock"]
    assert all(d.outcome is not None and d.outcome.success for d in run.decisions)
    # LangGraph runs parallel tasks on its thread pool: the run followed them there.
    assert threads - {threading.main_thread().name}, "no node ran off the main thread"


def test_instrumenting_one_graph_leaves_the_others_alone(tmp_path: Path) -> None:
    recorded = Recorded(tmp_path)
    mine, other = build(classify, name="mine", checkpointer=False), build(classify, name="other")
    dt_langgraph.instrument(mine, tracker=recorded.tracker, goal_id="triage")
    try:
        assert dt_langgraph.is_instrumented(mine) and not dt_langgraph.is_instrumented(other)
        mine.invoke({"ticket": "a"})
        other.invoke({"ticket": "b"}, {"configurable": {"thread_id": "x"}})
        (run,) = recorded.runs()
        assert run.goal_id == "triage" and run.input_data == {"ticket": "a"}
    finally:
        dt_langgraph.uninstrument(mine)
        recorded.provider.shutdown()
    assert not dt_langgraph.is_instrumented(mine)
    assert "invoke" not in vars(mine)


def test_a_graph_called_inside_a_run_records_into_that_run(recorded: Recorded) -> None:
    graph = build(classify, checkpointer=False)

    @dt.agent(goal_id="outer", tracker=recorded.tracker)
    def handle(ticket: str) -> Any:
        return graph.invoke({"ticket": ticket})

    handle("T-6")
    (run,) = recorded.runs()
    assert run.goal_id == "outer" and [d.intent for d in run.decisions] == ["Route ticket"]


def test_a_pause_leaving_a_run_block_ends_it_paused_not_failed(recorded: Recorded) -> None:
    from langgraph.errors import GraphInterrupt

    def paused_block() -> None:
        with recorded.tracker.run("block"):
            classify({"ticket": "T-8"})
            raise GraphInterrupt(())

    with pytest.raises(GraphInterrupt):
        paused_block()
    (run,) = recorded.runs()
    assert run.status == RunStatus.COMPLETED and extra(run)["paused"] is True
    assert run.problems == []


def test_instrument_refuses_bad_arguments() -> None:
    with pytest.raises(TypeError, match="compiled LangGraph graph"):
        dt_langgraph.instrument(object())
    with pytest.raises(TypeError, match="tracker must be"):
        dt_langgraph.instrument(tracker="support")  # type: ignore[arg-type]
    assert not dt_langgraph.is_instrumented()


def test_runs_show_displays_the_pause_and_the_resume(recorded: Recorded) -> None:
    graph = build(classify, approve)
    config = {"configurable": {"thread_id": "ticket-7"}}
    graph.invoke({"ticket": "T-7"}, config)
    graph.invoke(Command(resume=False), config)
    first, second = recorded.runs()
    shown = CliRunner().invoke(main, ["--store", recorded.url, "runs", "show", second.id])
    assert shown.exit_code == 0, shown.output
    assert f"resumed from: {first.id}" in shown.output
    assert "thread: ticket-7" in shown.output
    shown = CliRunner().invoke(main, ["--store", recorded.url, "runs", "show", first.id])
    assert "paused, resumable" in shown.output
    assert "paused: resumes when the graph is resumed" in shown.output
    as_json = CliRunner().invoke(
        main, ["--store", recorded.url, "runs", "show", second.id, "--json"]
    )
    record = json.loads(as_json.stdout)
    assert record["resumed_from"] == first.id and record["thread_id"] == "ticket-7"


def test_the_guides_example_runs_as_written(tmp_path: Path) -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "integrations" / "langgraph.md"
    (example,) = re.findall(r"```python\n(.*?)```", guide.read_text(), flags=re.S)
    done = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with open_store(f"sqlite:///{tmp_path / 'runs.db'}") as store:
        runs = [store.load_run(s.run_id) for s in store.list_runs()]
    paused, resumed = sorted((r for r in runs if r is not None), key=lambda r: r.started_at)
    assert extra(paused)["paused"] is True
    assert extra(resumed)["resumed_from"] == paused.id


def test_a_stream_left_unread_ends_its_run_cancelled(recorded: Recorded) -> None:
    graph = build(classify, broken, checkpointer=False)
    stream = graph.stream({"ticket": "T-9"}, stream_mode="updates")
    assert next(iter(next(stream))) == "classify"
    stream.close()
    (run,) = recorded.runs()
    assert run.status == RunStatus.CANCELLED
    assert extra(run)["end_reason"] == "the caller stopped reading the graph's stream"


def test_an_async_stream_left_unread_ends_its_run_cancelled(recorded: Recorded) -> None:
    graph = build(classify, broken, checkpointer=False)

    async def main() -> None:
        stream = graph.astream({"ticket": "T-10"}, stream_mode="updates")
        async for _chunk in stream:
            break
        await stream.aclose()

    asyncio.run(main())
    (run,) = recorded.runs()
    assert run.status == RunStatus.CANCELLED
    assert [d.intent for d in run.decisions] == ["Route ticket"]
