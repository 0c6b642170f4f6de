"""Statistics on hand-made runs whose numbers are known."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from decisiontrace.cli.diff import diff_runs
from decisiontrace.cli.stats import compute_stats, percentile
from decisiontrace.models import Decision, Option, Outcome, Run, RunStatus


def decision(
    node: str,
    chosen: str,
    confidences: dict[str, float],
    success: bool | None,
    *,
    kind: str = "path_choice",
    tokens: int = 0,
    latency: int = 0,
    intent: str = "Route",
    number: int = 0,
) -> Decision:
    outcome = None
    if success is not None:
        outcome = Outcome(success=success, tokens_used=tokens, latency_ms=latency)
    return Decision(
        id=f"dec_{number}",
        node_id=node,
        intent=intent,
        decision_type=kind,  # type: ignore[arg-type]
        options=[
            Option(id=key, description=key, action_type="route", confidence=value)
            for key, value in confidences.items()
        ],
        chosen_option_id=chosen,
        outcome=outcome,
    )


def run(run_id: str, *decisions: Decision, status: str = "completed", goal: str = "g") -> Run:
    return Run(
        id=run_id,
        goal_id=goal,
        status=RunStatus(status),
        started_at=datetime(2026, 5, 10, 12, 0, 0),
        completed_at=datetime(2026, 5, 10, 12, 0, 1),
        decisions=list(decisions),
    )


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 90, 3.7),
        ([1, 2, 3, 4], 99, 3.97),
        ([10], 99, 10),
        ([5, 1, 3], 50, 3),  # unsorted input
        ([], 50, None),
    ],
)
def test_percentile_interpolates_like_numpy(values: list[int], q: int, expected: Any) -> None:
    assert percentile(values, q) == expected


@pytest.fixture
def runs() -> list[Run]:
    return [
        run(
            "run_a",
            decision("router", "x", {"x": 0.95, "y": 0.05}, True, tokens=100, latency=10),
            decision("writer", "w", {"w": 0.55}, False, kind="tool_selection", tokens=50,
                     latency=30, number=1),
            status="failed",
        ),
        run(
            "run_b",
            decision("router", "x", {"x": 0.91, "y": 0.09}, False, tokens=300, latency=20),
            decision("writer", "w", {"w": 0.5}, None, kind="tool_selection", number=1),
        ),
        run("run_c", decision("router", "y", {"x": 0.4, "y": 0.05}, True, latency=40)),
    ]  # fmt: skip


def test_groups_count_successes_tokens_and_latency(runs: list[Run]) -> None:
    stats = compute_stats(runs)
    assert stats["runs"] == 3 and stats["decisions"] == 5
    assert stats["runs_by_status"] == {"completed": 2, "failed": 1}
    router, writer = stats["by_node"]
    assert router["node_id"] == "router"
    assert (router["decisions"], router["with_outcome"], router["successes"]) == (3, 3, 2)
    assert router["success_rate"] == round(2 / 3, 4)
    assert router["tokens"] == {"total": 400, "mean": 133.33}
    assert router["latency_ms"] == {"p50": 20, "p90": 36, "p99": 39.6}
    # The decision without an outcome counts as made, not in the success rate.
    assert (writer["decisions"], writer["with_outcome"], writer["success_rate"]) == (2, 1, 0.0)
    types = {g["decision_type"]: g for g in stats["by_decision_type"]}
    assert types["tool_selection"]["decisions"] == 2 and types["path_choice"]["decisions"] == 3
    assert [(g["node_id"], g["decision_type"]) for g in stats["by_node_and_type"]] == [
        ("router", "path_choice"),
        ("writer", "tool_selection"),
    ]


def test_options_count_offers_choices_and_outcomes(runs: list[Run]) -> None:
    options = {(o["node_id"], o["option_id"]): o for o in compute_stats(runs)["by_option"]}
    x, y = options[("router", "x")], options[("router", "y")]
    assert (x["offered"], x["chosen"], x["chosen_share"]) == (3, 2, round(2 / 3, 4))
    assert (x["successes"], x["success_rate"], x["mean_confidence"]) == (1, 0.5, 0.93)
    assert (y["offered"], y["chosen"], y["success_rate"], y["mean_confidence"]) == (3, 1, 1.0, 0.05)
    assert x["tokens"]["total"] == 400
    w = options[("writer", "w")]
    assert (w["chosen"], w["with_outcome"], w["success_rate"]) == (2, 1, 0.0)


def test_calibration_buckets_compare_confidence_with_success(runs: list[Run]) -> None:
    calibration = compute_stats(runs)["calibration"]
    buckets = calibration["buckets"]
    assert len(buckets) == 10
    assert [b["decisions"] for b in buckets] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    top = buckets[9]
    assert (top["low"], top["high"], top["success_rate"], top["mean_confidence"]) == (
        0.9, 1.0, 0.5, 0.93,
    )  # fmt: skip
    assert (buckets[0]["success_rate"], buckets[5]["success_rate"]) == (1.0, 0.0)
    assert buckets[3]["success_rate"] is None
    # weighted |rate - confidence|: (1*|1-0.05| + 1*|0-0.55| + 2*|0.5-0.93|) / 4
    assert calibration["expected_calibration_error"] == pytest.approx(
        (0.95 + 0.55 + 2 * 0.43) / 4, abs=1e-4
    )


def test_confidence_one_lands_in_the_last_bucket() -> None:
    stats = compute_stats([run("r", decision("n", "a", {"a": 1.0}, True))])
    assert stats["calibration"]["buckets"][9]["decisions"] == 1


def test_no_runs() -> None:
    stats = compute_stats([])
    assert (stats["runs"], stats["decisions"], stats["by_node"]) == (0, 0, [])
    assert stats["calibration"]["expected_calibration_error"] is None


def test_diff_kinds() -> None:
    base = run("a", decision("n", "x", {"x": 0.6, "y": 0.4}, True),
               decision("m", "p", {"p": 0.7}, True, number=1))  # fmt: skip
    other_choice = run("b", decision("n", "y", {"x": 0.6, "y": 0.4}, False))
    other_step = run("c", decision("n", "x", {"x": 0.6, "y": 0.4}, True),
                     decision("z", "p", {"p": 0.7}, True, intent="Other", number=1))  # fmt: skip
    shorter = run("d", decision("n", "x", {"x": 0.6, "y": 0.4}, False), status="failed")
    chosen = diff_runs(base, other_choice)
    assert chosen["first_difference"]["kind"] == "chosen"
    assert chosen["first_difference"]["b"]["confidence"] == 0.4
    assert [d["index"] for d in chosen["outcome_differences"]] == [0]
    assert diff_runs(base, other_step)["first_difference"]["kind"] == "path"
    stopped = diff_runs(base, shorter)
    assert stopped["first_difference"] == {
        "index": 1, "kind": "length", "a": stopped["first_difference"]["a"], "b": None,
    }  # fmt: skip
    assert stopped["same_decisions"] == 1
    assert stopped["delta"]["failed_decisions"] == 1
    assert stopped["run_b"]["status"] == "failed"
