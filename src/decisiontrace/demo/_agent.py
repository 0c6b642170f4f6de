"""The demo agent: its nodes and decisions, the LLM spans it makes, and the failures it
runs into on purpose.

Decisions whose choice is the function's result are ``@decision`` functions; decisions
made up front and then acted on (retriever, responder) are recorded with
``tracker.decide`` and ``record_outcome``, so a failed action keeps its choice on record.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Tracer

from decisiontrace.decorators import decision, node
from decisiontrace.demo._tickets import (
    Plan,
    Ticket,
    articles_plan,
    classifier_plan,
    escalation_plan,
    responder_plan,
    retriever_plan,
)
from decisiontrace.models import DecisionType
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.tracking._context import ContextThreadPoolExecutor
from decisiontrace.tracking.tracker import DecisionTracker

__all__ = [
    "GOAL_DESCRIPTION",
    "GOAL_ID",
    "STREAM_ID",
    "DemoFailure",
    "Kit",
    "RateLimited",
    "ReplyRejected",
    "SourceUnavailable",
    "classify",
    "escalate",
    "handle_ticket",
    "read_knowledge_base",
    "respond",
    "retrieve",
]

GOAL_ID = "resolve-ticket"
GOAL_DESCRIPTION = "Resolve a customer support ticket"
STREAM_ID = "support-agent"

# GenAI semantic-convention names the package itself never writes (it writes no LLM
# spans), so semconv.py does not carry them; the demo plays the LLM instrumentation.
_GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
_GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
_SMALL_MODEL = "demo-small"
_LARGE_MODEL = "demo-large"
_EMBEDDING_MODEL = "demo-embed"


# --- the outcome the agent cannot see coming: demo failures -----------------------------


class DemoFailure(Exception):
    """Base of the failures the demo agent runs into on purpose."""


class SourceUnavailable(DemoFailure):
    """A knowledge source failed or found nothing."""

    def __init__(self, message: str, source: str) -> None:
        super().__init__(message)
        self.source = source


class ReplyRejected(DemoFailure):
    """The drafted reply failed the quality check."""


class RateLimited(DemoFailure):
    """The model provider refused the call."""


# --- the agent ---------------------------------------------------------------------------


@dataclass
class Kit:
    """What the nodes need besides the ticket."""

    tracker: DecisionTracker
    llm: Tracer
    pool: ContextThreadPoolExecutor
    timing: random.Random  # simulated latencies only: never decides anything
    run_ids: dict[str, str] = field(default_factory=dict)

    async def pause(self, low_ms: float, high_ms: float) -> None:
        await asyncio.sleep(self.timing.uniform(low_ms, high_ms) / 1000)


@dataclass(frozen=True)
class _Choice:
    """What a decorated node returns: the chosen option and why."""

    choice: str
    reasoning: str
    detail: dict[str, Any] = field(default_factory=dict)


def _model_call(kit: Kit, model: str, plan: Plan, operation: str = "chat") -> Any:
    """The span an LLM instrumentation would make around one model call."""
    attributes: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: operation,
        _GEN_AI_REQUEST_MODEL: model,
        _GEN_AI_PROVIDER_NAME: "demo",
        sc.GEN_AI_USAGE_INPUT_TOKENS: plan.input_tokens,
    }
    if plan.output_tokens:
        attributes[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = plan.output_tokens
    return kit.llm.start_as_current_span(f"{operation} {model}", attributes=attributes)


def _rate_limited(ticket: Ticket, step: str) -> bool:
    return ticket.rng(f"{step}-ratelimit").random() < 0.02


@node("classifier")
@decision(
    "Classify the ticket",
    options=lambda kit, ticket: classifier_plan(ticket).options,
    chosen=lambda result: result.choice,
    reasoning=lambda result: result.reasoning,
    decision_type=DecisionType.PATH_CHOICE,
)
async def classify(kit: Kit, ticket: Ticket) -> _Choice:
    """Pick the ticket's category with a small model: the choice is the function's result."""
    plan = classifier_plan(ticket)
    with _model_call(kit, _SMALL_MODEL, plan):  # nests under the decision span
        await kit.pause(1, 4)
        if _rate_limited(ticket, "classifier"):
            raise RateLimited(f"{_SMALL_MODEL}: 429 too many requests")
    return _Choice(plan.choice, plan.reasoning, {"ambiguous": plan.fails})


@decision(
    "Choose how many articles to use",
    options=lambda kit, ticket: articles_plan(ticket).options,
    chosen=lambda result: result.choice,
    reasoning=lambda result: result.reasoning,
    decision_type=DecisionType.PARAMETER_CHOICE,
)
def read_knowledge_base(kit: Kit, ticket: Ticket) -> _Choice:
    """Blocking knowledge-base client: runs on the thread pool, inside the ticket's run."""
    plan = articles_plan(ticket)
    time.sleep(kit.timing.uniform(1, 3) / 1000)
    return _Choice(plan.choice, plan.reasoning, {"articles": int(plan.choice[3:])})


async def _act(
    kit: Kit,
    intent: str,
    plan: Plan,
    decision_type: DecisionType,
    action: Callable[[], Awaitable[dict[str, Any]]],
) -> _Choice:
    """Choose first, then act: the decision is recorded with its choice before the action
    runs, and its outcome (failed when the action raises) once it is done.

    ``@decision`` fits functions whose result is the choice; when the choice is made up
    front and the action after it may fail, the choice must be on record either way,
    which these two tracker calls do. The model's tokens are passed with the outcome
    (the model spans are siblings of this decision span, so the processor does not add
    them a second time).
    """
    tracker = kit.tracker
    decision_id = tracker.decide(
        intent=intent,
        options=plan.options,
        chosen=plan.choice,
        reasoning=plan.reasoning,
        decision_type=decision_type,
    )
    started = time.perf_counter()
    usage: dict[str, Any] = {"input_tokens": plan.input_tokens or None}
    usage["output_tokens"] = plan.output_tokens or None
    try:
        result = await action()
    except DemoFailure as exc:
        tracker.record_outcome(
            decision_id=decision_id,
            success=False,
            error=str(exc),
            error_type=type(exc).__name__,
            latency_ms=int((time.perf_counter() - started) * 1000),
            **usage,
        )
        raise
    tracker.record_outcome(
        decision_id=decision_id,
        success=True,
        result=result,
        summary=f"{plan.choice} done",
        latency_ms=int((time.perf_counter() - started) * 1000),
        **usage,
    )
    return _Choice(plan.choice, plan.reasoning, result)


def _fetch(kit: Kit, ticket: Ticket, plan: Plan) -> Callable[[], Awaitable[dict[str, Any]]]:
    async def fetch() -> dict[str, Any]:
        detail: dict[str, Any] = {"source": plan.choice}
        if plan.choice == "kb":
            loop = asyncio.get_running_loop()
            articles = await loop.run_in_executor(kit.pool, read_knowledge_base, kit, ticket)
            detail.update(articles.detail)
        elif plan.choice == "search":
            with _model_call(kit, _EMBEDDING_MODEL, plan, "embeddings"):
                await kit.pause(2, 6)
        else:
            with _model_call(kit, _LARGE_MODEL, plan):
                await kit.pause(2, 6)
        if plan.fails:
            reason = {"kb": "no article matched", "search": "search timed out after 5 s",
                      "llm": "answer failed the grounding check"}[plan.choice]  # fmt: skip
            raise SourceUnavailable(f"{plan.choice}: {reason}", plan.choice)
        return detail

    return fetch


@node("retriever")
async def retrieve(kit: Kit, ticket: Ticket, category: str) -> _Choice:
    """Pick the source most likely to answer this kind of ticket; fall back once."""
    plan = retriever_plan(ticket, category, ())
    try:
        return await _act(
            kit,
            "Choose a knowledge source",
            plan,
            DecisionType.TOOL_SELECTION,
            _fetch(kit, ticket, plan),
        )
    except SourceUnavailable as exc:
        kit.tracker.report_problem(
            severity="warning",
            description=f"source {exc}",
            decision_id=_last_failed_decision(kit),
            suggested_fix="check the source's health before choosing it",
        )
        fallback = retriever_plan(ticket, category, (exc.source,))
        return await _act(
            kit,
            "Fall back to another source",
            fallback,
            DecisionType.RETRY_STRATEGY,
            _fetch(kit, ticket, fallback),
        )


@node("responder")
async def respond(kit: Kit, ticket: Ticket, category: str, source: _Choice) -> _Choice:
    """Draft a reply with the big model; send it if confident enough, otherwise escalate."""
    fell_back = source.choice != retriever_plan(ticket, category, ()).choice
    plan = responder_plan(ticket, category, source.choice, fell_back)

    async def answer() -> dict[str, Any]:
        with _model_call(kit, _LARGE_MODEL, plan):
            await kit.pause(3, 8)
            if _rate_limited(ticket, "responder"):
                raise RateLimited(f"{_LARGE_MODEL}: 429 too many requests")
        if plan.fails:
            raise ReplyRejected("quality check: the reply does not answer the question asked")
        return {"action": plan.choice}

    return await _act(kit, "Reply or escalate", plan, DecisionType.PATH_CHOICE, answer)


@node("escalation")
@decision(
    "Pick an escalation queue",
    options=lambda kit, ticket, category: escalation_plan(ticket, category).options,
    chosen=lambda result: result.choice,
    reasoning=lambda result: result.reasoning,
    decision_type=DecisionType.DELEGATION,
)
async def escalate(kit: Kit, ticket: Ticket, category: str) -> _Choice:
    """Hand the ticket to the team that owns its category."""
    plan = escalation_plan(ticket, category)
    await kit.pause(1, 3)
    return _Choice(plan.choice, plan.reasoning)


def _last_failed_decision(kit: Kit) -> str | None:
    run = kit.tracker.get_run()
    if run is None:
        return None
    for made in reversed(run.decisions):
        if made.outcome is not None and not made.outcome.success:
            return made.id
    return None


async def handle_ticket(kit: Kit, ticket: Ticket) -> None:
    """One run: classify, retrieve (with a fallback), respond, maybe escalate.

    A failure that escapes (a rejected reply, a rate limit, a fallback that fails too)
    ends the run as failed, with the error as a critical problem.
    """
    tracker = kit.tracker
    async with tracker.run(GOAL_ID, GOAL_DESCRIPTION, ticket.input_data()) as run:
        kit.run_ids[ticket.ticket_id] = run.run_id
        classified = await classify(kit, ticket)
        category = classified.choice
        if classified.detail["ambiguous"]:
            tracker.report_problem(
                severity="warning",
                description=f"{ticket.ticket_id} is ambiguous: {classified.reasoning}",
                root_cause="the ticket text matches several categories",
                suggested_fix="ask the customer one clarifying question",
            )
        source = await retrieve(kit, ticket, category)
        answer = await respond(kit, ticket, category, source)
        run.output_data = {"category": category, "source": source.choice, "action": answer.choice}
        if answer.choice == "escalate":
            queue = (await escalate(kit, ticket, category)).choice
            run.output_data["queue"] = queue
            if ticket.rng("escalation-backlog").random() < 0.2:
                tracker.report_problem(
                    severity="minor", description=f"queue {queue} is over its response SLA"
                )
