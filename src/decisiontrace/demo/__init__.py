"""The demo workload: a support-ticket agent, recorded by the decorators alone.

``decisiontrace demo`` runs it; a soak benchmark can import :func:`run_demo` too. Each
ticket is a run toward the goal ``resolve-ticket`` through four nodes:

- ``classifier`` picks a category (billing, bug, howto, account) with a cheap model; a
  ticket whose top two categories are close gets a warning problem;
- ``retriever`` chooses a knowledge source (kb, search, llm); the knowledge base is read
  by blocking code in a thread pool (which chooses how many articles to use); a source
  that fails is reported and a fallback decision picks another;
- ``responder`` drafts a reply with a bigger model, or escalates when its confidence is
  low; a reply that fails the quality check, or a rate-limited model, fails the run;
- ``escalation`` picks a queue for escalated tickets (a backlog is a minor problem).

Decisions whose choice is the function's result are ``@decision`` functions; decisions
made up front and then acted on (retriever, responder) are recorded with
``tracker.decide`` and ``record_outcome``, so a failed action keeps its choice on record.
Every model call is a ``chat`` (or ``embeddings``) span with GenAI attributes and token
usage, and the stored outcomes carry those tokens. Dozens of tickets run at once as
asyncio tasks; the knowledge-base reads run on a few threads that carry each ticket's run
along (``ContextThreadPoolExecutor``).

Deterministic under a seed: every choice, confidence, failure and token count of a ticket
comes from generators seeded by ``(seed, ticket, step)``, never from the global ``random``
or from timing, so two demos with the same seed make the same decisions with the same
outcomes however the tickets interleave. Only the simulated latencies vary.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from decisiontrace import semconv as sc
from decisiontrace._context import ContextThreadPoolExecutor
from decisiontrace.decorators import decision, node
from decisiontrace.models import DecisionType
from decisiontrace.sampling import KeepEveryRunSampler
from decisiontrace.setup import configure
from decisiontrace.stores import RunStore, open_store
from decisiontrace.tracker import DecisionTracker

__all__ = ["GOAL_ID", "STREAM_ID", "DemoResult", "run_demo"]

GOAL_ID = "resolve-ticket"
GOAL_DESCRIPTION = "Resolve a customer support ticket"
STREAM_ID = "support-agent"

CATEGORIES = ("billing", "bug", "howto", "account")
SOURCES = ("kb", "search", "llm")

# GenAI semantic-convention names the package itself never writes (it writes no LLM
# spans), so semconv.py does not carry them; the demo plays the LLM instrumentation.
_GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
_GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
_SMALL_MODEL = "demo-small"
_LARGE_MODEL = "demo-large"
_EMBEDDING_MODEL = "demo-embed"

#: Called after each ticket with (tickets done, tickets in all).
Progress = Callable[[int, int], None]

_SUBJECTS = {
    "billing": ("I was charged twice this month", "Refund for my annual plan",
                "Invoice shows the wrong VAT number", "Card declined on renewal"),
    "bug": ("Export to CSV crashes the app", "Dashboard stays blank after login",
            "Sync fails with error 500", "Notifications arrive twice"),
    "howto": ("How do I invite my team?", "Where do I change the time zone?",
              "Can I schedule a weekly report?", "How to connect the Slack integration"),
    "account": ("Cannot reset my password", "Please delete my account",
                "Change the owner of our workspace", "Locked out after too many attempts"),
}  # fmt: skip

# How well each source serves each category (before per-ticket noise).
_SOURCE_FIT = {
    "billing": {"kb": 0.7, "search": 0.2, "llm": 0.3},
    "bug": {"kb": 0.3, "search": 0.8, "llm": 0.3},
    "howto": {"kb": 0.9, "search": 0.3, "llm": 0.5},
    "account": {"kb": 0.6, "search": 0.2, "llm": 0.4},
}
_SOURCE_TEXT = {
    "kb": ("Search the knowledge base", ["curated answers", "cheap"], ["may be outdated"]),
    "search": ("Search past tickets and the issue tracker", ["finds known bugs"],
               ["slow", "noisy results"]),
    "llm": ("Answer from the model's own knowledge", ["always answers"],
            ["may hallucinate", "costs tokens"]),
}  # fmt: skip
_QUEUES = {
    "tier2": ("Tier-2 support", {"billing": 0.3, "bug": 0.4, "howto": 0.8, "account": 0.7}),
    "billing_team": ("Billing specialists", {"billing": 0.9, "bug": 0.1, "howto": 0.1,
                                             "account": 0.3}),
    "engineering": ("Engineering on-call", {"billing": 0.1, "bug": 0.9, "howto": 0.2,
                                            "account": 0.2}),
}  # fmt: skip


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


# --- tickets and the pure plans derived from them -----------------------------------------


@dataclass(frozen=True)
class Ticket:
    """One support ticket; ``category`` is the truth the agent has to find."""

    number: int
    seed: int
    ticket_id: str
    category: str
    subject: str
    tier: str

    def rng(self, step: str) -> random.Random:
        """A generator for one step of this ticket, independent of every other one."""
        return random.Random(f"decisiontrace-demo/{self.seed}/{self.number}/{step}")

    def input_data(self) -> dict[str, Any]:
        return {"ticket_id": self.ticket_id, "subject": self.subject, "customer_tier": self.tier}


def make_ticket(seed: int, number: int) -> Ticket:
    """Ticket ``number`` of the demo with ``seed``."""
    rng = random.Random(f"decisiontrace-demo/{seed}/{number}/ticket")
    category = rng.choice(CATEGORIES)
    return Ticket(
        number=number,
        seed=seed,
        ticket_id=f"T-{number + 1:04d}",
        category=category,
        subject=rng.choice(_SUBJECTS[category]),
        tier=rng.choices(("free", "pro", "enterprise"), weights=(5, 3, 1))[0],
    )


def _normalized(scores: dict[str, float]) -> dict[str, float]:
    """Scores as confidences that sum to about one, rounded for people."""
    total = sum(scores.values())
    return {key: round(value / total, 2) for key, value in scores.items()}


def _ranked(confidences: dict[str, float]) -> list[str]:
    return sorted(confidences, key=lambda key: (-confidences[key], key))


@dataclass(frozen=True)
class _Plan:
    """What a node will decide and whether it works out: a pure function of its inputs."""

    options: list[dict[str, Any]]
    choice: str
    reasoning: str
    fails: bool
    input_tokens: int
    output_tokens: int


def _classifier_plan(ticket: Ticket) -> _Plan:
    rng = ticket.rng("classifier")
    scores = {
        c: math.exp(rng.gauss(0.0, 0.7) + (1.7 if c == ticket.category else 0.0))
        for c in CATEGORIES
    }
    confidences = _normalized(scores)
    best, second = _ranked(confidences)[:2]
    options = [
        {
            "id": c,
            "description": f"Route as a {c} ticket",
            "action_type": "route",
            "pros": [f"mentions {c} terms"] if confidences[c] >= 0.25 else [],
            "cons": [] if confidences[c] >= 0.25 else ["few matching terms"],
            "confidence": confidences[c],
        }
        for c in CATEGORIES
    ]
    return _Plan(
        options=options,
        choice=best,
        reasoning=f"{best} scored {confidences[best]:.2f}, next {second} {confidences[second]:.2f}",
        fails=confidences[best] - confidences[second] < 0.12,  # here: ambiguous
        input_tokens=rng.randint(250, 600),
        output_tokens=rng.randint(8, 30),
    )


def _retriever_plan(ticket: Ticket, category: str, exclude: tuple[str, ...]) -> _Plan:
    step = "retriever" if not exclude else "retriever-fallback"
    rng = ticket.rng(step)
    sources = [s for s in SOURCES if s not in exclude]
    scores = {s: max(0.05, _SOURCE_FIT[category][s] + rng.uniform(-0.25, 0.25)) for s in sources}
    confidences = _normalized(scores)
    ranked = _ranked(confidences)
    # Now and then the agent explores the second-best source.
    choice = ranked[1] if len(ranked) > 1 and rng.random() < 0.12 else ranked[0]
    fit = _SOURCE_FIT[ticket.category][choice]  # how good it really is for the ticket
    fail_chance = {"kb": 0.05, "search": 0.2, "llm": 0.12}[choice] + (1 - fit) * 0.25
    options = []
    for source in sources:
        description, pros, cons = _SOURCE_TEXT[source]
        options.append(
            {
                "id": source,
                "description": description,
                "action_type": "retrieve",
                "pros": pros,
                "cons": cons,
                "confidence": confidences[source],
            }
        )
    explored = choice != ranked[0]
    return _Plan(
        options=options,
        choice=choice,
        reasoning=(
            f"exploring {choice} instead of {ranked[0]}"
            if explored
            else f"{choice} fits {category} tickets best ({confidences[choice]:.2f})"
        ),
        fails=rng.random() < fail_chance,
        input_tokens=rng.randint(600, 1500) if choice == "llm" else rng.randint(20, 80),
        output_tokens=rng.randint(150, 400) if choice == "llm" else 0,
    )


def _articles_plan(ticket: Ticket) -> _Plan:
    rng = ticket.rng("articles")
    wanted = rng.choice((1, 3, 5))
    scores = {f"top{n}": (2.0 if n == wanted else 0.6) + rng.random() for n in (1, 3, 5)}
    confidences = _normalized(scores)
    options = [
        {
            "id": key,
            "description": f"Use the {key[3:]} best-matching articles",
            "action_type": "parameter",
            "action_params": {"articles": int(key[3:])},
            "pros": ["focused"] if key == "top1" else ["more coverage"],
            "cons": ["may miss context"] if key == "top1" else ["longer prompt"],
            "confidence": confidences[key],
        }
        for key in scores
    ]
    choice = _ranked(confidences)[0]
    return _Plan(options, choice, f"{choice} balances coverage and prompt size", False, 0, 0)


def _responder_plan(ticket: Ticket, category: str, source: str, fell_back: bool) -> _Plan:
    rng = ticket.rng("responder")
    quality = 0.15 + (0.35 if category == ticket.category else 0.0)
    quality += 0.4 * _SOURCE_FIT[ticket.category][source] - (0.1 if fell_back else 0.0)
    reply = min(0.97, max(0.05, round(quality + rng.uniform(-0.2, 0.2), 2)))
    options = [
        {
            "id": "reply",
            "description": "Send the drafted answer to the customer",
            "action_type": "respond",
            "pros": ["resolves the ticket now"],
            "cons": ["wrong answers annoy customers"],
            "confidence": reply,
        },
        {
            "id": "escalate",
            "description": "Hand the ticket to a person",
            "action_type": "delegate",
            "pros": ["a person checks it"],
            "cons": ["slower", "costs staff time"],
            "confidence": round(1 - reply, 2),
        },
    ]
    choice = "reply" if reply >= 0.5 else "escalate"
    # Stated confidence runs ahead of reality: a calibration chart worth looking at.
    fails = choice == "reply" and rng.random() > reply**1.5 + 0.1
    return _Plan(
        options=options,
        choice=choice,
        reasoning=f"draft confidence {reply:.2f} {'>=' if reply >= 0.5 else '<'} 0.50",
        fails=fails,
        input_tokens=rng.randint(800, 2400),
        output_tokens=rng.randint(120, 420),
    )


def _escalation_plan(ticket: Ticket, category: str) -> _Plan:
    rng = ticket.rng("escalation")
    scores = {q: fit[category] + rng.uniform(0, 0.2) for q, (_, fit) in _QUEUES.items()}
    confidences = _normalized(scores)
    options = [
        {
            "id": queue,
            "description": description,
            "action_type": "delegate",
            "pros": [f"handles {category}"] if confidences[queue] >= 0.4 else [],
            "cons": [] if confidences[queue] >= 0.4 else ["wrong specialty"],
            "confidence": confidences[queue],
        }
        for queue, (description, _) in _QUEUES.items()
    ]
    choice = _ranked(confidences)[0]
    return _Plan(options, choice, f"{choice} owns {category} tickets", False, 0, 0)


# --- the agent ---------------------------------------------------------------------------


@dataclass
class _Kit:
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


def _model_call(kit: _Kit, model: str, plan: _Plan, operation: str = "chat") -> Any:
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
    options=lambda kit, ticket: _classifier_plan(ticket).options,
    chosen=lambda result: result.choice,
    reasoning=lambda result: result.reasoning,
    decision_type=DecisionType.PATH_CHOICE,
)
async def classify(kit: _Kit, ticket: Ticket) -> _Choice:
    """Pick the ticket's category with a small model: the choice is the function's result."""
    plan = _classifier_plan(ticket)
    with _model_call(kit, _SMALL_MODEL, plan):  # nests under the decision span
        await kit.pause(1, 4)
        if _rate_limited(ticket, "classifier"):
            raise RateLimited(f"{_SMALL_MODEL}: 429 too many requests")
    return _Choice(plan.choice, plan.reasoning, {"ambiguous": plan.fails})


@decision(
    "Choose how many articles to use",
    options=lambda kit, ticket: _articles_plan(ticket).options,
    chosen=lambda result: result.choice,
    reasoning=lambda result: result.reasoning,
    decision_type=DecisionType.PARAMETER_CHOICE,
)
def read_knowledge_base(kit: _Kit, ticket: Ticket) -> _Choice:
    """Blocking knowledge-base client: runs on the thread pool, inside the ticket's run."""
    plan = _articles_plan(ticket)
    time.sleep(kit.timing.uniform(1, 3) / 1000)
    return _Choice(plan.choice, plan.reasoning, {"articles": int(plan.choice[3:])})


async def _act(
    kit: _Kit,
    intent: str,
    plan: _Plan,
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


def _fetch(kit: _Kit, ticket: Ticket, plan: _Plan) -> Callable[[], Awaitable[dict[str, Any]]]:
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
async def retrieve(kit: _Kit, ticket: Ticket, category: str) -> _Choice:
    """Pick the source most likely to answer this kind of ticket; fall back once."""
    plan = _retriever_plan(ticket, category, ())
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
        fallback = _retriever_plan(ticket, category, (exc.source,))
        return await _act(
            kit,
            "Fall back to another source",
            fallback,
            DecisionType.RETRY_STRATEGY,
            _fetch(kit, ticket, fallback),
        )


@node("responder")
async def respond(kit: _Kit, ticket: Ticket, category: str, source: _Choice) -> _Choice:
    """Draft a reply with the big model; send it if confident enough, otherwise escalate."""
    fell_back = source.choice != _retriever_plan(ticket, category, ()).choice
    plan = _responder_plan(ticket, category, source.choice, fell_back)

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
    options=lambda kit, ticket, category: _escalation_plan(ticket, category).options,
    chosen=lambda result: result.choice,
    reasoning=lambda result: result.reasoning,
    decision_type=DecisionType.DELEGATION,
)
async def escalate(kit: _Kit, ticket: Ticket, category: str) -> _Choice:
    """Hand the ticket to the team that owns its category."""
    plan = _escalation_plan(ticket, category)
    await kit.pause(1, 3)
    return _Choice(plan.choice, plan.reasoning)


def _last_failed_decision(kit: _Kit) -> str | None:
    run = kit.tracker.get_run()
    if run is None:
        return None
    for made in reversed(run.decisions):
        if made.outcome is not None and not made.outcome.success:
            return made.id
    return None


async def handle_ticket(kit: _Kit, ticket: Ticket) -> None:
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


# --- running it --------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What :func:`run_demo` did.

    Attributes:
        store_url: the store the runs were written to.
        seed: the seed used.
        run_ids: the run of each ticket, by ticket id (``T-0001``...).
        status_counts: stored runs by status.
        missing: ticket ids whose run is not in the store (should be empty).
        exported_to: the OTLP endpoint the spans went to, or None.
        seconds: wall-clock time of the workload and the flush.
    """

    store_url: str
    seed: int
    run_ids: dict[str, str]
    status_counts: dict[str, int]
    missing: list[str]
    exported_to: str | None
    seconds: float


def _export_settings() -> tuple[str | None, str]:
    """(endpoint, exporter): OTLP when an endpoint variable is set, else as the user says.

    Without any endpoint variable the SDK would default to localhost:4317 and retry
    against nothing, so the demo exports nowhere unless ``OTEL_TRACES_EXPORTER`` asks.
    """
    endpoint = None
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        value = os.environ.get(name, "").strip()
        if value:
            endpoint = value
            break
    chosen = os.environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if endpoint is not None:
        return endpoint, chosen or "otlp"
    return None, chosen or "none"


async def _work(kit: _Kit, tickets: list[Ticket], progress: Progress | None) -> None:
    done = 0

    async def one(ticket: Ticket) -> None:
        nonlocal done
        try:
            await handle_ticket(kit, ticket)
        except DemoFailure:
            pass  # the run records it as failed, which is the point
        finally:
            done += 1
            if progress is not None:
                progress(done, len(tickets))

    await asyncio.gather(*(one(ticket) for ticket in tickets))


def run_demo(
    store_url: str | os.PathLike[str] | RunStore | None = None,
    *,
    seed: int = 7,
    tickets: int = 60,
    threads: int = 4,
    progress: Progress | None = None,
) -> DemoResult:
    """Run the support-ticket agent on ``tickets`` tickets and store every run.

    Spans go through a tracer provider of their own (the global one is left alone) set up
    by :func:`decisiontrace.setup.configure`, so with ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set they are exported there too. Must not be
    called from a running event loop (it runs its own).

    Args:
        store_url: the store or its URL; default ``$DECISIONTRACE_STORE`` or the default store.
        seed: decides every choice and outcome; the same seed gives the same runs.
        tickets: how many tickets (runs); all of them run at once.
        threads: worker threads for the blocking knowledge-base reads.
        progress: called after each ticket with (done, total).

    Returns:
        A :class:`DemoResult`.

    Raises:
        ValueError: ``tickets`` or ``threads`` is below 1, or the store URL or an OTLP
            variable is invalid.
        StoreError: the store cannot be opened.
    """
    if isinstance(tickets, bool) or not isinstance(tickets, int) or tickets < 1:
        raise ValueError(f"tickets must be an int >= 1, got {tickets!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an int >= 1, got {threads!r}")
    store = open_store(store_url)
    url = store.url
    endpoint, exporter = _export_settings()
    resource = (
        Resource.create()
        if os.environ.get("OTEL_SERVICE_NAME")
        else Resource.create({SERVICE_NAME: "decisiontrace-demo"})
    )
    provider = TracerProvider(resource=resource, sampler=KeepEveryRunSampler())
    telemetry = configure(
        store=store,
        tracer_provider=provider,
        exporter=exporter,
        metrics_exporter=None if endpoint else "none",
    )
    started = time.monotonic()
    kit = _Kit(
        tracker=DecisionTracker(STREAM_ID, tracer_provider=provider),
        llm=provider.get_tracer("decisiontrace.demo.llm"),
        pool=ContextThreadPoolExecutor(max_workers=threads, thread_name_prefix="demo-kb"),
        timing=random.Random(),
    )
    try:
        asyncio.run(_work(kit, [make_ticket(seed, n) for n in range(tickets)], progress))
    finally:
        kit.pool.shutdown()
        telemetry.shutdown()  # stores every run, exports what is queued
        provider.shutdown()
    seconds = time.monotonic() - started
    counts: dict[str, int] = {}
    missing = []
    try:
        # The processor closed the store when it shut down; it reopens on use.
        for ticket_id, run_id in sorted(kit.run_ids.items()):
            summary = store.load_summary(run_id)
            if summary is None:
                missing.append(ticket_id)
            else:
                counts[summary.status.value] = counts.get(summary.status.value, 0) + 1
    finally:
        if store is not store_url:
            store.close()
    return DemoResult(
        store_url=url,
        seed=seed,
        run_ids=dict(sorted(kit.run_ids.items())),
        status_counts=dict(sorted(counts.items())),
        missing=missing,
        exported_to=endpoint,
        seconds=seconds,
    )
