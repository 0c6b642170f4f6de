"""The store that keeps nothing: for agents whose runs are stored elsewhere.

``open_store("none")`` (``DECISIONTRACE_STORE=none``, ``configure(store="none")``) is
for agents that only export their spans, to an OTLP ingest service
(``decisiontrace serve``) that stores the runs: the processor still assembles runs
(metrics are recorded from them) but writes nothing locally.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from decisiontrace.stores.base import AssembledRun, Record, RunStore


class NullStore(RunStore):
    """Drops every run saved to it; reads find nothing."""

    url = "none"

    def save_records(self, records: Sequence[Record]) -> None:
        """Keep nothing."""

    def save_assembled(self, runs: Sequence[AssembledRun]) -> None:
        """Keep nothing (and do not even build the records)."""

    def load_record(self, run_id: str) -> Record | None:
        """Nothing is ever stored here."""
        return None

    def list_summaries(
        self,
        *,
        goal_id: str | None = None,
        status: str | None = None,
        since: datetime | None = None,
        node_id: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Nothing is ever stored here."""
        return []


__all__ = ["NullStore"]
