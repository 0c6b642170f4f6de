"""The token rules (docs/span-model.md, "Tokens from LLM spans") with spans made the way
instrumentations make them, against a real SDK pipeline: each call counts once, for the
right decision, in the store and on the exported spans alike."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import decisiontrace as dt
from decisiontrace._internal.errors import RAISE_ENV
from decisiontrace.export._otlp_export import otlp_json_line
from decisiontrace.models import Run
from decisiontrace.pipeline._assembly import RunAssembler
from decisiontrace.pipeline._inbox import span_data
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore

IN = sc.GEN_AI_USAGE_INPUT_TOKENS
OUT = sc.GEN_AI_USAGE_OUTPUT_TOKENS


class Setup:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.processor = dt.RunRecordProcessor(self.store, flush_interval=0.02)
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracker = dt.DecisionTracker("s", tracer_provider=self.provider)
        self.tracer = self.provider.get_tracer("llm-instrumentation")

    def stored(self, run_id: str) -> Run:
        assert self.processor.force_flush(10_000)
        run = self.store.load_run(run_id)
        assert run is not None
        return run

    def exported(self, kind: str) -> list[dict[str, Any]]:
        return [
            dict(s.attributes or {})
            for s in self.exporter.get_finished_spans()
            if (s.attributes or {}).get(sc.SPAN_KIND) == kind
        ]

    def rebuilt(self) -> dict[str, Any]:
        """The run rebuilt from the exported spans alone (as from OTLP JSON)."""
        assembler = RunAssembler()
        assembler.add_tree(span_data(s) for s in self.exporter.get_finished_spans())
        [record] = assembler.take_ready(force=True)
        return record

    def decision_span(self, run: Any, decision_id: str) -> trace.Span:
        return run._live.decisions[decision_id].span  # type: ignore[no-any-return]


@pytest.fixture
def setup() -> Iterator[Setup]:
    built = Setup()
    yield built
    built.provider.shutdown()


def decide(setup: Setup, intent: str) -> str:
    return setup.tracker.decide(intent=intent, options=[], chosen="", reasoning="")


def tokens_of(run: Run) -> list[int]:
    return [d.outcome.tokens_used if d.outcome else -1 for d in run.decisions]


def test_a_call_reported_by_two_layers_counts_once(setup: Setup) -> None:
    # LangChain's span over OpenAI's span for the same 11+7-token call.
    with setup.tracker.run("g") as run:
        decision_id = decide(setup, "answer")
        with (
            trace.use_span(setup.decision_span(run, decision_id), end_on_exit=False),
            setup.tracer.start_as_current_span(
                "ChatOpenAI", attributes={sc.LLM_TOKEN_COUNT_PROMPT: 11}
            ) as outer,
            setup.tracer.start_as_current_span("step"),
            setup.tracer.start_as_current_span("chat gpt-4o", attributes={IN: 11, OUT: 7}),
        ):
            outer.set_attribute(sc.LLM_TOKEN_COUNT_COMPLETION, 7)
        setup.tracker.record_outcome(decision_id=decision_id, success=True)
    stored = setup.stored(run.run_id)
    assert tokens_of(stored) == [18]
    assert stored.metrics.total_tokens == 18
    assert setup.rebuilt()["metrics"]["total_tokens"] == 18


def test_an_outer_layer_that_ends_first_is_still_counted_once(setup: Setup) -> None:
    with setup.tracker.run("g") as run:
        decision_id = decide(setup, "answer")
        with trace.use_span(setup.decision_span(run, decision_id), end_on_exit=False):
            outer = setup.tracer.start_span("ChatOpenAI", attributes={IN: 11, OUT: 7})
            with trace.use_span(outer, end_on_exit=False):
                inner = setup.tracer.start_span("chat", attributes={IN: 11, OUT: 7})
            outer.end()
            inner.end()
        setup.tracker.record_outcome(decision_id=decision_id, success=True)
    assert tokens_of(setup.stored(run.run_id)) == [18]


def test_an_outer_span_summing_several_calls_is_not_counted_again(setup: Setup) -> None:
    with setup.tracker.run("g") as run:
        decision_id = decide(setup, "plan")
        with (
            trace.use_span(setup.decision_span(run, decision_id), end_on_exit=False),
            setup.tracer.start_as_current_span("agent", attributes={IN: 30, OUT: 10}),
        ):
            for _ in range(2):
                with setup.tracer.start_as_current_span("chat", attributes={IN: 15, OUT: 5}):
                    pass
        setup.tracker.record_outcome(decision_id=decision_id, success=True)
    assert tokens_of(setup.stored(run.run_id)) == [40]


def test_spans_parented_outside_the_decision_count_for_the_only_open_one(setup: Setup) -> None:
    # A callback-based instrumentation parents its LLM span to its own node span, which
    # hangs off the run span beside the decision span.
    with setup.tracker.run("g") as run:
        with setup.tracer.start_as_current_span("node"):
            decision_id = decide(setup, "route")
            with setup.tracer.start_as_current_span("ChatOpenAI", attributes={IN: 11, OUT: 7}):
                pass
            setup.tracker.record_outcome(decision_id=decision_id, success=True)
        # after the decision: the run's only
        with setup.tracer.start_as_current_span("ChatOpenAI", attributes={IN: 100, OUT: 1}):
            pass
    stored = setup.stored(run.run_id)
    assert tokens_of(stored) == [18]
    assert stored.metrics.total_tokens == 18 + 101
    rebuilt = setup.rebuilt()
    assert [d["outcome"]["tokens_used"] for d in rebuilt["decisions"]] == [18]
    assert rebuilt["metrics"]["total_tokens"] == 119


def test_spans_outside_decisions_count_for_the_run_when_it_is_ambiguous(setup: Setup) -> None:
    with setup.tracker.run("g") as run, setup.tracer.start_as_current_span("node"):
        first = decide(setup, "first")
        second = decide(setup, "second")
        # two decisions open: which one made the call cannot be told
        with setup.tracer.start_as_current_span("ChatOpenAI", attributes={IN: 5, OUT: 5}):
            pass
        setup.tracker.record_outcome(decision_id=second, success=True)
        # one open now, but the call started before it was the only one
        call = setup.tracer.start_span("ChatOpenAI", attributes={IN: 1, OUT: 2})
        setup.tracker.record_outcome(decision_id=first, success=True)
        call.end()
    stored = setup.stored(run.run_id)
    assert tokens_of(stored) == [0, 0]
    assert stored.metrics.total_tokens == 13
    assert setup.rebuilt()["metrics"]["total_tokens"] == 13


def test_exported_decision_and_run_spans_carry_the_stored_totals(setup: Setup) -> None:
    with setup.tracker.run("g") as run:
        decision_id = decide(setup, "answer")
        with (
            trace.use_span(setup.decision_span(run, decision_id), end_on_exit=False),
            setup.tracer.start_as_current_span("chat", attributes={IN: 90, OUT: 10}),
        ):
            pass
        setup.tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=5)
        with setup.tracer.start_as_current_span("chat", attributes={IN: 80, OUT: 6}):
            pass
    stored = setup.stored(run.run_id)
    [decision_span] = setup.exported(sc.KIND_DECISION)
    [run_span] = setup.exported(sc.KIND_RUN)
    assert stored.decisions[0].outcome is not None
    assert decision_span[sc.OUTCOME_TOKENS] == stored.decisions[0].outcome.tokens_used == 105
    assert run_span[sc.RUN_TOTAL_TOKENS] == stored.metrics.total_tokens == 191
    assert run_span["decisiontrace.run.llm_tokens"] == 86


def test_the_run_span_of_an_otlp_export_carries_the_stored_total(setup: Setup) -> None:
    # ``decisiontrace export`` writes spans from the stored record: same total as the store.
    with setup.tracker.run("g") as run:
        decision_id = decide(setup, "answer")
        setup.tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=100)
        with setup.tracer.start_as_current_span("chat", attributes={IN: 15, OUT: 5}):
            pass
    stored = setup.stored(run.run_id)
    line = json.loads(otlp_json_line(stored))
    spans = [s for r in line["resourceSpans"] for g in r["scopeSpans"] for s in g["spans"]]
    [run_span] = [s for s in spans if "parentSpanId" not in s or not s["parentSpanId"]]
    attributes = {a["key"]: a["value"] for a in run_span["attributes"]}
    assert stored.metrics.total_tokens == 120
    assert attributes[sc.RUN_TOTAL_TOKENS] == {"intValue": "120"}


def test_tokens_of_a_span_that_ends_after_the_run_was_stored_update_it(setup: Setup) -> None:
    # A stream returned by the decision and read after the run ended.
    with setup.tracker.run("g") as run:
        decision_id = decide(setup, "stream")
        with trace.use_span(setup.decision_span(run, decision_id), end_on_exit=False):
            stream_span = setup.tracer.start_span("chat stream")
        setup.tracker.record_outcome(decision_id=decision_id, success=True)
    assert tokens_of(setup.stored(run.run_id)) == [0]
    stream_span.set_attributes({IN: 12, OUT: 30})
    stream_span.end()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and tokens_of(setup.stored(run.run_id)) != [42]:
        time.sleep(0.02)
    stored = setup.stored(run.run_id)
    assert tokens_of(stored) == [42]
    assert stored.metrics.total_tokens == 42


def test_a_run_whose_spans_all_ended_is_not_kept_after_it_is_written(setup: Setup) -> None:
    with setup.tracker.run("g") as run:
        decision_id = decide(setup, "i")
        setup.tracker.record_outcome(decision_id=decision_id, success=True)
    setup.stored(run.run_id)
    assert not getattr(setup.processor._assembler, "_late", None)


def test_a_callback_span_beside_the_client_call_counts_once(setup: Setup) -> None:
    # LangChain's callback handler does not make its span current: the OpenAI client's
    # span is its sibling under the decision (or, inside LangGraph, under the decision
    # while LangChain's span is under the node span), yet it is the same call.
    with setup.tracker.run("g") as run, setup.tracer.start_as_current_span("node") as node:
        first = decide(setup, "plain chain")
        with trace.use_span(setup.decision_span(run, first), end_on_exit=False):
            outer = setup.tracer.start_span("ChatOpenAI", attributes={IN: 11, OUT: 7})
            with setup.tracer.start_as_current_span("chat", attributes={IN: 11, OUT: 7}):
                pass
            outer.end()
        setup.tracker.record_outcome(decision_id=first, success=True)
        second = decide(setup, "graph node")
        outer = setup.tracer.start_span(
            "ChatOpenAI",
            context=trace.set_span_in_context(node),
            attributes={IN: 11, OUT: 7},
        )
        with (
            trace.use_span(setup.decision_span(run, second), end_on_exit=False),
            setup.tracer.start_as_current_span("chat", attributes={IN: 11, OUT: 7}),
        ):
            pass
        outer.end()
        setup.tracker.record_outcome(decision_id=second, success=True)
    stored = setup.stored(run.run_id)
    assert tokens_of(stored) == [18, 18]
    assert stored.metrics.total_tokens == 36
    assert setup.rebuilt()["metrics"]["total_tokens"] == 36


def test_concurrent_calls_of_one_decision_all_count(setup: Setup) -> None:
    with setup.tracker.run("g") as run:
        decision_id = decide(setup, "fan out")
        with trace.use_span(setup.decision_span(run, decision_id), end_on_exit=False):
            long_call = setup.tracer.start_span("chat", attributes={IN: 40, OUT: 4})
            with setup.tracer.start_as_current_span("chat", attributes={IN: 20, OUT: 2}):
                pass
            long_call.end()
        setup.tracker.record_outcome(decision_id=decision_id, success=True)
    assert tokens_of(setup.stored(run.run_id)) == [66]
    assert setup.rebuilt()["metrics"]["total_tokens"] == 66


class BrokenRules:
    """Token bookkeeping that fails on every call."""

    notes: dict[int, Any] = {}  # noqa: RUF012

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"{name} exploded")


def test_runs_are_stored_when_the_token_bookkeeping_fails(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RAISE_ENV)  # a bug in production: logged, the span still queued
    setup.processor._tokens = BrokenRules()  # type: ignore[assignment]
    with setup.tracker.run("g") as run:
        decision_id = decide(setup, "i")
        setup.tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=3)
    stored = setup.stored(run.run_id)
    assert stored.status == dt.RunStatus.COMPLETED
    assert tokens_of(stored) == [3]


def test_a_span_over_the_decision_is_not_counted_again(setup: Setup) -> None:
    # An agent span of another instrumentation sums the calls made under the decision
    # inside it: the calls count for the decision, the agent span for nothing more.
    with (
        setup.tracker.run("g") as run,
        setup.tracer.start_as_current_span("agent", attributes={IN: 30, OUT: 10}),
    ):
        decision_id = decide(setup, "plan")
        with trace.use_span(setup.decision_span(run, decision_id), end_on_exit=False):
            for _ in range(2):
                with setup.tracer.start_as_current_span("chat", attributes={IN: 15, OUT: 5}):
                    pass
        setup.tracker.record_outcome(decision_id=decision_id, success=True)
    stored = setup.stored(run.run_id)
    assert tokens_of(stored) == [40]
    assert stored.metrics.total_tokens == 40


def test_a_call_open_while_the_open_decision_changed_counts_for_the_run(setup: Setup) -> None:
    with setup.tracker.run("g") as run, setup.tracer.start_as_current_span("node"):
        first = decide(setup, "first")
        call = setup.tracer.start_span("ChatOpenAI", attributes={IN: 4, OUT: 4})
        setup.tracker.record_outcome(decision_id=first, success=True)
        second = decide(setup, "second")
        call.end()  # only "second" is open now, but "first" was when the call started
        setup.tracker.record_outcome(decision_id=second, success=True)
        again = setup.tracer.start_span("ChatOpenAI", attributes={IN: 1, OUT: 1})
        third = decide(setup, "third")
        setup.tracker.record_outcome(decision_id=third, success=True)
        fourth = decide(setup, "fourth")
        again.end()  # "third" started and ended while it ran: ambiguous too
        setup.tracker.record_outcome(decision_id=fourth, success=True)
    stored = setup.stored(run.run_id)
    assert tokens_of(stored) == [0, 0, 0, 0]
    assert stored.metrics.total_tokens == 10
