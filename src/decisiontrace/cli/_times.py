"""Times as the commands show them: always with their UTC offset.

Records keep naive local times (the original tracker's convention); a time printed
without its offset cannot be compared across machines or with a trace viewer, so every
time a command prints, as text or JSON, carries the offset of the machine's local time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

__all__ = ["aware", "json_with_offsets", "time_text"]


def aware(moment: datetime) -> datetime:
    """``moment`` with an offset: a naive time is read as this machine's local time."""
    return moment.astimezone() if moment.tzinfo is None else moment


def time_text(moment: datetime | None) -> str:
    """``2026-05-10 14:03:07+02:00``; "" for None."""
    return "" if moment is None else aware(moment).isoformat(sep=" ", timespec="seconds")


def _iso(value: Any) -> Any:
    if not isinstance(value, str) or not value:
        return value
    try:
        return aware(datetime.fromisoformat(value)).isoformat()
    except ValueError:
        return value


def json_with_offsets(record: dict[str, Any]) -> dict[str, Any]:
    """A JSON-ready run record (or summary) whose times carry their offset (in place)."""
    for key in ("started_at", "completed_at"):
        if key in record:
            record[key] = _iso(record[key])
    for decision in record.get("decisions") or ():
        decision["timestamp"] = _iso(decision.get("timestamp"))
        if decision.get("outcome"):
            decision["outcome"]["timestamp"] = _iso(decision["outcome"].get("timestamp"))
    for problem in record.get("problems") or ():
        problem["timestamp"] = _iso(problem.get("timestamp"))
    return record
