"""The part of the ingest service both protocols share: spans into the run processor.

A :class:`Receiver` owns a :class:`~decisiontrace.pipeline.processor.RunRecordProcessor` that no
TracerProvider feeds: decoded OTLP spans go into its queue, its writer thread assembles
runs (and fragments) with the very code it uses for SDK spans, and writes them to the
store. A request is answered once the writer took its spans in and the store is
healthy; otherwise the protocol handlers answer with OTLP's retryable codes, so the
exporters (and the collector) keep the spans and send them again.

On a store that keeps a journal (SQLite, PostgreSQL) the processor runs with
``journal="resume"``: what a request brought is journaled or written before it is
answered, and a service restarted after a SIGKILL or a SIGTERM takes the spans its
predecessor held back into assembly (:mod:`decisiontrace.pipeline._journal`): on
shutdown it stores only what is complete, and leaves in the journal the runs whose run
span has not arrived, so that a rolling restart loses no decision.
"""

from __future__ import annotations

import enum
import threading
import time
from typing import Any

from decisiontrace.ingest._spans import Decoded, TokenLinks
from decisiontrace.pipeline.processor import RunRecordProcessor
from decisiontrace.stores import RunStore

#: Seconds a client is asked to wait before retrying (``Retry-After``).
RETRY_AFTER_SECONDS = 1


class Verdict(enum.Enum):
    """What became of a request's spans."""

    ACCEPTED = "accepted"
    #: The queue is full: retry later.
    OVERLOADED = "overloaded"
    #: The store is failing (or the writer is stuck): retry later.
    STORE_FAILING = "store_failing"


class Receiver:
    """Spans of OTLP requests into a run processor, with counters.

    Args:
        store: where runs go.
        max_queue_spans: spans waiting for the writer; a request that would go over is
            refused (retryable).
        ack_timeout: seconds a request waits for the writer to take its spans in.
        flush_interval: seconds between writer passes (and so at most a request's wait).
        late_span_grace: see :class:`~decisiontrace.pipeline.processor.RunRecordProcessor`.
        run_timeout: seconds decisions wait for their run span before they are stored as
            a stuck run.
    """

    def __init__(
        self,
        store: RunStore,
        *,
        max_queue_spans: int = 200_000,
        ack_timeout: float = 5.0,
        flush_interval: float = 0.05,
        late_span_grace: float = 5.0,
        run_timeout: float = 3600.0,
    ) -> None:
        self._resumes = store.supports_journal
        self.processor = RunRecordProcessor(
            store,
            flush_interval=flush_interval,
            max_queue_size=max_queue_spans,
            late_span_grace=late_span_grace,
            run_timeout=run_timeout,
            journal="resume" if self._resumes else False,
            handle_sigterm=False,  # the service handles SIGTERM itself
        )
        self.store = store
        #: LLM token counts that came before their decision span, across requests.
        self.links = TokenLinks()
        self._ack_timeout = ack_timeout
        self._lock = threading.Lock()
        self._started = time.time()
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "requests",
                "spans_accepted",
                "spans_ignored",
                "spans_rejected",
                "rejected_unauthorized",
                "rejected_too_large",
                "rejected_malformed",
                "rejected_overloaded",
                "rejected_store_failing",
            ),
            0,
        )

    def count(self, name: str, amount: int = 1) -> None:
        """Add to a counter (thread-safe)."""
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + amount

    def submit(self, decoded: Decoded) -> Verdict:
        """Hand a request's spans to the processor and wait until its writer took them."""
        self.count("requests")
        with self._lock:
            self.counters["spans_ignored"] += decoded.ignored
            self.counters["spans_rejected"] += decoded.rejected
        if not decoded.items:
            return Verdict.ACCEPTED
        mark = self.processor.receive(decoded.items)
        if mark is None:
            self.count("rejected_overloaded")
            return Verdict.OVERLOADED
        if not mark.done.wait(self._ack_timeout) or mark.store_failing:
            # Taken in (a retry is merged: spans are kept by id), but not safely stored.
            self.count("rejected_store_failing")
            return Verdict.STORE_FAILING
        self.count("spans_accepted", decoded.ours)
        return Verdict.ACCEPTED

    def health(self) -> dict[str, Any]:
        """Status and counters, for the health endpoint."""
        processor = self.processor
        with self._lock:
            counters = dict(self.counters)
        failing = processor.store_failing
        return {
            "status": "store_failing" if failing else "ok",
            "uptime_seconds": round(time.time() - self._started, 3),
            "queue_length": processor.queue_length,
            "runs_written": processor.written_runs,
            "runs_dropped": processor.dropped_runs,
            "spans_dropped": processor.dropped_spans,
            **counters,
        }

    def shutdown(self, timeout: float = 30.0) -> None:
        """Store what is complete; what is not stays in the journal for the next service
        to resume, or, on a store without one, is stored now (decisions whose run span
        never came as stuck runs)."""
        if self._resumes:  # the processor's shutdown writes only what is complete
            self.processor.shutdown(int(timeout * 1000))
            return
        self.processor.store_orphans()
        self.processor.force_flush(int(timeout * 500))
        self.processor.shutdown(int(timeout * 500))


__all__ = ["RETRY_AFTER_SECONDS", "Receiver", "Verdict"]
