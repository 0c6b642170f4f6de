"""RunRecordProcessor: rebuilds Run records from ended spans and stores them.

The contract of a span processor is strict: ``on_start`` and ``on_end`` run on the
agent's thread, inside ``span.end()``, and the SDK does not catch what they raise. So
here they only do dictionary work and append to a queue; a writer thread decodes the
spans, assembles runs and writes them to the store in batches (one transaction each).
Every method guards itself: an internal error is logged once and swallowed.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import StatusCode

from decisiontrace import _codec
from decisiontrace import semconv as sc
from decisiontrace._assembly import PendingRun, RunAssembler, token_usage
from decisiontrace.stores import RunStore, open_store

logger = logging.getLogger("decisiontrace")

_KIND = sc.SPAN_KIND
_DECISION = sc.KIND_DECISION
_RUN = sc.KIND_RUN


class _Tokens:
    """An LLM span's token count, for the decision span it ran under."""

    __slots__ = ("decision_span_id", "tokens", "trace_id")

    def __init__(self, trace_id: int, decision_span_id: int, tokens: int) -> None:
        self.trace_id = trace_id
        self.decision_span_id = decision_span_id
        self.tokens = tokens


def _attributes_of(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes as a plain dict.

    ``span.attributes`` is a read-only proxy over the SDK's ``BoundedAttributes``, whose
    every lookup runs Python code (~0.7 µs); decoding a decision does about twenty. Once
    a span has ended its attributes no longer change, so the writer reads the dict
    underneath when the SDK has one, and copies through the public API otherwise.
    """
    return _plain(getattr(span, "_attributes", None) or span.attributes)


def _plain(attributes: Any) -> dict[str, Any]:
    """A plain dict of an SDK attributes mapping (``BoundedAttributes`` or a proxy)."""
    inner = getattr(attributes, "_dict", None)
    if type(inner) is dict:
        return inner
    return dict(attributes or {})


def span_data(span: ReadableSpan) -> _codec.SpanData:
    """An SDK span in the source-neutral form the codec decodes."""
    context = span.context
    assert context is not None  # an SDK span always has one
    parent = span.parent
    return _codec.SpanData(
        trace_id=context.trace_id,
        span_id=context.span_id,
        parent_id=parent.span_id if parent is not None else None,
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time,
        attributes=_attributes_of(span),
        events=[
            _codec.EventData(event.name, event.timestamp, _plain(event.attributes))
            for event in span.events
        ],
        error=span.status.status_code is StatusCode.ERROR,
    )


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
        run_timeout: seconds after which a run span still open, or decisions whose run
            span never arrived, are stored as a ``stuck`` run.

    Raises:
        ValueError: a size or interval is not positive, or the store URL is invalid.
    """

    def __init__(
        self,
        store: RunStore | str | os.PathLike[str] | None = None,
        *,
        flush_interval: float = 0.2,
        max_queue_size: int = 200_000,
        max_unwritten_runs: int = 10_000,
        late_span_grace: float = 5.0,
        run_timeout: float = 3600.0,
    ) -> None:
        for name, value in (
            ("flush_interval", flush_interval),
            ("max_queue_size", max_queue_size),
            ("max_unwritten_runs", max_unwritten_runs),
            ("late_span_grace", late_span_grace),
            ("run_timeout", run_timeout),
        ):
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self.store = store if isinstance(store, RunStore) else open_store(store)
        self._flush_interval = float(flush_interval)
        self._max_queue_size = int(max_queue_size)
        self._max_unwritten = int(max_unwritten_runs)
        self._run_timeout = float(run_timeout)
        self._assembler = RunAssembler(late_span_grace=late_span_grace)
        self._reset_state()
        self._shutdown = False
        self._listeners: list[Callable[[list[_codec.Record]], None]] = []
        self._logged: set[str] = set()
        self.dropped_spans = 0
        self.dropped_runs = 0
        self.written_runs = 0
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(ref, "_after_fork_in_child"))
        atexit.register(_call, ref, "_at_exit")

    def _reset_state(self) -> None:
        self._inbox: deque[Any] = deque()
        # span id -> decision span id, for every open span at or under a decision span
        self._subtree: dict[int, int] = {}
        # trace id -> open run span (to store runs that never end as stuck/cancelled)
        self._open_runs: dict[int, Span] = {}
        self._unwritten: list[PendingRun] = []
        self._flush_requests: list[threading.Event] = []
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._retry_at = 0.0

    def add_listener(self, listener: Callable[[list[_codec.Record]], None]) -> None:
        """Call ``listener(records)`` on the writer thread with each batch of assembled
        run records (JSON-ready dicts), before they are written. Used for metrics; a
        listener that raises is logged once and does not stop the write."""
        self._listeners.append(listener)

    # --- SpanProcessor: the agent's thread -------------------------------------------

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        """Note decision spans and spans under them, and open run spans. Never raises."""
        try:
            attributes = span.attributes
            kind = attributes.get(_KIND) if attributes else None
            context = span.get_span_context()
            span_id = context.span_id
            if kind == _DECISION:
                self._subtree[span_id] = span_id
            elif kind == _RUN:
                self._open_runs[context.trace_id] = span
            elif self._subtree:
                parent = span.parent
                if parent is not None:
                    decision = self._subtree.get(parent.span_id)
                    if decision is not None:
                        self._subtree[span_id] = decision
        except Exception:
            self._log_once("on_start", "on_start failed")

    def on_end(self, span: ReadableSpan) -> None:
        """Queue our spans (and LLM token counts under decisions). Never blocks or raises."""
        try:
            attributes = span.attributes
            kind = attributes.get(_KIND) if attributes else None
            context = span.context
            if context is None:
                return
            if kind is not None:
                if kind == _DECISION:
                    self._subtree.pop(context.span_id, None)
                elif kind == _RUN:
                    self._open_runs.pop(context.trace_id, None)
                item: Any = span
            elif self._subtree:
                decision = self._subtree.pop(context.span_id, None)
                if decision is None:
                    return
                tokens = token_usage(attributes)
                if not tokens:
                    return
                item = _Tokens(context.trace_id, decision, tokens)
            else:
                return
            inbox = self._inbox
            if len(inbox) >= self._max_queue_size:
                self.dropped_spans += 1
                self._log_once("queue_full", "span queue full; spans are being dropped")
                return
            inbox.append(item)
            if self._thread is None:
                self._start_writer()
        except Exception:
            self._log_once("on_end", "on_end failed")

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Write every run whose span has ended; True when all are in the store in time."""
        try:
            if self._shutdown:
                return True
            if self._thread is None:
                self._start_writer()
            request = threading.Event()
            with self._lock:
                self._flush_requests.append(request)
            self._wake.set()
            return request.wait(timeout_millis / 1000)
        except Exception:
            self._log_once("force_flush", "force_flush failed")
            return False

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Store runs still open as cancelled, flush, and stop the writer within the timeout."""
        if self._shutdown:
            return
        try:
            deadline = time.monotonic() + timeout_millis / 1000
            self._cancel_open_runs("tracer provider shut down with the run still open")
            self.force_flush(timeout_millis)
            self._shutdown = True
            self._wake.set()
            thread = self._thread
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
            if self._unwritten:
                logger.error(
                    "decisiontrace: %d runs could not be written before shutdown",
                    len(self._unwritten),
                )
            self.store.close()
        except Exception:
            self._log_once("shutdown", "shutdown failed")

    # --- the writer thread -------------------------------------------------------------

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
        while inbox:
            item = inbox.popleft()
            if type(item) is _Tokens:
                assembler.add_tokens(item.trace_id, item.decision_span_id, item.tokens)
            elif type(item) is _OpenRun:
                assembler.add(item.data, now)
            else:
                assembler.add(span_data(item), now)
        runs = assembler.take_ready_runs(force=force, now=now)
        runs.extend(assembler.take_orphan_runs(self._run_timeout, now))
        self._expire_open_runs()
        if runs:
            if self._listeners:
                self._notify_listeners(runs)
            self._unwritten.extend(runs)
            overflow = len(self._unwritten) - self._max_unwritten
            if overflow > 0:
                del self._unwritten[:overflow]
                self.dropped_runs += overflow
                logger.error(
                    "decisiontrace: %d runs dropped: the store has been failing and the "
                    "queue of runs waiting to be written is full",
                    overflow,
                )
        if self._unwritten and (force or now >= self._retry_at):
            self._write()

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
            return
        self.written_runs += len(batch)
        self._unwritten = []
        if self._failing_since is not None:
            logger.warning("decisiontrace: the store is writable again; waiting runs written")
            self._failing_since = None

    def _write_one_by_one(self, batch: list[PendingRun]) -> None:
        kept: list[PendingRun] = []
        for run in batch:
            try:
                self.store.save_assembled([run])
            except (TypeError, ValueError):
                self.dropped_runs += 1
                self._log_once("unencodable", "a run could not be encoded and was dropped")
            except Exception:
                kept.append(run)
        self.written_runs += len(batch) - len(kept) - self.dropped_runs
        self._unwritten = kept

    def _expire_open_runs(self) -> None:
        """Runs open longer than ``run_timeout`` are stored as stuck (and forgotten)."""
        if not self._open_runs:
            return
        limit = time.time_ns() - int(self._run_timeout * 1e9)
        for trace_id, span in list(self._open_runs.items()):
            if (span.start_time or 0) < limit:
                self._store_open_run(trace_id, span, "stuck", "run did not end within run_timeout")

    def _cancel_open_runs(self, reason: str) -> None:
        for trace_id, span in list(self._open_runs.items()):
            self._store_open_run(trace_id, span, "cancelled", reason)

    def _store_open_run(self, trace_id: int, span: Span, status: str, reason: str) -> None:
        """Queue the record of a run whose span is still open, with the given status."""
        self._open_runs.pop(trace_id, None)
        data = span_data(span)
        data.end_ns = time.time_ns()
        attributes = dict(data.attributes)
        attributes[sc.RUN_STATUS] = status
        attributes[sc.RUN_END_REASON] = reason
        attributes.pop(sc.RUN_DECISION_COUNT, None)
        data.attributes = attributes
        self._inbox.append(_OpenRun(data))

    # --- process lifecycle ---------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # The parent writes what it had queued; the child starts empty, with its own
        # writer thread and (the store keys connections by pid) its own connection.
        self._assembler = RunAssembler(late_span_grace=self._assembler.late_span_grace)
        self._reset_state()

    def _at_exit(self) -> None:
        if not self._shutdown:
            self.shutdown(timeout_millis=5_000)

    def _log_once(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            logger.exception("decisiontrace: RunRecordProcessor %s", message)


class _OpenRun:
    """A run span that never ended, captured with its final status (not an SDK span)."""

    __slots__ = ("data",)

    def __init__(self, data: _codec.SpanData) -> None:
        self.data = data


def _call(ref: weakref.ref[RunRecordProcessor], method: str) -> None:
    processor = ref()
    if processor is not None:
        try:
            getattr(processor, method)()
        except Exception:
            logger.exception("decisiontrace: RunRecordProcessor.%s failed", method)
