"""Sampling that keeps every run: every span is recorded, only a sample is exported.

The pieces, used by :func:`decisiontrace.setup.configure`:

* :class:`KeepEveryRunSampler` never drops a span. Traces outside the export sample get
  ``RECORD_ONLY``: span processors (the
  :class:`~decisiontrace.pipeline.processor.RunRecordProcessor`)
  see them and store every run, while exporters, which only take *sampled* spans, skip
  them.
* :class:`RecordEveryRunSampler` wraps a sampler the user chose: its export decisions
  stand, and the run spans it would drop (with the spans inside them) are recorded only.
* :class:`KeepFailedRunsProcessor` is a batch span processor for one exporter that also
  exports the unsampled runs that went wrong. It holds the spans of each unsampled run
  (within memory bounds) until the run span ends, then exports the whole trace if the
  run failed, got stuck or was cancelled, reported a problem, or has an ERROR span, and
  drops it otherwise.

``docs/export.md`` explains how this pairs with the collector's tail sampling.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from time import monotonic
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Decision, Sampler, SamplingResult
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    get_current_span,
)
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from decisiontrace._internal.errors import Once, internal_error
from decisiontrace.spanmodel import semconv as sc

logger = logging.getLogger("decisiontrace")

_TRACE_ID_LOW_64 = (1 << 64) - 1
#: Run statuses whose traces are always exported.
EXPORTED_STATUSES = sc.RUN_STATUSES_EXPORTED


def _parent_context(parent_context: Context | None) -> SpanContext | None:
    span_context = get_current_span(parent_context).get_span_context()
    return span_context if span_context.is_valid else None


class KeepEveryRunSampler(Sampler):
    """Records every span; samples (marks for export) only a chosen share of traces.

    A root span is sampled when its trace id falls within ``export_ratio`` (the same
    test as the SDK's ``TraceIdRatioBased``, so every service in a trace agrees), and
    otherwise recorded only. A child follows its parent's sampled flag and is always
    recorded. The attributes a span starts with are always kept.

    Args:
        export_ratio: share of traces to export, from 0.0 to 1.0. Defaults to 1.0 unless
            ``export_sampler`` is given.
        export_sampler: instead of a ratio, a sampler that decides which spans are
            exported; where it would drop a span, the span is recorded only.

    Raises:
        ValueError: the ratio is not a number in [0, 1], both arguments are given, or
            ``export_sampler`` is not a Sampler.
    """

    def __init__(
        self, export_ratio: float | None = None, *, export_sampler: Sampler | None = None
    ) -> None:
        if export_sampler is not None:
            if export_ratio is not None:
                raise ValueError("give export_ratio or export_sampler, not both")
            if not isinstance(export_sampler, Sampler):
                raise ValueError(f"export_sampler must be a Sampler, got {export_sampler!r}")
        ratio = 1.0 if export_ratio is None else export_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise ValueError(f"export_ratio must be a number from 0.0 to 1.0, got {ratio!r}")
        self.export_ratio = float(ratio)
        self.export_sampler = export_sampler
        self._bound = round(self.export_ratio * (_TRACE_ID_LOW_64 + 1))

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """RECORD_AND_SAMPLE for spans to export, RECORD_ONLY for the rest; never DROP."""
        parent = _parent_context(parent_context)
        parent_state = parent.trace_state if parent is not None else None
        if self.export_sampler is not None:
            result = self.export_sampler.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
            if result.decision is Decision.RECORD_AND_SAMPLE:
                return result
            # The SDK gives a span the attributes the sampler returns, and samplers return
            # none when they drop: keep the span's own.
            kept: Mapping[str, Any] = (
                result.attributes if result.decision is Decision.RECORD_ONLY else (attributes or {})
            )
            return SamplingResult(
                Decision.RECORD_ONLY, dict(kept), result.trace_state or parent_state
            )
        if parent is not None:
            sampled = parent.trace_flags.sampled
        else:
            sampled = trace_id & _TRACE_ID_LOW_64 < self._bound
        decision = Decision.RECORD_AND_SAMPLE if sampled else Decision.RECORD_ONLY
        return SamplingResult(decision, attributes, parent_state)

    def get_description(self) -> str:
        """The sampler's name and setting."""
        if self.export_sampler is not None:
            return f"KeepEveryRunSampler{{{self.export_sampler.get_description()}}}"
        return f"KeepEveryRunSampler{{export_ratio={self.export_ratio}}}"


class RecordEveryRunSampler(Sampler):
    """Wraps a user's sampler so that the runs it would drop are still recorded.

    The wrapped sampler keeps every decision it makes about what is *exported*: spans it
    samples stay sampled, spans it records only stay so. Where it would drop a span, the
    span is recorded only (never exported) if it is a run or decision span (its
    ``decisiontrace.span_kind`` attribute at start), or if its parent is a local span
    recorded only, such as a run the sampler left out: the LLM and tool spans inside a
    run then reach the :class:`~decisiontrace.pipeline.processor.RunRecordProcessor` too, so the
    stored run is whole. Other spans it drops stay dropped.

    :func:`decisiontrace.setup.configure` puts it around the sampler of a provider it
    finds in place.

    Args:
        sampler: the user's sampler, which decides what is exported.

    Raises:
        ValueError: ``sampler`` is not a Sampler.
    """

    def __init__(self, sampler: Sampler) -> None:
        if not isinstance(sampler, Sampler):
            raise ValueError(f"sampler must be a Sampler, got {sampler!r}")
        self.sampler = sampler

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """The wrapped sampler's result, with DROP turned into RECORD_ONLY for run spans."""
        result = self.sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is not Decision.DROP:
            return result
        if not (
            (attributes and attributes.get(sc.SPAN_KIND) in _RUN_SPAN_KINDS)
            or _parent_recorded_only(parent_context)
        ):
            return result
        parent = _parent_context(parent_context)
        parent_state = parent.trace_state if parent is not None else None
        # Samplers return no attributes when they drop: keep the span's own.
        return SamplingResult(
            Decision.RECORD_ONLY, dict(attributes or {}), result.trace_state or parent_state
        )

    def get_description(self) -> str:
        """The wrapper's name around the wrapped sampler's description."""
        return f"RecordEveryRunSampler{{{self.sampler.get_description()}}}"


_RUN_SPAN_KINDS = frozenset((sc.KIND_RUN, sc.KIND_DECISION))


def _parent_recorded_only(parent_context: Context | None) -> bool:
    """True when the parent is a span of this process, recorded but not sampled."""
    span = get_current_span(parent_context)
    context = span.get_span_context()
    return (
        context.is_valid
        and not context.is_remote
        and not context.trace_flags.sampled
        and span.is_recording()
    )


def never_drops(sampler: Sampler) -> bool:
    """True for samplers of this module that record every run span already."""
    return sampler is ALWAYS_ON or isinstance(sampler, KeepEveryRunSampler | RecordEveryRunSampler)


def run_needs_export(span: ReadableSpan) -> bool:
    """True for a run span whose run failed, got stuck or was cancelled, or that reported
    problems or failed decisions, or whose status is ERROR."""
    if span.status.status_code is StatusCode.ERROR:
        return True
    attributes = span.attributes or {}
    if attributes.get(sc.RUN_STATUS) in EXPORTED_STATUSES:
        return True
    for key in (sc.RUN_PROBLEM_COUNT, sc.RUN_FAILURE_COUNT):
        value = attributes.get(key)
        if isinstance(value, int | float) and value > 0:
            return True
    return False


def sampled_copy(span: ReadableSpan) -> ReadableSpan:
    """The span with its sampled flag set, so that a batch processor exports it. (The
    flag itself is not part of the exported OTLP span.)"""
    context = span.context
    assert context is not None
    return ReadableSpan(
        name=span.name,
        context=SpanContext(
            context.trace_id,
            context.span_id,
            is_remote=context.is_remote,
            trace_flags=TraceFlags(context.trace_flags | TraceFlags.SAMPLED),
            trace_state=context.trace_state,
        ),
        parent=span.parent,
        resource=span.resource,
        attributes=span.attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class _HeldTrace:
    """Ended spans of one unsampled run, waiting for the run span."""

    __slots__ = ("error", "first_seen", "spans")

    def __init__(self, now: float) -> None:
        self.spans: list[ReadableSpan] = []
        self.first_seen = now
        self.error = False


class KeepFailedRunsProcessor(SpanProcessor):
    """A batch span processor that also exports the unsampled runs that went wrong.

    Sampled spans go straight to an inner ``BatchSpanProcessor``. The spans of an
    unsampled run (a root span carrying ``decisiontrace.span_kind = "run"`` when it
    starts) are held until the run span ends; then the whole trace is exported if the
    run needs it (:func:`run_needs_export`, or any held span has ERROR status), and
    dropped otherwise. Spans of that trace ending later follow the same verdict.
    Unsampled spans of other traces are dropped, as a batch processor would.

    Memory is bounded: at most ``max_spans_per_trace`` spans are held per run (later
    ones are dropped; the run span is always kept), at most ``max_held_spans`` in all
    (beyond it the oldest held run is dropped), and a run held longer than
    ``max_hold_seconds`` is exported as it is, as a run that is stuck. At shutdown,
    runs still open are exported: the run-record processor stores them as cancelled.

    ``on_start``/``on_end`` only do dictionary work under a short lock and hand spans
    to the batch processor's queue; exporting happens on its thread. They never raise.

    Args:
        span_exporter: where spans go.
        max_spans_per_trace: spans held per unsampled run.
        max_held_spans: spans held in all.
        max_hold_seconds: how long an unsampled run's spans are held at most.
        max_queue_size, schedule_delay_millis, max_export_batch_size: passed to the
            inner ``BatchSpanProcessor`` (None: its defaults and ``OTEL_BSP_*``).

    Raises:
        ValueError: a bound is not positive.
    """

    def __init__(
        self,
        span_exporter: SpanExporter,
        *,
        max_spans_per_trace: int = 1_000,
        max_held_spans: int = 20_000,
        max_hold_seconds: float = 3_600.0,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
    ) -> None:
        for name, value in (
            ("max_spans_per_trace", max_spans_per_trace),
            ("max_held_spans", max_held_spans),
            ("max_hold_seconds", max_hold_seconds),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        self.span_exporter = span_exporter
        self._batch = BatchSpanProcessor(
            span_exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=schedule_delay_millis,
            max_export_batch_size=max_export_batch_size,
        )
        self._max_per_trace = int(max_spans_per_trace)
        self._max_held = int(max_held_spans)
        self._max_age = float(max_hold_seconds)
        self._held: OrderedDict[int, _HeldTrace] = OrderedDict()
        self._held_count = 0
        # trace id -> verdict, for spans that end after their run span
        self._verdicts: OrderedDict[int, bool] = OrderedDict()
        self._lock = threading.Lock()
        self._shutdown = False
        self._once = Once()  # what this processor has logged once already
        self.dropped_spans = 0
        self.exported_runs = 0

    # --- SpanProcessor ------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Start holding an unsampled run's trace. Never raises."""
        try:
            self._batch.on_start(span, parent_context)
            context = span.get_span_context()
            if context.trace_flags.sampled or span.parent is not None or self._shutdown:
                return
            attributes = span.attributes
            if attributes and attributes.get(sc.SPAN_KIND) == sc.KIND_RUN:
                with self._lock:
                    self._held.setdefault(context.trace_id, _HeldTrace(monotonic()))
        except Exception as error:
            internal_error("KeepFailedRunsProcessor on_start", error, once=self._once)

    def on_end(self, span: ReadableSpan) -> None:
        """Pass sampled spans on; hold, export or drop unsampled ones. Never raises."""
        try:
            context = span.context
            if context is None:
                return
            if context.trace_flags.sampled:
                self._batch.on_end(span)
                return
            self._on_end_unsampled(span, context.trace_id)
        except Exception as error:
            internal_error("KeepFailedRunsProcessor on_end", error, once=self._once)

    def _on_end_unsampled(self, span: ReadableSpan, trace_id: int) -> None:
        now = monotonic()
        export: list[ReadableSpan] = []
        with self._lock:
            held = self._held.get(trace_id)
            if held is None:
                verdict = self._verdicts.get(trace_id)
                if verdict:
                    export.append(span)
            else:
                is_root = span.parent is None
                if span.status.status_code is StatusCode.ERROR:
                    held.error = True
                if is_root or len(held.spans) < self._max_per_trace:
                    held.spans.append(span)
                    self._held_count += 1
                else:
                    self.dropped_spans += 1
                    if self._once.first("trace_cap"):
                        logger.warning(
                            "decisiontrace: an unsampled run has more than "
                            "max_spans_per_trace=%d spans; the rest are not held for export",
                            self._max_per_trace,
                        )
                if is_root:
                    del self._held[trace_id]
                    self._held_count -= len(held.spans)
                    verdict = held.error or run_needs_export(span)
                    self._remember(trace_id, verdict)
                    if verdict:
                        export.extend(held.spans)
                        self.exported_runs += 1
            export.extend(self._expire(now))
        for ended in export:
            self._batch.on_end(sampled_copy(ended))

    def _expire(self, now: float) -> list[ReadableSpan]:
        """Runs held too long (exported: stuck) or beyond the total bound (dropped)."""
        expired: list[ReadableSpan] = []
        while self._held:
            trace_id, held = next(iter(self._held.items()))
            too_old = now - held.first_seen >= self._max_age
            if not too_old and self._held_count <= self._max_held:
                break
            del self._held[trace_id]
            self._held_count -= len(held.spans)
            self._remember(trace_id, too_old)
            if too_old:
                expired.extend(held.spans)
                self.exported_runs += 1
            else:
                self.dropped_spans += len(held.spans)
                logger.warning(
                    "decisiontrace: %d spans of an unsampled run dropped from export: "
                    "more than max_held_spans=%d held",
                    len(held.spans),
                    self._max_held,
                )
        return expired

    def _remember(self, trace_id: int, verdict: bool) -> None:
        self._verdicts[trace_id] = verdict
        while len(self._verdicts) > 10_000:
            self._verdicts.popitem(last=False)

    def _release_open_runs(self) -> None:
        """Export every held run (they are stored as cancelled)."""
        with self._lock:
            held = list(self._held.values())
            self._held.clear()
            self._held_count = 0
        for trace in held:
            for ended in trace.spans:
                self._batch.on_end(sampled_copy(ended))

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export what is queued (held runs keep waiting for their run span).

        Returns False if that takes longer than ``timeout_millis`` (the export goes on
        in the background)."""
        try:
            done = threading.Event()
            flushed: list[bool] = []

            def flush() -> None:
                try:
                    flushed.append(self._batch.force_flush(timeout_millis))
                finally:
                    done.set()

            threading.Thread(target=flush, name="decisiontrace-export-flush", daemon=True).start()
            return done.wait(max(0.0, timeout_millis / 1000)) and all(flushed)
        except Exception as error:
            internal_error("KeepFailedRunsProcessor force_flush", error, once=self._once)
            return False

    def shutdown(self, timeout_millis: int = 30_000) -> None:
        """Export runs still held, then shut the batch processor and exporter down.

        Returns within about ``timeout_millis``: if exporting takes longer (an endpoint
        that is down or answers 503), the exporter is shut down, which ends its retries,
        and what was not exported yet is dropped.
        """
        if self._shutdown:
            return
        self._shutdown = True
        try:
            self._release_open_runs()
            worker = threading.Thread(
                target=self._batch.shutdown, name="decisiontrace-export-shutdown", daemon=True
            )
            worker.start()
            worker.join(max(0.0, timeout_millis / 1000))
            if worker.is_alive():
                logger.warning(
                    "decisiontrace: span export did not finish within %d ms of shutdown; "
                    "stopping the exporter",
                    timeout_millis,
                )
                self.span_exporter.shutdown()
                worker.join(1.0)
        except Exception as error:
            internal_error("KeepFailedRunsProcessor shutdown", error, once=self._once)
