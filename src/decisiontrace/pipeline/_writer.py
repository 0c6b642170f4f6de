"""The processor's writer thread: spans in, runs assembled, batches written.

Everything the agent's thread queued in ``on_start``/``on_end`` is handled here: spans
decoded and assembled into runs (:mod:`decisiontrace.pipeline._assembly`), runs handed to the
store in one transaction per pass, failed batches kept (bounded) and retried with
backoff, runs that never end stored as ``stuck``, and journal entries written and
recovered. :class:`WriterThread` is the half of
:class:`~decisiontrace.pipeline.processor.RunRecordProcessor` that runs on that thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace import Span

from decisiontrace._internal.errors import Once, warn_once
from decisiontrace.pipeline import _journal
from decisiontrace.pipeline._assembly import PendingRun, RunAssembler
from decisiontrace.pipeline._inbox import (
    OpenRun,
    PassMark,
    Received,
    Started,
    TakeOrphans,
    Tokens,
    span_data,
)
from decisiontrace.spanmodel import _codec
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import RunStore

logger = logging.getLogger("decisiontrace")


class WriterThread:
    """Assembles queued spans into runs and writes them, on a thread of its own."""

    store: RunStore
    dropped_runs: int
    written_runs: int
    _inbox: deque[Any]
    _open_runs: dict[int, Span]
    _open_decisions: dict[int, dict[int, Span]]
    _unwritten: list[PendingRun]
    _flush_requests: list[threading.Event]
    _wake: threading.Event
    _lock: threading.RLock
    _thread: threading.Thread | None
    _failing_since: float | None
    _retry_at: float
    _dropped_while_failing: int
    _assembler: RunAssembler
    _listeners: list[Callable[[list[_codec.Record]], None]]
    _shutdown: bool
    _flush_interval: float
    _max_unwritten: int
    _run_timeout: float
    _journal: bool

    _once: Once
    _recovered: bool

    def _log_once(self, key: str, message: str, *, error: bool = True) -> None:
        """Log ``message`` the first time ``key`` happens (with the traceback if ``error``)."""
        warn_once(
            key,
            "decisiontrace: RunRecordProcessor %s",
            message,
            once=self._once,
            level=logging.ERROR,
            exc_info=error,
        )

    def _start_writer(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(
                target=self._writer_loop, name="decisiontrace-writer", daemon=True
            )
            self._thread = thread
        thread.start()

    def _writer_loop(self) -> None:
        # Storage I/O must not trace itself (e.g. through a sqlite3 instrumentation).
        otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        if not self._recovered:
            self._recovered = True
            try:
                self._recover_journal()
            except Exception:
                self._log_once("recover", "could not recover runs from the journal")
        wake = self._wake
        while True:
            wake.wait(self._flush_interval)
            wake.clear()
            with self._lock:
                requests, self._flush_requests = self._flush_requests, []
            try:
                self._pass(force=bool(requests))
            except Exception:
                self._log_once("writer", "writer pass failed")
            if requests:
                if self._unwritten:
                    with self._lock:  # not written yet: keep the callers waiting
                        self._flush_requests.extend(requests)
                else:
                    for request in requests:
                        request.set()
            if self._shutdown and not self._inbox:
                return

    def _pass(self, *, force: bool) -> None:
        assembler = self._assembler
        inbox = self._inbox
        now = time.monotonic()
        journal: list[Any] | None = [] if self._journal else None
        marks: list[PassMark] = []
        orphans_now = False
        # Only what is queued now: agents that queue as fast as this drains must not
        # keep the pass from ever getting to the write.
        for _ in range(len(inbox)):
            item = inbox.popleft()
            kind = type(item)
            if kind is Received:
                assembler.add(item.data, now)
                if journal is not None:
                    journal.append(item.data)
            elif kind is PassMark:
                marks.append(item)
            elif kind is TakeOrphans:
                orphans_now = True
            elif kind is Tokens:
                assembler.add_tokens(item.trace_id, item.decision_span_id, item.tokens)
                if journal is not None:
                    journal.append(item)
            elif kind is OpenRun:
                assembler.add(item.data, now)
            elif kind is Started:
                if journal is not None and item.span.end_time is None:
                    journal.append(span_data(item.span))
            else:
                data = span_data(item)
                assembler.add(data, now)
                if journal is not None:
                    journal.append(data)
        runs = assembler.take_ready_runs(force=force, now=now)
        runs.extend(assembler.take_orphan_runs(0.0 if orphans_now else self._run_timeout, now))
        self._expire_open_runs()
        if journal:
            entries = _journal.entries_of_pass(journal, runs, assembler.pending)
            if entries:
                try:
                    self.store.journal_append(entries)
                except Exception:
                    self._log_once("journal", "could not write to the journal")
        if runs:
            if self._listeners:
                self._notify_listeners(runs)
            self._queue_for_writing(runs)
        if self._unwritten and (force or now >= self._retry_at):
            self._write()
        for mark in marks:
            mark.store_failing = self._failing_since is not None
            mark.done.set()

    def _queue_for_writing(self, runs: list[PendingRun]) -> None:
        self._unwritten.extend(runs)
        if self._failing_since is not None:  # a healthy store takes them all this pass
            self._trim_unwritten()

    def _trim_unwritten(self) -> None:
        """Drop the oldest runs beyond ``max_unwritten_runs`` (the store is failing)."""
        overflow = len(self._unwritten) - self._max_unwritten
        if overflow <= 0:
            return
        del self._unwritten[:overflow]
        self.dropped_runs += overflow
        self._dropped_while_failing += overflow
        if self._once.first("dropped"):  # once: a failing store must not flood logs
            logger.error(
                "decisiontrace: runs are being dropped (%d so far): the store keeps "
                "failing and the queue of %d runs waiting to be written is full; "
                "RunRecordProcessor.dropped_runs counts them",
                overflow,
                self._max_unwritten,
            )

    # --- the journal -------------------------------------------------------------------

    def _recover_journal(self) -> None:
        """Store what processes killed before their runs completed left in the journal."""
        runs, unreadable = _journal.recovered_runs(self.store.journal_take_orphans())
        if unreadable:
            self.store.journal_clear(unreadable)
        if runs:
            logger.warning(
                "decisiontrace: %d runs of a process that ended before they completed were "
                "recovered from the journal of %s and are stored as stuck",
                len(runs),
                getattr(self.store, "url", self.store),
            )
            if self._listeners:
                self._notify_listeners(runs)
            self._queue_for_writing(runs)

    def _notify_listeners(self, runs: list[PendingRun]) -> None:
        records = []
        for run in runs:
            try:
                records.append(run.record())
            except Exception:
                self._log_once("assemble", "could not assemble a run")
        for listener in self._listeners:
            try:
                listener(records)
            except Exception:
                self._log_once(f"listener {listener!r}", "listener failed")

    def _write(self) -> None:
        batch = self._unwritten
        try:
            self.store.save_assembled(batch)
        except (TypeError, ValueError):
            # Some run cannot be encoded: no retry will fix it. Write the others one by
            # one and drop (and count) the ones that fail this way.
            self._write_one_by_one(batch)
            return
        except Exception as error:
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
                logger.error(
                    "decisiontrace: could not write %d runs to %s (%s); they are kept and retried",
                    len(batch),
                    getattr(self.store, "url", self.store),
                    error,
                )
            self._retry_at = now + min(5.0, 0.1 * 2 ** min(6, int(now - self._failing_since)))
            self._trim_unwritten()
            return
        self.written_runs += len(batch)
        self._unwritten = []
        if self._failing_since is not None:
            logger.warning(
                "decisiontrace: the store is writable again; waiting runs written "
                "(%d dropped meanwhile)",
                self._dropped_while_failing,
            )
            self._failing_since = None
            self._dropped_while_failing = 0
            self._once.forget("dropped")

    def _write_one_by_one(self, batch: list[PendingRun]) -> None:
        kept: list[PendingRun] = []
        dropped = 0
        for run in batch:
            try:
                self.store.save_assembled([run])
            except (TypeError, ValueError):
                dropped += 1
                self._log_once("unencodable", "a run could not be encoded and was dropped")
            except Exception:
                kept.append(run)
        self.dropped_runs += dropped
        self.written_runs += len(batch) - len(kept) - dropped
        self._unwritten = kept

    def _expire_open_runs(self) -> None:
        """Runs open longer than ``run_timeout`` are stored as stuck (and forgotten).

        ``_open_runs`` is in start order, so only its head is examined: O(1) a pass.
        """
        open_runs = self._open_runs
        limit = time.time_ns() - int(self._run_timeout * 1e9)
        while open_runs:
            try:
                trace_id, span = next(iter(open_runs.items()))
            except (StopIteration, RuntimeError):  # changed by an agent thread
                return
            if (span.start_time or 0) >= limit:
                return
            self._store_open_run(trace_id, span, "stuck", "run did not end within run_timeout")

    def _cancel_open_runs(self, reason: str) -> None:
        for trace_id, span in list(self._open_runs.items()):
            self._store_open_run(trace_id, span, "cancelled", reason)

    def _store_open_run(self, trace_id: int, span: Span, status: str, reason: str) -> None:
        """Queue the record of a run whose span is still open, with the given status.

        Its decisions still open (no outcome yet) go with it, as they are now.
        """
        self._open_runs.pop(trace_id, None)
        for decision in list((self._open_decisions.pop(trace_id, None) or {}).values()):
            snapshot = span_data(decision)
            snapshot.attributes = dict(snapshot.attributes)  # it may still change
            self._inbox.append(OpenRun(snapshot))
        data = span_data(span)
        data.end_ns = time.time_ns()
        attributes = dict(data.attributes)
        attributes[sc.RUN_STATUS] = status
        attributes[sc.RUN_END_REASON] = reason
        attributes.pop(sc.RUN_DECISION_COUNT, None)
        data.attributes = attributes
        self._inbox.append(OpenRun(data))
