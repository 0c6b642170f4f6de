"""RunRecordProcessor: rebuilds Run records from ended spans and stores them.

The contract of a span processor is strict: ``on_start`` and ``on_end`` run on the
agent's thread, inside ``span.end()``, and the SDK does not catch what they raise. So
here they only do dictionary work and hand the spans, undecoded, to the processor's
:class:`~decisiontrace.pipeline._writer.Writer`, whose thread decodes them, assembles
runs and writes them to the store in batches (one transaction each). Every method
guards itself: an internal error is logged once and swallowed.

What the processor holds is bounded: the span queue (``max_queue_size``), runs open at
once (``max_open_runs``) and for how long (``run_timeout``), and runs waiting while the
store fails (``max_unwritten_runs``); what goes over is stored as ``stuck`` or dropped
and counted. At interpreter exit, on SIGTERM (see ``_signals``) and in forked children
the processor stores what it holds; ``journal=True`` also keeps runs in flight in the
store, for processes killed outright (see ``_journal``).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from decisiontrace._internal.errors import Once, internal_error, warn_once
from decisiontrace.pipeline import _signals
from decisiontrace.pipeline._assembly import RunAssembler
from decisiontrace.pipeline._inbox import Abandoned, OpenRun, PassMark, Received, Started
from decisiontrace.pipeline._open_spans import OpenSpans
from decisiontrace.pipeline._tokens import LEDGER, TokenAttribution, Tokens
from decisiontrace.pipeline._writer import Listener, Writer
from decisiontrace.spanmodel import _codec, _decode
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import RunStore, open_store

logger = logging.getLogger("decisiontrace")

_KIND = sc.SPAN_KIND
_DECISION = sc.KIND_DECISION
_RUN = sc.KIND_RUN

#: Why runs still open were stored as cancelled, by what ended the processor.
_SHUTDOWN_REASON = "tracer provider shut down with the run still open"
_EXIT_REASON = "process exited with the run still open"
#: How long interpreter exit waits for the runs to be stored.
_EXIT_TIMEOUT_MILLIS = 5_000


class RunRecordProcessor(SpanProcessor):
    """Rebuilds complete Run records from spans alone and writes them to a store.

    Add it to a ``TracerProvider``. It sees every recording span, including those a
    sampler marked RECORD_ONLY, so every run is stored even when only a sample of
    traces is exported.

    Args:
        store: a :class:`~decisiontrace.stores.RunStore`, a store URL or path, or None
            for ``$DECISIONTRACE_STORE`` / the default store.
        flush_interval: seconds between writer passes.
        max_queue_size: ended spans waiting for the writer; beyond it new spans are
            dropped and counted.
        max_unwritten_runs: assembled runs waiting while the store fails; beyond it the
            oldest are dropped and counted.
        late_span_grace: seconds to wait for decision spans that end after their run.
        late_token_window: seconds a stored run is kept (the 1000 most recent) so that
            the tokens of an LLM span that ends after it (a stream read once the run
            was over) update the stored run.
        run_timeout: seconds after which a run span still open, or decisions whose run
            span never arrived, are stored as a ``stuck`` run.
        max_open_runs: run spans open at once; beyond it the oldest is stored as a
            ``stuck`` run (and forgotten).
        journal: also write run and decision spans to the store's journal as they
            start and end, so that the runs in flight of a process killed outright
            (SIGKILL, OOM killer) are recovered as ``stuck`` runs by the next processor
            that starts on the store. Costs a write per writer pass; for stores that
            keep a journal (SQLite, PostgreSQL). ``"resume"``, for spans that their
            senders keep sending (the ingest service's): a pass answers
            :meth:`receive` only once its spans are journaled or written (fragments are
            written in the pass that takes them), runs still being assembled at
            shutdown are left in the journal, and the next processor takes a killed or
            stopped one's spans back into assembly, so their runs complete as their
            other spans arrive.
        handle_sigterm: when built in the main thread and SIGTERM has its default
            disposition (or a Python handler), store every run on SIGTERM before the
            process terminates (see ``decisiontrace.pipeline._signals``).

    Raises:
        ValueError: a size or interval is not positive, the store URL is invalid, or
            ``journal`` is set for a store that keeps no journal.
    """

    def __init__(
        self,
        store: RunStore | str | os.PathLike[str] | None = None,
        *,
        flush_interval: float = 0.2,
        max_queue_size: int = 200_000,
        max_unwritten_runs: int = 10_000,
        late_span_grace: float = 5.0,
        late_token_window: float = 60.0,
        run_timeout: float = 3600.0,
        max_open_runs: int = 10_000,
        journal: bool | Literal["resume"] = False,
        handle_sigterm: bool = True,
    ) -> None:
        for name, value in (
            ("flush_interval", flush_interval),
            ("max_queue_size", max_queue_size),
            ("max_unwritten_runs", max_unwritten_runs),
            ("late_span_grace", late_span_grace),
            ("late_token_window", late_token_window),
            ("run_timeout", run_timeout),
            ("max_open_runs", max_open_runs),
        ):
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if journal not in (False, True, "resume") or type(journal) not in (bool, str):
            raise ValueError(f'journal must be False, True or "resume", got {journal!r}')
        opened = store if isinstance(store, RunStore) else open_store(store)
        if journal and not getattr(opened, "supports_journal", False):
            raise ValueError(
                f"journal={journal!r} needs a store that keeps a journal (SQLite, "
                f"PostgreSQL); {type(opened).__name__} does not"
            )
        self._store = opened
        self._flush_interval = float(flush_interval)
        self._max_queue_size = int(max_queue_size)
        self._max_unwritten = int(max_unwritten_runs)
        self._max_open_runs = int(max_open_runs)
        self._run_timeout = float(run_timeout)
        self._late_span_grace = float(late_span_grace)
        self._late_token_window = float(late_token_window)
        self._journal = bool(journal)
        self._resume_journal = journal == "resume"
        # Traces of runs open when this process was forked: the parent's, not ours.
        self._inherited_traces: frozenset[int] = frozenset()
        self._shutdown = False
        self._listeners: list[Listener] = []
        self._once = Once()  # what this processor has logged once already
        self.dropped_spans = 0
        # The journal's orphans are recovered once, by the first writer of the process.
        self._new_parts(recover_journal=self._journal)
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(ref, "_after_fork_in_child"))
        # A multiprocessing child (fork) ends with os._exit: no atexit there.
        multiprocessing.util.register_after_fork(self, _store_at_multiprocessing_exit)
        atexit.register(_call, ref, "_at_exit")
        if handle_sigterm:
            _signals.watch(self)
        if self._journal:
            self._writer.start()  # recovers what a killed process left in the journal

    def _new_parts(self, *, recover_journal: bool) -> None:
        """The parts this processor is composed of, fresh (at construction, after a fork)."""
        self._assembler = RunAssembler(
            late_span_grace=self._late_span_grace, late_token_window=self._late_token_window
        )
        if self._resume_journal:
            # What is answered is journaled or written: fragments (never journaled)
            # are written in the pass that takes them.
            self._assembler.fragment_quiet = 0.0
        # Which LLM span's tokens count, for what (the rules live in _tokens).
        self._tokens = TokenAttribution(self._max_queue_size, self._forgot_a_span)
        self._open = OpenSpans(self._max_queue_size)
        previous: Writer | None = getattr(self, "_writer", None)
        writer = Writer(
            self._store,
            self._assembler,
            self._open,
            flush_interval=self._flush_interval,
            max_queue_size=self._max_queue_size,
            max_unwritten_runs=self._max_unwritten,
            run_timeout=self._run_timeout,
            journal=self._journal,
            recover_journal=recover_journal,
            resume_journal=self._resume_journal,
            once=self._once,
        )
        writer.listeners = self._listeners
        if previous is not None:  # counted since construction, across forks
            writer.written_runs = previous.written_runs
            writer.dropped_runs = previous.dropped_runs
        self._writer = writer

    @property
    def store(self) -> RunStore:
        """Where runs are written."""
        return self._store

    @store.setter
    def store(self, store: RunStore) -> None:
        self._store = self._writer.store = store

    @property
    def queue_length(self) -> int:
        """Ended spans waiting for the writer, plus assembled runs waiting for the store."""
        return self._writer.queue_length

    @property
    def written_runs(self) -> int:
        """Runs written to the store so far."""
        return self._writer.written_runs

    @property
    def dropped_runs(self) -> int:
        """Runs dropped: unencodable, or beyond ``max_unwritten_runs`` while the store failed."""
        return self._writer.dropped_runs

    @property
    def store_failing(self) -> bool:
        """The last write to the store failed; the runs are kept and retried."""
        return self._writer.store_failing

    def add_listener(self, listener: Callable[[list[_codec.Record]], None]) -> None:
        """Call ``listener(records)`` on the writer thread with each batch of assembled
        run records (JSON-ready dicts), before they are written. Used for metrics; a
        listener that raises is logged once and does not stop the write. The records
        are the very dicts then written: a listener reads them and changes nothing."""
        self._listeners.append(listener)

    def _log_once(self, key: str, message: str) -> None:
        warn_once(
            key,
            "decisiontrace: RunRecordProcessor %s",
            message,
            once=self._once,
            level=logging.ERROR,
        )

    # --- SpanProcessor: the agent's thread -------------------------------------------

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        """Note decision spans and spans under them, and open run spans. Never raises."""
        try:
            # The SDK's dict under its attributes proxy: each proxy lookup runs Python code.
            attributes = getattr(getattr(span, "_attributes", None), "_dict", None)
            if type(attributes) is not dict:
                attributes = span.attributes
            kind = attributes.get(_KIND) if attributes else None
            context = span.get_span_context()
            trace_id = context.trace_id
            open_spans = self._open
            if kind == _DECISION:
                open_spans.decision_started(trace_id, context.span_id, span)
                if self._journal:
                    self._enqueue(Started(span))
                tokens = self._tokens
                if tokens.open_in_trace:  # only then do the token rules look at decisions
                    tokens.decision_started(trace_id)
            elif kind == _RUN:
                open_runs = open_spans.runs
                open_runs[trace_id] = span
                if len(open_runs) > self._max_open_runs:
                    self._evict_oldest_open_run()
                if self._journal:
                    self._enqueue(Started(span))
                if self._writer.thread is None:
                    self._writer.start()  # to expire it, should nothing else ever end
            elif (parent := span.parent) is not None and (
                open_spans.runs or open_spans.decisions or self._tokens.notes
            ):
                open_decisions = open_spans.decisions.get(trace_id)
                self._tokens.span_started(
                    trace_id,
                    context.span_id,
                    parent.span_id,
                    open_decisions is not None or trace_id in open_spans.runs,
                    open_decisions,
                )
        except Exception as error:
            internal_error("RunRecordProcessor on_start", error, once=self._once)

    def _forgot_a_span(self) -> None:
        self._log_once("subtree_full", "too many open spans under runs; the oldest is forgotten")

    def _evict_oldest_open_run(self) -> None:
        """Store the oldest open run as stuck: more than ``max_open_runs`` are open.

        Only taken out and handed to the writer as it is: decoding it is the writer's.
        """
        oldest = self._open.oldest_run()
        if oldest is None:
            return
        run, decisions = self._open.take(oldest[0])
        if run is not None:
            reason = f"too many open runs (max_open_runs={self._max_open_runs})"
            self._enqueue(Abandoned(run, decisions, "stuck", reason))

    def on_end(self, span: ReadableSpan) -> None:
        """Queue our spans (and LLM token counts under decisions). Never blocks or raises."""
        try:
            attributes = getattr(getattr(span, "_attributes", None), "_dict", None)
            if type(attributes) is not dict:
                attributes = span.attributes
            kind = attributes.get(_KIND) if attributes else None
            context = span.context
            if context is None:
                return
            inherited = self._inherited_traces
            if inherited and context.trace_id in inherited:
                return  # a run of the parent process: the parent stores it
            trace_id = context.trace_id
            if kind is not None:
                if kind == _DECISION:
                    self._token_bookkeeping(kind, trace_id, context.span_id)
                    self._open.decision_ended(trace_id, context.span_id)
                elif kind == _RUN:
                    self._open.run_ended(trace_id)
                    self._token_bookkeeping(kind, trace_id, context.span_id)
                self._enqueue(span)
            elif self._tokens.notes:
                open_decisions = self._open.decisions.get(trace_id)
                item = self._tokens.span_ended(
                    trace_id,
                    context.span_id,
                    attributes,
                    open_decisions,
                    span.start_time or 0,
                    span.end_time or 0,
                )
                if item is None:
                    return
                # Counted on the spans of a decision or run still open (see _tokens).
                decision = item.decision_span_id
                if decision is None:
                    if trace_id in self._open.runs:
                        LEDGER.add(context.span_id, None, trace_id, item.tokens)
                elif open_decisions is not None and decision in open_decisions:
                    LEDGER.add(context.span_id, decision, trace_id, item.tokens)
                self._enqueue(item)
        except Exception as error:
            internal_error("RunRecordProcessor on_end", error, once=self._once)

    def _token_bookkeeping(self, kind: str, trace_id: int, span_id: int) -> None:
        """A decision or run span ended: what the token rules keep about it goes. Fenced
        off, so that the span itself is queued whatever happens here."""
        try:
            if kind == _DECISION:
                tokens = self._tokens
                # Nothing is held of a decision while no span of another instrumentation
                # is noted and the ledger is empty: the common case, without calls.
                if tokens.notes or tokens.open_in_trace:
                    tokens.decision_ended(trace_id, span_id)
                if LEDGER.decisions:
                    LEDGER.discard_decision(span_id)
            else:
                if self._tokens.run_ended(trace_id):
                    # Before the run span is queued: the writer keeps the run once written.
                    self._assembler.expect_late_tokens(trace_id)
                LEDGER.discard_run(trace_id)
        except Exception as error:
            internal_error("RunRecordProcessor token bookkeeping", error, once=self._once)

    def _enqueue(self, item: Any) -> None:
        if not self._writer.put(item):
            self.dropped_spans += 1
            self._log_once("queue_full", "span queue full; spans are being dropped")

    # --- for the ingest service and compat --------------------------------------------

    def receive(self, items: Sequence[Received | Tokens]) -> PassMark | None:
        """Queue spans decoded elsewhere (OTLP, for the ingest service) for assembly.

        Returns a :class:`~decisiontrace.pipeline._inbox.PassMark` set once the writer took them
        in, or None (nothing queued) when the queue has no room for them all.
        """
        if self._shutdown:
            return None
        return self._writer.receive(items)

    def assemble_again(self, spans: Iterable[_decode.SpanData]) -> None:
        """Queue decoded spans of a run the processor had already, amended, so that the
        run is assembled and written again (the store replaces it by id)."""
        for span in spans:
            self._enqueue(OpenRun(span))

    def store_orphans(self) -> None:
        """Store decisions whose run span has not arrived as stuck runs, at the next pass."""
        self._writer.take_orphans()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write every run whose span has ended; True when all are in the store in time."""
        try:
            if self._shutdown:
                return True
            return self._writer.flush(timeout_millis / 1000)
        except Exception as error:
            internal_error("RunRecordProcessor force_flush", error, once=self._once)
            return False

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Store runs still open as cancelled, flush, and stop the writer within the timeout.

        With ``journal="resume"``, runs still being assembled (decisions whose run span
        has not arrived, runs waiting for late decisions) are not stored: they stay in
        the journal, and the next processor on the store resumes them.
        """
        # The provider's own exit hook may get here first: say why the runs were open.
        exiting = not threading.main_thread().is_alive()
        self._shutdown_with(_EXIT_REASON if exiting else _SHUTDOWN_REASON, timeout_millis)

    def _shutdown_with(self, reason: str, timeout_millis: int) -> None:
        """Shut down, storing runs still open as cancelled for ``reason``."""
        if self._shutdown:
            return
        try:
            deadline = time.monotonic() + timeout_millis / 1000
            writer = self._writer
            writer.cancel_open_runs(reason)
            if self._resume_journal:
                writer.keep_journaled()
            self.force_flush(timeout_millis)
            self._shutdown = True
            waiting = writer.stop(deadline - time.monotonic())
            if waiting:
                logger.error(
                    "decisiontrace: %d runs or spans could not be written before shutdown",
                    waiting,
                )
            thread = writer.thread
            if thread is not None and thread.is_alive():
                # The writer is stuck in the store (a lock, a hung disk): closing the
                # store under it could block too, and shutdown must keep its timeout.
                return
            if self._journal:
                self._release_journal()
            self.store.close()
        except Exception as error:
            internal_error("RunRecordProcessor shutdown", error, once=self._once)

    def _release_journal(self) -> None:
        """What this process leaves in the journal becomes anyone's orphans at once: the
        next process need not wait for this one to end."""
        try:
            self.store.journal_release()
        except Exception:  # expected: the store failing; they stay this process's
            logger.warning(
                "decisiontrace: could not hand this process's journal entries over at "
                "shutdown; they are recovered once this process has ended",
                exc_info=True,
            )

    # --- process lifecycle ---------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # The parent writes what it had queued and the runs it had open; the child
        # starts empty, with its own writer thread and (the store keys connections by
        # pid) its own connection, and ignores the parent's runs should they end here.
        self._inherited_traces = self._inherited_traces | frozenset(self._open.runs)
        self._new_parts(recover_journal=False)

    def _at_exit(self) -> None:
        if not self._shutdown:
            self._shutdown_with(_EXIT_REASON, _EXIT_TIMEOUT_MILLIS)


def _store_at_multiprocessing_exit(processor: RunRecordProcessor) -> None:
    """In a multiprocessing child: store the runs when the child's target returns."""
    ref = weakref.ref(processor)
    multiprocessing.util.Finalize(None, _call, args=(ref, "_at_exit"), exitpriority=10)


def _call(ref: weakref.ref[RunRecordProcessor], method: str) -> None:
    processor = ref()
    if processor is not None:
        try:
            getattr(processor, method)()
        except Exception as error:
            internal_error(f"RunRecordProcessor {method}", error)
