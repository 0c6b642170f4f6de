"""Aggregate tables the SQL stores keep at write time, so ``stats`` reads counts, not runs.

Whenever a run's ``decisions`` rows are replaced (saved, saved again with late tokens,
merged with a fragment), the counts of its old rows are taken out of these tables and
those of its new rows put in, in the same transaction:

- ``decision_groups``: decisions by node, type, chosen option (and whether it is one of
  the decision's options), outcome (-1 none, 0 failure, 1 success) and latency, with
  their tokens and the count and sum of stated confidences;
- ``decision_offers``: decisions by node, type and list of option ids offered;
- ``decision_calibration``: decisions with an outcome and a stated confidence, by
  confidence bucket, with their successes and confidence sum.

A filtered ``stats`` (goal, status, time, node, newest N) computes the same rows from the
``decisions`` rows of the matching runs instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from decisiontrace.stores._facts import BUCKETS

Execute = Callable[[str, list[Any]], Iterable[tuple[Any, ...]]]

TABLES = ("decision_groups", "decision_offers", "decision_calibration")
GROUP_KEYS = ("node_id", "decision_type", "chosen_listed", "chosen_option_id", "outcome",
              "latency_ms")  # fmt: skip


def tables(text: str, key: str, integer: str, real: str) -> list[str]:
    """The tables' DDL, in a database's column types (``text`` for option-id lists,
    ``key`` for ids and names, ``integer`` and ``real`` for counts and sums)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {{p}}decision_groups (
            node_id {key} NOT NULL, decision_type {key} NOT NULL,
            chosen_listed {integer} NOT NULL, chosen_option_id {key} NOT NULL,
            outcome {integer} NOT NULL, latency_ms {integer} NOT NULL,
            decisions {integer} NOT NULL, tokens {integer} NOT NULL,
            confidences {integer} NOT NULL, confidence_sum {real} NOT NULL,
            PRIMARY KEY ({", ".join(GROUP_KEYS)})
        )""",
        f"""CREATE TABLE IF NOT EXISTS {{p}}decision_offers (
            node_id {key} NOT NULL, decision_type {key} NOT NULL, option_ids {text} NOT NULL,
            decisions {integer} NOT NULL,
            PRIMARY KEY (node_id, decision_type, option_ids)
        )""",
        f"""CREATE TABLE IF NOT EXISTS {{p}}decision_calibration (
            bucket {integer} PRIMARY KEY, decisions {integer} NOT NULL,
            successes {integer} NOT NULL, confidence_sum {real} NOT NULL
        )""",
    ]


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

    def group_rows(self, sign: str, where: str) -> list[str]:
        """SELECTs of the three tables' rows over ``decisions d WHERE where``, counts
        multiplied by ``sign``."""
        d = f"{self.prefix}decisions d"
        return [
            "SELECT d.node_id, d.decision_type, d.chosen_listed, d.chosen_option_id, "
            f"coalesce(d.outcome, -1), d.latency_ms, {sign} * count(*), "
            f"{sign} * coalesce(sum(d.tokens), 0), {sign} * count(d.confidence), "
            f"{sign} * coalesce(sum(d.confidence), 0.0) FROM {d} WHERE {where} "
            "GROUP BY d.node_id, d.decision_type, d.chosen_listed, d.chosen_option_id, "
            "coalesce(d.outcome, -1), d.latency_ms",
            f"SELECT d.node_id, d.decision_type, d.option_ids, {sign} * count(*) FROM {d} "
            f"WHERE {where} GROUP BY d.node_id, d.decision_type, d.option_ids",
            f"SELECT {self.bucket}, {sign} * count(*), {sign} * coalesce(sum(d.outcome), 0), "
            f"{sign} * coalesce(sum(d.confidence), 0.0) FROM {d} WHERE {where} "
            "AND d.confidence IS NOT NULL AND d.outcome IS NOT NULL "
            f"GROUP BY {self.bucket}",
        ]

    def updates(self, sign: str, marks: str) -> list[str]:
        """Statements adding (``sign`` "1") or taking out ("-1") the counts of the
        ``decisions`` rows of some runs."""
        return self.upserts(sign, self.in_runs.format(marks=marks))

    def rebuild(self) -> list[str]:
        """Statements filling the (empty) tables from every ``decisions`` row."""
        p = self.prefix
        deletes = [f"DELETE FROM {p}{table}" for table in TABLES]
        return deletes + self.upserts("1", "1 = 1")

    def upserts(self, sign: str, where: str) -> list[str]:
        """Statements adding the counts of the ``decisions`` rows ``where`` says, times
        ``sign``."""
        groups, offers, calibration = self.group_rows(sign, where)
        p = self.prefix
        return [
            f"INSERT INTO {p}decision_groups AS t ({', '.join(GROUP_KEYS)}, decisions, tokens, "
            f"confidences, confidence_sum) {groups} ON CONFLICT ({', '.join(GROUP_KEYS)}) "
            "DO UPDATE SET decisions = t.decisions + excluded.decisions, "
            "tokens = t.tokens + excluded.tokens, "
            "confidences = t.confidences + excluded.confidences, "
            "confidence_sum = t.confidence_sum + excluded.confidence_sum",
            f"INSERT INTO {p}decision_offers AS t (node_id, decision_type, option_ids, "
            f"decisions) {offers} ON CONFLICT (node_id, decision_type, option_ids) "
            "DO UPDATE SET decisions = t.decisions + excluded.decisions",
            f"INSERT INTO {p}decision_calibration AS t (bucket, decisions, successes, "
            f"confidence_sum) {calibration} ON CONFLICT (bucket) "
            "DO UPDATE SET decisions = t.decisions + excluded.decisions, "
            "successes = t.successes + excluded.successes, "
            "confidence_sum = t.confidence_sum + excluded.confidence_sum",
        ]

    def readings(self, where: str | None) -> list[str]:
        """What ``stats`` reads (see ``DecisionTallies``): counts by node, type, choice
        and outcome; latencies by node and type; latencies by chosen option; options
        offered; calibration. From the tables as kept (``where`` None), or counted over
        the ``decisions d`` rows ``where`` selects."""
        p = self.prefix
        if where is None:
            table, count = f"{p}decision_groups d", "sum(d.decisions)"
            outcome, tokens = "d.outcome", "sum(d.tokens)"
            stated, total = "sum(d.confidences)", "sum(d.confidence_sum)"
            known, keep = "d.outcome >= 0", f"HAVING {count} <> 0"
            _, offers, calibration = self.totals()
        else:
            table, count = f"{p}decisions d", "count(*)"
            outcome, tokens = "coalesce(d.outcome, -1)", "coalesce(sum(d.tokens), 0)"
            stated, total = "count(d.confidence)", "coalesce(sum(d.confidence), 0.0)"
            known, keep = f"({where}) AND d.outcome IS NOT NULL", ""
            _, offers, calibration = self.group_rows("1", where)
        every = "1 = 1" if where is None else where
        return [
            f"SELECT d.node_id, d.decision_type, d.chosen_listed, d.chosen_option_id, {outcome}, "
            f"{count}, {tokens}, {stated}, {total} FROM {table} WHERE {every} "
            f"GROUP BY d.node_id, d.decision_type, d.chosen_listed, d.chosen_option_id, "
            f"{outcome} {keep}",
            f"SELECT d.node_id, d.decision_type, d.latency_ms, {count} FROM {table} "
            f"WHERE {known} GROUP BY d.node_id, d.decision_type, d.latency_ms {keep}",
            f"SELECT d.node_id, d.decision_type, d.chosen_option_id, d.latency_ms, {count} "
            f"FROM {table} WHERE {known} AND d.chosen_listed = 1 GROUP BY d.node_id, "
            f"d.decision_type, d.chosen_option_id, d.latency_ms {keep}",
            offers,
            calibration,
        ]

    def totals(self) -> list[str]:
        """SELECTs of the three tables as kept (groups that still count)."""
        p = self.prefix
        return [
            f"SELECT {', '.join(GROUP_KEYS)}, decisions, tokens, confidences, confidence_sum "
            f"FROM {p}decision_groups WHERE decisions <> 0",
            f"SELECT node_id, decision_type, option_ids, decisions FROM {p}decision_offers "
            "WHERE decisions <> 0",
            f"SELECT bucket, decisions, successes, confidence_sum FROM {p}decision_calibration "
            "WHERE decisions <> 0",
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


__all__ = ["GROUP_KEYS", "TABLES", "Statements", "replace", "tables"]
