"""Filtering and ordering of run records, shared by the stores that scan records."""

from __future__ import annotations

from datetime import datetime

from decisiontrace.stores.base import Record


def record_node_ids(record: Record) -> list[str]:
    """Node ids of a record: ``metrics.nodes_executed`` then decision nodes, first seen first.

    Both sources are read because a record assembled elsewhere may list a deciding
    node in only one of them; the node filter means "a node that made a decision".
    """
    seen: dict[str, None] = {}
    metrics = record.get("metrics") or {}
    for node_id in metrics.get("nodes_executed") or ():
        seen.setdefault(node_id, None)
    for decision in record.get("decisions") or ():
        node_id = decision.get("node_id")
        if node_id is not None:
            seen.setdefault(node_id, None)
    return list(seen)


def since_text(since: datetime) -> str:
    """``since`` as the ISO text records hold: naive local time.

    Records stamp ``started_at`` with ``datetime.now()``, so an aware ``since`` is
    converted to local time and stripped of its zone; ISO text then compares in time order.
    """
    if since.tzinfo is not None and since.utcoffset() is not None:
        since = since.astimezone().replace(tzinfo=None)
    return since.isoformat()


def record_matches(
    record: Record,
    *,
    goal_id: str | None,
    status: str | None,
    since: str | None,
    node_id: str | None,
) -> bool:
    """True when ``record`` passes every filter given (``since`` as :func:`since_text`)."""
    if goal_id is not None and record.get("goal_id") != goal_id:
        return False
    if status is not None and record.get("status", "running") != status:
        return False
    if since is not None:
        started_at = record.get("started_at")
        if not isinstance(started_at, str) or started_at < since:
            return False
    return node_id is None or node_id in record_node_ids(record)


def newest_first_key(record: Record) -> tuple[str, str]:
    """Sort key for newest-first order: ``started_at`` text, then run id to break ties."""
    started_at = record.get("started_at")
    return (started_at if isinstance(started_at, str) else "", str(record.get("id", "")))
