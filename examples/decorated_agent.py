"""A support-ticket agent recorded by decorators alone: no hand-written decide() calls.

    python examples/decorated_agent.py

Each ticket is a run (``@agent``) of three nodes: classify, choose a knowledge source,
answer. Each node makes one ``@decision``; the answer node calls a (fake) LLM whose span
carries ``gen_ai.usage.*`` token counts, which end up in the stored decision outcome.
The answer node fails now and then (seeded), failing its run. 50 tickets run at once
on one asyncio loop; runs go to the default store (``$DECISIONTRACE_STORE`` if set).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import datetime

from opentelemetry.sdk.trace import TracerProvider

import decisiontrace as dt

TICKETS = 50
CATEGORIES = ["billing", "bug", "howto"]
SOURCES = {
    "billing": ["invoices_db", "faq"],
    "bug": ["issue_tracker", "runbook", "faq"],
    "howto": ["docs", "faq"],
}

provider = TracerProvider()
tracker = dt.DecisionTracker("support", tracer_provider=provider)
llm_tracer = provider.get_tracer("fake-llm")


@dataclass
class Ticket:
    number: int
    text: str
    rng: random.Random


@dataclass
class Answer:
    text: str
    input_tokens: int
    output_tokens: int


class AnswerFailed(Exception):
    """The model timed out."""


@dt.node("classifier")
@dt.decision(
    "Classify the ticket",
    options=[{"id": c, "description": f"{c} question", "action_type": "route"} for c in CATEGORIES],
    reasoning=lambda category: f"keywords matched {category}",
    decision_type=dt.DecisionType.PATH_CHOICE,
)
async def classify(ticket: Ticket) -> str:
    await asyncio.sleep(ticket.rng.random() / 100)
    for category in CATEGORIES:
        if category in ticket.text:
            return category
    return "howto"


@dt.node("source_selector")
@dt.decision(
    "Choose a knowledge source",
    options=lambda ticket, category: SOURCES[category],  # plain ids: action type "unknown"
    decision_type=dt.DecisionType.TOOL_SELECTION,
)
async def choose_source(ticket: Ticket, category: str) -> str:
    await asyncio.sleep(ticket.rng.random() / 100)
    return ticket.rng.choice(SOURCES[category])


@dt.node("responder")
@dt.decision(
    "Answer the ticket",
    options=["draft_reply"],
    chosen=lambda answer: "draft_reply",
)
async def answer(ticket: Ticket, source: str) -> Answer:
    with llm_tracer.start_as_current_span("chat fake-model") as span:  # nests in the decision
        await asyncio.sleep(ticket.rng.random() / 50)
        if ticket.rng.random() < 0.15:
            raise AnswerFailed(f"model timed out answering ticket {ticket.number}")
        result = Answer(f"See {source}.", len(ticket.text) * 3, 40)
        span.set_attribute("gen_ai.usage.input_tokens", result.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", result.output_tokens)
    return result


@dt.agent(goal_id="resolve-ticket", tracker=tracker)
async def handle(ticket: Ticket) -> str:
    """Resolve one support ticket."""
    category = await classify(ticket)
    source = await choose_source(ticket, category)
    return (await answer(ticket, source)).text


async def main() -> None:
    rng = random.Random(7)
    tickets = [
        Ticket(n, f"ticket {n} about {rng.choice(CATEGORIES)}", random.Random(n))
        for n in range(TICKETS)
    ]
    results = await asyncio.gather(*(handle(t) for t in tickets), return_exceptions=True)
    failed = sum(isinstance(r, AnswerFailed) for r in results)
    print(f"{len(results)} tickets handled, {failed} answers failed")


if __name__ == "__main__":
    store = dt.open_store()
    url = store.url
    provider.add_span_processor(dt.RunRecordProcessor(store))
    started = datetime.now()
    asyncio.run(main())
    provider.shutdown()  # flushes every run into the store

    with dt.open_store(url) as reader:
        runs = reader.list_runs(goal_id="resolve-ticket", since=started)
    by_status: dict[str, int] = {}
    for run in runs:
        by_status[run.status.value] = by_status.get(run.status.value, 0) + 1
    print(f"{len(runs)} runs stored in {url}: {dict(sorted(by_status.items()))}")
