"""The demo's tickets, and the plans derived from them: what each node will decide.

Deterministic under a seed: every choice, confidence, failure and token count of a ticket
comes from generators seeded by ``(seed, ticket, step)``, never from the global ``random``
or from timing, so two demos with the same seed make the same decisions with the same
outcomes however the tickets interleave.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CATEGORIES",
    "SOURCES",
    "Plan",
    "Ticket",
    "articles_plan",
    "classifier_plan",
    "escalation_plan",
    "make_ticket",
    "responder_plan",
    "retriever_plan",
]

CATEGORIES = ("billing", "bug", "howto", "account")
SOURCES = ("kb", "search", "llm")

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
class Plan:
    """What a node will decide and whether it works out: a pure function of its inputs."""

    options: list[dict[str, Any]]
    choice: str
    reasoning: str
    fails: bool
    input_tokens: int
    output_tokens: int


def classifier_plan(ticket: Ticket) -> Plan:
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
    return Plan(
        options=options,
        choice=best,
        reasoning=f"{best} scored {confidences[best]:.2f}, next {second} {confidences[second]:.2f}",
        fails=confidences[best] - confidences[second] < 0.12,  # here: ambiguous
        input_tokens=rng.randint(250, 600),
        output_tokens=rng.randint(8, 30),
    )


def retriever_plan(ticket: Ticket, category: str, exclude: tuple[str, ...]) -> Plan:
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
    return Plan(
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


def articles_plan(ticket: Ticket) -> Plan:
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
    return Plan(options, choice, f"{choice} balances coverage and prompt size", False, 0, 0)


def responder_plan(ticket: Ticket, category: str, source: str, fell_back: bool) -> Plan:
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
    return Plan(
        options=options,
        choice=choice,
        reasoning=f"draft confidence {reply:.2f} {'>=' if reply >= 0.5 else '<'} 0.50",
        fails=fails,
        input_tokens=rng.randint(800, 2400),
        output_tokens=rng.randint(120, 420),
    )


def escalation_plan(ticket: Ticket, category: str) -> Plan:
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
    return Plan(options, choice, f"{choice} owns {category} tickets", False, 0, 0)
