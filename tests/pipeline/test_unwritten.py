"""The runs the store has not taken (``pipeline/_unwritten.py``), on their own: a failed
write keeps them and waits its backoff before the next try (a flush does not wait), the
oldest beyond the bound are dropped while the store fails, and the failure, the first
drop of each failure and the recovery are logged once each. The processor's tests
(tests/pipeline/test_writer.py, tests/reliability/test_store_faults.py) run the same
rule behind a real pipeline and real SQLite faults."""

from __future__ import annotations

import logging
import time

import pytest

from decisiontrace._internal.errors import Once
from decisiontrace.pipeline._assembly import RunAssembler
from decisiontrace.pipeline._pending import PendingRun
from decisiontrace.pipeline._unwritten import UnwrittenRuns
from decisiontrace.spanmodel import semconv as sc

from .test_assembly import TRACE, run_span
from .test_writer import FailingStore


def new_runs(count: int, first: int = 0) -> list[PendingRun]:
    """``count`` assembled runs of no decision, each its own trace and run id."""
    assembler = RunAssembler()
    for number in range(first, first + count):
        span = run_span(0)
        span.trace_id = TRACE + number
        span.attributes = {**span.attributes, sc.RUN_ID: f"run_s_20251201_120000_{number:08x}"}
        assembler.add(span, now=0.0)
    runs = assembler.take_ready_runs(force=True, now=0.0)
    assert len(runs) == count
    return runs


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_failed_write_keeps_the_runs_until_its_backoff_and_a_flush_does_not_wait(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingStore()
    unwritten = UnwrittenRuns(10, once=Once(), log_once=lambda key, message: None)
    assert not unwritten.due(time.monotonic(), force=True)  # nothing to write
    unwritten.add(new_runs(3))
    before = time.monotonic()
    assert unwritten.due(before, force=False)  # a healthy store is written at once
    unwritten.write(store)
    after = time.monotonic()
    assert (len(unwritten), unwritten.failing, unwritten.written) == (3, True, 0)
    assert not unwritten.due(before + 0.09, force=False)  # the backoff: 0.1 s at first
    assert unwritten.due(before, force=True)
    assert unwritten.due(after + 5.0, force=False)  # never more than 5 s
    unwritten.write(store)  # still failing: not logged again
    assert logged(caplog, "could not write 3 runs to") == [
        "decisiontrace: could not write 3 runs to memory:// (disk full); they are kept and retried"
    ]

    store.failing = False
    unwritten.write(store)
    assert (len(unwritten), unwritten.failing, unwritten.written) == (0, False, 3)
    assert len(store.list_summaries()) == 3
    assert logged(caplog, "writable again") == [
        "decisiontrace: the store is writable again; waiting runs written (0 dropped meanwhile)"
    ]


def test_while_the_store_fails_the_oldest_beyond_the_bound_are_dropped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingStore()
    unwritten = UnwrittenRuns(2, once=Once(), log_once=lambda key, message: None)
    unwritten.add(new_runs(3))  # a healthy store takes them all: none dropped yet
    assert (len(unwritten), unwritten.dropped) == (3, 0)
    unwritten.write(store)
    newest = new_runs(2, first=3)
    unwritten.add(newest)
    assert (unwritten.runs, unwritten.dropped) == (newest, 3)
    assert len(logged(caplog, "runs are being dropped")) == 1

    store.failing = False
    unwritten.write(store)
    assert (unwritten.written, unwritten.dropped) == (2, 3)
    assert logged(caplog, "writable again")[-1].endswith("(3 dropped meanwhile)")

    store.failing = True  # a second failure: its first drop is logged again
    unwritten.add(new_runs(3, first=5))
    unwritten.write(store)
    assert unwritten.dropped == 4
    assert len(logged(caplog, "runs are being dropped")) == 2
    assert all(r.levelno == logging.ERROR for r in caplog.records if "dropped (" in r.message)
