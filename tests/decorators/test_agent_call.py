"""@agent records the call: bound arguments as input_data, the result as output_data,
never consuming either; goal description and stream from the function."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

import decisiontrace as dt
from decisiontrace.decorators import set_default_tracker
from decisiontrace.models import Run
from decisiontrace.spanmodel._jsonsafe import TRUNCATED_KEY
from decisiontrace.stores import MemoryStore


@pytest.fixture
def store() -> Iterator[MemoryStore]:
    """A global SDK provider storing into a memory store, as dt.configure() sets up."""
    saved = (trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER)
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    store = MemoryStore()
    processor = dt.RunRecordProcessor(store, flush_interval=0.05)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    yield store
    provider.shutdown()
    trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER = saved


def only_run(store: MemoryStore) -> Run:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    assert provider.force_flush(10_000)
    [summary] = store.list_runs()
    run = store.load_run(summary.run_id)
    assert run is not None
    return run


def test_arguments_and_result_are_recorded(store: MemoryStore) -> None:
    @dt.agent(goal_id="support")
    def handle(ticket: str, priority: int = 3, *tags: str, **meta: Any) -> str:
        """Answer a support ticket."""
        return f"answered {ticket}"

    assert handle("T-1", 1, "vip", channel="mail") == "answered T-1"
    run = only_run(store)
    assert run.input_data == {
        "ticket": "T-1",
        "priority": 1,
        "tags": ["vip"],
        "meta": {"channel": "mail"},
    }
    assert run.output_data == {"result": "answered T-1"}
    assert run.goal_description == "Answer a support ticket."
    assert run.id.startswith("run_handle_")  # named after the function, not "default"


def test_a_returned_dict_is_the_output(store: MemoryStore) -> None:
    @dt.agent()
    def handle() -> dict[str, Any]:
        return {"answer": 42, "sources": ["kb"]}

    handle()
    assert only_run(store).output_data == {"answer": 42, "sources": ["kb"]}


def test_iterators_and_streams_are_described_never_consumed(store: MemoryStore) -> None:
    def numbers() -> Iterator[int]:
        yield from (1, 2, 3)

    @dt.agent()
    def handle(items: Iterator[int]) -> Iterator[int]:
        return numbers()

    given = iter([1, 2, 3])
    result = handle(given)
    assert list(given) == [1, 2, 3]  # the argument was not read
    assert list(result) == [1, 2, 3]  # nor the result
    run = only_run(store)
    assert run.input_data == {"items": "<list_iterator>"}
    assert run.output_data["result"].startswith("<generator")


def test_each_value_is_size_bounded(store: MemoryStore) -> None:
    @dt.agent()
    def handle(document: str, question: str) -> str:
        return "ok"

    handle("x" * 100_000, "what?")
    run = only_run(store)
    assert run.input_data["question"] == "what?"
    document = run.input_data["document"]
    assert isinstance(document, dict) and document[TRUNCATED_KEY] is True
    assert len(str(run.input_data)) < 20_000


def test_arguments_can_be_left_out(store: MemoryStore) -> None:
    @dt.agent(exclude=("client",))
    def first(question: str, client: object) -> str:
        return "a"

    @dt.agent(record_input=False, record_output=False)
    def second(question: str) -> str:
        return "b"

    first("q", object())
    second("q")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider) and provider.force_flush(10_000)
    runs = {s.run_id.split("_")[1]: store.load_run(s.run_id) for s in store.list_runs()}
    first_run, second_run = runs["first"], runs["second"]
    assert first_run is not None and first_run.input_data == {"question": "q"}
    assert second_run is not None
    assert (second_run.input_data, second_run.output_data) == ({}, {})


def test_a_lone_surrogate_beside_a_key_to_convert_is_recorded(store: MemoryStore) -> None:
    # Found by tests/reliability/test_fuzz.py: a sanitized value (the None key becomes
    # "None") whose text holds a lone surrogate, which pydantic-core cannot read back.
    @dt.agent(goal_id="support")
    def handle(payload: Any) -> str:
        return "done"

    payload = {"": "\ud800", None: {}}
    assert handle(payload) == "done"
    run = only_run(store)
    assert run.status == "completed"
    assert run.input_data["payload"]["None"] == {}
    assert set(run.input_data["payload"]) == {"", "None"}


def test_secrets_in_arguments_are_redacted(store: MemoryStore) -> None:
    @dt.agent()
    def login(user: str, password: str) -> str:
        return "token"

    login("ann", "hunter2")
    assert only_run(store).input_data == {"user": "ann", "password": "[REDACTED]"}


def test_goal_description_from_an_argument(store: MemoryStore) -> None:
    @dt.agent(goal_description_from="question")
    def ask(question: str) -> str:
        """Docstring line."""
        return "a"

    ask("How do I reset my password?")
    assert only_run(store).goal_description == "How do I reset my password?"


def test_stream_id_and_the_default_tracker(store: MemoryStore) -> None:
    @dt.agent(stream_id="support-bot")
    def handle() -> None:
        return None

    handle()
    assert only_run(store).id.startswith("run_support-bot_")

    chosen = dt.DecisionTracker("chosen")
    set_default_tracker(chosen)
    try:

        @dt.agent()
        def other() -> None:
            return None

        other()
    finally:
        set_default_tracker(None)
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider) and provider.force_flush(10_000)
    assert sorted(s.run_id.split("_")[1] for s in store.list_runs()) == ["chosen", "support-bot"]


def test_methods_leave_the_receiver_out(store: MemoryStore) -> None:
    class Bot:
        @dt.agent()
        def handle(self, ticket: str) -> str:
            return ticket.upper()

    assert Bot().handle("t-1") == "T-1"
    run = only_run(store)
    assert run.input_data == {"ticket": "t-1"}
    assert run.output_data == {"result": "T-1"}


def test_async_and_generator_agents(store: MemoryStore) -> None:
    @dt.agent()
    async def answer(question: str) -> str:
        await asyncio.sleep(0)
        return "async answer"

    @dt.agent()
    def stream(question: str) -> Iterator[str]:
        yield "a"
        yield "b"
        return None

    assert asyncio.run(answer("q1")) == "async answer"
    assert list(stream("q2")) == ["a", "b"]
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider) and provider.force_flush(10_000)
    runs = [store.load_run(s.run_id) for s in store.list_runs()]
    by_input = {r.input_data["question"]: r for r in runs if r is not None}
    assert by_input["q1"].output_data == {"result": "async answer"}
    assert by_input["q2"].output_data == {"items": 2}


def test_arguments_that_do_not_bind_leave_the_error_to_the_call(store: MemoryStore) -> None:
    @dt.agent()
    def handle(ticket: str) -> str:
        return ticket

    with pytest.raises(TypeError):
        handle("a", "b", "c")  # type: ignore[call-arg]
    run = only_run(store)
    assert run.input_data == {}
    assert run.status.value == "failed"


def test_bad_configuration_raises_at_decoration() -> None:
    with pytest.raises(TypeError, match="exclude"):
        dt.agent(exclude="password")
    with pytest.raises(TypeError, match="record_input"):
        dt.agent(record_input="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stream_id"):
        dt.agent(stream_id="")
