"""@node, @decision and @agent on every kind of function, against a real SDK pipeline."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import inspect
import json
import logging
import random
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import decisiontrace as dt
from decisiontrace._internal.errors import RAISE_ENV
from decisiontrace.decorators import agent, decision, default_tracker, node, set_default_tracker
from decisiontrace.models import Run
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._jsonsafe import TRUNCATED_KEY
from decisiontrace.spanmodel._packed import CHUNK, PACK_AFTER
from decisiontrace.stores import MemoryStore

IN = "gen_ai.usage.input_tokens"
OUT = "gen_ai.usage.output_tokens"


@dataclass
class Pipe:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    processor: dt.RunRecordProcessor
    store: MemoryStore
    tracker: dt.DecisionTracker
    tracer: trace.Tracer

    def spans(self) -> list[dict[str, Any]]:
        return [span_dict(s) for s in self.exporter.get_finished_spans()]

    def decisions(self) -> list[dict[str, Any]]:
        return [s for s in self.spans() if s["attributes"].get(sc.SPAN_KIND) == sc.KIND_DECISION]

    def run_spans(self) -> list[dict[str, Any]]:
        return [s for s in self.spans() if s["attributes"].get(sc.SPAN_KIND) == sc.KIND_RUN]

    def runs(self) -> list[Run]:
        assert self.processor.force_flush(10_000)
        runs = [self.store.load_run(s.run_id) for s in self.store.list_runs()]
        return sorted((r for r in runs if r is not None), key=lambda r: r.started_at)

    def only_run(self) -> Run:
        runs = self.runs()
        assert len(runs) == 1, [r.id for r in runs]
        return runs[0]


def span_dict(span: ReadableSpan) -> dict[str, Any]:
    assert span.context is not None
    return {
        "name": span.name,
        "trace_id": span.context.trace_id,
        "span_id": span.context.span_id,
        "parent_id": span.parent.span_id if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
    }


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    store = MemoryStore()
    processor = dt.RunRecordProcessor(store, flush_interval=0.05)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = dt.DecisionTracker("test", tracer_provider=provider)
    set_default_tracker(tracker)
    yield Pipe(provider, exporter, processor, store, tracker, provider.get_tracer("llm"))
    set_default_tracker(None)
    provider.shutdown()


@pytest.fixture(autouse=True)
def _no_detach_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No test may make OpenTelemetry log "Failed to detach context"."""
    caplog.set_level(logging.WARNING, logger="decisiontrace")
    yield
    gc.collect()
    errors = [r.getMessage() for r in caplog.records if r.name == "opentelemetry.context"]
    assert errors == []


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "decisiontrace" and r.levelno == logging.WARNING
    ]


def llm_call(pipe: Pipe, input_tokens: int, output_tokens: int) -> int:
    """A span as an LLM instrumentation would make it; returns its span id."""
    with pipe.tracer.start_as_current_span("chat model") as span:
        span.set_attribute(IN, input_tokens)
        span.set_attribute(OUT, output_tokens)
        return span.get_span_context().span_id


def current_span_id() -> int:
    return trace.get_current_span().get_span_context().span_id


# --- plain functions ------------------------------------------------------------------------


def test_sync_decision_span_and_stored_record(pipe: Pipe) -> None:
    seen: list[int] = []

    @decision(
        "Pick a route",
        options=[
            "kb",
            {"id": "llm", "description": "ask", "action_type": "call", "confidence": 0.9},
        ],
        reasoning=lambda result: f"because {result}",
        decision_type="tool_selection",
        node_id="router",
    )
    def route(ticket: str) -> str:
        seen.append(current_span_id())
        return "llm"

    with pipe.tracker.run("support", "Handle tickets") as run:
        assert route("T-1") == "llm"

    (run_span,) = pipe.run_spans()
    (span,) = pipe.decisions()
    attributes = span["attributes"]
    assert span["name"] == "decision Pick a route"
    assert span["parent_id"] == run_span["span_id"]
    assert span["trace_id"] == run_span["trace_id"]
    assert span["status"] == "UNSET"
    assert seen == [span["span_id"]]  # the decision span is current while it runs
    assert attributes[sc.DECISION_INTENT] == "Pick a route"
    assert attributes[sc.DECISION_TYPE] == "tool_selection"
    assert attributes[sc.NODE_ID] == "router"
    assert attributes[sc.DECISION_OPTION_IDS] == ("kb", "llm")
    assert attributes[sc.DECISION_CHOSEN_ID] == "llm"
    assert attributes[sc.DECISION_CHOSEN_CONFIDENCE] == 0.9
    assert attributes[sc.DECISION_REASONING] == "because llm"
    assert attributes[sc.OUTCOME_SUCCESS] is True
    assert attributes[sc.OUTCOME_RESULT] == '"llm"'
    # Zero values are left out of the span (the decoder reads them as 0).
    assert attributes.get(sc.OUTCOME_LATENCY_MS, 0) >= 0
    assert sc.OUTCOME_TOKENS not in attributes and sc.OUTCOME_SUMMARY not in attributes
    assert sc.ERROR_TYPE not in attributes

    stored = pipe.only_run()
    assert stored.id == run.run_id
    (record,) = stored.decisions
    assert record.intent == "Pick a route"
    assert record.node_id == "router"
    assert record.chosen_option_id == "llm"
    assert record.reasoning == "because llm"
    # a plain id becomes an option described by its id, of unknown action type
    assert record.options[0].model_dump() == {
        "id": "kb",
        "description": "kb",
        "action_type": "unknown",
        "action_params": {},
        "pros": [],
        "cons": [],
        "confidence": 0.5,
        "confidence_defaulted": True,  # none given: marked, never counted
    }
    assert record.options[1].description == "ask"
    assert record.outcome is not None
    assert record.outcome.success is True
    assert record.outcome.result == "llm"
    assert record.outcome.error is None
    assert stored.metrics.nodes_executed == ["router"]


def test_defaults_come_from_docstring_and_qualified_name(pipe: Pipe) -> None:
    @decision()
    def documented() -> int:
        """Choose a number.

        More text.
        """
        return 1

    @decision()
    def undocumented() -> int:
        return 2

    with pipe.tracker.run("g"):
        documented()
        undocumented()

    first, second = pipe.only_run().decisions
    assert first.intent == "Choose a number."
    assert second.intent == undocumented.__qualname__
    assert first.decision_type.value == "custom"
    assert first.node_id == "unknown"
    assert first.options == []
    assert first.chosen_option_id == ""


def test_latency_is_measured(pipe: Pipe) -> None:
    @decision("wait")
    def wait() -> None:
        time.sleep(0.03)

    with pipe.tracker.run("g"):
        wait()
    (span,) = pipe.decisions()
    assert span["attributes"][sc.OUTCOME_LATENCY_MS] >= 30


def test_options_callable_gets_the_call_arguments(pipe: Pipe) -> None:
    @decision("pick", options=lambda items, *, extra: [*items, extra])
    def pick(items: list[str], *, extra: str) -> str:
        return extra

    with pipe.tracker.run("g"):
        assert pick(["a", "b"], extra="c") == "c"
    (record,) = pipe.only_run().decisions
    assert [o.id for o in record.options] == ["a", "b", "c"]
    assert record.chosen_option_id == "c"


def test_result_is_serialized_and_size_limited_without_warnings(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5)

    @decision("big", options=["a"], chosen=lambda result: "a")
    def big() -> dict[str, Any]:
        return {"when": when, "blob": "x" * 200_000}

    @decision("structured", options=["a", "b"], chosen=lambda result: result["choice"])
    def structured() -> dict[str, Any]:
        return {"choice": "b", "when": when}

    with pipe.tracker.run("g"):
        big_result = big()
        structured_result = structured()

    assert big_result["when"] is when  # the user's result is untouched
    assert structured_result == {"choice": "b", "when": when}
    first, second = pipe.only_run().decisions
    assert first.outcome is not None and second.outcome is not None
    assert first.outcome.result[TRUNCATED_KEY] is True
    assert second.outcome.result == {"choice": "b", "when": "2026-01-02T03:04:05"}
    assert second.chosen_option_id == "b"
    # capturing results and choosing after the call are expected: nothing to warn about
    assert warnings_of(caplog) == []


def test_decisions_with_a_pending_choice_do_not_warn(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    @decision("pick", options=["a", "b"], reasoning=lambda result: "it fit")
    def pick() -> str:
        return "a"

    @decision("fails", options=["a", "b"])
    def fails() -> str:
        raise RuntimeError("nope")

    with pipe.tracker.run("g"):
        pick()
        with pytest.raises(RuntimeError):
            fails()
    assert warnings_of(caplog) == []
    first, second = pipe.only_run().decisions
    assert (first.chosen_option_id, first.reasoning) == ("a", "it fit")
    assert second.chosen_option_id == ""


# --- tokens ---------------------------------------------------------------------------------


def test_llm_spans_nest_under_the_decision_and_their_tokens_are_summed(pipe: Pipe) -> None:
    llm_span_ids: list[int] = []

    @decision("answer", options=["draft"], tokens=lambda result: (100, 20))
    def answer() -> str:
        llm_span_ids.append(llm_call(pipe, 10, 5))
        llm_span_ids.append(llm_call(pipe, 7, 3))
        return "draft"

    with pipe.tracker.run("g"):
        answer()

    (decision_span,) = pipe.decisions()
    llm_spans = [s for s in pipe.spans() if s["name"] == "chat model"]
    assert [s["span_id"] for s in llm_spans] == llm_span_ids
    assert all(s["parent_id"] == decision_span["span_id"] for s in llm_spans)
    assert all(s["trace_id"] == decision_span["trace_id"] for s in llm_spans)
    assert decision_span["attributes"][IN] == 100
    assert decision_span["attributes"][OUT] == 20
    # the LLM spans ended before the decision: their tokens are on its span, as stored
    assert decision_span["attributes"][sc.OUTCOME_TOKENS] == 120 + 15 + 10
    assert decision_span["attributes"][sc.OUTCOME_LLM_TOKENS] == 15 + 10
    (record,) = pipe.only_run().decisions
    assert record.outcome is not None
    assert record.outcome.tokens_used == 120 + 15 + 10


def test_tokens_callable_may_return_an_int(pipe: Pipe) -> None:
    @decision("answer", tokens=lambda result: result * 2)
    def answer(n: int) -> int:
        return n

    with pipe.tracker.run("g"):
        answer(21)
    (record,) = pipe.only_run().decisions
    assert record.outcome is not None and record.outcome.tokens_used == 42


def test_tokens_of_the_wrong_type_warn_once(pipe: Pipe, caplog: pytest.LogCaptureFixture) -> None:
    @decision("answer", tokens=lambda result: "many")
    def answer() -> None:
        return None

    with pipe.tracker.run("g"):
        answer()
        answer()
    messages = warnings_of(caplog)
    assert len(messages) == 1
    assert "tokens= should return an int" in messages[0]
    assert all(
        d.outcome is not None and d.outcome.tokens_used == 0 for d in pipe.only_run().decisions
    )


# --- bad input --------------------------------------------------------------------------------


def test_spec_callables_that_raise_are_logged_once_and_the_decision_is_kept(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("spec bug")

    result = object()

    @decision("pick", options=broken, chosen=broken, reasoning=broken, tokens=broken)
    def pick(x: int) -> object:
        return result

    with pipe.tracker.run("g"):
        assert pick(1) is result
        assert pick(2) is result
        assert pick(3) is result

    messages = warnings_of(caplog)
    assert len(messages) == 4
    for field in ("options", "chosen", "reasoning", "tokens"):
        assert sum(f"{field}= raised" in m for m in messages) == 1
    decisions = pipe.only_run().decisions
    assert len(decisions) == 3
    for record in decisions:
        assert record.options == []
        assert record.chosen_option_id == ""
        assert record.reasoning == ""
        assert record.outcome is not None
        assert record.outcome.success is True
        assert record.outcome.tokens_used == 0


def test_chosen_not_among_the_options_is_recorded_as_given_with_a_warning(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    @decision("pick", options=["a", "b"], chosen=lambda result: "zzz")
    def pick() -> str:
        return "a"

    with pipe.tracker.run("g"):
        pick()
    messages = warnings_of(caplog)
    assert len(messages) == 1
    assert "'zzz' is not among the options" in messages[0]
    (record,) = pipe.only_run().decisions
    assert record.chosen_option_id == "zzz"


def test_result_that_is_not_an_option_leaves_chosen_empty_with_one_warning(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    @decision("pick", options=["a", "b"])
    def pick() -> str:
        return "c"

    with pipe.tracker.run("g"):
        pick()
        pick()
    messages = warnings_of(caplog)
    assert len(messages) == 1
    assert "not one of the option ids" in messages[0]
    assert [d.chosen_option_id for d in pipe.only_run().decisions] == ["", ""]


@pytest.mark.parametrize(
    "make",
    [
        lambda: decision("x")(42),
        lambda: node("n")(None),
        lambda: agent()("not a function"),
        lambda: decision(chosen="a"),  # type: ignore[arg-type]
        lambda: decision(reasoning=5),  # type: ignore[arg-type]
        lambda: decision(tokens=3),  # type: ignore[arg-type]
        lambda: decision(options="abc"),
        lambda: decision(options={"id": "a"}),  # type: ignore[arg-type]
        lambda: decision(node_id=3),  # type: ignore[arg-type]
        lambda: decision(auto_run="yes"),  # type: ignore[arg-type]
        lambda: decision(tracker="t"),  # type: ignore[arg-type]
        lambda: decision(lambda: None),  # type: ignore[arg-type]
        lambda: node(5),  # type: ignore[arg-type]
        lambda: agent(tracker=object()),  # type: ignore[arg-type]
        lambda: set_default_tracker("t"),  # type: ignore[arg-type]
    ],
)
def test_bad_decoration_raises_type_error(make: Any) -> None:
    with pytest.raises(TypeError):
        make()


def test_bad_values_raise_value_error() -> None:
    with pytest.raises(ValueError, match="decision_type"):
        decision(decision_type="guess")
    with pytest.raises(ValueError, match="empty"):
        node("")


# --- exceptions -----------------------------------------------------------------------------


def test_exceptions_are_reraised_unchanged_and_recorded(pipe: Pipe) -> None:
    error = ValueError("bad ticket")

    @decision("classify", options=["a"])
    def classify() -> str:
        raise error

    with pipe.tracker.run("g"), pytest.raises(ValueError, match="bad ticket") as info:
        classify()

    assert info.value is error
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "classify"  # the original raise site is still the last frame
    (span,) = pipe.decisions()
    assert span["status"] == "ERROR"
    assert span["attributes"][sc.OUTCOME_SUCCESS] is False
    assert span["attributes"][sc.OUTCOME_ERROR] == "bad ticket"
    assert span["attributes"][sc.ERROR_TYPE] == "ValueError"
    run = pipe.only_run()
    (record,) = run.decisions
    assert record.outcome is not None
    assert record.outcome.success is False
    assert record.outcome.error == "bad ticket"


def test_exception_with_an_empty_message_records_its_type(pipe: Pipe) -> None:
    class Oops(Exception):
        pass

    @decision("x")
    def fails() -> None:
        raise Oops

    with pipe.tracker.run("g"), pytest.raises(Oops):
        fails()
    (span,) = pipe.decisions()
    assert span["attributes"][sc.OUTCOME_ERROR] == Oops.__qualname__
    assert span["attributes"][sc.ERROR_TYPE] == Oops.__qualname__


def test_async_exceptions_are_reraised_unchanged(pipe: Pipe) -> None:
    error = LookupError("missing")

    @decision("lookup")
    async def lookup() -> None:
        await asyncio.sleep(0)
        raise error

    async def main() -> BaseException:
        async with pipe.tracker.run("g"):
            try:
                await lookup()
            except LookupError as caught:
                return caught
        raise AssertionError("not raised")

    assert asyncio.run(main()) is error
    (span,) = pipe.decisions()
    assert span["attributes"][sc.ERROR_TYPE] == "LookupError"
    assert span["attributes"][sc.OUTCOME_ERROR] == "missing"


def test_cancelled_coroutine_is_recorded_as_cancelled(pipe: Pipe) -> None:
    @decision("wait")
    async def wait_forever() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        async with pipe.tracker.run("g"):
            task = asyncio.ensure_future(wait_forever())
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    (span,) = pipe.decisions()
    assert span["attributes"][sc.OUTCOME_SUCCESS] is False
    assert span["attributes"][sc.ERROR_TYPE] == "CancelledError"


# --- coroutines -------------------------------------------------------------------------------


def test_coroutine_decision_covers_the_await_and_nests_llm_spans(pipe: Pipe) -> None:
    @decision("answer", options=["short", "long"], tokens=lambda result: 5)
    async def answer(n: int) -> str:
        before = current_span_id()
        await asyncio.sleep(0.01)
        assert current_span_id() == before
        llm_call(pipe, n, 1)
        return "long"

    async def main() -> str:
        async with pipe.tracker.run("g"):
            return await answer(3)

    assert asyncio.run(main()) == "long"
    (span,) = pipe.decisions()
    (llm,) = [s for s in pipe.spans() if s["name"] == "chat model"]
    assert llm["parent_id"] == span["span_id"]
    assert span["attributes"][sc.DECISION_CHOSEN_ID] == "long"
    (record,) = pipe.only_run().decisions
    assert record.outcome is not None and record.outcome.tokens_used == 5 + 3 + 1


def test_many_coroutines_in_one_run_keep_their_own_decision_span(pipe: Pipe) -> None:
    @decision("work", options=lambda n: [f"n{n}"], chosen=lambda result: f"n{result}")
    async def work(n: int) -> int:
        for _ in range(3):
            await asyncio.sleep(random.random() / 1000)
            llm_call(pipe, n, 0)
        return n

    async def main() -> None:
        async with pipe.tracker.run("g"):
            await asyncio.gather(*(work(n) for n in range(1, 51)))

    asyncio.run(main())
    spans = pipe.decisions()
    by_id = {s["span_id"]: s for s in spans}
    for llm in (s for s in pipe.spans() if s["name"] == "chat model"):
        parent = by_id[llm["parent_id"]]
        assert parent["attributes"][sc.DECISION_CHOSEN_ID] == f"n{llm['attributes'][IN]}"
    decisions = pipe.only_run().decisions
    assert len(decisions) == 50
    for record in decisions:
        n = int(record.chosen_option_id[1:])
        assert record.outcome is not None and record.outcome.tokens_used == 3 * n


# --- generators -------------------------------------------------------------------------------


def test_generator_decision_covers_the_whole_iteration(pipe: Pipe) -> None:
    inside: list[int] = []

    @decision("stream", options=["done"], chosen=lambda result: result)
    def stream(n: int) -> Iterator[int]:
        for i in range(n):
            inside.append(current_span_id())
            llm_call(pipe, 1, 1)
            yield i
        return "done"

    with pipe.tracker.run("g"):
        run_span_id = current_span_id()
        outside: list[int] = []
        items = []
        for item in stream(3):
            outside.append(current_span_id())
            items.append(item)

    assert items == [0, 1, 2]
    (span,) = pipe.decisions()
    assert inside == [span["span_id"]] * 3
    assert outside == [run_span_id] * 3  # never current across a yield
    assert span["parent_id"] == run_span_id
    llm_spans = [s for s in pipe.spans() if s["name"] == "chat model"]
    assert [s["parent_id"] for s in llm_spans] == [span["span_id"]] * 3
    (record,) = pipe.only_run().decisions
    assert record.chosen_option_id == "done"
    assert record.outcome is not None
    assert record.outcome.success is True
    assert record.outcome.result == "done"
    assert record.outcome.summary == "yielded 3 items"
    assert record.outcome.tokens_used == 6


def test_generator_closed_early_is_a_success_noting_it(pipe: Pipe) -> None:
    cleaned: list[str] = []

    @decision("stream")
    def stream() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            cleaned.append("inner closed")

    with pipe.tracker.run("g"):
        gen = stream()
        assert next(gen) == 0
        assert next(gen) == 1
        gen.close()
        for _ in stream():
            break  # the for loop drops the last reference: CPython closes it

    assert cleaned == ["inner closed", "inner closed"]
    spans = pipe.decisions()
    assert [s["status"] for s in spans] == ["UNSET", "UNSET"]
    assert all(sc.ERROR_TYPE not in s["attributes"] for s in spans)
    first, second = pipe.only_run().decisions
    assert first.outcome is not None and second.outcome is not None
    assert first.outcome.success is True
    assert first.outcome.summary == "closed early after yielding 2 items"
    assert second.outcome.summary == "closed early after yielding 1 item"
    assert first.outcome.error is None


def test_generator_send_and_throw_pass_through(pipe: Pipe) -> None:
    @decision("echo")
    def echo() -> Iterator[str]:
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = yield "recovered"

    with pipe.tracker.run("g"):
        gen = echo()
        assert next(gen) == "ready"
        assert gen.send("a") == "got a"
        assert gen.throw(KeyError("k")) == "recovered"
        assert gen.send("b") == "got b"
        gen.close()
    (record,) = pipe.only_run().decisions
    assert record.outcome is not None
    assert record.outcome.success is True
    assert record.outcome.summary == "closed early after yielding 4 items"


def test_generator_that_raises_records_failure_and_reraises(pipe: Pipe) -> None:
    error = RuntimeError("stream broke")

    @decision("stream")
    def stream() -> Iterator[int]:
        yield 1
        raise error

    with pipe.tracker.run("g"):
        gen = stream()
        next(gen)
        with pytest.raises(RuntimeError) as info:
            next(gen)
    assert info.value is error
    (span,) = pipe.decisions()
    assert span["status"] == "ERROR"
    assert span["attributes"][sc.ERROR_TYPE] == "RuntimeError"
    assert span["attributes"][sc.OUTCOME_ERROR] == "stream broke"


def test_generator_resumed_in_other_contexts(pipe: Pipe) -> None:
    inside: list[int] = []

    @decision("stream")
    def stream() -> Iterator[int]:
        for i in range(4):
            inside.append(current_span_id())
            yield i

    with pipe.tracker.run("g"):
        gen = stream()
        # each resumption in a fresh copy of the context, as a framework might do
        items = [contextvars.copy_context().run(next, gen) for _ in range(2)]
        items += list(contextvars.copy_context().run(list, gen))
    assert items == [0, 1, 2, 3]
    (span,) = pipe.decisions()
    assert inside == [span["span_id"]] * 4


def test_generator_never_iterated_records_nothing(pipe: Pipe) -> None:
    @decision("stream")
    def stream() -> Iterator[int]:
        yield 1

    with pipe.tracker.run("g"):
        gen = stream()
        del gen
    assert pipe.decisions() == []
    assert pipe.only_run().decisions == []


def test_generator_bad_arguments_raise_at_call_time(pipe: Pipe) -> None:
    @decision("stream")
    def stream(n: int) -> Iterator[int]:
        yield n

    with pipe.tracker.run("g"), pytest.raises(TypeError):
        stream(1, 2)  # type: ignore[call-arg]


# --- async generators -------------------------------------------------------------------------


def test_async_generator_full_iteration_nests_llm_spans(pipe: Pipe) -> None:
    inside: list[int] = []

    @decision("stream", options=["x"], chosen=lambda result: "x")
    async def stream(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await asyncio.sleep(0)
            inside.append(current_span_id())
            llm_call(pipe, 2, 2)
            yield i

    async def main() -> list[int]:
        async with pipe.tracker.run("g"):
            return [i async for i in stream(3)]

    assert asyncio.run(main()) == [0, 1, 2]
    (span,) = pipe.decisions()
    assert inside == [span["span_id"]] * 3
    assert [s["parent_id"] for s in pipe.spans() if s["name"] == "chat model"] == [
        span["span_id"]
    ] * 3
    (record,) = pipe.only_run().decisions
    assert record.outcome is not None
    assert record.outcome.summary == "yielded 3 items"
    assert record.outcome.tokens_used == 12
    assert record.chosen_option_id == "x"


def test_async_generator_aclose_is_a_success_noting_it(pipe: Pipe) -> None:
    cleaned: list[str] = []

    @decision("stream")
    async def stream() -> AsyncIterator[int]:
        try:
            for i in range(10):
                await asyncio.sleep(0)
                yield i
        finally:
            await asyncio.sleep(0)  # awaiting while closing is allowed
            cleaned.append("inner closed")

    async def main() -> None:
        async with pipe.tracker.run("g"):
            agen = stream()
            async for _ in agen:
                break
            await agen.aclose()

    asyncio.run(main())
    assert cleaned == ["inner closed"]
    (span,) = pipe.decisions()
    assert span["status"] == "UNSET"
    (record,) = pipe.only_run().decisions
    assert record.outcome is not None
    assert record.outcome.success is True
    assert record.outcome.summary == "closed early after yielding 1 item"


def test_async_generator_abandoned_and_garbage_collected(pipe: Pipe) -> None:
    @decision("stream")
    async def stream() -> AsyncIterator[int]:
        for i in range(10):
            await asyncio.sleep(0)
            yield i

    async def main() -> None:
        async with pipe.tracker.run("g"):
            agen = stream()
            async for _ in agen:
                break
            del agen  # asyncio's finalizer hook schedules aclose() in another task
            gc.collect()
            for _ in range(5):
                await asyncio.sleep(0)

    asyncio.run(main())
    (record,) = pipe.only_run().decisions
    assert record.outcome is not None
    assert record.outcome.success is True
    assert record.outcome.summary == "closed early after yielding 1 item"


def test_async_generator_cancelled_while_awaiting(pipe: Pipe) -> None:
    @decision("stream")
    async def stream() -> AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()
        yield 2

    async def consume() -> None:
        async for _ in stream():
            pass

    async def main() -> None:
        async with pipe.tracker.run("g"):
            task = asyncio.ensure_future(consume())
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    (span,) = pipe.decisions()
    assert span["status"] == "ERROR"
    assert span["attributes"][sc.OUTCOME_SUCCESS] is False
    assert span["attributes"][sc.ERROR_TYPE] == "CancelledError"


def test_async_generators_unfinished_when_asyncio_shuts_down(pipe: Pipe) -> None:
    kept: list[Any] = []

    @decision("suspended")
    async def suspended() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    @decision("blocked")
    async def blocked() -> AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()
        yield 2

    async def consume() -> None:
        async for _ in blocked():
            pass

    async def main() -> None:
        agen = suspended()
        await agen.__anext__()
        kept.append(agen)  # still suspended at a yield: shutdown_asyncgens closes it
        kept.append(asyncio.ensure_future(consume()))  # awaiting: asyncio.run cancels it
        await asyncio.sleep(0.01)

    with pipe.tracker.run("g"):
        asyncio.run(main())

    by_intent = {s["attributes"][sc.DECISION_INTENT]: s for s in pipe.decisions()}
    assert by_intent["suspended"]["attributes"][sc.OUTCOME_SUCCESS] is True
    assert by_intent["suspended"]["attributes"][sc.OUTCOME_SUMMARY] == (
        "closed early after yielding 1 item"
    )
    assert by_intent["blocked"]["attributes"][sc.OUTCOME_SUCCESS] is False
    assert by_intent["blocked"]["attributes"][sc.ERROR_TYPE] == "CancelledError"


def test_async_generator_exception_is_reraised_unchanged(pipe: Pipe) -> None:
    error = ValueError("bad chunk")

    @decision("stream")
    async def stream() -> AsyncIterator[int]:
        yield 1
        raise error

    async def main() -> BaseException:
        async with pipe.tracker.run("g"):
            try:
                async for _ in stream():
                    pass
            except ValueError as caught:
                return caught
        raise AssertionError("not raised")

    assert asyncio.run(main()) is error
    (span,) = pipe.decisions()
    assert span["attributes"][sc.ERROR_TYPE] == "ValueError"


# --- methods and wrapping -----------------------------------------------------------------------


class Router:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    @decision("route", options=lambda self, ticket: [f"{self.prefix}-{ticket}"])
    def route(self, ticket: str) -> str:
        """Route a ticket."""
        return f"{self.prefix}-{ticket}"

    @decision("cm outside", options=lambda cls, x: [f"{cls.__name__}-{x}"])
    @classmethod
    def cm_outside(cls, x: str) -> str:
        return f"{cls.__name__}-{x}"

    @classmethod
    @decision("cm inside", options=lambda cls, x: [f"{cls.__name__}-{x}"])
    def cm_inside(cls, x: str) -> str:
        return f"{cls.__name__}-{x}"

    @decision("sm outside", options=lambda x: [x])
    @staticmethod
    def sm_outside(x: str) -> str:
        return x

    @staticmethod
    @decision("sm inside", options=lambda x: [x])
    def sm_inside(x: str) -> str:
        return x

    @decision("async method", options=lambda self: [self.prefix])
    async def amethod(self) -> str:
        await asyncio.sleep(0)
        return self.prefix

    @decision("generator method")
    def gmethod(self, n: int) -> Iterator[int]:
        yield from range(n)

    @decision("async generator method")
    async def agmethod(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i


class SubRouter(Router):
    pass


def test_methods_classmethods_and_staticmethods(pipe: Pipe) -> None:
    router = SubRouter("r")

    async def call_async() -> tuple[str, list[int]]:
        return await router.amethod(), [i async for i in router.agmethod(2)]

    with pipe.tracker.run("g"):
        assert router.route("t1") == "r-t1"
        assert Router.route(router, "t2") == "r-t2"
        assert SubRouter.cm_outside("a") == "SubRouter-a"
        assert router.cm_inside("b") == "SubRouter-b"
        assert Router.sm_outside("c") == "c"
        assert router.sm_inside("d") == "d"
        assert list(router.gmethod(2)) == [0, 1]
        assert asyncio.run(call_async()) == ("r", [0, 1])

    chosen = [
        (d.intent, d.chosen_option_id, [o.id for o in d.options]) for d in pipe.only_run().decisions
    ]
    assert chosen == [
        ("route", "r-t1", ["r-t1"]),
        ("route", "r-t2", ["r-t2"]),
        ("cm outside", "SubRouter-a", ["SubRouter-a"]),
        ("cm inside", "SubRouter-b", ["SubRouter-b"]),
        ("sm outside", "c", ["c"]),
        ("sm inside", "d", ["d"]),
        ("generator method", "", []),
        ("async method", "r", ["r"]),
        ("async generator method", "", []),
    ]


def test_decorated_functions_keep_name_doc_signature_and_kind() -> None:
    assert Router.route.__name__ == "route"
    assert Router.route.__qualname__ == "Router.route"
    assert Router.route.__doc__ == "Route a ticket."
    assert str(inspect.signature(Router.route)) == "(self, ticket: 'str') -> 'str'"
    assert str(inspect.signature(Router("p").route)) == "(ticket: 'str') -> 'str'"
    assert str(inspect.signature(Router.cm_outside)) == "(x: 'str') -> 'str'"
    assert str(inspect.signature(Router.sm_inside)) == "(x: 'str') -> 'str'"
    assert inspect.iscoroutinefunction(Router.amethod)
    assert inspect.isgeneratorfunction(Router.gmethod)
    assert inspect.isasyncgenfunction(Router.agmethod)
    assert not inspect.iscoroutinefunction(Router.route)
    assert inspect.unwrap(Router.route).__code__.co_name == "route"


def test_stacked_decorators_and_already_wrapped_functions(pipe: Pipe) -> None:
    def add_one(fn: Any) -> Any:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **kwargs) + 1

        return wrapper

    def passthrough(fn: Any) -> Any:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)  # a coroutine, from a plain function

        return wrapper

    @decision("outer", options=["inner-done"], chosen=lambda result: "inner-done")
    def outer() -> int:
        return inner()

    @node("worker")
    @decision("inner")
    def inner() -> int:
        return 1

    @decision("plus one")
    @add_one
    async def plus_one(n: int) -> int:
        return n

    @decision("passthrough")
    @passthrough
    async def via_passthrough(n: int) -> int:
        await asyncio.sleep(0)
        return n * 10

    async def call_async() -> tuple[int, int]:
        return await plus_one(1), await via_passthrough(2)

    with pipe.tracker.run("g"):
        assert outer() == 1
        assert asyncio.run(call_async()) == (2, 20)

    spans = {s["attributes"][sc.DECISION_INTENT]: s for s in pipe.decisions()}
    assert spans["inner"]["parent_id"] == spans["outer"]["span_id"]  # decisions nest
    assert spans["inner"]["attributes"][sc.NODE_ID] == "worker"
    assert spans["outer"]["attributes"][sc.NODE_ID] == "unknown"
    assert spans["plus one"]["attributes"][sc.OUTCOME_RESULT] == "2"
    # the plain wrapper returns a coroutine: the kind comes from __wrapped__, so it is awaited
    assert spans["passthrough"]["attributes"][sc.OUTCOME_RESULT] == "20"
    assert pipe.only_run().metrics.nodes_executed == ["unknown", "worker"]


# --- nodes --------------------------------------------------------------------------------------


def test_node_sets_the_node_of_decisions_made_inside_it(pipe: Pipe) -> None:
    @node("classifier")
    def classify() -> None:
        decision_id = pipe.tracker.decide(intent="by hand", options=[], chosen="", reasoning="")
        pipe.tracker.record_outcome(decision_id=decision_id, success=True)
        respond()
        pick()  # after the inner node returned, the outer one is current again

    @node("responder")
    def respond() -> None:
        pick()

    @decision("pick")
    def pick() -> None:
        return None

    @node("silent")
    def silent() -> None:
        return None

    with pipe.tracker.run("g"):
        silent()
        classify()

    run = pipe.only_run()
    assert [(d.intent, d.node_id) for d in run.decisions] == [
        ("by hand", "classifier"),
        ("pick", "responder"),
        ("pick", "classifier"),
    ]
    assert run.metrics.nodes_executed == ["silent", "classifier", "responder"]


def test_node_on_coroutines_and_generators(pipe: Pipe) -> None:
    @decision("pick")
    def pick() -> None:
        return None

    @node("async node")
    async def async_node() -> None:
        await asyncio.sleep(0)
        pick()

    @node("gen node")
    def gen_node() -> Iterator[int]:
        pick()
        yield 1
        pick()

    @node("agen node")
    async def agen_node() -> AsyncIterator[int]:
        pick()
        yield 1
        await asyncio.sleep(0)
        pick()

    async def main() -> None:
        async with pipe.tracker.run("g"):
            await async_node()
            for _ in gen_node():
                pick()  # the consumer is not inside the node
            async for _ in agen_node():
                pass

    asyncio.run(main())
    run = pipe.only_run()
    assert [d.node_id for d in run.decisions] == [
        "async node",
        "gen node",
        "unknown",
        "gen node",
        "agen node",
        "agen node",
    ]
    assert run.metrics.nodes_executed == ["async node", "gen node", "unknown", "agen node"]


# --- outside a run ------------------------------------------------------------------------------


def test_outside_a_run_functions_just_run(pipe: Pipe) -> None:
    @node("n")
    @decision("sync", options=["a"])
    def sync_fn(x: int) -> int:
        return x + 1

    @decision("async")
    async def async_fn(x: int) -> int:
        return x * 2

    @decision("gen")
    def gen_fn(n: int) -> Iterator[int]:
        yield from range(n)

    @decision("agen")
    async def agen_fn(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    assert sync_fn(1) == 2
    coroutine = async_fn(2)
    assert coroutine.cr_code is inspect.unwrap(async_fn).__code__  # the function's own
    assert asyncio.run(coroutine) == 4
    gen = gen_fn(3)
    assert gen.gi_code is inspect.unwrap(gen_fn).__code__
    assert list(gen) == [0, 1, 2]
    agen = agen_fn(2)
    assert agen.ag_code is inspect.unwrap(agen_fn).__code__

    async def drain() -> list[int]:
        return [i async for i in agen]

    assert asyncio.run(drain()) == [0, 1]
    assert pipe.spans() == []
    assert pipe.runs() == []


# --- runs started by decorators -----------------------------------------------------------------


def test_auto_run_starts_a_run_only_outside_one(pipe: Pipe) -> None:
    @decision("pick", options=["a"], auto_run=True)
    def pick() -> str:
        return "a"

    pick()
    with pipe.tracker.run("outer"):
        pick()

    first, second = pipe.runs()
    assert first.goal_id == pick.__qualname__
    assert first.goal_description == "pick"
    assert first.status.value == "completed"
    assert [d.chosen_option_id for d in first.decisions] == ["a"]
    assert second.goal_id == "outer"
    assert len(second.decisions) == 1
    (decision_span,) = [
        s for s in pipe.decisions() if s["trace_id"] == pipe.run_spans()[0]["trace_id"]
    ]
    assert decision_span["parent_id"] == pipe.run_spans()[0]["span_id"]


def test_auto_run_for_every_function_kind(pipe: Pipe) -> None:
    other = dt.DecisionTracker("other", tracer_provider=pipe.provider)

    @decision("sync", auto_run=True, tracker=other)
    def sync_fn() -> int:
        return 1

    @decision("async", auto_run=True)
    async def async_fn() -> int:
        return 2

    @decision("gen", auto_run=True)
    def gen_fn() -> Iterator[int]:
        yield 3

    @decision("agen", auto_run=True)
    async def agen_fn() -> AsyncIterator[int]:
        yield 4

    async def async_calls() -> list[int]:
        return [await async_fn()] + [i async for i in agen_fn()]

    assert sync_fn() == 1
    assert list(gen_fn()) == [3]
    assert asyncio.run(async_calls()) == [2, 4]

    runs = pipe.runs()
    assert sorted((r.goal_description, len(r.decisions), r.status.value) for r in runs) == [
        ("agen", 1, "completed"),
        ("async", 1, "completed"),
        ("gen", 1, "completed"),
        ("sync", 1, "completed"),
    ]
    streams = {
        s["attributes"][sc.GOAL_DESCRIPTION]: s["attributes"][sc.STREAM_ID]
        for s in pipe.run_spans()
    }
    assert streams == {"sync": "other", "async": "test", "gen": "test", "agen": "test"}


def test_agent_starts_a_run_and_nested_agents_join_it(pipe: Pipe) -> None:
    @agent(goal_id="triage", tracker=pipe.tracker)
    def triage(ticket: str) -> str:
        """Triage one ticket."""
        return sub_agent(ticket)

    @agent()
    def sub_agent(ticket: str) -> str:
        return pick(ticket)

    @decision("pick", options=lambda ticket: [ticket])
    def pick(ticket: str) -> str:
        return ticket

    assert triage("T-9") == "T-9"
    run = pipe.only_run()
    assert run.goal_id == "triage"
    assert run.goal_description == "Triage one ticket."
    assert run.status.value == "completed"
    assert [d.chosen_option_id for d in run.decisions] == ["T-9"]


def test_agent_failure_and_cancellation_end_the_run(pipe: Pipe) -> None:
    error = ValueError("no answer")

    @agent(goal_id="fails")
    def fails() -> None:
        raise error

    @agent(goal_id="cancelled")
    async def waits() -> None:
        await asyncio.Event().wait()

    with pytest.raises(ValueError, match="no answer") as info:
        fails()
    assert info.value is error

    async def main() -> None:
        task = asyncio.ensure_future(waits())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    failed, cancelled = pipe.runs()
    assert failed.status.value == "failed"
    assert [(p.severity, p.description) for p in failed.problems] == [
        ("critical", "ValueError: no answer")
    ]
    assert cancelled.status.value == "cancelled"


def test_agent_on_generators(pipe: Pipe) -> None:
    @agent(goal_id="stream")
    @node("streamer")
    @decision("chunk")
    def stream(n: int) -> Iterator[int]:
        yield from range(n)

    @agent(goal_id="astream")
    async def astream() -> AsyncIterator[int]:
        yield await answer()
        raise RuntimeError("stream died")

    @decision("answer")
    async def answer() -> int:
        return 7

    async def consume() -> list[int]:
        items: list[int] = []

        async def iterate() -> None:
            async for i in astream():
                items.append(i)

        with pytest.raises(RuntimeError, match="stream died"):
            await iterate()
        return items

    gen = stream(3)
    assert next(gen) == 0
    gen.close()
    assert asyncio.run(consume()) == [7]

    closed, died = pipe.runs()
    assert closed.goal_id == "stream"
    assert closed.status.value == "completed"
    assert closed.metrics.nodes_executed == ["streamer"]
    (chunk,) = closed.decisions
    assert chunk.node_id == "streamer"
    assert chunk.outcome is not None
    assert chunk.outcome.summary == "closed early after yielding 1 item"
    assert died.goal_id == "astream"
    assert died.status.value == "failed"
    assert [d.intent for d in died.decisions] == ["answer"]
    for run_span in pipe.run_spans():
        children = [s for s in pipe.decisions() if s["trace_id"] == run_span["trace_id"]]
        assert [s["parent_id"] for s in children] == [run_span["span_id"]]


def test_agent_async_generator_cancelled_ends_the_run_cancelled(pipe: Pipe) -> None:
    @agent(goal_id="listener")
    async def listen() -> AsyncIterator[int]:
        yield 1
        await asyncio.Event().wait()
        yield 2

    async def consume() -> None:
        async for _ in listen():
            pass

    async def main() -> None:
        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (run,) = pipe.runs()
    assert run.goal_id == "listener"
    assert run.status.value == "cancelled"
    assert run.problems == []
    (run_span,) = pipe.run_spans()
    assert run_span["attributes"][sc.RUN_STATUS] == "cancelled"


def test_default_tracker_is_created_once_and_can_be_replaced(pipe: Pipe) -> None:
    assert default_tracker() is pipe.tracker
    set_default_tracker(None)
    created = default_tracker()
    assert created is default_tracker()
    assert created is not pipe.tracker
    assert created.stream_id == "default"
    set_default_tracker(pipe.tracker)
    assert default_tracker() is pipe.tracker


# --- concurrency --------------------------------------------------------------------------------


def test_200_concurrent_asyncio_runs_do_not_mix(pipe: Pipe) -> None:
    @node("classifier")
    @decision("classify", options=["even", "odd"])
    async def classify(n: int) -> str:
        await asyncio.sleep(random.random() / 500)
        llm_call(pipe, n, 1)
        await asyncio.sleep(0)
        return "even" if n % 2 == 0 else "odd"

    @node("responder")
    @decision("answer", options=lambda n, category: [f"{category}-{n}"])
    async def answer(n: int, category: str) -> str:
        await asyncio.sleep(random.random() / 500)
        return f"{category}-{n}"

    @agent(goal_id="ticket")
    async def handle(n: int) -> str:
        return await answer(n, await classify(n))

    async def main() -> list[str]:
        return await asyncio.gather(*(handle(n) for n in range(200)))

    results = asyncio.run(main())
    assert results == [f"{'even' if n % 2 == 0 else 'odd'}-{n}" for n in range(200)]
    runs = pipe.runs()
    assert len(runs) == 200
    seen = set()
    for run in runs:
        classify_record, answer_record = run.decisions
        category, n = answer_record.chosen_option_id.split("-")
        seen.add(int(n))
        assert (
            classify_record.chosen_option_id == category == ("even" if int(n) % 2 == 0 else "odd")
        )
        assert classify_record.outcome is not None
        assert classify_record.outcome.tokens_used == int(n) + 1  # its own LLM span only
        assert run.metrics.nodes_executed == ["classifier", "responder"]
    assert seen == set(range(200))


def test_concurrent_runs_in_threads_do_not_mix(pipe: Pipe) -> None:
    barrier = threading.Barrier(8)

    @decision("step", options=lambda n, step: [f"{n}:{step}"])
    def step(n: int, step: int) -> str:
        time.sleep(random.random() / 1000)
        llm_call(pipe, n, 0)
        return f"{n}:{step}"

    @agent(goal_id="worker")
    def work(n: int) -> None:
        if n <= 8:
            barrier.wait(timeout=10)  # the first eight really overlap
        for i in range(3):
            step(n, i)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(1, 41)))

    runs = pipe.runs()
    assert len(runs) == 40
    owners = set()
    for run in runs:
        ids = [d.chosen_option_id for d in run.decisions]
        n = int(ids[0].split(":")[0])
        owners.add(n)
        assert ids == [f"{n}:0", f"{n}:1", f"{n}:2"]
        assert all(d.outcome is not None and d.outcome.tokens_used == n for d in run.decisions)
    assert owners == set(range(1, 41))


def test_span_attributes_are_plain_json(pipe: Pipe) -> None:
    @decision("pick", options=[{"id": "a", "action_params": {"k": 1}}], chosen=lambda r: "a")
    def pick() -> list[int]:
        return [1, 2]

    with pipe.tracker.run("g"):
        pick()
    (span,) = pipe.decisions()
    options = json.loads(span["attributes"][sc.DECISION_OPTIONS])
    assert options[0]["action_params"] == {"k": 1}
    assert json.loads(span["attributes"][sc.OUTCOME_RESULT]) == [1, 2]


# --- runs nobody records ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider",
    [trace.NoOpTracerProvider(), TracerProvider(sampler=ALWAYS_OFF)],
    ids=["no SDK", "sampled out"],
)
def test_a_run_nobody_records_keeps_the_live_view_of_decorated_calls(
    provider: trace.TracerProvider, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing is stored or exported: the callables that only feed telemetry (options,
    # reasoning, tokens) are not called, but the live view lists every decision.
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    telemetry_calls: list[str] = []

    def options_of(ticket: str) -> list[str]:
        telemetry_calls.append("options")
        return [ticket]

    def reasoning_of(result: Any) -> str:
        telemetry_calls.append("reasoning")
        return "because"

    def tokens_of(result: Any) -> int:
        telemetry_calls.append("tokens")
        return 5

    @node("router")
    @decision("route", options=["kb", "llm"], reasoning=reasoning_of, tokens=tokens_of)
    def route(ticket: str) -> str:
        return "llm"

    @decision("pick", options=options_of, chosen=lambda result: result.upper())
    async def pick(ticket: str) -> str:
        await asyncio.sleep(0)
        return ticket

    @decision("fail", options=["a"])
    def fail() -> str:
        raise ValueError("no")

    @decision("stream", options=["done"])
    def stream() -> Iterator[int]:
        yield 1
        return "done"

    with tracker.run("g") as run:
        assert route("t-1") == "llm"
        assert asyncio.run(pick("x")) == "x"
        with pytest.raises(ValueError, match="no"):
            fail()
        assert list(stream()) == [1]
        live = run.get_run()

    assert telemetry_calls == []
    # Either way it is said once, never silently: without an SDK nothing was ever going
    # to be stored (the missing SDK is named); a sampler that drops the run span loses it.
    said = "will not be stored" if isinstance(provider, TracerProvider) else "no OpenTelemetry SDK"
    assert len(warnings_of(caplog)) == 1
    assert said in warnings_of(caplog)[0]
    assert live is not None
    assert [
        (d.id, d.intent, d.node_id, d.chosen_option_id, d.outcome and d.outcome.success)
        for d in live.decisions
    ] == [
        ("dec_0", "route", "router", "llm", True),
        ("dec_1", "pick", "unknown", "X", True),
        ("dec_2", "fail", "unknown", "", False),
        ("dec_3", "stream", "unknown", "done", True),
    ]
    assert all(d.options == [] for d in live.decisions)
    final = run.get_run()
    assert final is not None
    assert final.status == dt.RunStatus.COMPLETED
    assert (final.metrics.successful_decisions, final.metrics.failed_decisions) == (3, 1)
    assert final.metrics.total_tokens == 0
    assert final.metrics.nodes_executed == ["router", "unknown"]


@pytest.mark.parametrize(
    "provider",
    [trace.NoOpTracerProvider(), TracerProvider(sampler=ALWAYS_OFF)],
    ids=["no SDK", "sampled out"],
)
def test_a_long_run_nobody_records_packs_its_ended_decisions_and_lists_them_all(
    provider: trace.TracerProvider,
) -> None:
    # Beyond PACK_AFTER, an ended decision is packed (nothing the collector rescans);
    # the live view reads the same essentials back, and a second outcome is refused.
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    count = PACK_AFTER + CHUNK + 3

    @decision("route", options=["kb", "llm"])
    def route(index: int) -> str:
        if index % 7 == 3:
            dt.choose("kb")
            return "other"
        return "llm"

    @decision("fail")
    def fail() -> None:
        raise ValueError("no")

    with tracker.run("g") as run:
        for index in range(count):
            if index % 5 == 4:
                with pytest.raises(ValueError, match="no"):
                    fail()
            else:
                route(index)
        live = tracker.registry.current()
        assert live is not None and live.ended is not None
        assert len(live.decisions) == PACK_AFTER and len(live.ended) == count - PACK_AFTER
        assert type(live.ended.chunks[0]) is bytes
        view = run.get_run()
        tracker.record_outcome(decision_id=f"dec_{count - 1}", success=False)
        again = run.get_run()
    assert view is not None and again is not None
    expected = [
        (f"dec_{i}", "fail", "", False)
        if i % 5 == 4
        else (f"dec_{i}", "route", "kb" if i % 7 == 3 else "llm", True)
        for i in range(count)
    ]
    assert [
        (d.id, d.intent, d.chosen_option_id, d.outcome and d.outcome.success)
        for d in view.decisions
    ] == expected
    assert [d.model_dump() for d in again.decisions] == [d.model_dump() for d in view.decisions]
    # packed or not, no span id: no decision span exists to lead to
    assert not any(d.model_extra and "span_id" in d.model_extra for d in view.decisions)
    final = run.get_run()
    assert final is not None
    assert final.metrics.failed_decisions == sum(1 for e in expected if not e[3])


def test_a_decision_in_a_sampled_out_run_keeps_the_run_trace_current() -> None:
    # Spans other instrumentations start inside the decision must stay in the run's
    # trace (so the sampler drops them with it), whether the run's span is already the
    # current one (tracker.run) or not (start_run).
    tracker = dt.DecisionTracker("s", tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
    seen: list[int] = []

    @decision("look")
    def look() -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    @decision("look async")
    async def look_async() -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    with tracker.run("scoped"):
        scoped_trace = trace.get_current_span().get_span_context().trace_id
        look()
        asyncio.run(look_async())
    execution_id = "started"
    tracker.start_run(goal_id="started", execution_id=execution_id)
    assert trace.get_current_span().get_span_context().trace_id == 0  # not made current
    look()
    asyncio.run(look_async())
    run = tracker.get_run(execution_id)
    tracker.end_run(success=True, execution_id=execution_id)

    assert scoped_trace != 0
    assert seen[:2] == [scoped_trace] * 2
    assert run is not None and len(run.decisions) == 2
    started_trace = seen[2]
    assert started_trace not in (0, scoped_trace)
    assert seen[2:] == [started_trace] * 2


def test_auto_run_that_cannot_start_a_run_just_runs_the_function(
    pipe: Pipe, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_start(*args: Any) -> Any:
        raise RuntimeError("tracker bug")

    monkeypatch.delenv(RAISE_ENV)  # a bug in production: logged, never raised
    monkeypatch.setattr(pipe.tracker.registry, "start", broken_start)

    @decision("sync", auto_run=True)
    def sync_fn() -> int:
        return 1

    @decision("async", auto_run=True)
    async def async_fn() -> int:
        return 2

    @decision("gen", auto_run=True)
    def gen_fn() -> Iterator[int]:
        yield 3

    @decision("agen", auto_run=True)
    async def agen_fn() -> AsyncIterator[int]:
        yield 4

    async def async_calls() -> list[int]:
        return [await async_fn()] + [i async for i in agen_fn()]

    assert sync_fn() == 1
    assert list(gen_fn()) == [3]
    assert asyncio.run(async_calls()) == [2, 4]
    assert pipe.spans() == []
    # One line per kind of failure, however many calls hit it.
    assert {r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR} == {
        "decisiontrace: RunScope starting a run failed",
        "decisiontrace: @agent starting a run failed",
    }
