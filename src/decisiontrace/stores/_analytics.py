"""The analytics queries of the SQL stores: counts over the ``decisions`` table and the
run listing columns, never decoded runs (see ``stores._facts`` for the columns).

SQLite and PostgreSQL run the same statements; a :class:`Dialect` says how each spells
a parameter, its tables, the node filter and a substring test, and how ids are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from decisiontrace.stores._aggregates import Statements
from decisiontrace.stores._facts import DecisionTallies
from decisiontrace.stores._filters import since_text

Execute = Callable[[str, list[Any]], Iterable[tuple[Any, ...]]]


@dataclass(frozen=True)
class Dialect:
    """How one database spells what the analytics queries need."""

    #: A parameter placeholder.
    mark: str
    #: The tables (schema-qualified where needed).
    runs: str
    decisions: str
    evaluations: str
    #: The condition "the run at alias ``r`` has this node", with one parameter.
    has_node: str
    #: ``{text}`` contains the parameter.
    contains: str
    #: How the search reads each run's decisions, runs newest first, so that the rows
    #: come in order and a search can stop early: False, a ``CROSS JOIN`` (SQLite keeps
    #: its left table as the outer loop); True, a ``LATERAL`` subquery fenced with
    #: ``OFFSET 0`` (PostgreSQL: a join lets the planner, misled by missing or stale
    #: statistics, rescan the matching decisions for every run, quadratic in the store).
    lateral: bool
    #: The aggregate tables' statements (see ``stores._aggregates``).
    aggregates: Statements
    #: An id or name as the database keeps it, and back.
    key: Callable[[str], Any]
    text: Callable[[Any], str]


@dataclass(frozen=True)
class RunFilters:
    """Which runs: the filters of ``list_runs``, and the newest ``limit`` of them."""

    goal_id: str | None = None
    status: str | None = None
    since: datetime | None = None
    node_id: str | None = None
    limit: int | None = None

    def given(self) -> bool:
        return any(
            v is not None for v in (self.goal_id, self.status, self.since, self.node_id)
        ) or (self.limit is not None)


def _runs_where(dialect: Dialect, filters: RunFilters) -> tuple[str, list[Any]]:
    """Conditions on ``runs`` (alias ``r``) for the filters (limit aside)."""
    m = dialect.mark
    # Listed runs have a status (a run known only as the target of fragments in flight
    # has none yet); the status index then counts them without reading the rows.
    conditions = ["r.status IS NOT NULL"]
    parameters: list[Any] = []
    if filters.goal_id is not None:
        conditions.append(f"r.goal_id = {m}")
        parameters.append(dialect.key(filters.goal_id))
    if filters.status is not None:
        conditions.append(f"r.status = {m}")
        parameters.append(dialect.key(filters.status))
    if filters.since is not None:
        conditions.append(f"r.started_at >= {m}")
        parameters.append(since_text(filters.since))
    if filters.node_id is not None:
        conditions.append(dialect.has_node)
        parameters.append(dialect.key(filters.node_id))
    return " AND ".join(conditions), parameters


def matching_runs(dialect: Dialect, filters: RunFilters) -> tuple[str, list[Any]]:
    """A query of ``run_id, status, started_at`` of the matching runs (newest first when
    limited)."""
    where, parameters = _runs_where(dialect, filters)
    query = f"SELECT r.run_id, r.status, r.started_at FROM {dialect.runs} r WHERE {where}"
    if filters.limit is not None:
        query += f" ORDER BY r.started_at DESC, r.run_id DESC LIMIT {dialect.mark}"
        parameters = [*parameters, max(filters.limit, 0)]
    return query, parameters


def _named(text: Callable[[Any], str], rows: Iterable[tuple[Any, ...]], width: int) -> list[Any]:
    """``rows`` with their first ``width`` columns (ids and names as the database keeps
    them) as text, each distinct key converted once: the latency tables hold a few
    hundred thousand rows over a few dozen keys."""
    seen: dict[tuple[Any, ...], tuple[str, ...]] = {}
    named = []
    for row in rows:
        head = row[:width]
        key = seen.get(head)
        if key is None:
            key = seen[head] = tuple(map(text, head))
        named.append(key + row[width:])
    return named


def tallies(execute: Execute, dialect: Dialect, filters: RunFilters) -> DecisionTallies:
    """Counts over the decisions of the matching runs (see ``DecisionTallies``)."""
    runs, parameters = matching_runs(dialect, filters)
    text = dialect.text
    result = DecisionTallies()
    for status, count in execute(
        f"SELECT m.status, count(*) FROM ({runs}) m GROUP BY m.status", parameters
    ):
        result.runs_by_status[text(status)] = int(count)
    if filters.given():  # counted over the matching runs' decisions
        where: str | None = f"d.run_id IN (SELECT m.run_id FROM ({runs}) m)"
        scoped = list(parameters)
    else:  # as kept at write time
        where, scoped = None, []
    counts, latencies, chosen, offered, calibration = (
        list(execute(query, scoped)) for query in dialect.aggregates.readings(where)
    )
    if dialect.text is str:  # SQLite hands back the types already
        result.counts, result.latencies, result.chosen_latencies = counts, latencies, chosen
    else:
        result.counts = [
            (text(node), text(kind), int(listed), text(option), int(outcome), int(count),
             int(tokens), int(stated), float(total))
            for node, kind, listed, option, outcome, count, tokens, stated, total in counts
        ]  # fmt: skip
        # Latencies and counts come as int (bigint columns, count(*)).
        result.latencies = _named(text, latencies, 2)
        result.chosen_latencies = _named(text, chosen, 3)
    result.offered = [
        (text(node), text(kind), str(option_ids), int(count))
        for node, kind, option_ids, count in offered
    ]
    result.calibration = [
        (int(bucket), int(count), int(successes), float(total))
        for bucket, count, successes, total in calibration
    ]
    run_where, run_parameters = _runs_where(dialect, filters)
    judged = (
        f"SELECT r.run_id FROM {dialect.runs} r WHERE {run_where} AND r.run_id IN ("
        f"SELECT d.run_id FROM {dialect.decisions} d WHERE d.judged = 1 UNION "
        f"SELECT e.run_id FROM {dialect.evaluations} e)"
    )
    if filters.limit is not None:
        judged += f" AND r.run_id IN (SELECT m.run_id FROM ({runs}) m)"
        run_parameters += parameters
    judged += " ORDER BY r.started_at DESC, r.run_id DESC"
    result.judged_run_ids = [text(run_id) for (run_id,) in execute(judged, run_parameters)]
    return result


@dataclass(frozen=True)
class DecisionFilters:
    """The decision filters of ``decisiontrace decisions`` a store can narrow by."""

    node_id: str | None = None
    decision_type: str | None = None
    chosen: str | None = None
    outcome: str | None = None
    text: str | None = None
    judged: bool = False


def split_filters(filters: dict[str, Any]) -> tuple[RunFilters, DecisionFilters]:
    """``search_decisions`` keywords as run filters and decision filters."""
    return (
        RunFilters(**{k: filters.get(k) for k in ("goal_id", "status", "since")}),
        DecisionFilters(
            **{k: filters[k] for k in filters if k not in ("goal_id", "status", "since")}
        ),
    )


def search(
    execute: Execute, dialect: Dialect, runs: RunFilters, wanted: DecisionFilters
) -> Generator[tuple[str, str], None, None]:
    """``(run_id, decision_id)`` of the decisions that may match, newest runs first and
    in run order: every match, and (for text and judgements) some that the caller's own
    test then drops. ``runs.limit`` is not applied."""
    m = dialect.mark
    conditions: list[str] = []
    parameters: list[Any] = []
    # Judged in the decision's row or in the evaluations table: the latter read once (a
    # hashed set, an index), not probed once per decision row.
    judged = (
        "(d.judged = 1 OR (d.run_id, d.decision_id) IN "
        f"(SELECT e.run_id, e.decision_id FROM {dialect.evaluations} e))"
    )
    for column, value in (
        ("d.node_id", wanted.node_id),
        ("d.decision_type", wanted.decision_type),
        ("d.chosen_option_id", wanted.chosen),
    ):
        if value is not None:
            conditions.append(f"{column} = {m}")
            parameters.append(dialect.key(value))
    if wanted.outcome is not None:
        conditions.append(
            {"success": "d.outcome = 1", "failed": "d.outcome = 0"}.get(
                wanted.outcome, "d.outcome IS NULL"
            )
        )
    if wanted.text:
        conditions.append(f"({dialect.contains.format(text='d.text')} OR {judged})")
        parameters.append(wanted.text.casefold())
    if wanted.judged:
        conditions.append(judged)
    where, run_parameters = _runs_where(dialect, runs)
    if dialect.lateral:
        of_run = " AND ".join(["d.run_id = r.run_id", *conditions])
        source = (
            "CROSS JOIN LATERAL (SELECT d.run_id, d.decision_id, d.seq "
            f"FROM {dialect.decisions} d WHERE {of_run} ORDER BY d.seq OFFSET 0) d"
        )
        parameters = [*parameters, *run_parameters]
    else:
        source = f"CROSS JOIN {dialect.decisions} d ON d.run_id = r.run_id"
        where = " AND ".join([where, *conditions])
        parameters = [*run_parameters, *parameters]
    query = (
        f"SELECT d.run_id, d.decision_id FROM {dialect.runs} r {source} "
        f"WHERE {where} ORDER BY r.started_at DESC, r.run_id DESC, d.seq"
    )
    for run_id, decision_id in execute(query, parameters):
        yield dialect.text(run_id), dialect.text(decision_id)


__all__ = [
    "DecisionFilters", "DecisionTallies", "Dialect", "RunFilters", "matching_runs", "search",
    "split_filters", "tallies",
]  # fmt: skip
