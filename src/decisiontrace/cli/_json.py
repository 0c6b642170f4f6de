"""What ``--json`` prints for runs: records and listings with their times' offsets and
the link to their trace."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from decisiontrace.cli._links import trace_url
from decisiontrace.cli._times import json_with_offsets

if TYPE_CHECKING:
    from decisiontrace.models import Run
    from decisiontrace.stores import RunStore

__all__ = ["listing", "run_json"]


def run_json(run: Run) -> dict[str, Any]:
    """A run's record for ``--json``: times with their offset, and ``trace_url`` when
    ``DECISIONTRACE_TRACE_URL`` is set and the record keeps its trace id."""
    record = json_with_offsets(run.model_dump(mode="json"))
    link = trace_url(record)
    if link is not None:
        record["trace_url"] = link
    return record


def listing(store: RunStore, summary: Mapping[str, Any]) -> dict[str, Any]:
    """A run's summary (a store's summary dict, ``RunSummary``'s JSON form) for
    ``runs list --json``, with when it started and ended, its trace id and link (read
    from its record)."""
    item = dict(summary)
    record = store.load_record(item["run_id"]) or {}
    for key in ("started_at", "completed_at", "trace_id"):
        item[key] = record.get(key)
    json_with_offsets(item)
    item["trace_url"] = trace_url(item)
    return item
