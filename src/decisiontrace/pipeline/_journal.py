"""Journal mode: run and decision spans written as they happen, for runs a kill cut short.

Without the journal a run reaches the store only once it is complete, so a process
killed with SIGKILL (or by the OOM killer, or a power cut) loses the runs it had in
flight. With ``RunRecordProcessor(store, journal=True)`` the writer thread also appends
each run and decision span it sees (at start, and again when it ends) to a journal the
store keeps; a run's entries are deleted in the transaction that saves the run. What
is left in the journal of a process that is gone is a run that never completed: the
next processor to start on the store assembles it into a ``stuck`` run.

A receiver of spans that others keep sending (the ingest service,
``RunRecordProcessor(journal="resume")``) journals what it takes in before it answers,
leaves the runs it still assembles in the journal when it shuts down, and takes the
entries of its killed or stopped predecessor back into assembly instead
(:func:`resume`): their runs complete when their other spans arrive.

An entry is ``(run_id, trace_id, data)``: ``trace_id`` as 32 hex digits and ``data`` a
JSON-ready dict in the shapes of :meth:`~decisiontrace.pipeline._pending.PendingRun.compact`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from decisiontrace.pipeline._assembly import RunAssembler
from decisiontrace.pipeline._inbox import Tokens
from decisiontrace.pipeline._pending import PendingRun
from decisiontrace.spanmodel import _decode
from decisiontrace.spanmodel import semconv as sc

logger = logging.getLogger("decisiontrace")

#: ``end_reason`` of a run rebuilt from the journal.
RECOVERED_REASON = "process ended before the run (recovered from the journal)"

JournalEntry = tuple[str, str, dict[str, Any]]


def trace_key(trace_id: int) -> str:
    """The journal's form of a trace id."""
    return f"{trace_id:032x}"


def run_id_of(span: _decode.SpanData) -> str:
    """The run a run or decision span belongs to ("" if it does not say)."""
    return str(span.attributes.get(sc.RUN_ID, ""))


def span_entry(span: _decode.SpanData) -> JournalEntry | None:
    """The entry of one run or decision span (open or ended), or None for other spans."""
    kind = span.attributes.get(sc.SPAN_KIND)
    run_id = run_id_of(span)
    if not run_id or sc.FRAGMENT_ID in span.attributes:
        # A fragment's spans are written within a fraction of a second anyway, and
        # recovered as a run of their own they would replace the run's root record.
        return None
    # A copy: an open span's attributes may still change on the agent's thread.
    attributes = dict(span.attributes)
    if kind == sc.KIND_RUN:
        data: dict[str, Any] = {
            "kind": sc.KIND_RUN,
            "span_id": span.span_id,
            "start_ns": span.start_ns,
            "end_ns": span.end_ns,
            "attributes": attributes,
            "events": [[e.name, e.time_ns, dict(e.attributes)] for e in span.events],
            "error": span.error,
            "service_name": span.service_name,
        }
    elif kind == sc.KIND_DECISION:
        data = {
            "kind": sc.KIND_DECISION,
            "span_id": span.span_id,
            "start_ns": span.start_ns,
            "end_ns": span.end_ns,
            "attributes": attributes,
        }
    else:
        return None
    return run_id, trace_key(span.trace_id), data


def tokens_entry(
    run_id: str, trace_id: int, decision_span_id: int | None, tokens: int
) -> JournalEntry:
    """The entry of an LLM span's tokens, counted for a decision (None: the run only)."""
    data = {"kind": "tokens", "span_id": decision_span_id, "tokens": tokens}
    return run_id, trace_key(trace_id), data


def entries_of_pass(
    items: Iterable[_decode.SpanData | Tokens],
    ready: Iterable[PendingRun],
    pending: Mapping[Any, PendingRun],
) -> list[JournalEntry]:
    """The entries for the spans a writer pass took in, except those of runs it saves now.

    Args:
        items: run and decision spans (open or ended) and LLM token counts, in order.
        ready: the runs the pass is about to save (their spans need no journal).
        pending: the runs still being assembled, by trace id (names a token's run).
    """
    # A fragment saved now shares its trace with its run's root, which may still wait.
    saved_now = {_trace_of(run) for run in ready if run.fragment is None}
    entries: list[JournalEntry] = []
    for item in items:
        if item.trace_id in saved_now:
            continue
        if isinstance(item, Tokens):
            run_id = _run_id_of(pending.get(item.trace_id))
            if run_id:
                entries.append(
                    tokens_entry(run_id, item.trace_id, item.decision_span_id, item.tokens)
                )
            continue
        entry = span_entry(item)
        if entry is not None:
            entries.append(entry)
    return entries


def _any_span(run: PendingRun) -> _decode.SpanData | None:
    return run.run if run.run is not None else next(iter(run.decisions.values()), None)


def _trace_of(run: PendingRun) -> int | None:
    span = _any_span(run)
    return None if span is None else span.trace_id


def _run_id_of(run: PendingRun | None) -> str:
    span = None if run is None else _any_span(run)
    return "" if span is None else run_id_of(span)


def _span_of(trace_id: str, data: Mapping[str, Any]) -> _decode.SpanData:
    """The run or decision span of an entry's data (KeyError, TypeError, ValueError
    if it is unreadable)."""
    return _decode.SpanData(
        trace_id=int(trace_id, 16),
        span_id=int(data["span_id"]),
        parent_id=None,
        name="",
        start_ns=int(data["start_ns"]),
        end_ns=None if data["end_ns"] is None else int(data["end_ns"]),
        attributes=dict(data["attributes"]),
        events=[
            _decode.EventData(str(name), int(time_ns), dict(attributes))
            for name, time_ns, attributes in data.get("events", ())
        ],
        error=bool(data.get("error", False)),
        service_name=_text_or_none(data.get("service_name")),
    )


def _tokens_of(trace_id: str, data: Mapping[str, Any]) -> Tokens:
    span_id = data["span_id"]
    return Tokens(int(trace_id, 16), None if span_id is None else int(span_id), int(data["tokens"]))


def recovered_runs(entries: Iterable[JournalEntry]) -> tuple[list[PendingRun], list[str]]:
    """Stuck runs assembled from the entries of runs that were never saved.

    Entries are taken in the order they were written; a later entry of the same span
    (its end) replaces an earlier one (its start).

    Returns:
        The runs, and the ids of runs whose entries could not be decoded (to be cleared).
    """
    by_trace: dict[str, PendingRun] = {}
    last_seen: dict[str, int] = {}
    broken: set[str] = set()
    for run_id, trace_id, data in entries:
        try:
            pending = by_trace.get(trace_id)
            if pending is None:
                pending = by_trace[trace_id] = PendingRun(0.0)
            kind = data["kind"]
            if kind == "tokens":
                tokens = _tokens_of(trace_id, data)
                if tokens.decision_span_id is None:
                    pending.run_tokens += tokens.tokens
                else:
                    span_id = tokens.decision_span_id
                    pending.tokens[span_id] = pending.tokens.get(span_id, 0) + tokens.tokens
                continue
            span = _span_of(trace_id, data)
            last_seen[trace_id] = max(last_seen.get(trace_id, 0), span.start_ns, span.end_ns or 0)
            if kind == sc.KIND_RUN:
                pending.run = span
            elif kind == sc.KIND_DECISION:
                pending.decisions[span.span_id] = span
        except (KeyError, TypeError, ValueError):
            logger.warning("decisiontrace: a journal entry of run %r is unreadable", run_id)
            broken.add(run_id)
    runs: list[PendingRun] = []
    for trace_id, pending in by_trace.items():
        if pending.run is None and not pending.decisions:
            continue  # token counts alone are not a run
        run = pending.run
        if run is not None:
            attributes = dict(run.attributes)
            # Stored as it was when the process ended: not waiting for more decisions.
            attributes.pop(sc.RUN_DECISION_COUNT, None)
            run.attributes = attributes
            if run.end_ns is None:
                run.end_ns = last_seen.get(trace_id) or run.start_ns
        pending.status = "stuck"
        pending.reason = RECOVERED_REASON
        runs.append(pending)
    return runs, sorted(broken)


def resume(
    entries: Iterable[JournalEntry], assembler: RunAssembler
) -> tuple[list[PendingRun], list[str]]:
    """Take the entries a receiver's killed predecessor left back into ``assembler``.

    The spans of a trace whose entries are all of ended spans (what a receiver of
    exported spans journals) are added again, in the order they were written: their
    run completes when its other spans arrive, as if the process had never stopped. A
    trace with a span still open was journaled by the agent's own process, which is
    gone: it becomes a stuck run, as :func:`recovered_runs` makes it.

    Returns:
        The stuck runs, and the ids of runs whose entries could not be decoded (to be
        cleared).
    """
    entries = list(entries)
    open_traces = {
        trace_id
        for _, trace_id, data in entries
        if isinstance(data, Mapping) and data.get("kind") != "tokens" and data.get("end_ns") is None
    }
    stuck, broken = recovered_runs(e for e in entries if e[1] in open_traces)
    unreadable = set(broken)
    added = 0
    now = time.monotonic()
    for run_id, trace_id, data in entries:
        if trace_id in open_traces:
            continue
        try:
            kind = data["kind"]
            if kind == "tokens":
                tokens = _tokens_of(trace_id, data)
                assembler.add_tokens(tokens.trace_id, tokens.decision_span_id, tokens.tokens)
            elif kind in (sc.KIND_RUN, sc.KIND_DECISION):
                assembler.add(_span_of(trace_id, data), now)
            else:
                continue
        except (KeyError, TypeError, ValueError):
            logger.warning("decisiontrace: a journal entry of run %r is unreadable", run_id)
            unreadable.add(run_id)
            continue
        added += 1
    if added:
        logger.info(
            "decisiontrace: %d spans taken in by a process that ended were taken back from "
            "the journal; their runs complete as their other spans arrive",
            added,
        )
    return stuck, sorted(unreadable)


__all__ = [
    "RECOVERED_REASON",
    "JournalEntry",
    "entries_of_pass",
    "recovered_runs",
    "resume",
    "span_entry",
    "tokens_entry",
]


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
