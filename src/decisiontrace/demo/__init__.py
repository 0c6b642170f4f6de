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

The package in three parts: :mod:`._tickets` (the tickets and the pure plans of what
each node decides), :mod:`._agent` (the nodes, their LLM spans and failures) and
:mod:`._runner` (:func:`run_demo`: all tickets at once, configured, exported, checked).
What ``decisiontrace demo`` prints is rendered by :mod:`decisiontrace.cli.views`.
"""

from __future__ import annotations

# The names this module had before it became a package; "X as X" marks a re-export.
from decisiontrace.demo._agent import GOAL_DESCRIPTION as GOAL_DESCRIPTION
from decisiontrace.demo._agent import GOAL_ID as GOAL_ID
from decisiontrace.demo._agent import STREAM_ID as STREAM_ID
from decisiontrace.demo._agent import DemoFailure as DemoFailure
from decisiontrace.demo._agent import RateLimited as RateLimited
from decisiontrace.demo._agent import ReplyRejected as ReplyRejected
from decisiontrace.demo._agent import SourceUnavailable as SourceUnavailable
from decisiontrace.demo._agent import classify as classify
from decisiontrace.demo._agent import escalate as escalate
from decisiontrace.demo._agent import handle_ticket as handle_ticket
from decisiontrace.demo._agent import read_knowledge_base as read_knowledge_base
from decisiontrace.demo._agent import respond as respond
from decisiontrace.demo._agent import retrieve as retrieve
from decisiontrace.demo._runner import DemoResult as DemoResult
from decisiontrace.demo._runner import Progress as Progress
from decisiontrace.demo._runner import _export_settings as _export_settings
from decisiontrace.demo._runner import run_demo as run_demo
from decisiontrace.demo._tickets import CATEGORIES as CATEGORIES
from decisiontrace.demo._tickets import SOURCES as SOURCES
from decisiontrace.demo._tickets import Ticket as Ticket
from decisiontrace.demo._tickets import make_ticket as make_ticket

__all__ = ["GOAL_ID", "STREAM_ID", "DemoResult", "run_demo"]
