"""The PostgreSQL store's schema: its tables, migrations and statements.

Everything lives in one PostgreSQL schema (``decisiontrace`` unless the URL says
``?schema=...``). Its ``schema_version`` table records every migration applied; opening
a store applies the missing ones in order, one process at a time (an advisory lock),
and a store already current is opened with one read.

Ids are kept as ``bytea`` (their UTF-8 bytes, lone surrogates passed through): a
PostgreSQL ``text`` cannot hold NUL, and an id must come back exactly as it was given.
Records are ``bytea`` too: JSON text, or the run's spans in compact form compressed
(see ``_sqlite_rows.ROW_*``, the same forms the SQLite store keeps).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from decisiontrace.stores import _aggregates

logger = logging.getLogger("decisiontrace")

#: The latest migration this module knows.
SCHEMA_VERSION = 5

DEFAULT_SCHEMA = "decisiontrace"


def key(value: Any) -> bytes:
    """An id as stored: its UTF-8 bytes, lone surrogates passed through unchanged."""
    return str(value).encode("utf-8", "surrogatepass")


def text(value: bytes) -> str:
    """A stored id as the ``str`` it was given."""
    return bytes(value).decode("utf-8", "surrogatepass")


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier; ValueError if PostgreSQL cannot hold it."""
    if not name or "\x00" in name or len(name.encode("utf-8", "surrogatepass")) > 63:
        raise ValueError(
            f"schema must be a PostgreSQL identifier (1 to 63 bytes, no NUL), got {name!r}"
        )
    return '"' + name.replace('"', '""') + '"'


#: Migrations by version: statements run in one transaction, ``{s}`` the quoted schema.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE {s}.runs (
            run_id bytea PRIMARY KEY,
            goal_id bytea,
            status bytea,
            started_at text,
            completed_at text,
            nodes bytea[] NOT NULL DEFAULT '{{}}',
            summary text,
            record bytea,
            record_format smallint,
            fragments integer NOT NULL DEFAULT 0
        )""",
        # One index per filter the CLI and list_runs offer; ordering uses started_at.
        "CREATE INDEX runs_goal_id ON {s}.runs (goal_id, started_at)",
        "CREATE INDEX runs_status ON {s}.runs (status, started_at)",
        "CREATE INDEX runs_started_at ON {s}.runs (started_at, run_id)",
        "CREATE INDEX runs_nodes ON {s}.runs USING gin (nodes)",
        """CREATE TABLE {s}.run_fragments (
            run_id bytea NOT NULL,
            fragment_id bytea NOT NULL,
            record bytea NOT NULL,
            record_format smallint NOT NULL,
            PRIMARY KEY (run_id, fragment_id)
        )""",
        """CREATE TABLE {s}.journal (
            seq bigserial PRIMARY KEY,
            run_id bytea NOT NULL,
            trace_id text NOT NULL,
            host text NOT NULL,
            pid integer NOT NULL,
            data bytea NOT NULL
        )""",
        "CREATE INDEX journal_run_id ON {s}.journal (run_id)",
        # Judgements of decisions (see decisiontrace.spanmodel._judgements), apart from the runs so
        # that saving a run again keeps them; applied to the record on read.
        """CREATE TABLE {s}.evaluations (
            run_id bytea NOT NULL,
            decision_id bytea NOT NULL,
            evaluator bytea NOT NULL,
            evaluated_at text NOT NULL,
            judgement text NOT NULL,
            PRIMARY KEY (run_id, decision_id, evaluator)
        )""",
        "CREATE INDEX journal_host_pid ON {s}.journal (host, pid)",
    ),
    # 2: the analytics columns of each decision (see ``stores._facts``); records of
    # version 1 are rewritten in the store's own form (``rewrite_rows``).
    2: (
        """CREATE TABLE {s}.decisions (
            run_id bytea NOT NULL,
            seq integer NOT NULL,
            decision_id bytea,
            node_id bytea,
            decision_type bytea,
            chosen_option_id bytea,
            chosen_listed smallint,
            confidence double precision,
            option_ids text,
            outcome smallint,
            tokens bigint,
            latency_ms bigint,
            judged smallint,
            text text,
            PRIMARY KEY (run_id, seq)
        )""",
    ),
    # 3: the aggregate tables ``stats`` reads (``stores._aggregates``), filled from the
    # decisions rows; an index of the runs with judged decisions.
    3: (
        *(
            table.replace("{p}", "{s}.")
            for table in _aggregates.tables("text", "bytea", "bigint", "double precision")
        ),
        "CREATE INDEX decisions_judged ON {s}.decisions (run_id) WHERE judged = 1",
    ),
    # 4: the aggregate tables keyed so that each is read in key order.
    4: (
        "DROP TABLE IF EXISTS {s}.decision_groups",
        *(
            table.replace("{p}", "{s}.")
            for table in _aggregates.tables("text", "bytea", "bigint", "double precision")
        ),
    ),
    # 5: journal entries carry their writer's start beside its pid (see
    # ``stores._journal_writers``), so a reused pid is told apart; older entries keep NULL.
    5: ("ALTER TABLE {s}.journal ADD COLUMN IF NOT EXISTS pid_start text",),
}


class Statements:
    """The store's SQL, with its schema filled in."""

    def __init__(self, schema: str) -> None:
        s = quote_identifier(schema)
        self.schema = s
        # Locks every run row the batch touches (created if missing), in id order, so
        # concurrent writers of fragments of one run serialize instead of missing each
        # other's rows; ``DO UPDATE`` because ``DO NOTHING`` would not lock a row.
        self.lock_run = (
            f"INSERT INTO {s}.runs (run_id) VALUES (%s) "
            f"ON CONFLICT (run_id) DO UPDATE SET fragments = {s}.runs.fragments"
        )
        self.upsert_root = f"""
            INSERT INTO {s}.runs (run_id, goal_id, status, started_at, completed_at, nodes,
                summary, record, record_format)
            VALUES (%s, %s, %s, %s, %s, %b, %s, %s, %s)
            ON CONFLICT (run_id) DO UPDATE SET
                goal_id = excluded.goal_id, status = excluded.status,
                started_at = excluded.started_at, completed_at = excluded.completed_at,
                nodes = excluded.nodes, summary = excluded.summary,
                record = excluded.record, record_format = excluded.record_format
        """
        self.upsert_fragment = f"""
            INSERT INTO {s}.run_fragments (run_id, fragment_id, record, record_format)
            VALUES (%s, %s, %s, %s)
            ON CONFLICT (run_id, fragment_id) DO UPDATE SET
                record = excluded.record, record_format = excluded.record_format
        """
        # Of runs whose rows are locked: which have fragments, and which have decisions
        # rows (and counts) from an earlier save.
        self.run_state = (
            f"SELECT r.run_id, r.fragments > 0, EXISTS "
            f"(SELECT 1 FROM {s}.decisions d WHERE d.run_id = r.run_id) "
            f"FROM {s}.runs r WHERE r.run_id = ANY(%b)"
        )
        self.refresh = f"""
            UPDATE {s}.runs SET goal_id = %s, status = %s, started_at = %s,
                completed_at = %s, nodes = %s, summary = %s, fragments = %s
            WHERE run_id = %s
        """
        self.load_root = f"SELECT record, record_format, fragments FROM {s}.runs WHERE run_id = %s"
        self.load_fragments = (
            f"SELECT record, record_format FROM {s}.run_fragments WHERE run_id = %s"
        )
        self.list_summaries = f"SELECT summary FROM {s}.runs"
        self.fragments_in_order = (
            f"SELECT record, record_format FROM {s}.run_fragments WHERE run_id = %s "
            "ORDER BY fragment_id"
        )
        self.lock_existing = f"SELECT 1 FROM {s}.runs WHERE run_id = %s FOR UPDATE"
        # One judgement per evaluator: the latest wins, an older one arriving late is not.
        self.upsert_evaluation = f"""
            INSERT INTO {s}.evaluations (run_id, decision_id, evaluator, evaluated_at, judgement)
            VALUES (%s, %s, %s, %s, %s)
            ON CONFLICT (run_id, decision_id, evaluator) DO UPDATE SET
                evaluated_at = excluded.evaluated_at, judgement = excluded.judgement
            WHERE excluded.evaluated_at >= {s}.evaluations.evaluated_at
        """
        self.evaluations_of_run = (
            f"SELECT decision_id, judgement FROM {s}.evaluations WHERE run_id = %s "
            "ORDER BY evaluated_at"
        )
        # %b (here, in with_fragments, the aggregates' run ids and the runs' nodes): id
        # arrays in binary; as text, psycopg escapes each id with a regular expression.
        self.decisions_delete = f"DELETE FROM {s}.decisions WHERE run_id = ANY(%b)"
        self.decisions_copy = f"COPY {s}.decisions FROM STDIN"
        self.update_summary = f"UPDATE {s}.runs SET summary = %s WHERE run_id = %s"
        # A writer is (host, pid, pid_start): see stores._journal_writers.
        self.journal_insert = (
            f"INSERT INTO {s}.journal (run_id, trace_id, host, pid, pid_start, data) "
            "VALUES (%s, %s, %s, %s, %s, %s)"
        )
        self.journal_delete_of = (
            f"DELETE FROM {s}.journal "
            "WHERE run_id = %s AND host = %s AND pid = %s AND pid_start = %s"
        )
        self.journal_delete = f"DELETE FROM {s}.journal WHERE run_id = %s"
        self.journal_delete_saved = (
            f"DELETE FROM {s}.journal WHERE run_id IN "
            f"(SELECT run_id FROM {s}.runs WHERE record IS NOT NULL)"
        )
        # Held while a process of this host takes orphans: one at a time, each sees the
        # entries the one before it took as that one's.
        self.journal_take_lock = "SELECT pg_advisory_xact_lock(hashtext(%s))"
        self.journal_take_lock_key = f"decisiontrace:journal:{s}:"
        self.journal_writers = f"SELECT DISTINCT pid, pid_start FROM {s}.journal WHERE host = %s"
        # Pid 0 is no process's: entries released to it are any later process's orphans.
        self.journal_release = (
            f"UPDATE {s}.journal SET pid = 0 WHERE host = %s AND pid = %s AND pid_start = %s"
        )
        # Re-tags the entries of writers that are gone (the arrays) as the taker's.
        self.journal_take = f"""
            UPDATE {s}.journal AS entry SET pid = %s, pid_start = %s
            FROM unnest(%s::integer[], %s::text[]) AS gone(pid, pid_start)
            WHERE entry.host = %s AND entry.pid = gone.pid
                AND entry.pid_start IS NOT DISTINCT FROM gone.pid_start
            RETURNING entry.seq, entry.run_id, entry.trace_id, entry.data
        """
        self.journal_delete_seq = f"DELETE FROM {s}.journal WHERE seq = ANY(%s)"


def migrate(
    connection: Any, schema: str, where: str, rewrite_rows: Callable[[Any], None] | None = None
) -> None:
    """Create or upgrade the schema's tables (``connection`` in autocommit mode);
    ``rewrite_rows(connection)`` rewrites older rows in the current form (migration 2)."""
    s = quote_identifier(schema)
    if _current_version(connection, s) == SCHEMA_VERSION:
        return
    with connection.transaction():
        # One process migrates at a time; the others wait here, then find it done.
        connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("decisiontrace:" + s,))
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        connection.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.schema_version ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = connection.execute(f"SELECT max(version) FROM {s}.schema_version").fetchone()
        stored = int(row[0]) if row and row[0] is not None else 0
        if stored > SCHEMA_VERSION:
            logger.warning(
                "%s was written by a newer decisiontrace (schema %d, this one knows %d); "
                "reading it as schema %d",
                where,
                stored,
                SCHEMA_VERSION,
                SCHEMA_VERSION,
            )
            return
        for version in range(stored + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                connection.execute(statement.format(s=s))
            connection.execute(f"INSERT INTO {s}.schema_version (version) VALUES (%s)", (version,))
        # Rows of version 1 in the current form (2), then the counts of every row (3, 4).
        if stored < 2 and rewrite_rows is not None:
            rewrite_rows(connection)
        if stored < 4:
            aggregates = _aggregates.Statements(f"{s}.", "", "CAST(trunc({number}) AS INTEGER)")
            for statement in aggregates.rebuild():
                connection.execute(statement)


def _current_version(connection: Any, s: str) -> int | None:
    """The recorded version, or None if there is no such table (read only, no lock)."""
    row = connection.execute(
        "SELECT to_regclass(%s) IS NOT NULL", (f"{s}.schema_version",)
    ).fetchone()
    if not row or not row[0]:
        return None
    row = connection.execute(f"SELECT max(version) FROM {s}.schema_version").fetchone()
    return None if not row or row[0] is None else int(row[0])


__all__ = ["DEFAULT_SCHEMA", "MIGRATIONS", "SCHEMA_VERSION", "Statements", "migrate"]
