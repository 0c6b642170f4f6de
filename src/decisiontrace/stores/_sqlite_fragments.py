"""Fragments of runs in the SQLite store: the ``run_fragments`` table and merged rows.

The root record of a run stays in ``runs`` as before. A fragment (a record with a
``fragment_id``, see :mod:`decisiontrace.stores._fragments`) goes to ``run_fragments``,
and its run's ``runs`` row (created without a record if the root has not arrived) gets
the listing columns of the merged run and the number of fragments, in the transaction
that saves it. So listing filters and counts see one merged run, and a run stored
without fragments costs one ``EXISTS`` check per batch more than before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from decisiontrace.spanmodel import _records
from decisiontrace.stores import _aggregates, _fragments
from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores import _stored_form as _form
from decisiontrace.stores._filters import record_node_ids
from decisiontrace.stores.base import Record

TABLE = """
CREATE TABLE IF NOT EXISTS run_fragments (
    run_id TEXT NOT NULL,
    fragment_id TEXT NOT NULL,
    record BLOB,
    schema_version INTEGER,
    PRIMARY KEY (run_id, fragment_id)
)
"""

UPSERT = """
INSERT INTO run_fragments (run_id, fragment_id, record, schema_version) VALUES (?, ?, ?, ?)
ON CONFLICT(run_id, fragment_id) DO UPDATE SET
    record = excluded.record, schema_version = excluded.schema_version
"""

# A run whose root has not arrived yet still gets a ``runs`` row, without a record.
_PLACEHOLDER = "INSERT INTO runs (run_id) VALUES (?) ON CONFLICT(run_id) DO NOTHING"

_REFRESH = """
UPDATE runs SET goal_id = ?, status = ?, started_at = ?, completed_at = ?, nodes = ?,
    summary = ?, fragments = ?
WHERE run_id = ?
"""


#: The analytics columns of each decision of a stored run (see ``stores._facts``).
DECISIONS_TABLE = """
CREATE TABLE IF NOT EXISTS decisions (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    decision_id TEXT,
    node_id TEXT,
    decision_type TEXT,
    chosen_option_id TEXT,
    chosen_listed INTEGER,
    confidence REAL,
    option_ids TEXT,
    outcome INTEGER,
    tokens INTEGER,
    latency_ms INTEGER,
    judged INTEGER,
    text TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID
"""
DECISIONS_DELETE = "DELETE FROM decisions WHERE run_id = ?"
#: Runs with a decision that carries judgements (few): what ``stats`` reads in full.
JUDGED_INDEX = "CREATE INDEX IF NOT EXISTS decisions_judged ON decisions (run_id) WHERE judged = 1"
AGGREGATE_TABLES = _aggregates.tables("TEXT", "TEXT", "INTEGER", "REAL")
AGGREGATES = _aggregates.Statements(
    "", "d.run_id IN ({marks})", integer_part="CAST({number} AS INTEGER)"
)
DECISIONS_INSERT = "INSERT INTO decisions VALUES (" + ", ".join("?" * 14) + ")"


def decode(data: Any, version: Any) -> Record:
    """A stored ``record`` column as a record, by its form (see ``stores._stored_form``)."""
    return _form.decode(data, version)


def replace_decisions(
    connection: sqlite3.Connection, run_ids: Sequence[Any], rows: Sequence[tuple[Any, ...]]
) -> None:
    """Replace the ``decisions`` rows of these runs and their counts in the aggregate
    tables (inside the write transaction)."""

    def delete_and_insert() -> None:
        connection.executemany(DECISIONS_DELETE, [(run_id,) for run_id in run_ids])
        connection.executemany(DECISIONS_INSERT, rows)

    if not run_ids:
        return
    chunks = [  # within SQLite's parameter limit
        (",".join("?" * len(run_ids[start : start + 5000])), run_ids[start : start + 5000])
        for start in range(0, len(run_ids), 5000)
    ]
    _aggregates.replace(connection.execute, AGGREGATES, chunks, delete_and_insert)


def rebuild_aggregates(connection: sqlite3.Connection) -> None:
    """Fill the aggregate tables afresh from every ``decisions`` row."""
    for statement in AGGREGATES.rebuild():
        connection.execute(statement)


def save(connection: sqlite3.Connection, roots: list[tuple[Any, ...]], parts: list[Any]) -> None:
    """Write fragment rows and refresh the merged columns of the runs touched.

    Call inside the write transaction, after the root rows (``roots``) were upserted.

    Args:
        connection: the store's connection, in a write transaction.
        roots: the ``runs`` rows just written (run id first).
        parts: ``(run_id, fragment_id, record, schema_version)`` rows of fragments.
    """
    if parts:
        connection.executemany(UPSERT, parts)
        connection.executemany(_PLACEHOLDER, [(part[0],) for part in parts])
    elif not connection.execute("SELECT EXISTS (SELECT 1 FROM run_fragments)").fetchone()[0]:
        return  # no run has fragments: the root rows are the merged rows
    touched = dict.fromkeys(part[0] for part in parts)
    for row in roots:
        if row[0] not in touched and _has_fragments(connection, row[0]):
            touched[row[0]] = None
    for run_id in touched:
        refresh(connection, run_id)


def _has_fragments(connection: sqlite3.Connection, run_id: Any) -> bool:
    row = connection.execute(
        "SELECT 1 FROM run_fragments WHERE run_id = ? LIMIT 1", (run_id,)
    ).fetchone()
    return row is not None


def refresh(connection: sqlite3.Connection, run_id: Any) -> None:
    """Recompute the listing columns of one run from its root and fragments."""
    merged = load(connection, run_id, count=True)
    if merged is None:
        return
    record, count = merged
    replace_decisions(connection, [run_id], _rows.decision_rows(run_id, _rows.valid_text(record)))
    connection.execute(
        _REFRESH,
        (
            _rows.checked_text(record.get("goal_id", "")),
            _rows.checked_text(record.get("status", "running")),
            record.get("started_at"),
            record.get("completed_at"),
            _rows.dumps(record_node_ids(record)),
            _rows.dumps(_records.summary_from_record(record)),
            count,
            run_id,
        ),
    )


def load(
    connection: sqlite3.Connection, run_id: Any, *, count: bool = False
) -> tuple[Record, int] | None:
    """The merged record of a run that has fragments and how many, or None."""
    parts = [
        decode(data, version)
        for data, version in connection.execute(
            "SELECT record, schema_version FROM run_fragments WHERE run_id = ?", (run_id,)
        )
        if data is not None
    ]
    if not parts:
        return None
    fragments = len(parts)
    row = connection.execute(
        "SELECT record, schema_version FROM runs WHERE run_id = ?", (run_id,)
    ).fetchone()
    if row is not None and row[0] is not None:
        parts.append(decode(row[0], row[1]))
    return _fragments.merge(parts), fragments


def fragments_of(connection: sqlite3.Connection, run_id: Any) -> list[Record]:
    """The stored fragments of a run, unmerged, ordered by fragment id."""
    return [
        decode(data, version)
        for data, version in connection.execute(
            "SELECT record, schema_version FROM run_fragments WHERE run_id = ? "
            "ORDER BY fragment_id",
            (run_id,),
        )
        if data is not None
    ]


def split(
    rows: Sequence[tuple[str, tuple[Any, ...], list[tuple[Any, ...]]]],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[Any]]:
    """``(fragment_id, runs row, decisions rows)`` as root rows (the last of each run),
    their decisions rows, and fragment rows."""
    roots: dict[Any, tuple[tuple[Any, ...], list[tuple[Any, ...]]]] = {}
    parts: list[tuple[Any, ...]] = []
    for fragment_id, row, decisions in rows:
        if fragment_id:
            parts.append((row[0], _rows.valid_text(fragment_id), row[6], row[8]))
        else:
            roots[row[0]] = (row, decisions)
    root_rows = [row for row, _ in roots.values()]
    return root_rows, [d for _, decisions in roots.values() for d in decisions], parts


__all__ = [
    "DECISIONS_TABLE", "TABLE", "UPSERT", "decode", "fragments_of", "load",
    "refresh", "replace_decisions", "save", "split",
]  # fmt: skip
