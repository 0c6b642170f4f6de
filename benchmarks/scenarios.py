"""Benchmark scenarios beyond the 10-decision runs of run.py.

- raw_light: the lighter floor of issue #16 — a root span and 10 child spans, the
  decision's fields as typed attributes set one by one, the options as one JSON string,
  a BatchSpanProcessor with a no-op exporter. (run.py's ``raw`` sets the very ~20
  attributes the tracker writes, in one mapping: the heavier floor.)
- peers: a decorated call in a loop against a bare SDK span with 8 attributes through a
  SimpleSpanProcessor and a no-op exporter; decisiontrace's decisions inside one open
  run of 1,000 and of 10,000 decisions, ``@decision`` and ``decide`` +
  ``record_outcome``, with the RunRecordProcessor on SQLite and the same simple export.
  Peer packages are measured only when already installed (none is a dependency).
  Peers and long runs are timed with ``time.thread_time`` on the caller's thread: the
  CPU a call costs the agent, immune to other load on the machine (the writer thread's
  CPU is in run.py's end-to-end measure).
- long runs: µs per decision in runs of 10 and of 100,000 decisions, and the bytes an
  open run holds per decision (tracemalloc; the tracker's live view and the processor's
  pending spans together).
- startup: ``python -X importtime -c "import decisiontrace"`` in fresh subprocesses,
  and the CPU time those children use.
"""

from __future__ import annotations

import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

DECISIONS_PER_RUN = 10


def raw_light_run(tracer: trace.Tracer, options: list[dict[str, Any]]) -> None:
    """The lighter floor: typed attributes set one by one, options as one JSON string."""
    root = tracer.start_span("invoke_agent support")
    root.set_attribute("goal.id", "support")
    context = trace.set_span_in_context(root)
    for _ in range(DECISIONS_PER_RUN):
        span = tracer.start_span("decision Classify ticket", context=context)
        span.set_attribute("decision.intent", "Classify ticket")
        span.set_attribute("decision.type", "path_choice")
        span.set_attribute("decision.node", "classifier")
        span.set_attribute("decision.chosen", "howto")
        span.set_attribute("decision.reasoning", "matches")
        span.set_attribute("decision.options", json.dumps(options))
        span.set_attribute("outcome.success", True)
        span.set_attribute("outcome.tokens", 10)
        span.set_attribute("outcome.latency_ms", 1)
        span.end()
    root.set_attribute("run.status", "completed")
    root.end()


# --- peers: one decorated call in a loop ------------------------------------------------


def _bare_span_call(tracer: trace.Tracer) -> Callable[[int], str]:
    """A hand-written decorator's worth: one span, 8 attributes, made current."""

    def classify(ticket: int) -> str:
        with tracer.start_as_current_span(
            "classify",
            attributes={
                "a.intent": "Classify ticket",
                "a.type": "path_choice",
                "a.node": "classifier",
                "a.chosen": "howto",
                "a.reasoning": "matches",
                "a.ticket": ticket,
                "a.success": True,
                "a.tokens": 10,
            },
        ):
            return "howto"

    return classify


def _simple_provider(noop: Any) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(noop))
    return provider


def _openllmetry_call(noop: Any) -> Callable[[int], str] | None:
    """OpenLLMetry's ``@task`` with the same 8 attributes, when traceloop-sdk is installed."""
    try:
        from traceloop.sdk.decorators import task  # type: ignore[import-not-found]
    except Exception:
        return None
    try:
        provider = _simple_provider(noop)
        trace.set_tracer_provider(provider)  # @task uses the global provider

        @task(name="classify")
        def classify(ticket: int) -> str:
            span = trace.get_current_span()
            span.set_attributes(
                {
                    "a.intent": "Classify ticket",
                    "a.type": "path_choice",
                    "a.node": "classifier",
                    "a.chosen": "howto",
                    "a.reasoning": "matches",
                    "a.ticket": ticket,
                    "a.success": True,
                    "a.tokens": 10,
                }
            )
            return "howto"

        return classify
    except Exception:
        return None


def installed_peers() -> list[str]:
    """The peer packages importable here (measured only if present)."""
    names = {
        "openllmetry": "traceloop.sdk",
        "logfire": "logfire",
        "phoenix": "phoenix.otel",
        "langfuse": "langfuse",
        "mlflow": "mlflow",
    }
    found = []
    for name, module in names.items():
        try:
            __import__(module)
        except Exception:
            continue
        found.append(name)
    return found


def peers(
    noop: Any, options: list[dict[str, Any]], workdir: Path, repeats: int, calls: int
) -> dict[str, Any]:
    """µs per decorated call, against a bare 8-attribute span (SimpleSpanProcessor).

    Each dt batch is ``calls`` decisions inside one open run (1,000 and 10,000); ends
    the run outside the timing, then waits for the writer before the next batch.
    """
    bare_provider = _simple_provider(noop)
    bare = _bare_span_call(bare_provider.get_tracer("bare"))

    store = SQLiteStore(workdir / "peers.db")
    processor = dt.RunRecordProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(noop))
    tracker = dt.DecisionTracker("peers", tracer_provider=provider)

    @dt.decision(
        "Classify ticket",
        options=options,
        decision_type="path_choice",
        node_id="classifier",
        reasoning="matches",
        tracker=tracker,
    )
    def classify(ticket: int) -> str:
        return "howto"

    def decorated(n: int) -> float:
        with tracker.run("support", input_data={"ticket": 1}):
            started = time.thread_time()
            for index in range(n):
                classify(index)
            elapsed = time.thread_time() - started
        processor.force_flush()
        return elapsed / n * 1e6

    def manual(n: int) -> float:
        with tracker.run("support", input_data={"ticket": 1}):
            started = time.thread_time()
            for _ in range(n):
                decision_id = tracker.decide(
                    intent="Classify ticket",
                    options=options,
                    chosen="howto",
                    reasoning="matches",
                    node_id="classifier",
                    decision_type="path_choice",
                )
                tracker.record_outcome(
                    decision_id=decision_id, success=True, tokens_used=10, latency_ms=1
                )
            elapsed = time.thread_time() - started
        processor.force_flush()
        return elapsed / n * 1e6

    def loop(fn: Callable[[int], str], n: int) -> float:
        started = time.thread_time()
        for index in range(n):
            fn(index)
        return (time.thread_time() - started) / n * 1e6

    scenarios: dict[str, Callable[[], float]] = {
        "bare_span": lambda: loop(bare, calls),
        "dt_decorated_1k": lambda: decorated(1_000),
        "dt_decorated_10k": lambda: decorated(10_000),
        "dt_manual_1k": lambda: manual(1_000),
        "dt_manual_10k": lambda: manual(10_000),
    }
    openllmetry = _openllmetry_call(noop)
    if openllmetry is not None:
        scenarios["openllmetry_task"] = lambda: loop(openllmetry, calls)
    samples = _interleave(scenarios, repeats)
    provider.shutdown()
    bare_provider.shutdown()
    return _summary(samples, "bare_span") | {"peers_installed": installed_peers()}


# --- long runs --------------------------------------------------------------------------


def long_runs(
    noop: Any,
    options: list[dict[str, Any]],
    workdir: Path,
    repeats: int,
    long_decisions: int,
    memory_decisions: int,
) -> dict[str, Any]:
    """µs per decision in runs of 10 and of ``long_decisions``; bytes held per decision."""
    store = SQLiteStore(workdir / "long.db")
    processor = dt.RunRecordProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(noop))
    tracker = dt.DecisionTracker("long", tracer_provider=provider)

    def decide(execution_id: str | None = None) -> None:
        decision_id = tracker.decide(
            intent="Classify ticket",
            options=options,
            chosen="howto",
            reasoning="matches",
            node_id="classifier",
            decision_type="path_choice",
            execution_id=execution_id,
        )
        tracker.record_outcome(
            decision_id=decision_id,
            success=True,
            tokens_used=10,
            latency_ms=1,
            execution_id=execution_id,
        )

    def short_runs() -> float:
        total = 0.0
        for _ in range(long_decisions // 100):  # as many decisions as a tenth of the long run
            with tracker.run("support"):
                started = time.thread_time()
                for _ in range(10):
                    decide()
                total += time.thread_time() - started
        processor.force_flush()
        return total / (long_decisions // 10) * 1e6

    tail: list[float] = []

    def long_run() -> float:
        """The whole run's per-decision cost; its last tenth is kept in ``tail``."""
        with tracker.run("support"):
            started = time.thread_time()
            for _ in range(long_decisions - long_decisions // 10):
                decide()
            tail_start = time.thread_time()
            for _ in range(long_decisions // 10):
                decide()
            ended = time.thread_time()
        tail.append((ended - tail_start) / (long_decisions // 10) * 1e6)
        processor.force_flush()
        return (ended - started) / long_decisions * 1e6

    samples = _interleave({"runs_of_10": short_runs, "run_of_long": long_run}, repeats)
    summary = _summary(samples, "runs_of_10")
    summary["long_run_decisions"] = long_decisions
    summary["long_run_last_tenth_us"] = statistics.median(tail)
    summary["last_tenth_ratio_to_runs_of_10"] = (
        statistics.median(tail) / summary["per_call_us"]["runs_of_10"]["median"]
    )

    # Bytes held per decision while a run is open: all of it, tracker and processor.
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    tracker.start_run(execution_id="open", goal_id="support")
    for _ in range(memory_decisions):
        decide("open")
    # What the open run holds, not the spans still queued for the writer (3.2 KB each;
    # how many depends on the thread switches of the moment): the writer takes them in.
    processor.force_flush()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    tracker.end_run(execution_id="open", success=True)
    processor.force_flush()
    provider.shutdown()
    summary["open_run_decisions"] = memory_decisions
    summary["open_run_bytes_per_decision"] = held / memory_decisions
    return summary


# --- start-up ---------------------------------------------------------------------------


def startup(repeats: int) -> dict[str, Any]:
    """``import decisiontrace`` in fresh interpreters.

    Three views: ``-X importtime``'s total for ``decisiontrace`` (wall clock, so it
    suffers from other load), the CPU time (user + system) of the child minus that of
    an empty interpreter (robust to load), and the largest third-party imports made by
    decisiontrace's own modules. ``pydantic_plugins_off`` runs with
    ``PYDANTIC_DISABLE_PLUGINS=__all__``: plugins other packages register with pydantic
    (logfire's, installed here by the ecosystem extra) load on the first model class.
    """
    result: dict[str, Any] = {}
    for label, extra in (("as_installed", {}), ("pydantic_plugins_off", _NO_PLUGINS)):
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **extra)
        cumulative: list[float] = []
        cpu: list[float] = []
        heavy: dict[str, list[float]] = {}
        for _ in range(repeats):
            empty = _child_cpu([sys.executable, "-c", "pass"], env)[0]
            used, stderr = _child_cpu(
                [sys.executable, "-X", "importtime", "-c", "import decisiontrace"], env
            )
            cpu.append(used - empty)
            total, direct = _importtime(stderr)
            cumulative.append(total)
            for name, seconds in direct.items():
                heavy.setdefault(name, []).append(seconds)
        largest = sorted(heavy.items(), key=lambda kv: -statistics.median(kv[1]))[:8]
        result[label] = {
            "importtime_s": _spread(cumulative),
            "cpu_s": _spread(cpu),
            "largest_imports_s": {name: statistics.median(v) for name, v in largest},
        }
    return result


_NO_PLUGINS = {"PYDANTIC_DISABLE_PLUGINS": "__all__"}


def _child_cpu(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    """CPU seconds (user + system) a child process used, and its stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, check=True, env=env, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used, done.stderr


def _importtime(stderr: str) -> tuple[float, dict[str, float]]:
    """decisiontrace's cumulative import seconds, and the non-decisiontrace modules
    imported directly by one of its modules (cumulative seconds each)."""
    rows = []
    for line in stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)", line)
        if match:
            rows.append((int(match.group(2)) / 1e6, len(match.group(3)) // 2, match.group(4)))
    total = next((c for c, _, n in rows if n == "decisiontrace"), 0.0)
    direct: dict[str, float] = {}
    for index, (seconds, depth, name) in enumerate(rows):
        # importtime prints a module after its imports: the parent is the next row up.
        parent = next((n for _, d, n in rows[index + 1 :] if d == depth - 1), "")
        if parent.startswith("decisiontrace") and not name.startswith("decisiontrace"):
            direct[name] = max(direct.get(name, 0.0), seconds)
    return total, direct


# --- helpers ----------------------------------------------------------------------------


def _interleave(scenarios: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    names = list(scenarios)
    for name in names:  # warm up
        scenarios[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            gc.collect()
            samples[name].append(scenarios[name]())
    return samples


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _summary(samples: dict[str, list[float]], floor: str) -> dict[str, Any]:
    base = statistics.median(samples[floor])
    return {
        "floor": floor,
        "per_call_us": {
            name: _spread(values) | {"ratio": statistics.median(values) / base}
            for name, values in samples.items()
        },
    }
