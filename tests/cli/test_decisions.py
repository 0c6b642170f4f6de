"""``decisiontrace decisions``: decisions found across runs by node, type, chosen option,
outcome and text, as a table or JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from decisiontrace.cli.app import main
from decisiontrace.models import Decision
from tests.cli import DemoStore, fill_demo_store


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return fill_demo_store(tmp_path_factory.mktemp("decisions"))


def found(demo: DemoStore, *options: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        main, ["--store", demo.url, "decisions", "--json", "--limit", "10000", *options]
    )
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


def every(demo: DemoStore) -> list[tuple[str, Decision]]:
    return [(run.id, decision) for run in demo.runs for decision in run.decisions]


def outcome(decision: Decision) -> str:
    if decision.outcome is None:
        return "none"
    return "success" if decision.outcome.success else "failed"


def keys(items: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(item["run_id"], item["decision_id"]) for item in items}


def test_without_filters_every_decision(demo: DemoStore) -> None:
    assert keys(found(demo)) == {(run_id, d.id) for run_id, d in every(demo)}


@pytest.mark.parametrize(
    ("options", "keep"),
    [
        (["--node", "retriever"], lambda d: d.node_id == "retriever"),
        (["--type", "tool_selection"], lambda d: d.decision_type.value == "tool_selection"),
        (["--chosen", "escalate"], lambda d: d.chosen_option_id == "escalate"),
        (["--outcome", "failed"], lambda d: outcome(d) == "failed"),
        (
            ["--node", "retriever", "--outcome", "success"],
            lambda d: d.node_id == "retriever" and outcome(d) == "success",
        ),
        (["--text", "KNOWLEDGE"], lambda d: "knowledge" in (d.intent + d.reasoning).lower()
         or any("knowledge" in (o.id + o.description).lower() for o in d.options)
         or (d.outcome is not None and "knowledge" in (d.outcome.summary
             + (d.outcome.error or "")).lower())),
    ],
)  # fmt: skip
def test_filters(demo: DemoStore, options: list[str], keep: Any) -> None:
    expected = {(run_id, d.id) for run_id, d in every(demo) if keep(d)}
    assert expected, "the demo store has such decisions"
    assert keys(found(demo, *options)) == expected


def test_json_fields(demo: DemoStore) -> None:
    [item, *_] = found(demo, "--outcome", "failed")
    assert item["outcome"] == "failed"
    assert item["span_id"] and len(item["span_id"]) == 16
    assert set(item) >= {
        "run_id", "decision_id", "node_id", "intent", "chosen_option_id",
        "confidence", "reasoning", "error", "tokens_used", "trace_url",
    }  # fmt: skip


def test_table_at_80_columns(demo: DemoStore) -> None:
    result = CliRunner().invoke(
        main, ["--store", demo.url, "decisions", "--outcome", "failed"], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "…" not in result.stdout
    none = CliRunner().invoke(main, ["--store", demo.url, "decisions", "--chosen", "nothing"])
    assert "no decisions match these filters" in none.stdout
