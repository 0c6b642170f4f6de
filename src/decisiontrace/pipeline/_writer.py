"""The processor's writer: spans in, runs assembled, batches written, on a thread of its own.

Everything the agent's threads queue in ``on_start``/``on_end`` is handled here: spans
decoded and assembled into runs (:mod:`decisiontrace.pipeline._assembly`), runs handed to
the store in one transaction per pass (failed batches kept, bounded, and retried with
backoff by :class:`~decisiontrace.pipeline._unwritten.UnwrittenRuns`, the one home of
that rule), runs that never end stored as ``stuck``, and journal entries written and
recovered.

:class:`Writer` is composed into
:class:`~decisiontrace.pipeline.processor.RunRecordProcessor`, which talks to it only
through this interface (docs/architecture.md):

- on the agent's threads, never blocking: :meth:`Writer.put` (one item, refused when
  the queue is full), :meth:`Writer.receive` (decoded spans, with a
  :class:`~decisiontrace.pipeline._inbox.PassMark`), :meth:`Writer.take_orphans`;
- from any thread, waiting at most their timeout: :meth:`Writer.flush`,
  :meth:`Writer.stop` (with :meth:`Writer.cancel_open_runs`, and for a resuming
  journal :meth:`Writer.keep_journaled`, before it);
- counters: :attr:`Writer.queue_length`, :attr:`Writer.store_failing`,
  :attr:`Writer.written_runs`, :attr:`Writer.dropped_runs`.

Two kinds of failure meet the writer, and they are told apart: the store failing (a
full disk, a locked database, a server gone) is expected: the batch is kept and retried
and the store's recovery is logged; a bug of ours caught by the writer's guards is an
internal error (:func:`~decisiontrace._internal.errors.background_error`), which the
test suite collects and fails the test on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace import Span

from decisiontrace._internal.errors import Once, background_error, warn_once
from decisiontrace.pipeline import _journal
from decisiontrace.pipeline._assembly import RunAssembler
from decisiontrace.pipeline._inbox import (
    Abandoned,
    OpenRun,
    PassMark,
    Received,
    Started,
    Tokens,
    abandoned_spans,
    span_data,
)
from decisiontrace.pipeline._open_spans import OpenSpans
from decisiontrace.pipeline._pending import PendingRun
from decisiontrace.pipeline._unwritten import UnwrittenRuns
from decisiontrace.spanmodel import _codec
from decisiontrace.stores import RunStore
from decisiontrace.stores.base import AssembledRun

logger = logging.getLogger("decisiontrace")

Listener = Callable[[list[_codec.Record]], None]

#: Items short of the queue's bound from which :meth:`Writer.put` takes its lock.
_LOCK_MARGIN = 64


class _Recorded:
    """An assembled run whose full record was built for the listeners: the store is
    handed that record rather than decoding the spans a second time."""

    __slots__ = ("_record", "_run")

    def __init__(self, run: PendingRun, record: _codec.Record) -> None:
        self._run = run
        self._record = record

    def record(self, *, light: bool = False) -> _codec.Record:
        return self._run.record(light=True) if light else self._record

    def compact(self) -> dict[str, Any]:
        return self._run.compact()


class Writer:
    """Assembles queued spans into runs and writes them, on a thread of its own.

    Args:
        store: where runs are written.
        assembler: the run assembly (shared with the processor, which tells it about
            runs that ended with LLM spans still open).
        open_spans: the spans still open, kept by the processor; the writer stores the
            runs among them that outlive ``run_timeout``, or all at shutdown.
        flush_interval: seconds between passes.
        max_queue_size: items the queue holds at most; :meth:`put` refuses beyond it.
        max_unwritten_runs: runs kept while the store fails; the oldest are dropped
            (see :class:`~decisiontrace.pipeline._unwritten.UnwrittenRuns`).
        run_timeout: see ``open_spans``, and decisions whose run span never arrived.
        journal: write the journal entries of what each pass takes in (a pass whose
            entries could not be written tells its marks the store is failing).
        recover_journal: recover what killed processes left in the journal first.
        resume_journal: recovered spans go back to assembly (see
            :func:`~decisiontrace.pipeline._journal.resume`).
        once: what the processor has logged once already.
    """

    def __init__(
        self,
        store: RunStore,
        assembler: RunAssembler,
        open_spans: OpenSpans,
        *,
        flush_interval: float,
        max_queue_size: int,
        max_unwritten_runs: int,
        run_timeout: float,
        journal: bool,
        recover_journal: bool,
        resume_journal: bool = False,
        once: Once,
    ) -> None:
        self.store = store
        self.assembler = assembler
        self.open_spans = open_spans
        self.flush_interval = flush_interval
        self.max_queue_size = max_queue_size
        self.run_timeout = run_timeout
        self.journal = journal
        self.listeners: list[Listener] = []
        self._once = once
        self._recover = recover_journal
        self._resume = resume_journal
        self._inbox: deque[Any] = deque()
        self._put_lock = threading.Lock()  # the queue's bound holds with many agents
        self._unlocked_below = max(0, max_queue_size - _LOCK_MARGIN)
        # Reentrant: the SIGTERM handler runs on the main thread, maybe inside a holder.
        self._lock = threading.RLock()
        self._flush_requests: list[threading.Event] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._orphans_requested = False
        self._cancel_reason: str | None = None
        self._keep_journaled = False
        #: The runs waiting for the store: kept, retried and dropped by its rule.
        self._unwritten = UnwrittenRuns(max_unwritten_runs, once=once, log_once=self._log_once)

    # --- the interface ------------------------------------------------------------------

    @property
    def queue_length(self) -> int:
        """Items waiting for the writer, plus assembled runs waiting for the store."""
        return len(self._inbox) + len(self._unwritten)

    @property
    def store_failing(self) -> bool:
        """The last write failed and the runs are kept for a retry."""
        return self._unwritten.failing

    @property
    def written_runs(self) -> int:
        """Runs written to the store."""
        return self._unwritten.written

    @written_runs.setter
    def written_runs(self, count: int) -> None:  # carried over to a forked child's writer
        self._unwritten.written = count

    @property
    def dropped_runs(self) -> int:
        """Runs dropped: unencodable, or beyond ``max_unwritten_runs`` while failing."""
        return self._unwritten.dropped

    @dropped_runs.setter
    def dropped_runs(self, count: int) -> None:  # carried over to a forked child's writer
        self._unwritten.dropped = count

    @property
    def thread(self) -> threading.Thread | None:
        """The writer thread, once started."""
        return self._thread

    def put(self, item: Any) -> bool:
        """Queue one item (an ended SDK span, or an ``_inbox`` record); False, and
        nothing queued, when the queue holds ``max_queue_size`` items. Never blocks
        for longer than another thread's append."""
        inbox = self._inbox
        if len(inbox) < self._unlocked_below:
            # Far from the bound: no lock (it cost as much as the rest of on_end). Only an
            # append preempted between this check and itself while others filled the
            # last _LOCK_MARGIN places (or a batch from receive did) could overshoot.
            inbox.append(item)
        else:
            with self._put_lock:
                if len(inbox) >= self.max_queue_size:
                    return False
                inbox.append(item)
        if self._thread is None:
            self.start()
        return True

    def receive(self, items: Sequence[Received | Tokens]) -> PassMark | None:
        """Queue spans decoded elsewhere, then a mark set once a pass took them in; None
        (nothing queued) when the queue has no room for them all or the writer stops."""
        mark = PassMark()
        with self._put_lock:
            if self._stopping or len(self._inbox) + len(items) + 1 > self.max_queue_size:
                return None
            self._inbox.extend(items)
            self._inbox.append(mark)
        if self._thread is None:
            self.start()
        return mark

    def take_orphans(self) -> None:
        """Store decisions whose run span has not arrived as stuck runs at the next pass."""
        self._orphans_requested = True
        self._wake.set()

    def start(self) -> None:
        """Start the writer thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._loop, name="decisiontrace-writer", daemon=True)
            self._thread = thread
        thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Write every run whose span has ended; True when all are in the store in time."""
        if self._stopping:
            return True
        self.start()
        request = threading.Event()
        with self._lock:
            self._flush_requests.append(request)
        self._wake.set()
        return request.wait(timeout_s)

    def cancel_open_runs(self, reason: str) -> None:
        """At the next pass, store the runs still open as ``cancelled`` for ``reason``."""
        self._cancel_reason = reason

    def keep_journaled(self) -> None:
        """From now on (shutdown), runs still being assembled are not forced out: they
        stay in the journal, for the next processor to resume (``journal="resume"``)."""
        self._keep_journaled = True

    def stop(self, timeout_s: float) -> int:
        """Stop the thread once the queue is empty, waiting at most ``timeout_s``.

        Returns what is still unwritten: items queued and runs kept.
        """
        self._stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, timeout_s))
        return self.queue_length

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(records)`` with each batch of assembled records, before they
        are written; a listener that raises is logged once and does not stop the write.
        The records are the very dicts the store is then given: listeners read them."""
        self.listeners.append(listener)

    # --- the thread ---------------------------------------------------------------------

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

    def _loop(self) -> None:
        # Storage I/O must not trace itself (e.g. through a sqlite3 instrumentation).
        otel_context.attach(otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        if self._recover:
            self._recover = False
            self._recover_journal()
        wake = self._wake
        while True:
            wake.wait(self.flush_interval)
            wake.clear()
            with self._lock:
                requests, self._flush_requests = self._flush_requests, []
            try:
                self.run_pass(force=bool(requests))
            except Exception as error:
                background_error("RunRecordProcessor writer pass", error, once=self._once)
            if requests:
                if self._unwritten:
                    with self._lock:  # not written yet: keep the callers waiting
                        self._flush_requests.extend(requests)
                else:
                    for request in requests:
                        request.set()
            if self._stopping and not self._inbox:
                return

    def run_pass(self, *, force: bool) -> None:
        """One pass: take in what is queued, assemble, write what is ready.

        The thread's loop calls it; benchmarks call it on their own thread while the
        thread sleeps (a long ``flush_interval``), to time the writer's CPU alone.
        """
        assembler = self.assembler
        inbox = self._inbox
        add = assembler.add
        now = time.monotonic()
        journal: list[Any] | None = [] if self.journal else None
        marks: list[PassMark] = []
        # Only what is queued now: agents that queue as fast as this drains must not
        # keep the pass from ever getting to the write.
        for _ in range(len(inbox)):
            item = inbox.popleft()
            kind = type(item)
            if kind is Span:  # an ended SDK span: nearly every item (the else below too)
                data = span_data(item)
                add(data, now)
                if journal is not None:
                    journal.append(data)
            elif kind is Received:
                add(item.data, now)
                if journal is not None:
                    journal.append(item.data)
            elif kind is Tokens:
                assembler.add_tokens(item.trace_id, item.decision_span_id, item.tokens)
                if journal is not None:
                    journal.append(item)
            elif kind is PassMark:
                marks.append(item)
            elif kind is Abandoned:
                for data in abandoned_spans(item):
                    add(data, now)
            elif kind is OpenRun:
                add(item.data, now)
            elif kind is Started:
                if journal is not None and item.span.end_time is None:
                    journal.append(span_data(item.span))
            else:  # an ended SDK span
                data = span_data(item)
                add(data, now)
                if journal is not None:
                    journal.append(data)
        self._abandon_open_runs(now)
        # Resuming, a flush at shutdown writes what is ready and leaves the rest (all
        # journaled) to the next processor, which completes it as its spans arrive.
        runs = assembler.take_ready_runs(force=force and not self._keep_journaled, now=now)
        orphans_now, self._orphans_requested = self._orphans_requested, False
        runs.extend(assembler.take_orphan_runs(0.0 if orphans_now else self.run_timeout, now))
        journaled = self._write_journal(journal, runs) if journal else True
        unwritten = self._unwritten
        if runs:
            unwritten.add(self._notify_listeners(runs) if self.listeners else runs)
        if unwritten.due(now, force=force):
            unwritten.write(self.store)
        for mark in marks:
            mark.store_failing = unwritten.failing or not journaled
            mark.done.set()

    def _abandon_open_runs(self, now: float) -> None:
        """Runs open longer than ``run_timeout`` are stored as stuck (and forgotten); at
        shutdown every open run is stored as cancelled.

        Runs are in start order, so only the oldest is examined: O(1) a pass.
        """
        open_spans = self.open_spans
        reason, self._cancel_reason = self._cancel_reason, None
        if reason is not None:
            for trace_id in list(open_spans.runs):
                self._abandon(trace_id, "cancelled", reason, now)
        limit = time.time_ns() - int(self.run_timeout * 1e9)
        while (oldest := open_spans.oldest_run()) is not None:
            trace_id, span = oldest
            if (span.start_time or 0) >= limit:
                return
            self._abandon(trace_id, "stuck", "run did not end within run_timeout", now)

    def _abandon(self, trace_id: int, status: str, reason: str, now: float) -> None:
        run, decisions = self.open_spans.take(trace_id)
        if run is not None:
            for data in abandoned_spans(Abandoned(run, decisions, status, reason)):
                self.assembler.add(data, now)

    def _write_journal(self, taken: list[Any], runs: list[PendingRun]) -> bool:
        """Append the pass's entries; False if the store failed to take them."""
        entries = _journal.entries_of_pass(taken, runs, self.assembler.pending)
        if not entries:
            return True
        try:
            self.store.journal_append(entries)
        except Exception:  # expected: the store failing; the next pass writes its own entries
            self._log_once("journal", "could not write to the journal")
            return False
        return True

    # --- the journal -------------------------------------------------------------------

    def _recover_journal(self) -> None:
        """Store what processes killed before their runs completed left in the journal."""
        try:
            entries = self.store.journal_take_orphans()
        except Exception:  # expected: the store failing; what is there stays for next time
            self._log_once("recover", "could not recover runs from the journal")
            return
        try:
            if self._resume:
                runs, unreadable = _journal.resume(entries, self.assembler)
            else:
                runs, unreadable = _journal.recovered_runs(entries)
            if unreadable:
                self.store.journal_clear(unreadable)
        except Exception as error:
            background_error("RunRecordProcessor journal recovery", error, once=self._once)
            return
        if runs:
            logger.warning(
                "decisiontrace: %d runs of a process that ended before they completed were "
                "recovered from the journal of %s and are stored as stuck",
                len(runs),
                getattr(self.store, "url", self.store),
            )
            self._unwritten.add(self._notify_listeners(runs) if self.listeners else runs)

    def _notify_listeners(self, runs: list[PendingRun]) -> list[AssembledRun]:
        """Hand the listeners the runs' records; the runs to write, reusing those records."""
        records = []
        assembled: list[AssembledRun] = []
        for run in runs:
            try:
                record = run.record()
            except Exception as error:
                background_error("RunRecordProcessor run assembly", error, once=self._once)
                assembled.append(run)
            else:
                records.append(record)
                assembled.append(_Recorded(run, record))
        for listener in self.listeners:
            try:
                listener(records)
            except Exception:  # expected: the listener's own failure (a user's callback)
                self._log_once(f"listener {listener!r}", "listener failed")
        return assembled


__all__ = ["Listener", "Writer"]
