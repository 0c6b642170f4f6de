"""The store contract: where finished Run records are kept.

A store receives records as JSON-ready dicts (``Run.model_dump(mode="json")`` shape,
computed fields included) from the processor's writer thread, in batches, and gives
back :class:`~decisiontrace.models.Run` and :class:`~decisiontrace.models.RunSummary`
models to readers. ``load_run`` returns exactly the Run that was saved.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Generator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from decisiontrace.spanmodel import _judgements, _records
from decisiontrace.spanmodel._kinds import RunStatus

if TYPE_CHECKING:
    # The models (pydantic) load when a model is first read; the tallies with the SQL
    # stores' analytics.
    from decisiontrace.models import Run, RunSummary
    from decisiontrace.stores._facts import DecisionTallies

Record = dict[str, Any]
#: A journal entry: ``(run_id, trace_id, data)``, ``data`` a JSON-ready dict
#: (see ``decisiontrace.pipeline._journal``).
JournalEntry = tuple[str, str, dict[str, Any]]


class AssembledRun(Protocol):
    """A run the processor assembled from spans (``_pending.PendingRun``)."""

    def record(self, *, light: bool = False) -> Record:
        """The full record; with ``light``, without the large JSON fields. Read-only:
        records share parts (an options list) with other runs' records."""

    def compact(self) -> dict[str, Any]:
        """The run's spans as JSON-ready data (see ``_pending.record_from_compact``)."""


_generic_update_lock = threading.Lock()


class StoreError(Exception):
    """A store could not be opened or read (bad URL, corrupt file, unreadable database)."""


class RunStore(abc.ABC):
    """Base class of the run stores.

    Subclasses implement :meth:`save_records`, :meth:`load_record` and
    :meth:`list_records`; the model-level methods are built on those.
    ``save_records`` raises on failure: the processor keeps the batch and retries.
    """

    #: The URL that reopens this store (``sqlite:///...``, ``file:///...``, ``memory://``).
    url: str

    @abc.abstractmethod
    def save_records(self, records: Sequence[Record]) -> None:
        """Insert or replace these run records, all or nothing."""

    @abc.abstractmethod
    def load_record(self, run_id: str) -> Record | None:
        """The stored record of ``run_id`` as a dict, or None."""

    @abc.abstractmethod
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

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        """Store runs the processor assembled from spans, all or nothing.

        The default writes their full records; a store may keep a cheaper form, as long
        as :meth:`load_run` gives back exactly the same Run.
        """
        self.save_records([run.record() for run in runs])

    def close(self) -> None:  # noqa: B027 - optional for stores that hold nothing open
        """Release connections and file handles."""

    # -- the journal (optional) ------------------------------------------------------------

    #: True when the store keeps a journal (``RunRecordProcessor(journal=True)``). A store
    #: that does overrides the three methods below, and deletes a run's entries in the
    #: transaction of :meth:`save_assembled` that saves the run.
    supports_journal: bool = False

    def journal_append(self, entries: Sequence[JournalEntry]) -> None:  # noqa: B027
        """Append entries in one transaction (this store keeps no journal: nothing)."""

    def journal_take_orphans(self) -> list[JournalEntry]:
        """Entries, oldest first, of runs never saved whose writing process is gone.

        The entries taken become this process's, at once, so two processes never both
        take one. Entries of runs that were saved after all are deleted. The orphans'
        own entries stay until their runs are saved (or :meth:`journal_clear`), so a
        crash while recovering loses nothing. A store without a journal returns ``[]``.
        """
        return []

    def journal_clear(self, run_ids: Sequence[str]) -> None:  # noqa: B027
        """Delete the journal entries of these runs (this store keeps no journal: nothing)."""

    def journal_release(self) -> None:  # noqa: B027
        """Hand what this process left in the journal to the next process that recovers
        orphans, as if this process were gone (called at a graceful shutdown: the
        process may live on for a while, and the next one need not wait for its end)."""

    # -- judgements of decisions ------------------------------------------------------------

    def update_evaluations(
        self, run_id: str, judgements: Sequence[tuple[str, Record]]
    ) -> list[str] | None:
        """Merge judgements into a stored run's decisions, atomically.

        Each judgement (a JSON-ready dict with ``evaluator``, ``score``, ``label``,
        ``explanation``, ``evaluation`` and ``evaluated_at``) goes into its decision's
        ``evaluations`` extra field, replacing that evaluator's earlier judgement; the
        decision's ``evaluation`` becomes the latest full evaluation (see
        ``decisiontrace.spanmodel._judgements``). Judgements survive the run being saved again.

        This default reads the record, merges and saves it, serialized within this
        process only, and a later save of the run replaces the judgements: stores
        override it to do the merge in one transaction and to keep judgements across
        saves.

        Args:
            run_id: the run.
            judgements: ``(decision_id, judgement)`` pairs.

        Returns:
            None if the run is not stored (nothing is recorded), else the decision ids
            not in the run (nothing is recorded for those).
        """
        with _generic_update_lock:
            record = self.load_record(run_id)
            if record is None:
                return None
            unknown = _judgements.apply(record, judgements)
            if len(unknown) < len(judgements):
                self.save_records([record])
            return unknown

    def load_fragments(self, run_id: str) -> list[Record]:
        """The fragments of a run as stored, unmerged: what each other process recorded
        into it (see ``decisiontrace.stores._fragments``), ordered by fragment id.

        ``load_record``/``load_run`` return the merged run; this is for looking at the
        parts (a store that keeps no fragments returns ``[]``).
        """
        return []

    # -- analytics (optional) ---------------------------------------------------------------

    def decision_tallies(
        self,
        *,
        goal_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        node_id: str | None = None,
        limit: int | None = None,
    ) -> DecisionTallies | None:
        """Counts over the decisions of the matching runs (the filters of :meth:`list_runs`,
        ``limit`` the newest that many), from tables kept at write time.

        Returns:
            The counts, or None when this store keeps no such tables (memory, JSON
            files): the caller reads the runs instead.
        """
        return None

    def search_decisions(
        self,
        *,
        goal_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        node_id: str | None = None,
        decision_type: str | None = None,
        chosen: str | None = None,
        outcome: str | None = None,
        text: str | None = None,
        judged: bool = False,
    ) -> Generator[tuple[str, str], None, None] | None:
        """``(run_id, decision_id)`` of the decisions that may match, newest runs first,
        from columns kept at write time; None when this store keeps none.

        Every decision that matches is among them; for ``text`` (case-folded, also
        matching judgements' explanations) and ``judged`` (has a judgement) some that do
        not may be too, which the caller checks on the loaded run. ``outcome`` is
        ``"success"``, ``"failed"`` or ``"none"``; ``node_id`` is the deciding node.
        Close the generator when done early.
        """
        return None

    def save_run(self, run: Run) -> None:
        """Store one run (insert or replace)."""
        self.save_records([run.model_dump(mode="json")])

    def load_run(self, run_id: str) -> Run | None:
        """The run exactly as saved, or None if unknown."""
        from decisiontrace.models import Run

        record = self.load_record(run_id)
        return None if record is None else Run.model_validate(record)

    def load_summary(self, run_id: str) -> RunSummary | None:
        """The summary of one run, or None if unknown."""
        from decisiontrace.models import RunSummary

        record = self.load_record(run_id)
        if record is None:
            return None
        return RunSummary.model_validate(_records.summary_from_record(record))

    def list_runs(
        self,
        goal_id: str | None = None,
        status: RunStatus | str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        node_id: str | None = None,
    ) -> list[RunSummary]:
        """Summaries of the runs that match every filter given, newest first.

        Args:
            goal_id: only runs toward this goal.
            status: only runs with this status (a RunStatus or its value).
            since: only runs started at or after this time.
            limit: at most this many.
            node_id: only runs in which this node made a decision.
        """
        from decisiontrace.models import RunSummary

        status_value = status.value if isinstance(status, RunStatus) else status
        return [
            RunSummary.model_validate(summary)
            for summary in self.list_summaries(
                goal_id=goal_id, status=status_value, since=since, node_id=node_id, limit=limit
            )
        ]

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
