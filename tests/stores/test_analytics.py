"""The analytics a store answers from its columns equal those of its decoded runs.

``stats`` and ``decisions`` search read the counts and columns the SQL stores keep at
write time (``RunStore.decision_tallies``, ``search_decisions``); the memory and
JSON-files stores answer None and the CLI decodes their runs. Either way the answers
must be what decoding every run gives: with fragments merged, judgements recorded after
the run, and a run saved again with late tokens.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from decisiontrace import Run
from decisiontrace.cli._store import load_runs
from decisiontrace.cli.decisions import find_decisions, search_store
from decisiontrace.cli.stats import compute_stats, percentile, percentile_of_counts, stats_of_store
from decisiontrace.evaluation.judgement import build, stored_form
from decisiontrace.stores import RunStore

from ._records import T0, make_record


def _option(option_id: str, confidence: float | None) -> dict[str, Any]:
    option: dict[str, Any] = {
        "id": option_id, "description": f"take {option_id}", "action_type": "tool",
    }  # fmt: skip
    if confidence is None:  # the agent gave none: the schema's default, marked
        option.update(confidence=0.5, confidence_defaulted=True)
    else:
        option["confidence"] = confidence
    return option


def _run(index: int) -> dict[str, Any]:
    """A run whose decisions vary in node, type, options, choice, outcome and latency."""
    record = make_record(
        f"run_{index:02d}",
        goal_id=("alpha", "beta")[index % 2],
        started_at=T0 + timedelta(minutes=index),
        nodes=(f"node{index % 3}", "writer"),
    )
    for number, decision in enumerate(record["decisions"]):
        seed = index * 7 + number
        confidences = (0.05 * (seed % 20), None, 0.95)
        decision["options"] = [_option(f"o{k}", confidences[k]) for k in range(3)]
        decision["chosen_option_id"] = ("o0", "o1", "o2", "elsewhere")[seed % 4]
        decision["decision_type"] = ("custom", "path_choice", "tool_selection")[seed % 3]
        decision["reasoning"] = f"reason {seed} {'Refund' if seed % 5 == 0 else 'other'}"
        if seed % 6 == 0:
            decision["outcome"] = None
        elif decision["outcome"] is not None:
            decision["outcome"].update(
                success=seed % 3 != 0, latency_ms=(seed * 37) % 400, tokens_used=seed
            )
    return Run.model_validate(record).model_dump(mode="json")


def _fragment(run_id: str, at: Any) -> dict[str, Any]:
    """What another process recorded into ``run_id``: one decision of its own."""
    stamp = at.isoformat()
    return {
        "id": run_id, "fragment_id": "tool-server/1", "service": "tool-server",
        "goal_id": "alpha", "started_at": stamp, "status": "running", "completed_at": None,
        "decisions": [{
            "id": "dec_0@tool-server", "timestamp": stamp, "node_id": "tool", "intent": "lookup",
            "decision_type": "tool_selection", "options": [_option("search", 0.7)],
            "chosen_option_id": "search", "reasoning": "a refund lookup",
            "outcome": {"success": False, "tokens_used": 11, "latency_ms": 250,
                        "summary": "", "error": "timeout", "timestamp": stamp},
        }],
        "problems": [], "metrics": {"total_tokens": 11},
    }  # fmt: skip


def _judge(store: RunStore, run_id: str, decision_id: str, better: bool) -> None:
    evaluation = {"goal_aligned": not better, "alignment_score": 0.4, "outcome_quality": 0.6,
                  "better_option_existed": better, "better_option_id": "o2" if better else None,
                  "why_better": "", "explanation": "a Refund was due"}  # fmt: skip
    judgement = stored_form(build("judge", evaluation, 0.5, None, "a Refund was due", None))
    assert store.update_evaluations(run_id, [(decision_id, judgement)]) == []


@pytest.fixture
def filled(store: RunStore) -> RunStore:
    records = [_run(index) for index in range(12)]
    store.save_records(records)
    # Late tokens: a run saved again with more tokens and an outcome it lacked.
    late = copy.deepcopy(records[3])
    for decision in late["decisions"]:
        if decision["outcome"] is not None:
            decision["outcome"]["tokens_used"] += 100
    store.save_records([late])
    # A fragment from another process, before and after its run's root.
    store.save_records([_fragment("run_05", T0 + timedelta(minutes=5, seconds=1))])
    store.save_records([_fragment("run_orphan", T0 + timedelta(hours=2))])
    first = store.load_run("run_07")
    assert first is not None
    _judge(store, "run_07", first.decisions[0].id, better=True)
    _judge(store, "run_05", "dec_0@tool-server", better=False)
    # Judged, then saved again: the judgement stays.
    store.save_records([_run(7)])
    return store


FILTERS: list[dict[str, Any]] = [
    {},
    {"goal": "alpha"},
    {"status": "failed"},
    {"since": T0 + timedelta(minutes=4)},
    {"node": "node1"},
    {"limit": 5},
    {"goal": "alpha", "limit": 3, "node": "writer"},
]


@pytest.mark.parametrize("filters", FILTERS)
def test_stats_from_the_store_equal_the_stats_of_its_decoded_runs(
    filled: RunStore, filters: dict[str, Any]
) -> None:
    given = {"goal": None, "since": None, "limit": None, **filters}
    decoded = compute_stats(
        load_runs(filled, given["goal"], given["since"], given["limit"],
                  status=filters.get("status"), node=filters.get("node"))
    )  # fmt: skip
    answered = stats_of_store(
        filled, given["goal"], given["since"], given["limit"],
        status=filters.get("status"), node=filters.get("node"),
    )  # fmt: skip
    assert answered == decoded
    if not filters:
        assert decoded["runs"] == 13 and decoded["evaluations"]["judgements"] == 2
        assert decoded["by_option"] and decoded["calibration"]["decisions"] > 0


SEARCHES: list[dict[str, Any]] = [
    {},
    {"node": "tool"},
    {"decision_type": "path_choice"},
    {"outcome": "failed", "goal": "alpha"},
    {"chosen": "elsewhere"},
    {"outcome": "none", "goal": "beta"},
    {"text": "refund"},
    {"text": "REFUND", "status": "running"},
    {"better_option": True},
    {"judged_by": "judge"},
    {"since": T0 + timedelta(minutes=8), "outcome": "success"},
]


@pytest.mark.parametrize("filters", SEARCHES)
def test_searching_the_store_finds_what_searching_its_decoded_runs_finds(
    filled: RunStore, filters: dict[str, Any]
) -> None:
    run_filters = {key: filters.get(key) for key in ("goal", "since", "status")}
    decision_filters = {k: v for k, v in filters.items() if k not in run_filters}
    decoded = find_decisions(
        load_runs(filled, run_filters["goal"], run_filters["since"], None,
                  status=run_filters["status"], node=filters.get("node")),
        **decision_filters,
    )  # fmt: skip
    expected = [(run.id, decision.id) for run, decision in decoded]
    found = [(run.id, decision.id) for run, decision in search_store(filled, **filters)]
    assert found == expected
    assert expected, "a search that finds nothing tests nothing"
    if not filters:
        assert len(expected) == 26


def test_a_sql_store_answers_from_its_columns(store: RunStore) -> None:
    store.save_records([_run(1)])
    kind = type(store).__name__
    tallies = store.decision_tallies()
    searched = store.search_decisions(text="reason")
    if kind in ("SQLiteStore", "PostgreSQLStore"):
        assert tallies is not None and sum(tallies.runs_by_status.values()) == 1
        assert searched is not None and len(list(searched)) == 2
    else:
        assert tallies is None and searched is None


@pytest.mark.parametrize(
    "values", [[], [5], [3, 1, 2], [1, 1, 1, 9], [0.5, 0.25, 0.25, 10, 7, 7, 7, 2]]
)
def test_percentiles_from_counts_equal_percentiles_of_the_values(values: list[float]) -> None:
    counts: dict[float, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    for q in (0, 10, 50, 90, 99, 100):
        ordered = sorted(values)
        if ordered:
            rank = (len(ordered) - 1) * q / 100
            low = int(rank)
            high = min(low + 1, len(ordered) - 1)
            expected = round(ordered[low] + (ordered[high] - ordered[low]) * (rank - low), 3)
        else:
            expected = None
        assert percentile_of_counts(counts, q) == expected == percentile(values, q)
