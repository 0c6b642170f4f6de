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

from decisiontrace.spanmodel import _judgements, _records
from decisiontrace.stores import _fragments
from decisiontrace.stores._filters import newest_first_key, record_matches, since_text
from decisiontrace.stores.base import Record, RunStore


def _dumps(record: Record) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


class MemoryStore(RunStore):
    """Runs kept in a dict for the life of the process.

    Records are stored as JSON text, so a record that a file store could not save
    fails here too, and every record handed out is a fresh copy. Fragments of a run
    (see :mod:`decisiontrace.stores._fragments`) are kept apart and merged on read, and
    so are judgements of decisions, which saving a run again therefore keeps.
    Thread-safe.

    Example:
        >>> store = MemoryStore()
        >>> store.load_record("run_unknown") is None
        True
    """

    url = "memory://"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # run id -> fragment id ("" for the root record) -> record as JSON text
        self._texts: dict[str, dict[str, str]] = {}
        # run id -> (decision id, judgement) in the order they were recorded
        self._judgements: dict[str, list[tuple[str, Record]]] = {}

    def save_records(self, records: Sequence[Record]) -> None:
        """Insert or replace these records, all or nothing.

        Raises:
            TypeError: a record holds a value JSON cannot represent (nothing is saved).
        """
        # Serialize the whole batch before touching the dict, so a bad record saves nothing.
        texts = [
            (str(record["id"]), _fragments.fragment_key(record), _dumps(record))
            for record in records
        ]
        with self._lock:
            for run_id, fragment_id, text in texts:
                self._texts.setdefault(run_id, {})[fragment_id] = text

    def update_evaluations(
        self, run_id: str, judgements: Sequence[tuple[str, Record]]
    ) -> list[str] | None:
        """Merge judgements into a stored run under the store's lock (see RunStore)."""
        with self._lock:
            record = self._merged(run_id)
            if record is None:
                return None
            known = _judgements.decision_ids(record)
            kept = self._judgements.setdefault(run_id, [])
            kept += [
                (decision_id, json.loads(_dumps(judgement)))
                for decision_id, judgement in judgements
                if decision_id in known
            ]
            return [decision_id for decision_id, _ in judgements if decision_id not in known]

    def _merged(self, run_id: str) -> Record | None:
        """The merged record with its judgements (lock held)."""
        parts = self._texts.get(run_id)
        if not parts:
            return None
        record = _fragments.merge([json.loads(text) for text in parts.values()])
        judgements = self._judgements.get(run_id)
        if judgements:
            _judgements.apply(record, judgements)
        return record

    def load_fragments(self, run_id: str) -> list[Record]:
        """The run's fragments as stored, ordered by fragment id (see RunStore)."""
        with self._lock:
            parts = sorted((self._texts.get(run_id) or {}).items())
        return [json.loads(text) for fragment_id, text in parts if fragment_id]

    def load_record(self, run_id: str) -> Record | None:
        """A fresh copy of the stored (merged) record, or None."""
        with self._lock:
            return self._merged(run_id)

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
            records = [self._merged(run_id) for run_id in self._texts]
        since_iso = None if since is None else since_text(since)
        matching = [
            record
            for record in records
            if record is not None
            and record_matches(
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
            self._judgements.clear()


__all__ = ["MemoryStore"]
