"""Runs assembled but not yet in the store: written each pass, kept while the store fails.

The rule, in one place (the :class:`~decisiontrace.pipeline._writer.Writer` composes an
:class:`UnwrittenRuns` and asks it nothing else about the store's health):

- **what is kept**: every assembled run the store has not taken yet. A healthy store
  takes the whole batch in the pass that assembled it (one ``save_assembled`` call, one
  transaction), so nothing stays.
- **how long**: while the store fails (it raised anything but the errors of an
  unencodable run), the batch stays and is retried with backoff: 0.1 s, doubled for each
  whole second since the first failure, at most ``_MAX_BACKOFF`` (5 s); a flush retries
  at once. It stays until the store takes it, or the process ends.
- **when dropped**: while the store fails, beyond ``max_runs`` kept runs the oldest are
  dropped; a run the store cannot encode (``_UNENCODABLE``: the same run would fail
  every retry) is dropped at once: the batch is then written one run at a time, so the
  others land (those the store refuses otherwise stay, for the next pass). Both kinds
  count in ``dropped``.
- **what is logged**: one ERROR when the store starts failing (with the batch's size and
  the error), one ERROR at the first drop of a failure (logged again in a later
  failure), one WARNING when the store takes the runs again (with how many were dropped
  meanwhile), and an unencodable run once per processor, with its traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from decisiontrace._internal.errors import Once
from decisiontrace.stores import RunStore
from decisiontrace.stores.base import AssembledRun

logger = logging.getLogger("decisiontrace")

#: What a store failure pauses the retries for, at most (seconds).
_MAX_BACKOFF = 5.0
#: What a store raises for a run it cannot encode (text UTF-8 cannot hold, an integer
#: its columns cannot): the same run fails every retry, so it is dropped and counted.
_UNENCODABLE = (TypeError, ValueError, OverflowError)


class UnwrittenRuns:
    """The runs waiting for the store, and the counts of those written and dropped.

    Args:
        max_runs: runs kept while the store fails; the oldest beyond it are dropped.
        once: what the processor has logged once already (the first drop of a failure).
        log_once: the processor's log-once, ``log_once(key, message)`` (with the
            traceback), for an unencodable run.
    """

    __slots__ = (
        "_dropped_while_failing",
        "_failing_since",
        "_log_once",
        "_once",
        "_retry_at",
        "dropped",
        "max_runs",
        "runs",
        "written",
    )

    def __init__(self, max_runs: int, *, once: Once, log_once: Callable[[str, str], None]) -> None:
        self.max_runs = max_runs
        self.runs: list[AssembledRun] = []
        #: Runs written, and runs dropped (unencodable, or beyond ``max_runs`` while failing).
        self.written = 0
        self.dropped = 0
        self._once = once
        self._log_once = log_once
        self._failing_since: float | None = None
        self._retry_at = 0.0
        self._dropped_while_failing = 0

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def failing(self) -> bool:
        """The last write failed and the runs are kept for a retry."""
        return self._failing_since is not None

    def add(self, runs: Sequence[AssembledRun]) -> None:
        """Keep ``runs`` for the next write (trimmed to ``max_runs`` if the store fails)."""
        self.runs.extend(runs)
        if self._failing_since is not None:  # a healthy store takes them all this pass
            self._trim()

    def due(self, now: float, *, force: bool) -> bool:
        """Runs wait and their write is due: at once if ``force``, else after the backoff."""
        return bool(self.runs) and (force or now >= self._retry_at)

    def write(self, store: RunStore) -> None:
        """Hand ``store`` every run kept, in one call; keep them if it fails."""
        batch = self.runs
        try:
            store.save_assembled(batch)
        except _UNENCODABLE:
            # Some run cannot be encoded: no retry will fix it. Write the others one by
            # one and drop (and count) the ones that fail this way.
            self._write_one_by_one(store, batch)
            return
        except Exception as error:  # expected: the store failing; kept and retried
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
                logger.error(
                    "decisiontrace: could not write %d runs to %s (%s); they are kept and retried",
                    len(batch),
                    getattr(store, "url", store),
                    error,
                )
            backoff = 0.1 * 2 ** min(6, int(now - self._failing_since))
            self._retry_at = now + min(_MAX_BACKOFF, backoff)
            self._trim()
            return
        self.written += len(batch)
        self.runs = []
        if self._failing_since is not None:
            logger.warning(
                "decisiontrace: the store is writable again; waiting runs written "
                "(%d dropped meanwhile)",
                self._dropped_while_failing,
            )
            self._failing_since = None
            self._dropped_while_failing = 0
            self._once.forget("dropped")

    def _trim(self) -> None:
        """Drop the oldest runs beyond ``max_runs`` (the store is failing)."""
        overflow = len(self.runs) - self.max_runs
        if overflow <= 0:
            return
        del self.runs[:overflow]
        self.dropped += overflow
        self._dropped_while_failing += overflow
        if self._once.first("dropped"):  # once: a failing store must not flood logs
            logger.error(
                "decisiontrace: runs are being dropped (%d so far): the store keeps "
                "failing and the queue of %d runs waiting to be written is full; "
                "RunRecordProcessor.dropped_runs counts them",
                overflow,
                self.max_runs,
            )

    def _write_one_by_one(self, store: RunStore, batch: list[AssembledRun]) -> None:
        kept: list[AssembledRun] = []
        dropped = 0
        for run in batch:
            try:
                store.save_assembled([run])
            except _UNENCODABLE:
                dropped += 1
                self._log_once("unencodable", "a run could not be encoded and was dropped")
            except Exception:  # expected: the store failing; kept for the retry
                kept.append(run)
        self.dropped += dropped
        self.written += len(batch) - len(kept) - dropped
        self.runs = kept


__all__ = ["UnwrittenRuns"]
