"""Run records for the store tests, derived from the reference example."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from decisiontrace import Run, RunStatus

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
EXAMPLE: dict[str, Any] = json.loads((REFERENCE / "example-run.json").read_text("utf-8"))
EXAMPLE_SUMMARY: dict[str, Any] = json.loads(
    (REFERENCE / "example-run-summary.json").read_text("utf-8")
)
EXAMPLE_ID = EXAMPLE["id"]
T0 = datetime(2026, 11, 24, 22, 0, 0, 500000)


def make_record(
    run_id: str,
    *,
    goal_id: str = "support-goal",
    status: RunStatus = RunStatus.FAILED,
    started_at: datetime = T0,
    nodes: tuple[str, str] = ("classifier", "responder"),
) -> dict[str, Any]:
    """A record derived from the example run, as the framework would serialize it."""
    run = Run.model_validate(EXAMPLE)
    run.id = run_id
    run.goal_id = goal_id
    run.status = status
    run.started_at = started_at
    run.completed_at = started_at + timedelta(seconds=2)
    for decision, node_id in zip(run.decisions, nodes, strict=True):
        decision.node_id = node_id
    run.metrics.nodes_executed = list(dict.fromkeys(nodes))
    return run.model_dump(mode="json")
