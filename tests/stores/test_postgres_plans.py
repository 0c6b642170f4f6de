"""The PostgreSQL store's decisions search is planned to stop early, whatever the
planner knows.

The search walks runs newest first and reads each run's decisions by its key, so that
a page of matches costs the runs it reads. Written as a join, it was left to the
planner: without statistics (a store on a server without autovacuum, or not yet
analyzed) it chose to scan the matching decisions once and compare them with every run
(1.8 s of server CPU for a page at 100,000 runs), or to hash every decision and sort.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from decisiontrace.stores import _analytics
from decisiontrace.stores.postgres import PostgreSQLStore, split_url

from ._records import T0, make_record

RUNS = 30


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


@pytest.mark.parametrize("statistics", [False, True])
@pytest.mark.parametrize(
    "filters",
    [{"node_id": "classifier", "outcome": "failed"}, {"text": "refund", "status": "failed"}],
)
def test_the_search_reads_each_runs_decisions_by_its_key(
    postgres_url: str, statistics: bool, filters: dict[str, Any]
) -> None:
    store = PostgreSQLStore(postgres_url)
    store.save_records(
        [make_record(f"run_{i:02d}", started_at=T0 + timedelta(minutes=i)) for i in range(RUNS)]
    )
    store.close()
    sent: list[tuple[str, list[Any]]] = []

    def execute(query: str, parameters: list[Any]) -> Iterator[tuple[Any, ...]]:
        sent.append((query, parameters))
        return iter(())

    runs, wanted = _analytics.split_filters(filters)
    assert list(_analytics.search(execute, store._dialect, runs, wanted)) == []
    [(query, parameters)] = sent
    conninfo, schema = split_url(postgres_url)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        if statistics:
            connection.execute(f'ANALYZE "{schema}".runs')
            connection.execute(f'ANALYZE "{schema}".decisions')
        with connection.transaction():
            connection.execute("SET LOCAL cursor_tuple_fraction = 0.001")
            [(plan,)] = connection.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + query, parameters
            ).fetchall()
    nodes = list(_nodes(plan[0]["Plan"]))
    reads = [node for node in nodes if node.get("Relation Name") == "decisions"]
    assert reads, nodes
    for read in reads:
        # Once for each run read, with the run's id as the key (an index condition,
        # or a filter where the planner prefers reading a tiny table whole).
        assert read["Actual Loops"] == RUNS, read
        condition = read.get("Index Cond") or read.get("Recheck Cond") or read.get("Filter")
        assert "r.run_id" in str(condition), read
    assert not any(node["Node Type"] in ("Hash", "Materialize") for node in nodes), nodes
