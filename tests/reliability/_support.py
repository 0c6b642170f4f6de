"""Shared helpers for the reliability tests: real pipelines, child processes, SQLite checks."""

from __future__ import annotations

import contextlib
import os
import select
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

import decisiontrace as dt
from decisiontrace.stores import RunStore


class UrandomIdGenerator(IdGenerator):
    """Trace and span ids from os.urandom.

    The SDK's default generator uses the global ``random`` module, which Hypothesis
    seeds the same way for every example: trace ids would repeat from one to the next.
    """

    def generate_span_id(self) -> int:
        return int.from_bytes(os.urandom(8), "big") or 1

    def generate_trace_id(self) -> int:
        return int.from_bytes(os.urandom(16), "big") or 1


class ForkSafeExporter(InMemorySpanExporter):
    """The SDK's in-memory exporter with its lock renewed in a forked child.

    Its lock is a plain ``threading.Lock``: a fork while another thread of the parent
    was exporting (the fork tests' busy thread, all the time) left the child's copy held
    for ever, and the child hung at the first span it ended. That is this test
    exporter's fault, not the pipeline's (the SDK's BatchSpanProcessor, which users
    export through, renews its own locks at fork).
    """

    def __init__(self) -> None:
        super().__init__()
        os.register_at_fork(after_in_child=self._renew_lock)

    def _renew_lock(self) -> None:
        self._lock = threading.Lock()


@dataclass
class Pipeline:
    """A real SDK pipeline: the run processor first, then an in-memory exporter."""

    provider: TracerProvider
    processor: dt.RunRecordProcessor
    exporter: InMemorySpanExporter
    store: RunStore
    tracker: dt.DecisionTracker

    def flush(self, timeout_millis: int = 10_000) -> None:
        assert self.processor.force_flush(timeout_millis), "runs not stored in time"


def make_pipeline(store: RunStore, *, tracker_options: Any = None, **options: Any) -> Pipeline:
    """A pipeline writing to ``store``; ``options`` go to the RunRecordProcessor."""
    options.setdefault("flush_interval", 0.02)
    options.setdefault("handle_sigterm", False)
    processor = dt.RunRecordProcessor(store, **options)
    exporter = ForkSafeExporter()
    provider = TracerProvider(id_generator=UrandomIdGenerator())
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = dt.DecisionTracker("reliability", tracer_provider=provider, **(tracker_options or {}))
    return Pipeline(provider, processor, exporter, store, tracker)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


def integrity(db: Path | str) -> str:
    """``PRAGMA integrity_check`` through a plain connection of its own."""
    connection = sqlite3.connect(db)
    try:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        connection.close()


def rows(db: Path | str, query: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(query, parameters).fetchall()
    finally:
        connection.close()


# --- child processes ----------------------------------------------------------------------

#: Imported by every child script: a pipeline on a SQLite file and a way to make runs.
CHILD_PRELUDE = """
import json, os, signal, sys, threading, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator
import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

def pipeline(db, stream="child", **options):
    store = SQLiteStore(db)
    processor = dt.RunRecordProcessor(store, **options)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker(stream, tracer_provider=provider)
    return store, processor, provider, tracker

def finished_run(tracker, goal, decisions=3):
    with tracker.run(goal, f"goal {goal}", {"goal": goal}) as scope:
        for index in range(decisions):
            decision_id = tracker.decide(
                intent=f"step {index}",
                options=[{"id": "a", "confidence": 0.7}, {"id": "b"}],
                chosen="a",
                reasoning="because",
                context={"index": index},
            )
            tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=index + 1)
    return scope.run_id

def say(*words):
    print(*words, flush=True)
"""


def child_script(tmp_path: Path, body: str, name: str = "child.py") -> Path:
    """Write a child script: the prelude, then ``body`` (dedented)."""
    path = tmp_path / name
    path.write_text(CHILD_PRELUDE + "\n" + textwrap.dedent(body), encoding="utf-8")
    return path


#: Every child started by :func:`spawn`; the autouse fixture in conftest reaps them.
SPAWNED: list[subprocess.Popen[str]] = []


def spawn(script: Path, *args: str, **options: Any) -> subprocess.Popen[str]:
    """Start ``script`` with this interpreter; stdout is a pipe of text lines."""
    process = subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        **options,
    )
    SPAWNED.append(process)
    return process


def reap_children() -> None:
    """Kill the children still running and close their pipes."""
    while SPAWNED:
        process = SPAWNED.pop()
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError, OSError):
            process.communicate(timeout=10)


def read_line(process: subprocess.Popen[str], timeout: float = 30.0) -> str:
    """The child's next stdout line; fails (and kills the child) after ``timeout``."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        process.kill()
        _, stderr = process.communicate(timeout=10)
        raise AssertionError(f"child printed nothing in {timeout} s; stderr:\n{stderr}")
    line = process.stdout.readline()
    if not line:
        _, stderr = process.communicate(timeout=10)
        raise AssertionError(f"child ended early (rc={process.returncode}); stderr:\n{stderr}")
    return line.strip()


def finish(process: subprocess.Popen[str], timeout: float = 30.0) -> tuple[int, str, str]:
    """Wait for the child (killing it after ``timeout``): (returncode, stdout, stderr)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate(timeout=10)
        raise AssertionError(f"child did not end within {timeout} s; stderr:\n{stderr}") from None
    return process.returncode, stdout, stderr
