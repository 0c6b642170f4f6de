"""An agent run in a process of its own, against the real packages and the fake server.

Usage: ``python _agent.py SCENARIO BASE_URL [INSTRUMENTATION ...]``. It sets up an SDK
provider with a RunRecordProcessor (memory store) and an in-memory exporter, turns on
the named instrumentations, runs the scenario and prints one JSON object: per run, the
stored tokens (per decision and in total) and those on the exported spans, plus what
the scenario's caller received. Instrumentations patch the same methods globally, so
each combination runs in its own process.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypedDict

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import decisiontrace as dt
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Where does this ticket go?"}]


def _openai_v2(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)


def _openllmetry_openai(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)


def _openinference_openai(provider: TracerProvider) -> None:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    OpenAIInstrumentor().instrument(tracer_provider=provider)


def _openinference_langchain(provider: TracerProvider) -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor

    LangChainInstrumentor().instrument(tracer_provider=provider)


def _openllmetry_langchain(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    LangchainInstrumentor().instrument(tracer_provider=provider)


INSTRUMENTATIONS: dict[str, Callable[[TracerProvider], None]] = {
    "openai-v2": _openai_v2,
    "openllmetry-openai": _openllmetry_openai,
    "openinference-openai": _openinference_openai,
    "openinference-langchain": _openinference_langchain,
    "openllmetry-langchain": _openllmetry_langchain,
}


class Agent:
    def __init__(self, instrumentations: list[str]) -> None:
        self.store = MemoryStore()
        self.processor = dt.RunRecordProcessor(self.store, flush_interval=0.02)
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        for name in instrumentations:
            INSTRUMENTATIONS[name](self.provider)
        self.instrumented = bool(instrumentations)
        self.tracker = dt.DecisionTracker("ecosystem", tracer_provider=self.provider)

    def report(self, run_id: str, wait_for_tokens: bool = False) -> dict[str, Any]:
        """What the store and the exported spans say about one run's tokens."""
        deadline = time.monotonic() + (10 if wait_for_tokens else 0)
        while True:
            assert self.processor.force_flush(10_000)
            run = self.store.load_run(run_id)
            assert run is not None, run_id
            if run.metrics.total_tokens or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        exported = [
            dict(s.attributes or {})
            for s in self.exporter.get_finished_spans()
            if (s.attributes or {}).get(sc.RUN_ID) == run_id
        ]
        return {
            "decisions": [d.outcome.tokens_used if d.outcome else None for d in run.decisions],
            "total": run.metrics.total_tokens,
            "exported_decisions": [
                a.get(sc.OUTCOME_TOKENS)
                for a in sorted(exported, key=lambda a: str(a.get(sc.DECISION_ID)))
                if a.get(sc.SPAN_KIND) == sc.KIND_DECISION
            ],
            "exported_total": next(
                (a.get(sc.RUN_TOTAL_TOKENS) for a in exported if a.get(sc.SPAN_KIND) == "run"),
                None,
            ),
        }


def openai_calls(agent: Agent, base_url: str) -> dict[str, Any]:
    """A decision making a chat call and an embeddings call; one returning a stream."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)

    @dt.decision("route the ticket", tracker=agent.tracker)
    def route() -> str:
        client.embeddings.create(model="text-embedding-3-small", input="the ticket")
        answer = client.chat.completions.create(model=MODEL, messages=MESSAGES)  # type: ignore[arg-type]
        return str(answer.choices[0].message.content)

    @dt.decision("answer in a stream", tracker=agent.tracker)
    def stream_answer() -> Any:
        return client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )

    async_client = openai.AsyncOpenAI(base_url=base_url, api_key="test", max_retries=0)

    @dt.decision("answer in an async stream", tracker=agent.tracker)
    async def async_stream_answer() -> Any:
        return await async_client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )

    async def read_async_stream() -> list[str]:
        with agent.tracker.run("async stream"):
            stream = await async_stream_answer()
        return [
            c.choices[0].delta.content
            async for c in stream
            if c.choices and c.choices[0].delta.content
        ]

    with agent.tracker.run("route") as routed:
        routed_to = route()
    with agent.tracker.run("stream") as streamed:
        stream = stream_answer()
    stored_before_reading = agent.report(streamed.run_id)
    # The caller reads the stream after the run was stored: every chunk must be there.
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    async_pieces = asyncio.run(read_async_stream())
    return {
        "async_pieces": async_pieces,
        "routed_to": routed_to,
        "route": agent.report(routed.run_id),
        "stream_type": f"{type(stream).__module__}.{type(stream).__qualname__}",
        "pieces": pieces,
        "stream_before_reading": stored_before_reading,
        # Uninstrumented, no tokens will come: no need to wait for them.
        "stream": agent.report(streamed.run_id, wait_for_tokens=agent.instrumented),
    }


def langchain_call(agent: Agent, base_url: str) -> dict[str, Any]:
    """A decision invoking langchain-openai's ChatOpenAI."""
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=MODEL, base_url=base_url, api_key="test", max_retries=0)  # type: ignore[arg-type]

    @dt.decision("answer", tracker=agent.tracker)
    def answer() -> str:
        return str(llm.invoke("Where does this ticket go?").content)

    with agent.tracker.run("chain") as run:
        answered = answer()
    return {"answer": answered, "chain": agent.report(run.run_id)}


class _State(TypedDict):
    question: str
    answer: str
    summary: str


def _graph(agent: Agent, base_url: str) -> Any:
    """A LangGraph graph: one node makes a decision that calls the LLM, the next node
    calls the LLM outside any decision (its tokens count for the run only)."""
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, StateGraph

    llm = ChatOpenAI(model=MODEL, base_url=base_url, api_key="test", max_retries=0)  # type: ignore[arg-type]

    @dt.decision("answer the ticket", tracker=agent.tracker)
    def answer(question: str) -> str:
        return str(llm.invoke(question).content)

    def answer_node(state: _State) -> dict[str, str]:
        return {"answer": answer(state["question"])}

    def summarize_node(state: _State) -> dict[str, str]:
        return {"summary": str(llm.invoke(f"Summarize: {state['answer']}").content)}

    builder = StateGraph(_State)
    builder.add_node("answer", answer_node)
    builder.add_node("summarize", summarize_node)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", "summarize")
    builder.add_edge("summarize", END)
    return builder.compile()


def langgraph_nodes(agent: Agent, base_url: str) -> dict[str, Any]:
    """The graph invoked inside ``tracker.run``."""
    graph = _graph(agent, base_url)
    with agent.tracker.run("graph") as run:
        state = graph.invoke(
            {"question": "Where does this ticket go?", "answer": "", "summary": ""}
        )
    return {"answer": state["answer"], "graph": agent.report(run.run_id)}


def langgraph_instrumented(agent: Agent, base_url: str) -> dict[str, Any]:
    """The graph made a run by decisiontrace's LangGraph integration, with no wrapper."""
    from decisiontrace.integrations import langgraph as dt_langgraph

    graph = _graph(agent, base_url)
    dt_langgraph.instrument(graph, tracker=agent.tracker)
    state = graph.invoke({"question": "Where does this ticket go?", "answer": "", "summary": ""})
    assert agent.processor.force_flush(10_000)
    [summary] = agent.store.list_runs()
    return {"answer": state["answer"], "graph": agent.report(summary.run_id)}


SCENARIOS: dict[str, Callable[[Agent, str], dict[str, Any]]] = {
    "langgraph_instrumented": langgraph_instrumented,
    "openai_calls": openai_calls,
    "langchain_call": langchain_call,
    "langgraph_nodes": langgraph_nodes,
}


def main() -> None:
    scenario, base_url, *instrumentations = sys.argv[1:]
    agent = Agent(instrumentations)
    result = SCENARIOS[scenario](agent, base_url)
    agent.provider.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
