"""Aggregate tables the SQL stores keep at write time, so ``stats`` reads counts, not runs.

Whenever a run's ``decisions`` rows are replaced (saved, saved again with late tokens,
merged with a fragment), the counts of its old rows are taken out of these tables and
those of its new rows put in, in the same transaction (set-based: a few statements a
batch, whatever its size; runs stored for the first time have no counts to take out):

- ``decision_counts``: decisions by node, type, chosen option (and whether it is one of
  the decision's options) and outcome (-1 none, 0 failure, 1 success), with their
  tokens and the count and sum of stated confidences;
- ``decision_latencies``: decisions with an outcome by node, type and latency;
- ``decision_chosen_latencies``: the same by chosen option too (when it is listed);
- ``decision_offers``: decisions by node, type and list of option ids offered;
- ``decision_calibration``: decisions with an outcome and a stated confidence, by
  confidence bucket, with their successes and confidence sum.

Each is read in its key's order, without sorting. A filtered ``stats`` (goal, status,
time, node, newest N) computes the same rows from the ``decisions`` rows of the matching
runs instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from decisiontrace.stores._facts import BUCKETS

#: Each table: its key columns and its counted columns.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "decision_counts": (
        ("node_id", "decision_type", "chosen_listed", "chosen_option_id", "outcome"),
        ("decisions", "tokens", "confidences", "confidence_sum"),
    ),
    "decision_latencies": (("node_id", "decision_type", "latency_ms"), ("decisions",)),
    "decision_chosen_latencies": (
        ("node_id", "decision_type", "chosen_option_id", "latency_ms"),
        ("decisions",),
    ),
    "decision_offers": (("node_id", "decision_type", "option_ids"), ("decisions",)),
    "decision_calibration": (("bucket",), ("decisions", "successes", "confidence_sum")),
}
_TYPES = {"node_id": "key", "decision_type": "key", "chosen_option_id": "key",
          "option_ids": "text", "confidence_sum": "real"}  # fmt: skip


def tables(text: str, key: str, integer: str, real: str) -> list[str]:
    """The tables' DDL, in a database's column types (``text`` for option-id lists,
    ``key`` for ids and names, ``integer`` and ``real`` for counts and sums); ``{p}``
    stands for the table prefix."""
    types = {"text": text, "key": key, "real": real}
    statements = []
    for table, (keys, counted) in TABLES.items():
        columns = ", ".join(
            f"{column} {types.get(_TYPES.get(column, ''), integer)} NOT NULL"
            for column in keys + counted
        )
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {{p}}{table} ({columns}, PRIMARY KEY ({', '.join(keys)}))"
        )
    return statements


class Statements:
    """The aggregate statements of one database.

    Args:
        prefix: what goes before a table name (``""``, or ``"schema".``).
        in_runs: the condition "``d.run_id`` is one of the runs given", ``{marks}``
            standing for the runs' placeholders (SQLite) or one array parameter.
        integer_part: the integer part of ``{number}``, truncated toward zero.
    """

    def __init__(self, prefix: str, in_runs: str, integer_part: str) -> None:
        self.prefix = prefix
        self.in_runs = in_runs
        bucket = integer_part.format(number=f"d.confidence * {BUCKETS}")
        self.bucket = f"CASE WHEN {bucket} > {BUCKETS - 1} THEN {BUCKETS - 1} " \
            f"WHEN {bucket} < 0 THEN 0 ELSE {bucket} END"  # fmt: skip

    def group_rows(self, sign: str, where: str, source: str | None = None) -> list[str]:
        """SELECTs of the rows of each table (in :data:`TABLES` order) over ``decisions d
        WHERE where`` (or ``source``, another relation aliased ``d``), counts multiplied
        by ``sign``."""
        d = source or f"{self.prefix}decisions d"
        known = f"({where}) AND d.outcome IS NOT NULL"
        return [
            "SELECT d.node_id, d.decision_type, d.chosen_listed, d.chosen_option_id, "
            f"coalesce(d.outcome, -1), {sign} * count(*), "
            f"{sign} * coalesce(sum(d.tokens), 0), {sign} * count(d.confidence), "
            f"{sign} * coalesce(sum(d.confidence), 0.0) FROM {d} WHERE {where} "
            "GROUP BY d.node_id, d.decision_type, d.chosen_listed, d.chosen_option_id, "
            "coalesce(d.outcome, -1)",
            f"SELECT d.node_id, d.decision_type, d.latency_ms, {sign} * count(*) FROM {d} "
            f"WHERE {known} GROUP BY d.node_id, d.decision_type, d.latency_ms",
            "SELECT d.node_id, d.decision_type, d.chosen_option_id, d.latency_ms, "
            f"{sign} * count(*) FROM {d} WHERE {known} AND d.chosen_listed = 1 "
            "GROUP BY d.node_id, d.decision_type, d.chosen_option_id, d.latency_ms",
            f"SELECT d.node_id, d.decision_type, d.option_ids, {sign} * count(*) FROM {d} "
            f"WHERE {where} GROUP BY d.node_id, d.decision_type, d.option_ids",
            f"SELECT {self.bucket}, {sign} * count(*), {sign} * coalesce(sum(d.outcome), 0), "
            f"{sign} * coalesce(sum(d.confidence), 0.0) FROM {d} WHERE {known} "
            f"AND d.confidence IS NOT NULL GROUP BY {self.bucket}",
        ]

    def updates(self, sign: str, marks: str) -> list[str]:
        """Statements adding (``sign`` "1") or taking out ("-1") the counts of the
        ``decisions`` rows of some runs."""
        return self.upserts(sign, self.in_runs.format(marks=marks))

    def rebuild(self) -> list[str]:
        """Statements filling the tables afresh from every ``decisions`` row."""
        deletes = [f"DELETE FROM {self.prefix}{table}" for table in TABLES]
        return deletes + self.upserts("1", "1 = 1")

    def upserts(self, sign: str, where: str) -> list[str]:
        """Statements adding the counts of the ``decisions`` rows ``where`` selects,
        times ``sign``."""
        return [
            self._upsert(table, rows)
            for table, rows in zip(TABLES, self.group_rows(sign, where), strict=True)
        ]

    def combined(self, sign: str, marks: str) -> str:
        """One statement doing what :meth:`updates` does (PostgreSQL: data-modifying
        ``WITH``): the runs' ``decisions`` rows are read once rather than once a table,
        and each table's rows are updated in key order, so that concurrent writers lock
        the same rows in the same order (no deadlock, only queueing)."""
        batch = (
            f"batch AS MATERIALIZED (SELECT * FROM {self.prefix}decisions d "
            f"WHERE {self.in_runs.format(marks=marks)})"
        )
        parts = [batch]
        for index, (table, rows) in enumerate(
            zip(TABLES, self.group_rows(sign, "TRUE", source="batch d"), strict=True)
        ):
            order = ", ".join(str(position + 1) for position in range(len(TABLES[table][0])))
            parts.append(f"u{index} AS ({self._upsert(table, f'{rows} ORDER BY {order}')})")
        return f"WITH {', '.join(parts)} SELECT 1"

    def _upsert(self, table: str, rows: str) -> str:
        """``INSERT`` of the grouped ``rows`` into ``table``, adding to rows that exist."""
        keys, counted = TABLES[table]
        names = ", ".join(keys + counted)
        sums = ", ".join(f"{column} = t.{column} + excluded.{column}" for column in counted)
        return (
            f"INSERT INTO {self.prefix}{table} AS t ({names}) {rows} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sums}"
        )

    def readings(self, where: str | None) -> list[str]:
        """What ``stats`` reads (see ``DecisionTallies``), in :data:`TABLES` order: the
        tables as kept (``where`` None; groups that still count, in key order), or
        their rows counted over the ``decisions d`` rows ``where`` selects."""
        if where is not None:
            return self.group_rows("1", where)
        return [
            f"SELECT {', '.join(keys + counted)} FROM {self.prefix}{table} WHERE decisions <> 0"
            for table, (keys, counted) in TABLES.items()
        ]


def replace(
    execute: Callable[[str, Sequence[Any]], Any],
    statements: Statements,
    chunks: Sequence[tuple[str, Sequence[Any]]],
    delete_and_insert: Callable[[], None],
) -> None:
    """Take some runs' counts out, replace their ``decisions`` rows, put the counts in.

    ``chunks``: the runs as ``(marks, parameters)`` for :meth:`Statements.updates`.
    """
    for marks, parameters in chunks:
        for statement in statements.updates("-1", marks):
            execute(statement, parameters)
    delete_and_insert()
    for marks, parameters in chunks:
        for statement in statements.updates("1", marks):
            execute(statement, parameters)


__all__ = ["TABLES", "Statements", "replace", "tables"]
