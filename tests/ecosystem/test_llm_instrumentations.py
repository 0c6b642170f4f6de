"""The OpenAI and LangChain instrumentations agents really run, with LangGraph: results
pass through untouched and each call's tokens are stored once, for the right decision,
as the fake server reported them, in the store and on the exported spans alike.

Each combination of instrumentations runs ``_agent.py`` in a process of its own (they
patch the same methods); its result is shared by the tests of that combination.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.ecosystem._openai_server import (
    CHAT_USAGE,
    EMBEDDING_USAGE,
    STREAM_PIECES,
    STREAM_USAGE,
    FakeOpenAI,
)
from tests.ecosystem.conftest import needs, run_agent

CHAT = CHAT_USAGE["total_tokens"]  # 11 + 7
STREAM = STREAM_USAGE["total_tokens"]  # 13 + 9
EMBEDDING = EMBEDDING_USAGE["total_tokens"]

#: The module each instrumentation is imported from.
MODULES = {
    "openai-v2": "opentelemetry.instrumentation.openai_v2",
    "openllmetry-openai": "opentelemetry.instrumentation.openai",
    "openinference-openai": "openinference.instrumentation.openai",
    "openinference-langchain": "openinference.instrumentation.langchain",
    "openllmetry-langchain": "opentelemetry.instrumentation.langchain",
}
OPENAI_INSTRUMENTATIONS = ["openai-v2", "openllmetry-openai", "openinference-openai"]

_results: dict[tuple[str, ...], dict[str, Any]] = {}


def result(server: FakeOpenAI, scenario: str, *instrumentations: str) -> dict[str, Any]:
    """The scenario's result with these instrumentations (run once per module)."""
    needs("openai", *(MODULES[name] for name in instrumentations))
    if scenario != "openai_calls":
        needs("langchain_openai", "langgraph")
    key = (scenario, *instrumentations)
    if key not in _results:
        _results[key] = run_agent(scenario, server, *instrumentations)
    return _results[key]


def assert_exported_equals_stored(report: dict[str, Any]) -> None:
    assert report["exported_decisions"] == report["decisions"]
    assert report["exported_total"] == report["total"]


# --- results pass through ---------------------------------------------------------------


@pytest.mark.parametrize("instrumentation", [None, *OPENAI_INSTRUMENTATIONS])
def test_a_decision_returning_an_openai_stream_hands_the_caller_every_chunk(
    openai_server: FakeOpenAI, instrumentation: str | None
) -> None:
    names = () if instrumentation is None else (instrumentation,)
    got = result(openai_server, "openai_calls", *names)
    assert got["pieces"] == STREAM_PIECES
    assert got["async_pieces"] == STREAM_PIECES
    if instrumentation is None:
        assert got["stream_type"] == "openai.Stream"


# --- tokens ------------------------------------------------------------------------------


@pytest.mark.parametrize("instrumentation", OPENAI_INSTRUMENTATIONS)
def test_openai_calls_are_stored_once_per_decision_and_run(
    openai_server: FakeOpenAI, instrumentation: str
) -> None:
    route = result(openai_server, "openai_calls", instrumentation)["route"]
    assert route["decisions"] == [CHAT + EMBEDDING]
    assert route["total"] == CHAT + EMBEDDING
    assert_exported_equals_stored(route)


@pytest.mark.parametrize("instrumentation", OPENAI_INSTRUMENTATIONS)
def test_a_stream_read_after_the_run_was_stored_updates_the_stored_run(
    openai_server: FakeOpenAI, instrumentation: str
) -> None:
    got = result(openai_server, "openai_calls", instrumentation)
    assert got["stream_before_reading"]["total"] == 0  # stored before the stream was read
    assert got["stream"]["decisions"] == [STREAM]
    assert got["stream"]["total"] == STREAM


@pytest.mark.parametrize(
    "instrumentations",
    [
        ("openinference-langchain", "openinference-openai"),
        ("openllmetry-langchain", "openllmetry-openai"),
    ],
    ids=["openinference", "openllmetry"],
)
def test_langchain_over_openai_instrumentation_counts_the_call_once(
    openai_server: FakeOpenAI, instrumentations: tuple[str, ...]
) -> None:
    chain = result(openai_server, "langchain_call", *instrumentations)["chain"]
    assert chain["decisions"] == [CHAT]
    assert chain["total"] == CHAT
    assert_exported_equals_stored(chain)


@pytest.mark.parametrize(
    "instrumentations",
    [
        ("openinference-langchain",),
        ("openllmetry-langchain",),
        ("openinference-langchain", "openinference-openai"),
    ],
    ids=["openinference", "openllmetry", "openinference-over-openai"],
)
def test_langchain_calls_in_langgraph_nodes_count_for_the_decision_or_the_run(
    openai_server: FakeOpenAI, instrumentations: tuple[str, ...]
) -> None:
    # The answer node's call is made inside the decision (its LLM span hangs off
    # LangChain's node span, beside the decision span); the summarize node's call is
    # made outside any decision and counts for the run only.
    graph = result(openai_server, "langgraph_nodes", *instrumentations)["graph"]
    assert graph["decisions"] == [CHAT]
    assert graph["total"] == 2 * CHAT
    assert_exported_equals_stored(graph)


@pytest.mark.parametrize(
    "instrumentations",
    [("openinference-langchain", "openinference-openai"), ("openllmetry-langchain",)],
    ids=["openinference-over-openai", "openllmetry"],
)
def test_a_graph_made_a_run_by_the_langgraph_integration_counts_the_same(
    openai_server: FakeOpenAI, instrumentations: tuple[str, ...]
) -> None:
    needs("decisiontrace.integrations.langgraph")
    graph = result(openai_server, "langgraph_instrumented", *instrumentations)["graph"]
    assert graph["decisions"] == [CHAT]
    assert graph["total"] == 2 * CHAT
    assert_exported_equals_stored(graph)
