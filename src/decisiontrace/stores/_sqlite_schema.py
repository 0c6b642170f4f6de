"""The SQLite store's schema: its tables, and creating or upgrading them.

Opening a database written by an older version adds what is missing (columns,
indexes, the journal) and fills derived columns of old rows, in one write transaction;
a database already at this version is opened without taking the write lock.
"""

from __future__ import annotations

import logging
import sqlite3

from decisiontrace.stores import _aggregates
from decisiontrace.stores import _sqlite_fragments as _fragments
from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores import _stored_form as _form

logger = logging.getLogger("decisiontrace")

#: Version of the table layout this module writes; stored in ``meta`` so a later
#: version knows what it is opening. 5: records in the store's own form
#: (``stores._stored_form``), and the ``decisions`` table the analytics read. 6: the
#: aggregate tables ``stats`` reads (``stores._aggregates``); 7: those tables keyed so
#: that each is read in key order. 8: journal entries carry their writer's start
#: (``pid_start``, see ``stores._journal_writers``), so a reused pid is told apart.
SCHEMA_VERSION = 8
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
    # The form the ``record`` column is in (``stores._stored_form``), per row.
    "schema_version": "INTEGER",
    # How many fragments (records of other processes) the run has; NULL or 0: none.
    "fragments": "INTEGER",
}

INDEXES = {
    "runs_goal_id": "goal_id",
    "runs_status": "status",
    # Newest first, ties by id: listing and the decisions search walk this index.
    "runs_started_at_id": "started_at, run_id",
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
    data BLOB NOT NULL,
    pid_start TEXT
)
"""
# Added to the journal of a database of schema 7 or older; its entries keep NULL there.
JOURNAL_START_COLUMN = "pid_start"
#: Judgements of decisions (see ``decisiontrace.spanmodel._judgements``), apart from
#: ``runs`` so that saving a run again (late spans) leaves them alone; merged into the
#: record on read.
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

# A writer is (pid, pid_start): see stores._journal_writers.
JOURNAL_INSERT = (
    "INSERT INTO journal (run_id, trace_id, pid, pid_start, data) VALUES (?, ?, ?, ?, ?)"
)
JOURNAL_DELETE = "DELETE FROM journal WHERE run_id = ?"
JOURNAL_DELETE_OF = "DELETE FROM journal WHERE run_id = ? AND pid = ? AND pid_start = ?"
# Pid 0 is no process's: entries released to it are any later process's orphans.
JOURNAL_RELEASE = "UPDATE journal SET pid = 0 WHERE pid = ? AND pid_start = ?"
JOURNAL_WRITERS = "SELECT DISTINCT pid, pid_start FROM journal"
# The entries of writers that are gone: ``{of}`` is ``(pid = ? AND pid_start IS ?)``
# joined by OR, one for each such writer.
JOURNAL_OF_WRITERS = "SELECT seq, run_id, trace_id, data FROM journal WHERE {of} ORDER BY seq"
JOURNAL_RETAG = "UPDATE journal SET pid = ?, pid_start = ? WHERE {of}"
JOURNAL_DELETE_SEQ = "DELETE FROM journal WHERE seq = ?"
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
        journal = {row[1] for row in connection.execute("PRAGMA table_info(journal)")}
    except (sqlite3.Error, ValueError):
        return False
    expected = {
        "journal", "journal_run_id", "evaluations", "run_fragments", "decisions",
        "decisions_judged", *_aggregates.TABLES,
        *INDEXES,
    }  # fmt: skip
    return expected <= names and set(RUN_COLUMNS) <= columns and JOURNAL_START_COLUMN in journal


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
        journal = {row[1] for row in connection.execute("PRAGMA table_info(journal)")}
        if JOURNAL_START_COLUMN not in journal:
            connection.execute(f"ALTER TABLE journal ADD COLUMN {JOURNAL_START_COLUMN} TEXT")
        connection.execute(EVALUATIONS_TABLE)
        connection.execute(_fragments.TABLE)
        connection.execute(_fragments.DECISIONS_TABLE)
        connection.execute(_fragments.JUDGED_INDEX)
        for table in _fragments.AGGREGATE_TABLES:
            connection.execute(table.format(p=""))
        connection.execute("DROP INDEX IF EXISTS runs_started_at")
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
            if stored < 5:
                _migrate_rows(connection)
            if stored < 7:
                connection.execute("DROP TABLE IF EXISTS decision_groups")  # schema 6
                _fragments.rebuild_aggregates(connection)
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


def _migrate_rows(connection: sqlite3.Connection) -> None:
    """Rewrite rows of older versions in the current stored form, with their columns and
    ``decisions`` rows; afterwards no stored run needs the span model to be read."""
    run_ids = [
        run_id
        for (run_id,) in connection.execute("SELECT run_id FROM runs WHERE record IS NOT NULL")
    ]
    for start in range(0, len(run_ids), 500):
        chunk = run_ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        rows = connection.execute(
            f"SELECT record, schema_version FROM runs WHERE run_id IN ({marks})", chunk
        ).fetchall()
        parts = [_rows.record_part(_form.decode(data, form)) for data, form in rows]
        roots, decisions, _ = _fragments.split(parts)
        connection.executemany(UPSERT, roots)
        _fragments.replace_decisions(connection, [row[0] for row in roots], decisions)
    stale = connection.execute(
        "SELECT run_id, fragment_id, record, schema_version FROM run_fragments "
        "WHERE record IS NOT NULL AND schema_version IS NOT ?",
        (_form.CURRENT,),
    ).fetchall()
    connection.executemany(
        _fragments.UPSERT,
        [
            (run_id, fragment_id, _form.encode(_form.decode(data, form)), _form.CURRENT)
            for run_id, fragment_id, data, form in stale
        ],
    )
    merged = connection.execute("SELECT DISTINCT run_id FROM run_fragments").fetchall()
    for (run_id,) in merged:
        _fragments.refresh(connection, run_id)


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
