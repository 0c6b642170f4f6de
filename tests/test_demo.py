"""The demo workload: deterministic under a seed, concurrent, and realistic enough to study."""

from __future__ import annotations

from typing import Any

import pytest

from decisiontrace import demo
from decisiontrace.demo import DemoResult, run_demo
from decisiontrace.models import Run, RunStatus
from decisiontrace.stores import MemoryStore

TICKETS = 30


def fingerprint(store: MemoryStore, result: DemoResult) -> dict[str, Any]:
    """Per ticket: the run's status and its decisions (node, intent, choice, success)."""
    per_ticket: dict[str, Any] = {}
    for ticket_id, run_id in result.run_ids.items():
        run = store.load_run(run_id)
        assert run is not None
        per_ticket[ticket_id] = (
            run.status.value,
            [
                (d.node_id, d.intent, d.chosen_option_id, d.outcome and d.outcome.success)
                for d in run.decisions
            ],
            [(p.severity, p.description) for p in run.problems],
        )
    return per_ticket


@pytest.fixture(scope="module")
def seven() -> tuple[MemoryStore, DemoResult]:
    store = MemoryStore()
    return store, run_demo(store, seed=7, tickets=TICKETS, threads=3)


def runs_of(pair: tuple[MemoryStore, DemoResult]) -> list[Run]:
    store, result = pair
    runs = [store.load_run(run_id) for run_id in result.run_ids.values()]
    return [run for run in runs if run is not None]


def test_the_same_seed_gives_the_same_runs(seven: tuple[MemoryStore, DemoResult]) -> None:
    again = MemoryStore()
    result = run_demo(again, seed=7, tickets=TICKETS, threads=2)
    assert result.status_counts == seven[1].status_counts
    assert fingerprint(again, result) == fingerprint(*seven)


def test_another_seed_gives_other_runs(seven: tuple[MemoryStore, DemoResult]) -> None:
    other = MemoryStore()
    result = run_demo(other, seed=8, tickets=TICKETS)
    assert fingerprint(other, result) != fingerprint(*seven)


def test_every_ticket_is_one_stored_run_of_its_own(seven: tuple[MemoryStore, DemoResult]) -> None:
    store, result = seven
    assert result.missing == []
    assert sorted(result.run_ids) == [f"T-{n:04d}" for n in range(1, TICKETS + 1)]
    assert len(set(result.run_ids.values())) == TICKETS
    assert sum(result.status_counts.values()) == TICKETS
    for ticket_id, run_id in result.run_ids.items():
        run = store.load_run(run_id)
        assert run is not None
        assert run.input_data["ticket_id"] == ticket_id  # no run got another's decisions
        assert [d.id for d in run.decisions] == [f"dec_{i}" for i in range(len(run.decisions))]
        assert run.decisions[0].node_id == "classifier"


def test_the_runs_have_what_a_user_should_see(seven: tuple[MemoryStore, DemoResult]) -> None:
    runs = runs_of(seven)
    statuses = {run.status for run in runs}
    assert statuses == {RunStatus.COMPLETED, RunStatus.FAILED}
    nodes = {node for run in runs for node in run.metrics.nodes_executed}
    assert nodes == {"classifier", "retriever", "responder", "escalation"}
    decisions = [d for run in runs for d in run.decisions]
    assert all(len(d.options) >= 2 for d in decisions)
    assert all(0 <= o.confidence <= 1 for d in decisions for o in d.options)
    failed = [d for d in decisions if d.outcome is not None and not d.outcome.success]
    assert failed and any(d.chosen_option_id for d in failed)  # failures keep their choice
    for run in runs:
        if run.status == RunStatus.FAILED:
            assert any(p.severity == "critical" for p in run.problems)
    severities = {p.severity for run in runs for p in run.problems}
    assert {"critical", "warning"} <= severities
    assert any(p.decision_id for run in runs for p in run.problems)


def test_llm_spans_carry_tokens_into_the_decisions(seven: tuple[MemoryStore, DemoResult]) -> None:
    decisions = [d for run in runs_of(seven) for d in run.decisions]
    # Classifier tokens exist only on its chat span, nested under the decorated decision.
    classified = [d for d in decisions if d.node_id == "classifier" and d.outcome is not None]
    assert classified and all(d.outcome and d.outcome.tokens_used > 0 for d in classified)
    responses = [d for d in decisions if d.node_id == "responder" and d.outcome is not None]
    assert responses and all(d.outcome and d.outcome.tokens_used >= 800 for d in responses)


def test_the_thread_pool_decisions_land_in_their_own_run(
    seven: tuple[MemoryStore, DemoResult],
) -> None:
    read_kb = 0
    for run in runs_of(seven):
        for index, made in enumerate(run.decisions):
            if made.intent == "Choose how many articles to use":
                read_kb += 1
                before = run.decisions[index - 1]
                assert before.node_id == "retriever" and before.chosen_option_id == "kb"
                assert made.node_id == "retriever"  # the node travelled into the thread too
    assert read_kb > 0


def test_progress_is_reported_per_ticket() -> None:
    calls: list[tuple[int, int]] = []
    run_demo(
        MemoryStore(), seed=1, tickets=5, progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(n, 5) for n in range(1, 6)]


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, (None, "none")),
        ({"OTEL_TRACES_EXPORTER": "console"}, (None, "console")),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, ("http://c:4317", "otlp")),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces"},
         ("http://t:4318/v1/traces", "otlp")),
    ],
)  # fmt: skip
def test_exports_only_where_an_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: tuple[Any, str]
) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert demo._export_settings() == expected


@pytest.mark.parametrize("arguments", [{"tickets": 0}, {"threads": 0}, {"tickets": "3"}])
def test_bad_arguments(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be an int >= 1"):
        run_demo(MemoryStore(), **arguments)
