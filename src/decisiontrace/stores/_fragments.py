"""One run from its fragments: the merge rule every store applies.

A process that records into a run it did not start (a tool server, a sub-agent reached
over HTTP with the run in its propagated context) stores a *fragment*: a run record
with the run's ``id`` and an extra ``fragment_id``, unique per process and run, holding
the decisions, problems and tokens that process saw. The process that started the run
stores the *root* record, which has no ``fragment_id`` (or ``""``). Stores keep one
record per ``(id, fragment_id)`` and hand readers the merged run built here, so a run
is listed and counted once however many processes took part in it.

The rule, in one place:

- decisions and problems of every part, in time order (ids are unique across parts);
- metrics: decision counts recomputed from the merged decisions, tokens and latency
  summed over the parts, nodes and edges united in first-seen order;
- ``started_at`` the earliest part's; status, ``completed_at``, output, narrative, goal
  and every other field the root's;
- without a root yet, the run is ``running`` and takes its goal from a fragment;
- ``services`` lists the processes (``service`` of the root, of each fragment and of
  their decisions) that took part.

A run stored as a root record alone is returned exactly as saved.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from decisiontrace.spanmodel import _records

Record = dict[str, Any]

#: Record field naming the fragment a record is (absent or ``""`` on the root record).
FRAGMENT_ID = "fragment_id"
#: Record field listing the services of a merged run.
SERVICES = "services"
#: Record and decision field naming the service (``service.name``) that recorded it.
SERVICE = "service"


def fragment_key(record: Record) -> str:
    """The fragment id of a record: ``""`` for the root record."""
    value = record.get(FRAGMENT_ID)
    return value if isinstance(value, str) else ("" if value is None else str(value))


def is_fragment(record: Record) -> bool:
    """True for the record of a process that did not start the run."""
    return fragment_key(record) != ""


def merge(parts: Sequence[Record]) -> Record:
    """The merged run record of one run's parts (a root record and fragments).

    Args:
        parts: the stored records of one run id, any order; at most one is the root.

    Returns:
        A new record (the root record itself when it is the only part).

    Raises:
        ValueError: ``parts`` is empty.
    """
    if not parts:
        raise ValueError("a run needs at least one record to merge")
    roots = [part for part in parts if not is_fragment(part)]
    fragments = sorted(
        (part for part in parts if is_fragment(part)),
        key=lambda part: (_text(part.get("started_at")), fragment_key(part)),
    )
    if roots and not fragments:
        return roots[-1]
    root = roots[-1] if roots else None
    ordered = ([root] if root is not None else []) + fragments
    merged: Record = dict(root) if root is not None else _headless(fragments[0])
    merged.pop(FRAGMENT_ID, None)

    decisions = sorted(
        (decision for part in ordered for decision in part.get("decisions") or ()),
        key=lambda decision: _text(decision.get("timestamp")),
    )
    problems = sorted(
        (problem for part in ordered for problem in part.get("problems") or ()),
        key=lambda problem: _text(problem.get("timestamp")),
    )
    merged["decisions"] = decisions
    merged["problems"] = problems
    merged["metrics"] = _merged_metrics(ordered, decisions)
    starts = [_text(part.get("started_at")) for part in ordered if part.get("started_at")]
    if starts:
        merged["started_at"] = min(starts)
    merged["duration_ms"] = _duration_ms(merged.get("started_at"), merged.get("completed_at"))
    merged[SERVICES] = services_of(ordered)
    return merged


def merge_groups(records: Iterable[Record]) -> list[Record]:
    """Merged records of records of several runs, one per run id, first seen first."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(str(record.get("id", "")), []).append(record)
    return [merge(parts) for parts in groups.values()]


def services_of(parts: Iterable[Record]) -> list[str]:
    """Service names of the parts and their decisions, first seen first."""
    seen: dict[str, None] = {}
    for part in parts:
        service = part.get(SERVICE)
        if isinstance(service, str) and service:
            seen.setdefault(service, None)
        for decision in part.get("decisions") or ():
            service = decision.get(SERVICE)
            if isinstance(service, str) and service:
                seen.setdefault(service, None)
    return list(seen)


def _headless(fragment: Record) -> Record:
    """The run-level fields of a run whose root record has not arrived: still running."""
    record: Record = {
        key: value
        for key, value in fragment.items()
        if key not in ("decisions", "problems", "metrics", SERVICE)
    }
    record.update(
        status="running",
        completed_at=None,
        narrative="",
        output_data={},
    )
    return record


def _merged_metrics(parts: Sequence[Record], decisions: Sequence[Record]) -> Record:
    tokens = latency = 0
    nodes: dict[str, None] = {}
    edges: dict[str, None] = {}
    extras: Record = {}
    for part in parts:
        metrics = part.get("metrics") or {}
        for key, value in metrics.items():
            extras.setdefault(key, value)
        tokens += _int(metrics.get("total_tokens"))
        latency += _int(metrics.get("total_latency_ms"))
        for node in metrics.get("nodes_executed") or ():
            nodes.setdefault(node, None)
        for edge in metrics.get("edges_traversed") or ():
            edges.setdefault(edge, None)
    # Counted by the span model's rule; tokens and latency are the parts' sums above
    # (they hold LLM tokens that count for the run but none of its decisions).
    counted = _records.Totals()
    for decision in decisions:
        node = decision.get("node_id")
        if isinstance(node, str):
            nodes.setdefault(node, None)
        outcome = decision.get("outcome")
        counted.add(bool(outcome.get("success")) if isinstance(outcome, dict) else None)
    metrics = dict(extras)
    metrics.update(
        total_decisions=counted.decisions,
        successful_decisions=counted.successful,
        failed_decisions=counted.failed,
        total_tokens=tokens,
        total_latency_ms=latency,
        nodes_executed=list(nodes),
        edges_traversed=list(edges),
        success_rate=_records.success_rate(counted.decisions, counted.successful),
    )
    return metrics


def _duration_ms(started_at: Any, completed_at: Any) -> int:
    try:
        started = datetime.fromisoformat(str(started_at))
        completed = None if completed_at is None else datetime.fromisoformat(str(completed_at))
        return _records.duration_ms(started, completed)
    except (TypeError, ValueError):
        return 0


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


__all__ = [
    "FRAGMENT_ID",
    "SERVICE",
    "SERVICES",
    "fragment_key",
    "is_fragment",
    "merge",
    "merge_groups",
    "services_of",
]
