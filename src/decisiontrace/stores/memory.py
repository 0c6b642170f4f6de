"""An in-process store, and the record filters the file-based stores share.

:class:`MemoryStore` keeps records for the life of the process: it is what tests and
demos use when nothing should touch the disk. The helpers below define what the
``list_summaries`` filters mean on a record dict, so every store filters alike.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import datetime

from decisiontrace import _judgements, _records
from decisiontrace.stores._filters import newest_first_key, record_matches, since_text
from decisiontrace.stores.base import Record, RunStore


def _dumps(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


class MemoryStore(RunStore):
    """Runs kept in a dict for the life of the process.

    Records are stored as JSON text, so a record that a file store could not save
    fails here too, and every record handed out is a fresh copy. Thread-safe.

    Example:
        >>> store = MemoryStore()
        >>> store.load_record("run_unknown") is None
        True
    """

    url = "memory://"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._texts: dict[str, str] = {}

    def save_records(self, records: Sequence[Record]) -> None:
        """Insert or replace these records, all or nothing.

        Raises:
            TypeError: a record holds a value JSON cannot represent (nothing is saved).
        """
        # Serialize the whole batch before touching the dict, so a bad record saves nothing.
        texts = {str(record["id"]): _dumps(record) for record in records}
        with self._lock:
            for run_id in texts:
                old = self._texts.get(run_id)
                # The run saved again (late spans): its judgements stay.
                if old is not None and _judgements.EVALUATIONS_FIELD in old:
                    record = json.loads(texts[run_id])
                    if _judgements.carry_over(json.loads(old), record):
                        texts[run_id] = _dumps(record)
            self._texts.update(texts)

    def update_evaluations(
        self, run_id: str, judgements: Sequence[tuple[str, Record]]
    ) -> list[str] | None:
        """Merge judgements into a stored run under the store's lock (see RunStore)."""
        with self._lock:
            text = self._texts.get(run_id)
            if text is None:
                return None
            record = json.loads(text)
            unknown = _judgements.apply(record, judgements)
            if len(unknown) < len(judgements):
                self._texts[run_id] = _dumps(record)
            return unknown

    def load_record(self, run_id: str) -> Record | None:
        """A fresh copy of the stored record, or None."""
        with self._lock:
            text = self._texts.get(run_id)
        if text is None:
            return None
        record: Record = json.loads(text)
        return record

    def list_summaries(
        self,
        *,
        goal_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        node_id: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Summary dicts of matching runs, newest first."""
        with self._lock:
            texts = list(self._texts.values())
        since_iso = None if since is None else since_text(since)
        matching = [
            record
            for record in (json.loads(text) for text in texts)
            if record_matches(
                record, goal_id=goal_id, status=status, since=since_iso, node_id=node_id
            )
        ]
        matching.sort(key=newest_first_key, reverse=True)
        if limit is not None:
            matching = matching[: max(limit, 0)]
        summaries: list[Record] = [_records.summary_from_record(record) for record in matching]
        return summaries

    def clear(self) -> None:
        """Forget every run."""
        with self._lock:
            self._texts.clear()


__all__ = ["MemoryStore"]
