"""Runs as JSON files, in the directory layout the original framework reads.

::

    {directory}/
      runs/{run_id}.json                    the record, indented
      summaries/{run_id}.json               its RunSummary
      indexes/by_goal/{goal_id}.json        run ids of each goal
      indexes/by_status/{status}.json       run ids of each status
      indexes/by_node/{node_id}.json        run ids in which each node decided
      fragments/{run_id}/root.json          the parts of a run recorded by several
      fragments/{run_id}/f.{fragment_id}.json   processes (the id percent-encoded);
                                            runs/ holds them merged

Every file is replaced atomically (temporary file, fsync, rename), so a reader sees
the old file or the new one, never half of one. Index updates are read-modify-write,
serialized by a thread lock and, across processes, by ``flock`` on ``{directory}/.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from decisiontrace.spanmodel import _judgements, _records
from decisiontrace.stores._files import (
    fsync_directory,
    read_json,
    unsafe_reason,
    write_atomically,
)
from decisiontrace.stores._filters import (
    newest_first_key,
    record_matches,
    record_node_ids,
    since_text,
)
from decisiontrace.stores._fragments import fragment_key, is_fragment, merge
from decisiontrace.stores._locks import ForkSafeLock
from decisiontrace.stores.base import Record, RunStore, StoreError

logger = logging.getLogger("decisiontrace")

_RUNS = "runs"
_SUMMARIES = "summaries"
_BY_GOAL = os.path.join("indexes", "by_goal")
_BY_STATUS = os.path.join("indexes", "by_status")
_BY_NODE = os.path.join("indexes", "by_node")
_FRAGMENTS = "fragments"
_ROOT_PART = "root.json"
_FRAGMENT_PREFIX = "f."
_LOCK_FILE = ".lock"

# (index folder, key) -> run ids to add, run ids to remove
_IndexChanges = dict[tuple[str, str], tuple[list[str], set[str]]]


class JSONFilesStore(RunStore):
    """Runs stored as JSON files that the original framework's ``FileStorage`` reads.

    Ids that would escape the directory (path separators, ``..``, NUL, a leading dot)
    are refused: such a record is skipped with a warning and the rest of the batch is
    saved. Safe for several threads and processes on one machine.

    Args:
        directory: the storage folder; created if missing (unless ``read_only``).
        read_only: for reading only (what the CLI's reading commands use): nothing is
            created, a missing folder reads as an empty store, and saving raises
            :class:`StoreError`.

    Raises:
        StoreError: the folder cannot be created or is not a folder.
    """

    def __init__(self, directory: str | os.PathLike[str], *, read_only: bool = False) -> None:
        given = os.fspath(directory)
        if not given:
            raise ValueError("directory must name a folder, got ''")
        self.directory = Path(given)
        self.url = Path(os.path.abspath(given)).as_uri()
        # Containment is checked against the real path, so a symlinked store still works.
        self._root = os.path.realpath(given)
        # Renewed in a forked child: a lock held by another thread at fork() would hang it.
        self._lock = ForkSafeLock()
        self.read_only = read_only
        if read_only:
            return
        try:
            for folder in (_RUNS, _SUMMARIES, _BY_GOAL, _BY_STATUS, _BY_NODE):
                os.makedirs(os.path.join(self._root, folder), exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot use {given} as a run folder ({exc.strerror or exc}); "
                "choose a writable directory"
            ) from exc

    # -- paths ---------------------------------------------------------------------------

    def _path(self, folder: str, key: str) -> str | None:
        """``{root}/{folder}/{key}.json`` if ``key`` is safe and the path stays inside."""
        if unsafe_reason(key) is not None:
            return None
        parent = os.path.join(self._root, folder)
        path = os.path.join(parent, key + ".json")
        # realpath also catches a planted symlink that points outside the folder.
        if os.path.dirname(os.path.realpath(path)) != os.path.realpath(parent):
            return None
        return path

    def _refusal(self, record: Record) -> str | None:
        """Why ``record`` cannot be saved here, or None."""
        if not isinstance(record, dict):
            return "not a dict"
        keys: list[tuple[str, str, object]] = [
            ("run id", _RUNS, record.get("id")),
            ("goal id", _BY_GOAL, record.get("goal_id")),
            ("status", _BY_STATUS, record.get("status", "running")),
        ]
        keys += [("node id", _BY_NODE, node) for node in record_node_ids(record)]
        if is_fragment(record):
            keys.append(("fragment id", _RUNS, _part_name(fragment_key(record))))
        for label, folder, key in keys:
            reason = unsafe_reason(key)
            if reason is None and self._path(folder, str(key)) is None:
                reason = "leaves the store folder"
            if reason is not None:
                return f"{label} {key!r} {reason}"
        return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the thread lock and the cross-process ``flock`` of this folder."""
        if self.read_only:  # every write goes through here
            raise StoreError(f"{self.directory} was opened for reading only")
        with self._lock:
            fd = os.open(os.path.join(self._root, _LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    # -- RunStore ------------------------------------------------------------------------

    def save_records(self, records: Sequence[Record]) -> None:
        """Write these records, their summaries and the index entries.

        A record whose ids would escape the folder is skipped with a warning. Files are
        written only after the whole batch serialized, so a record JSON cannot represent
        saves nothing; an I/O error part-way leaves whole files only, and saving the
        batch again completes it.

        Raises:
            TypeError: a record holds a value JSON cannot represent (nothing is saved).
            OSError: a file could not be written.
        """
        prepared: dict[tuple[str, str], tuple[Record, str]] = {}
        for record in records:
            refusal = self._refusal(record)
            if refusal is not None:
                logger.warning("not saving run %r: %s", _run_id_of(record), refusal)
                continue
            # Serialized now, so that a record JSON cannot represent saves nothing.
            text = json.dumps(record, indent=2, ensure_ascii=False)
            prepared[(record["id"], fragment_key(record))] = (record, text)
        if not prepared:
            return
        with self._locked():
            changes: _IndexChanges = {}
            for (run_id, fragment_id), (record, text) in prepared.items():
                # Read the keys it had before it is overwritten, to drop stale entries.
                old = self._read_quietly(run_id)
                parts = self._parts_folder(run_id)
                if fragment_id or os.path.isdir(parts):
                    record, text = self._save_part(run_id, fragment_id, text, old)
                _plan_index_changes(changes, run_id, old, record)
                # The run saved again (late spans, a late fragment): its judgements
                # stay. A copy, so the caller's record is left as it was given.
                copy = json.loads(text) if old is not None else None
                if copy is not None and _judgements.carry_over(old, copy):
                    record = copy
                    text = json.dumps(record, indent=2, ensure_ascii=False)
                summary = _records.summary_from_record(record)
                write_atomically(self._must_path(_RUNS, run_id), text)
                write_atomically(
                    self._must_path(_SUMMARIES, run_id),
                    json.dumps(summary, indent=2, ensure_ascii=False),
                )
            for (folder, key), (added, removed) in changes.items():
                self._update_index(folder, key, added, removed)
            for folder in (_RUNS, _SUMMARIES, _BY_GOAL, _BY_STATUS, _BY_NODE):
                fsync_directory(os.path.join(self._root, folder))

    def update_evaluations(
        self, run_id: str, judgements: Sequence[tuple[str, Record]]
    ) -> list[str] | None:
        """Merge judgements into a stored run, under the folder's locks (see RunStore).

        Raises:
            StoreError: the run's file is not valid JSON.
            OSError: the file could not be written.
        """
        path = self._path(_RUNS, run_id)
        if path is None:
            return None
        with self._locked():
            record = read_json(path)
            if not isinstance(record, dict):
                return None
            unknown = _judgements.apply(record, judgements)
            if len(unknown) < len(judgements):
                record_text, summary_text = _texts(record)
                # Goal, status and nodes are unchanged: the indexes stay as they are.
                write_atomically(path, record_text)
                write_atomically(self._must_path(_SUMMARIES, run_id), summary_text)
                for folder in (_RUNS, _SUMMARIES):
                    fsync_directory(os.path.join(self._root, folder))
            return unknown

    def _parts_folder(self, run_id: str) -> str:
        return os.path.join(self._root, _FRAGMENTS, run_id)

    def _save_part(
        self, run_id: str, fragment_id: str, text: str, old: Record | None
    ) -> tuple[Record, str]:
        """Keep one part of a run with fragments; the merged record and its text.

        The parts are ``fragments/{run_id}/root.json`` and ``f.{fragment_id}.json`` (the
        fragment id percent-encoded: it may hold ``/``); the run's file in ``runs/``
        holds the merged run, which the framework reads as is.
        """
        folder = self._parts_folder(run_id)
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
            if old is not None:  # the root record saved before any fragment came
                write_atomically(
                    os.path.join(folder, _ROOT_PART),
                    json.dumps(old, indent=2, ensure_ascii=False),
                )
        name = f"{_part_name(fragment_id)}.json" if fragment_id else _ROOT_PART
        write_atomically(os.path.join(folder, name), text)
        fsync_directory(folder)
        merged = merge(self._parts(run_id, root=True))
        return merged, json.dumps(merged, indent=2, ensure_ascii=False)

    def _parts(self, run_id: str, *, root: bool) -> list[Record]:
        """The stored parts of a run with fragments (the root's too if ``root``)."""
        folder = self._parts_folder(run_id)
        parts: list[Record] = []
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            return []
        for name in names:
            if not name.endswith(".json") or not (
                name.startswith(_FRAGMENT_PREFIX) or (root and name == _ROOT_PART)
            ):
                continue
            try:
                part = read_json(os.path.join(folder, name))
            except StoreError as exc:
                logger.warning("skipping a part of run %r: %s", run_id, exc)
                continue
            if isinstance(part, dict):
                parts.append(part)
        return parts

    def load_fragments(self, run_id: str) -> list[Record]:
        """The run's fragments as stored (see RunStore)."""
        if unsafe_reason(run_id) is not None:
            return []
        return sorted(self._parts(run_id, root=False), key=fragment_key)

    def load_record(self, run_id: str) -> Record | None:
        """The stored record of ``run_id``, or None.

        Raises:
            StoreError: the run's file is not valid JSON.
        """
        path = self._path(_RUNS, run_id)
        if path is None:
            return None  # no run can have been saved under an unsafe id
        record = read_json(path)
        if record is not None and not isinstance(record, dict):
            raise StoreError(f"{path} does not hold a run record; repair or delete it")
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
        """Summary dicts of matching runs, newest first (by ``started_at``).

        The indexes narrow the candidates; each candidate's record decides, so an index
        left stale by another writer cannot produce a wrong answer. A corrupt run file is
        skipped with a warning.
        """
        since_iso = None if since is None else since_text(since)
        matching: list[Record] = []
        for run_id in self._candidates(goal_id, status, node_id):
            path = self._path(_RUNS, run_id)
            if path is None:
                continue
            try:
                record = read_json(path)
            except StoreError as exc:
                logger.warning("skipping a run: %s", exc)
                continue
            if record is not None and record_matches(
                record, goal_id=goal_id, status=status, since=since_iso, node_id=node_id
            ):
                matching.append(record)
        matching.sort(key=newest_first_key, reverse=True)
        if limit is not None:
            matching = matching[: max(limit, 0)]
        summaries: list[Record] = [_records.summary_from_record(record) for record in matching]
        return summaries

    def __repr__(self) -> str:
        return f"JSONFilesStore({os.fspath(self.directory)!r})"

    # -- helpers -------------------------------------------------------------------------

    def _must_path(self, folder: str, key: str) -> str:
        path = self._path(folder, key)
        if path is None:  # _refusal() checked every key already
            raise ValueError(f"unsafe key {key!r}")
        return path

    def _read_quietly(self, run_id: str) -> Record | None:
        """The stored record, or None if missing or unreadable."""
        try:
            record = read_json(self._must_path(_RUNS, run_id))
        except StoreError:
            return None
        return record if isinstance(record, dict) else None

    def _update_index(self, folder: str, key: str, added: list[str], removed: set[str]) -> None:
        """Read-modify-write one index file (the caller holds the locks)."""
        path = self._must_path(folder, key)
        try:
            current = read_json(path)
        except StoreError:
            logger.warning("rewriting corrupt index %s", path)
            current = None
        run_ids: list[str] = list(current) if isinstance(current, list) else []
        updated = [run_id for run_id in run_ids if run_id not in removed]
        present = set(updated)
        for run_id in added:
            if run_id not in present:
                updated.append(run_id)
                present.add(run_id)
        if updated != run_ids or current is None:
            write_atomically(path, json.dumps(updated, indent=2, ensure_ascii=False))

    def _candidates(
        self, goal_id: str | None, status: str | None, node_id: str | None
    ) -> list[str]:
        """Run ids worth reading: the intersection of the indexes asked for, else all runs."""
        selected: set[str] | None = None
        for folder, key in ((_BY_GOAL, goal_id), (_BY_STATUS, status), (_BY_NODE, node_id)):
            if key is None:
                continue
            path = self._path(folder, key)
            if path is None:
                return []  # no run can have been saved under an unsafe key
            try:
                listed = read_json(path)
            except StoreError:
                logger.warning("index %s is corrupt; scanning every run", path)
                return self._all_run_ids()
            run_ids = {str(run_id) for run_id in listed} if isinstance(listed, list) else set()
            selected = run_ids if selected is None else selected & run_ids
        return self._all_run_ids() if selected is None else sorted(selected)

    def _all_run_ids(self) -> list[str]:
        try:
            with os.scandir(os.path.join(self._root, _RUNS)) as entries:
                return [
                    entry.name[: -len(".json")]
                    for entry in entries
                    if entry.name.endswith(".json") and not entry.name.startswith(".")
                ]
        except FileNotFoundError:  # a folder opened for reading that holds no run yet
            return []


def _texts(record: Record) -> tuple[str, str]:
    """The file texts of a record and of its summary."""
    return (
        json.dumps(record, indent=2, ensure_ascii=False),
        json.dumps(_records.summary_from_record(record), indent=2, ensure_ascii=False),
    )


def _part_name(fragment_id: str) -> str:
    """The file name (without ``.json``) of a fragment: its id percent-encoded."""
    return _FRAGMENT_PREFIX + quote(fragment_id, safe="")


def _plan_index_changes(
    changes: _IndexChanges, run_id: str, old: Record | None, new: Record
) -> None:
    """Add ``run_id`` to the new record's indexes and remove it from ones it left."""
    new_keys = _index_keys(new)
    for folder_key in new_keys:
        added, removed = changes.setdefault(folder_key, ([], set()))
        added.append(run_id)
        removed.discard(run_id)
    if old is None:
        return
    for folder_key in _index_keys(old) - new_keys:
        added, removed = changes.setdefault(folder_key, ([], set()))
        if run_id in added:
            added.remove(run_id)
        removed.add(run_id)


def _index_keys(record: Record) -> set[tuple[str, str]]:
    """The (index folder, key) pairs a record is listed under; unsafe keys left out."""
    keys: list[tuple[str, object]] = [
        (_BY_GOAL, record.get("goal_id")),
        (_BY_STATUS, record.get("status", "running")),
    ]
    keys += [(_BY_NODE, node_id) for node_id in record_node_ids(record)]
    return {
        (folder, key) for folder, key in keys if isinstance(key, str) and not unsafe_reason(key)
    }


def _run_id_of(record: object) -> object:
    return record.get("id") if isinstance(record, dict) else None


__all__ = ["JSONFilesStore"]
