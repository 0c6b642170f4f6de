"""The SQLite store's schema: its tables, and creating or upgrading them.

Opening a database written by an older version adds what is missing (columns,
indexes, the journal) and fills derived columns of old rows, in one write transaction;
a database already at this version is opened without taking the write lock.
"""

from __future__ import annotations

import json
import logging
import sqlite3

from decisiontrace.stores import _sqlite_fragments as _fragments
from decisiontrace.stores import _sqlite_rows as _rows

logger = logging.getLogger("decisiontrace")

#: Version of the table layout this module writes; stored in ``meta`` so a later
#: version knows what it is opening.
SCHEMA_VERSION = 4
# Every column of ``runs`` after the primary key, with its type. Opening a database
# written by an older version adds whichever of these are missing.
RUN_COLUMNS: dict[str, str] = {
    "goal_id": "TEXT",
    "status": "TEXT",
    "started_at": "TEXT",
    "completed_at": "TEXT",
    "nodes": "TEXT",
    "record": "TEXT",
    "summary": "TEXT",
    "schema_version": "INTEGER",
    # How many fragments (records of other processes) the run has; NULL or 0: none.
    "fragments": "INTEGER",
}

INDEXES = {
    "runs_goal_id": "goal_id",
    "runs_status": "status",
    "runs_started_at": "started_at",
}

UPSERT = """
INSERT INTO runs (
    run_id, goal_id, status, started_at, completed_at, nodes, record, summary, schema_version
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(run_id) DO UPDATE SET
    goal_id = excluded.goal_id,
    status = excluded.status,
    started_at = excluded.started_at,
    completed_at = excluded.completed_at,
    nodes = excluded.nodes,
    record = excluded.record,
    summary = excluded.summary,
    schema_version = excluded.schema_version
"""

JOURNAL_TABLE = """
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    data BLOB NOT NULL
)
"""
#: Judgements of decisions (see ``decisiontrace._judgements``), apart from ``runs`` so that
#: saving a run again (late spans) leaves them alone; merged into the record on read.
EVALUATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS evaluations (
    run_id TEXT NOT NULL,
    decision_id TEXT NOT NULL,
    evaluator TEXT NOT NULL,
    evaluated_at TEXT NOT NULL,
    judgement TEXT NOT NULL,
    PRIMARY KEY (run_id, decision_id, evaluator)
)
"""
# One judgement per evaluator: the latest wins, an older one arriving late is ignored.
EVALUATION_UPSERT = """
INSERT INTO evaluations (run_id, decision_id, evaluator, evaluated_at, judgement)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT(run_id, decision_id, evaluator) DO UPDATE SET
    evaluated_at = excluded.evaluated_at,
    judgement = excluded.judgement
WHERE excluded.evaluated_at >= evaluations.evaluated_at
"""
EVALUATIONS_OF_RUN = (
    "SELECT decision_id, judgement FROM evaluations WHERE run_id = ? ORDER BY evaluated_at"
)

JOURNAL_INSERT = "INSERT INTO journal (run_id, trace_id, pid, data) VALUES (?, ?, ?, ?)"
JOURNAL_DELETE = "DELETE FROM journal WHERE run_id = ?"
JOURNAL_DELETE_OF = "DELETE FROM journal WHERE run_id = ? AND pid = ?"
# Entries of runs whose root record is stored (a run known only from fragments of other
# processes is not saved yet: its root's entries are still needed).
JOURNAL_DELETE_SAVED = (
    "DELETE FROM journal WHERE run_id IN (SELECT run_id FROM runs WHERE record IS NOT NULL)"
)


def schema_is_current(connection: sqlite3.Connection) -> bool:
    """Every table, column and index of this version is there (read-only check)."""
    try:
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or int(row[0]) != SCHEMA_VERSION:
            return False
        names = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
        columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    except (sqlite3.Error, ValueError):
        return False
    expected = {"journal", "journal_run_id", "evaluations", "run_fragments", *INDEXES}
    return expected <= names and set(RUN_COLUMNS) <= columns


def ensure_schema(connection: sqlite3.Connection, path: str) -> None:
    """Create or upgrade the tables; one writer at a time thanks to BEGIN IMMEDIATE."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT)"
        )
        connection.execute("CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY NOT NULL)")
        present = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
        for column, column_type in RUN_COLUMNS.items():
            if column not in present:
                # Names come from RUN_COLUMNS, never from data.
                connection.execute(f"ALTER TABLE runs ADD COLUMN {column} {column_type}")
        for index, column in INDEXES.items():
            connection.execute(f"CREATE INDEX IF NOT EXISTS {index} ON runs ({column})")
        connection.execute(JOURNAL_TABLE)
        connection.execute(EVALUATIONS_TABLE)
        connection.execute(_fragments.TABLE)
        connection.execute("CREATE INDEX IF NOT EXISTS journal_run_id ON journal (run_id)")
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        stored = int(row[0]) if row is not None else 0
        if stored > SCHEMA_VERSION:
            logger.warning(
                "%s was written by a newer decisiontrace (schema %d, this one knows %d); "
                "reading it as schema %d",
                path,
                stored,
                SCHEMA_VERSION,
                SCHEMA_VERSION,
            )
        else:
            _backfill(connection)
            connection.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _backfill(connection: sqlite3.Connection) -> None:
    """Fill the derived columns of rows written before those columns existed."""
    stale = connection.execute(
        "SELECT record FROM runs WHERE record IS NOT NULL AND "
        "(summary IS NULL OR nodes IS NULL OR goal_id IS NULL OR status IS NULL "
        "OR started_at IS NULL OR schema_version IS NULL) "
        "AND (schema_version IS NULL OR schema_version = 1)"
    ).fetchall()
    if stale:
        connection.executemany(UPSERT, [_rows.record_row(json.loads(text)) for (text,) in stale])


def prepare_connection(
    connection: sqlite3.Connection, timeout: float, *, read_only: bool, path: str, check: bool
) -> None:
    """Busy timeout, WAL and the schema (created or upgraded when ``check``).

    A connection for reading only is checked to be at this version's schema and
    changes nothing.
    """
    connection.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    if read_only:
        if not schema_is_current(connection):
            raise sqlite3.DatabaseError("not at this version's schema (read-only)")
        return
    (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    if str(mode).lower() != "wal":
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    # Most opens find the schema in place: checking needs no write lock, so a store
    # opens even while another process holds that lock for a long write.
    if check and not schema_is_current(connection):
        ensure_schema(connection, path)
