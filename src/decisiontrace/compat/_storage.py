"""Where a compat tracker's runs go: whatever the original accepted as ``storage``.

The original tracker never looks at its storage until it saves a run, and then calls
``storage.save_run(run)``. A compat tracker resolves its storage the first time it
starts a run, to one of these sinks:

- a decisiontrace store, URL or path (or ``None``: the default store):
  :class:`StoreSink`, spans to a :class:`~decisiontrace.pipeline.processor.RunRecordProcessor`
  writing to that store. There is one provider, processor and writer thread per store,
  shared by every tracker that names it and kept for the life of the process;
- any other object with a ``save_run`` method (the original's ``ConcurrentStorage``):
  :class:`SaveRunSink`, each finished run rebuilt from its spans and handed to that
  method (see :mod:`._handover`);
- an object with only a ``base_path`` (as some of the original's tests pass): the
  JSON-files store there, in the original's layout;
- anything else: :class:`NullSink`, which stores nothing; the tracker logs why, once.

Spans of the last two kinds of sink go to one bare, shared provider (no processor, no
exit hook, no thread): their runs are assembled when they end, by the tracker.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.trace import Tracer

from decisiontrace._version import __version__
from decisiontrace.compat._handover import SaveRunHandOver, wait_for_private_hand_overs
from decisiontrace.models import Run, RunStatus
from decisiontrace.pipeline._inbox import span_data
from decisiontrace.pipeline._pending import PendingRun
from decisiontrace.pipeline.processor import RunRecordProcessor
from decisiontrace.spanmodel import _records
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._decode import SpanData
from decisiontrace.stores import JSONFilesStore, RunStore, StoreError, open_store


class Sink:
    """Where one tracker's finished runs go (this base: nowhere)."""

    tracer: Tracer
    #: The sink takes run records when runs end (else its processor has the spans).
    takes_records = False

    def run_ended(self, run: PendingRun) -> Run | None:
        """A run of the tracker ended; returns the Run handed over, if any."""
        return None

    def run_amended(self, run: PendingRun, handed: Run | None) -> Run | None:
        """A second ``end_run`` changed a run that had ended (and was ``handed`` over)."""
        return None

    def flush(self, timeout_s: float) -> bool:
        """Wait until the runs ended so far are stored; True if they are."""
        return True


class NullSink(Sink):
    """Storage that could not be used: runs are recorded as spans, stored nowhere."""

    def __init__(self) -> None:
        self.tracer = _bare_tracer()


class StoreSink(Sink):
    """A decisiontrace store, fed the spans by its shared ``RunRecordProcessor``."""

    def __init__(self, pipeline: _StorePipeline) -> None:
        self.pipeline = pipeline
        self.tracer = pipeline.tracer

    def run_amended(self, run: PendingRun, handed: Run | None) -> Run | None:
        # The processor already has (or wrote) the first version: give it the amended
        # run span with its decisions, as one more run; the store replaces it by id.
        spans = [span for _, span in run.decision_items()]
        if run.run is not None:
            spans.append(run.run)
        self.pipeline.processor.assemble_again(spans)
        return None

    def flush(self, timeout_s: float) -> bool:
        return self.pipeline.processor.force_flush(int(timeout_s * 1000))


class SaveRunSink(Sink):
    """An object with ``save_run(run)``: each run is rebuilt from its spans, handed over."""

    takes_records = True

    def __init__(self, storage: Any, save_run: Any) -> None:
        self.tracer = _bare_tracer()
        self.hand_over = SaveRunHandOver(storage, save_run)

    def run_ended(self, run: PendingRun) -> Run | None:
        handed = Run.model_validate(run.record())
        self.hand_over.hand_over(handed)
        return handed

    def run_amended(self, run: PendingRun, handed: Run | None) -> Run | None:
        if handed is None or run.run is None:
            return self.run_ended(run)
        # As the original: the Run already handed over is updated in place and handed
        # over again, so a storage that still holds it (queued for a batch) writes the
        # last values whichever of its saves it writes last. Only the ending fields
        # change: they are read off the amended run span, the rest stays as decoded.
        for field, value in _ending_fields(run.run, handed).items():
            setattr(handed, field, value)
        self.hand_over.hand_over(handed)
        return handed

    def flush(self, timeout_s: float) -> bool:
        return wait_for_private_hand_overs(timeout_s)


def _ending_fields(run: SpanData, handed: Run) -> dict[str, Any]:
    """What a second end_run changes (the original's fields), from the amended run span."""
    attributes = run.attributes
    status = RunStatus(str(attributes.get(sc.RUN_STATUS, "failed")))
    narrative = str(attributes.get(sc.RUN_NARRATIVE) or "") or _records.narrative(
        status.value,
        handed.metrics.total_decisions,
        handed.metrics.successful_decisions,
        handed.metrics.failed_decisions,
        [(p.severity, p.description) for p in handed.problems],
        _records.failed_on(
            (d.intent, None if d.outcome is None else d.outcome.success, False)
            for d in handed.decisions
        ),
    )
    try:
        output = json.loads(str(attributes.get(sc.RUN_OUTPUT) or "{}"))
    except ValueError:
        output = {}
    return {
        "status": status,
        "completed_at": None if run.end_ns is None else _records.ns_to_datetime(run.end_ns),
        "narrative": narrative,
        "output_data": output if isinstance(output, dict) else {},
    }


def assemble(run_span: ReadableSpan, decision_spans: list[ReadableSpan]) -> PendingRun:
    """A run assembled from its ended spans, as the processor's writer assembles it."""
    pending = PendingRun(0.0)
    pending.run = span_data(run_span)
    for span in decision_spans:
        data = span_data(span)
        pending.decisions[data.span_id] = data
    return pending


def with_run(pending: PendingRun, run: SpanData) -> PendingRun:
    """The same decisions under another version of the run span."""
    amended = PendingRun(0.0)
    amended.run = run
    amended.decisions = pending.decisions
    amended.packed = pending.packed
    amended.packed_ids = pending.packed_ids
    amended.tokens = pending.tokens
    return amended


# --- shared providers ---------------------------------------------------------------------


class _StorePipeline:
    """One store's provider and processor, shared by every tracker writing to it."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.processor = RunRecordProcessor(store)
        # No exit hook: it would keep the provider alive and shut the processor down
        # with its own 30 s timeout; the processor stores its runs at exit itself.
        self.provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("decisiontrace", __version__)


_lock = threading.Lock()
_pipelines: dict[tuple[str, Any], _StorePipeline] = {}
_bare: Tracer | None = None


def _new_lock_in_child() -> None:
    # Forked while another thread held it: the child's copy would stay locked for good.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_in_child)


def _bare_tracer() -> Tracer:
    """The tracer of the shared provider without processors (every run recorded)."""
    global _bare
    with _lock:
        if _bare is None:
            provider = TracerProvider(sampler=ALWAYS_ON, shutdown_on_exit=False)
            _bare = provider.get_tracer("decisiontrace", __version__)
        return _bare


def _pipeline_for(key: tuple[str, Any], open_: Any, *, by_url: bool = True) -> _StorePipeline:
    """The pipeline under ``key``; stores opened from a name share it by their URL."""
    with _lock:
        pipeline = _pipelines.get(key)
        if pipeline is not None:
            return pipeline
        store: RunStore = open_()
        url_key = ("url", getattr(store, "url", None) if by_url else None)
        pipeline = _pipelines.get(url_key) if url_key[1] else None
        if pipeline is None:
            pipeline = _StorePipeline(store)
            if url_key[1]:
                _pipelines[url_key] = pipeline
        elif store is not pipeline.store:
            store.close()  # the same store, named differently: keep the open one
        _pipelines[key] = pipeline
        return pipeline


def resolve(storage: Any) -> tuple[Sink, str | None]:
    """The sink for ``storage``, and an error message when it cannot be used.

    Never raises: whatever ``storage`` is, the answer is a sink (maybe a NullSink).
    """
    try:
        if isinstance(storage, RunStore):
            # Held by the pipeline for good, so its id is never reused. Not shared by URL:
            # two MemoryStores have the same one.
            pipeline = _pipeline_for(("store", id(storage)), lambda: storage, by_url=False)
            return StoreSink(pipeline), None
        if storage is None or isinstance(storage, str | os.PathLike):
            spec = storage if storage is None else os.fspath(storage)
            key = ("spec", (type(spec).__name__, spec))
            return StoreSink(_pipeline_for(key, lambda: open_store(spec))), None
        save_run = getattr(storage, "save_run", None)
        if callable(save_run):
            return SaveRunSink(storage, save_run), None
        base_path = getattr(storage, "base_path", None)
        if isinstance(base_path, str | os.PathLike):
            path = os.path.abspath(os.fspath(base_path))
            pipeline = _pipeline_for(("spec", ("base_path", path)), lambda: JSONFilesStore(path))
            return StoreSink(pipeline), None
        return NullSink(), "it has no save_run() method and no base_path"
    except (ValueError, TypeError, OSError, StoreError) as error:
        return NullSink(), f"it cannot be opened: {error}"
    except Exception as error:  # expected: the user's storage object (a hostile attribute)
        return NullSink(), f"it could not be used: {type(error).__name__}: {error}"


__all__ = ["NullSink", "SaveRunSink", "Sink", "StoreSink", "assemble", "resolve", "with_run"]
