"""Runs rebuilt from exported traces: OTLP JSON in, Run records into a store.

Reads what the collector's file exporter writes (one ``ExportTraceServiceRequest`` per
line) and what Jaeger and Tempo return for a trace (one JSON document), converts the
spans with :mod:`decisiontrace.export._otlp_json`, and assembles and decodes them with the very
code the :class:`~decisiontrace.pipeline.processor.RunRecordProcessor` uses
(:class:`~decisiontrace.pipeline._assembly.RunAssembler`,
:mod:`decisiontrace.spanmodel._codec`). So a run
rebuilt from its exported spans equals the run the processor stored. Lines holding an
``ExportLogsServiceRequest`` are read for ``gen_ai.evaluation.result`` events, whose
judgements are stored with their decisions.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, cast

from decisiontrace.pipeline._tokens import token_usage
from decisiontrace.spanmodel import _codec, _decode
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import RunStore, open_store

if TYPE_CHECKING:  # imported when rebuilding: ``import decisiontrace`` stays light
    from decisiontrace.evaluation import telemetry as evaluation_events
    from decisiontrace.export import _otlp_json

_BATCH = 500
_MAX_ERRORS = 1_000


@dataclass
class RebuildResult:
    """What :func:`rebuild` did.

    Attributes:
        runs_written: run records saved to the store.
        lines_read: lines of the source read (a whole-document source counts its lines).
        spans_read: spans read, ours and others.
        run_ids: ids of the runs written, in the order written.
        judgements_written: judgements of decisions read from evaluation events and
            stored with their decisions.
        errors: one message per problem, naming the line and field
            (``line 3: resourceSpans[0].scopeSpans[0].spans[2].traceId: ...``); at most
            1000 are kept, then one saying how many more there were.
    """

    runs_written: int = 0
    lines_read: int = 0
    spans_read: int = 0
    run_ids: list[str] = field(default_factory=list)
    judgements_written: int = 0
    errors: list[str] = field(default_factory=list)
    _more_errors: int = field(default=0, repr=False)

    def _error(self, message: str) -> None:
        if len(self.errors) < _MAX_ERRORS:
            self.errors.append(message)
        else:
            self._more_errors += 1
            self.errors[-1] = f"... and {self._more_errors} more errors"


def _slim(span: _decode.SpanData) -> _decode.SpanData:
    """Keep a span whole if the assembler reads it; otherwise only its place in the tree."""
    attributes = span.attributes
    if sc.SPAN_KIND in attributes or token_usage(attributes):
        return span
    span.attributes = {}
    span.events = ()
    return span


def _documents(stream: IO[str], result: RebuildResult) -> Iterator[tuple[str, Any]]:
    """(where, parsed JSON) for each request: per line, or the whole text as one document."""
    first = ""
    for line in stream:
        result.lines_read += 1
        if line.strip():
            first = line
            break
    if not first:
        return
    try:
        document = json.loads(first)
    except ValueError:
        document = None  # not a complete document on one line: read the rest with it
    if document is not None:
        yield f"line {result.lines_read}", document
        for line in stream:
            result.lines_read += 1
            if not line.strip():
                continue
            try:
                yield f"line {result.lines_read}", json.loads(line)
            except ValueError as error:
                result._error(f"line {result.lines_read}: invalid JSON: {error}")
        return
    start_line = result.lines_read
    rest = stream.read()
    result.lines_read += rest.count("\n") + (1 if rest and not rest.endswith("\n") else 0)
    try:
        yield "document", json.loads(first + rest)
    except json.JSONDecodeError as error:
        result._error(
            f"line {start_line + error.lineno - 1}: invalid JSON: {error.msg} "
            f"(column {error.colno})"
        )


def _open(source: str | os.PathLike[str] | IO[str] | Iterable[str]) -> tuple[IO[str], bool]:
    if isinstance(source, str | os.PathLike):
        return open(source, encoding="utf-8"), True
    if hasattr(source, "read"):
        return cast("IO[str]", source), False
    return io.StringIO(
        "".join(line if line.endswith("\n") else line + "\n" for line in source)
    ), True


def rebuild(
    source: str | os.PathLike[str] | IO[str] | Iterable[str],
    store: RunStore | str | os.PathLike[str] | None = None,
) -> RebuildResult:
    """Rebuild Run records from OTLP JSON traces and save them to ``store``.

    Accepts the proto3 JSON of ``ExportTraceServiceRequest``: one request per line (the
    collector's file exporter) or one document (a trace downloaded from Jaeger's or
    Tempo's API, also wrapped as ``{"result": ...}`` or ``{"trace": ...}``, and with
    ``batches`` for ``resourceSpans``). Ids may be hex (OTLP/JSON) or base64 (proto3
    JSON). Spans that are not ours are ignored, except LLM spans under a decision, whose
    tokens count for it. A malformed line or field is reported in ``errors`` with its
    line and path, and the rest is still read. Runs whose run span is missing are
    stored as ``stuck``, as the processor stores them.

    Args:
        source: a file path, an open text file, or an iterable of lines.
        store: the store or its URL (default ``$DECISIONTRACE_STORE`` / the default store).

    Returns:
        A :class:`RebuildResult`.

    Raises:
        OSError: the source file cannot be opened or read.
        ValueError: the store URL is invalid.
    """
    from decisiontrace.evaluation import telemetry as evaluation_events
    from decisiontrace.export import _otlp_json
    from decisiontrace.pipeline._assembly import RunAssembler

    target = store if isinstance(store, RunStore) else open_store(store)
    result = RebuildResult()
    stream, owned = _open(source)
    spans: dict[tuple[int, int], _decode.SpanData] = {}
    judgements: list[tuple[str, evaluation_events.ReadJudgement]] = []
    try:
        for where, document in _documents(stream, result):

            def report(error: _otlp_json.FieldError, where: str = where) -> None:
                result._error(f"{where}: {error}")

            if evaluation_events.is_logs_request(document):
                judgements.extend(
                    (where, read)
                    for read in evaluation_events.judgements_in_request(document, report)
                )
                continue
            for span in _otlp_json.request_spans(document, report, _slim):
                result.spans_read += 1
                # A span exported twice (retries, overlapping downloads) counts once.
                spans[(span.trace_id, span.span_id)] = span
    finally:
        if owned:
            stream.close()
    assembler = RunAssembler()
    assembler.add_tree(spans.values())
    spans.clear()
    records = assembler.take_ready(force=True)
    records.extend(assembler.take_orphans(0))
    try:
        for start in range(0, len(records), _BATCH):
            batch = records[start : start + _BATCH]
            target.save_records(batch)
            result.runs_written += len(batch)
            result.run_ids.extend(str(record["id"]) for record in batch)
        if judgements:
            _store_judgements(target, records, judgements, result)
    finally:
        if target is not store:  # opened here from a URL
            target.close()
    return result


def _store_judgements(
    store: RunStore,
    records: list[_codec.Record],
    judgements: list[tuple[str, evaluation_events.ReadJudgement]],
    result: RebuildResult,
) -> None:
    """Store judgements read from evaluation events (see ``evaluation.received``)."""
    from decisiontrace.evaluation.received import span_index, store_received

    written, problems = store_received(store, judgements, span_index(records))
    result.judgements_written += written
    for where, problem in problems:
        result._error(f"{where}: {problem}")
