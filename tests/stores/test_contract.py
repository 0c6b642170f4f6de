"""One contract, every store: memory, SQLite, JSON files and PostgreSQL.

Each test runs against each store (see ``conftest.store_under_test``); the PostgreSQL
ones are skipped, saying why, without ``DECISIONTRACE_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import decisiontrace as dt
from decisiontrace import Run, RunStatus
from decisiontrace.pipeline._journal import RECOVERED_REASON
from decisiontrace.stores import RunStore

from ._records import T0, make_record
from .conftest import StoreUnderTest

# -- the basics ---------------------------------------------------------------------------


def test_a_saved_record_loads_back_exactly_and_an_unknown_id_is_none(store: RunStore) -> None:
    record = make_record("run_a")
    store.save_records([record])
    assert store.load_record("run_a") == record
    assert store.load_record("run_unknown") is None
    assert store.load_run("run_unknown") is None


def test_save_run_and_load_run_round_trip_the_model(store: RunStore) -> None:
    run = Run.model_validate(make_record("run_model"))
    store.save_run(run)
    assert store.load_run("run_model") == run
    summary = store.load_summary("run_model")
    assert summary is not None and summary.decision_count == 2


def test_saving_again_replaces_the_run_and_moves_it_between_filters(store: RunStore) -> None:
    store.save_records([make_record("run_r", status=RunStatus.RUNNING)])
    store.save_records([make_record("run_r", status=RunStatus.COMPLETED)])
    assert [s.run_id for s in store.list_runs()] == ["run_r"]
    assert store.list_runs(status="running") == []
    assert [s.status for s in store.list_runs(status=RunStatus.COMPLETED)] == [RunStatus.COMPLETED]


def test_every_filter_and_the_order(store: RunStore) -> None:
    store.save_records(
        [
            make_record("run_1", goal_id="g1", started_at=T0, nodes=("a", "b")),
            make_record("run_2", goal_id="g2", started_at=T0 + timedelta(hours=1)),
            make_record(
                "run_3",
                goal_id="g1",
                status=RunStatus.COMPLETED,
                started_at=T0 + timedelta(hours=2),
                nodes=("c", "b"),
            ),
            # Same start as run_3: ties are broken by run id, descending.
            make_record("run_4", goal_id="g2", started_at=T0 + timedelta(hours=2)),
        ]
    )

    def ids(**filters: Any) -> list[str]:
        return [summary.run_id for summary in store.list_runs(**filters)]

    assert ids() == ["run_4", "run_3", "run_2", "run_1"]
    assert ids(goal_id="g1") == ["run_3", "run_1"]
    assert ids(status="completed") == ["run_3"]
    assert ids(since=T0 + timedelta(minutes=30)) == ["run_4", "run_3", "run_2"]
    assert ids(node_id="b") == ["run_3", "run_1"]
    assert ids(node_id="c") == ["run_3"]
    assert ids(node_id="nowhere") == []
    assert ids(limit=2) == ["run_4", "run_3"]
    assert ids(goal_id="g2", since=T0 + timedelta(hours=2), limit=5) == ["run_4"]


def test_a_batch_with_a_record_json_cannot_hold_saves_nothing(store: RunStore) -> None:
    bad = make_record("run_bad")
    bad["input_data"] = {"not json": object()}
    with pytest.raises(TypeError):
        store.save_records([make_record("run_good"), bad])
    assert store.list_runs() == []


def test_a_count_beyond_64_bits_is_kept_in_the_record_and_bounded_in_the_analytics(
    store: RunStore,
) -> None:
    # A run recorded elsewhere (ingest, rebuild) may carry any integer: the SQL stores'
    # analytics columns cannot hold it, and the run must still be saved, not retried
    # for ever.
    record = make_record("run_big")
    record["decisions"][0]["outcome"]["tokens_used"] = 2**80
    record["decisions"][0]["outcome"]["latency_ms"] = -(2**70)
    store.save_records([record, make_record("run_small")])
    assert store.load_record("run_big") == record
    tallies = store.decision_tallies()
    if tallies is not None:  # the SQL stores keep analytics columns
        others = record["decisions"][1:] + make_record("run_small")["decisions"]
        known = sum((d.get("outcome") or {}).get("tokens_used", 0) for d in others)
        assert sum(row[6] for row in tallies.counts) == 2**40 + known


def test_a_reopened_store_holds_the_same_runs(store_under_test: StoreUnderTest) -> None:
    first = store_under_test.open()
    first.save_records([make_record("run_kept")])
    first.close()
    again = store_under_test.open()
    assert again.load_record("run_kept") == make_record("run_kept")


# -- hostile ids --------------------------------------------------------------------------

HOSTILE = [
    "x'); DROP TABLE runs;--",
    "' OR '1'='1",
    'quote"s; and \\ backslash',
    "semi;colon",
    "nul\x00byte",
    "ünïcødé ✓ 漢字 🙂",
    "$1 %s %(name)s ?",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_ids_are_data_never_syntax(
    store_under_test: StoreUnderTest, hostile: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = store_under_test.open()
    store.save_records([make_record("run_plain", goal_id="plain")])
    record = make_record(hostile, goal_id=hostile, nodes=(hostile, "responder"))
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        store.save_records([record])
    if store_under_test.kind == "jsonfiles" and any(c in hostile for c in "\x00\\/"):
        # A file name cannot hold NUL or a path separator: the run is refused, saying so.
        assert "not saving run" in caplog.text
        assert store.load_record(hostile) is None
    else:
        assert store.load_record(hostile) == record
        assert [s.run_id for s in store.list_runs(goal_id=hostile)] == [hostile]
        assert [s.run_id for s in store.list_runs(node_id=hostile)] == [hostile]
    # Nothing else was touched, and the store still works.
    assert store.load_record("run_plain") == make_record("run_plain", goal_id="plain")
    assert [s.run_id for s in store.list_runs(goal_id="plain")] == ["run_plain"]
    store.save_records([make_record("run_after")])
    assert store.load_record("run_after") is not None


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_ids_through_the_real_pipeline(store: RunStore, hostile: str) -> None:
    """As the processor writes them (compact span form on SQLite and PostgreSQL)."""
    from opentelemetry.sdk.trace import TracerProvider

    processor = dt.RunRecordProcessor(store, flush_interval=0.02, handle_sigterm=False)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker(hostile, tracer_provider=provider)
    with tracker.run(hostile, input_data={"id": hostile}) as scope:
        tracker.set_node(hostile)
        decision_id = tracker.decide(
            intent=hostile, options=[{"id": hostile}, {"id": "safe"}], chosen=hostile,
            reasoning=hostile,
        )  # fmt: skip
        tracker.record_outcome(decision_id=decision_id, success=True, result={"id": hostile})
    assert processor.force_flush(10_000)
    provider.shutdown()
    run = store.load_run(scope.run_id)
    if run is None:  # only a JSON-files store refuses, an id no file name can hold
        assert isinstance(store, dt.stores.JSONFilesStore)
        assert any(c in scope.run_id for c in "\x00\\/")
        return
    assert run.goal_id == hostile and run.input_data == {"id": hostile}
    (decision,) = run.decisions
    assert (decision.node_id, decision.intent, decision.chosen_option_id) == (hostile,) * 3
    assert [s.run_id for s in store.list_runs(goal_id=hostile)] == [scope.run_id]
    assert [s.run_id for s in store.list_runs(node_id=hostile)] == [scope.run_id]
    for lookup in HOSTILE:
        if lookup != hostile:
            assert store.list_runs(goal_id=lookup, node_id=lookup) == []


# -- fragments: one run recorded by several processes -------------------------------------


def fragment(
    run_id: str,
    fragment_id: str,
    service: str,
    *,
    at: datetime,
    tokens: int,
    node: str,
    success: bool = True,
) -> dict[str, Any]:
    """The record a remote process stores: one decision, one problem, its tokens."""
    stamp = at.isoformat()
    decision_id = f"dec_0@{fragment_id.split('/')[0]}"
    return {
        "id": run_id,
        "fragment_id": fragment_id,
        "service": service,
        "goal_id": "support-goal",
        "started_at": stamp,
        "status": "running",
        "completed_at": None,
        "decisions": [
            {
                "id": decision_id,
                "timestamp": stamp,
                "node_id": node,
                "intent": f"{service} work",
                "decision_type": "custom",
                "options": [
                    {"id": "go", "description": "go", "action_type": "tool", "confidence": 0.9}
                ],
                "chosen_option_id": "go",
                "reasoning": "remote",
                "outcome": {
                    "success": success,
                    "tokens_used": tokens,
                    "latency_ms": 10,
                    "timestamp": stamp,
                },
                "service": service,
            }
        ],
        "problems": [
            {
                "id": f"prob_{service}",
                "severity": "warning",
                "description": f"{service} was slow",
                "decision_id": decision_id,
                "timestamp": stamp,
            }
        ],
        "metrics": {
            "total_decisions": 1,
            "successful_decisions": int(success),
            "failed_decisions": int(not success),
            "total_tokens": tokens,
            "total_latency_ms": 10,
            "nodes_executed": [node],
            "edges_traversed": [],
        },
    }


def root_record(run_id: str) -> dict[str, Any]:
    """The root process's record: decisions at T0 + 0.1 s and T0 + 0.5 s (see _records)."""
    record = make_record(run_id, status=RunStatus.COMPLETED)
    record["decisions"][0]["timestamp"] = (T0 + timedelta(milliseconds=100)).isoformat()
    record["decisions"][1]["timestamp"] = (T0 + timedelta(milliseconds=500)).isoformat()
    record["problems"][0]["timestamp"] = (T0 + timedelta(milliseconds=600)).isoformat()
    record["output_data"] = {"answer": "from the root"}
    return record


def test_fragments_merge_into_one_run(store_under_test: StoreUnderTest) -> None:
    store = store_under_test.open()
    root = root_record("run_f")
    tool = fragment(
        "run_f", "tools:41:aa", "tools", at=T0 + timedelta(milliseconds=300), tokens=7, node="t"
    )
    # Began before the root's span: the merged run starts with it.
    early = fragment(
        "run_f", "mcp:42:1f2e3d4c/00f067aa0ba902b7", "mcp",
        at=T0 - timedelta(seconds=1), tokens=5, node="m", success=False,
    )  # fmt: skip
    store.save_records([tool])
    assert [s.decision_count for s in store.list_runs()] == [1]
    store.save_records([root, early])

    run = store.load_run("run_f")
    assert run is not None
    assert [d.id for d in run.decisions] == [
        "dec_0@mcp:42:1f2e3d4c",
        *[root["decisions"][0]["id"]],
        "dec_0@tools:41:aa",
        root["decisions"][1]["id"],
    ]
    assert [d.model_dump().get("service") for d in run.decisions] == ["mcp", None, "tools", None]
    assert (run.status, run.output_data, run.narrative) == (
        RunStatus.COMPLETED,
        {"answer": "from the root"},
        root["narrative"],
    )
    assert run.started_at == T0 - timedelta(seconds=1)
    assert run.completed_at == datetime.fromisoformat(root["completed_at"])
    assert run.metrics.total_decisions == 4
    assert (run.metrics.successful_decisions, run.metrics.failed_decisions) == (2, 2)
    assert run.metrics.total_tokens == root["metrics"]["total_tokens"] + 7 + 5
    assert run.metrics.total_latency_ms == root["metrics"]["total_latency_ms"] + 20
    assert {p.description for p in run.problems} == {
        "Knowledge base slow",
        "tools was slow",
        "mcp was slow",
    }
    assert set(run.metrics.nodes_executed) == {"classifier", "responder", "t", "m"}
    assert run.model_dump()["services"] == ["mcp", "tools"]  # in time order
    assert "fragment_id" not in run.model_dump()
    # The parts stay as they were saved.
    assert store.load_fragments("run_f") == [early, tool]
    assert store.load_fragments("run_unknown") == []

    # Counted once, with the merged numbers, and found by every part's filters.
    (summary,) = store.list_runs()
    assert (summary.run_id, summary.decision_count, summary.problem_count) == ("run_f", 4, 3)
    assert [s.run_id for s in store.list_runs(node_id="t")] == ["run_f"]
    assert [s.run_id for s in store.list_runs(node_id="classifier")] == ["run_f"]
    assert [s.run_id for s in store.list_runs(status="completed")] == ["run_f"]
    assert store.list_runs(status="running") == []
    assert [s.run_id for s in store.list_runs(since=T0 - timedelta(seconds=1))] == ["run_f"]
    assert store.list_runs(since=T0 - timedelta(milliseconds=500)) == []


def test_a_fragment_decision_without_outcome_counts_as_neither_success_nor_failure(
    store_under_test: StoreUnderTest,
) -> None:
    # The span model's rule (spanmodel/_records.Totals): only decisions with an outcome
    # count as successful or failed; the merge of fragments counts by it too.
    store = store_under_test.open()
    root = root_record("run_open")
    open_part = fragment("run_open", "w:3:ee", "worker", at=T0, tokens=0, node="w")
    del open_part["decisions"][0]["outcome"]
    store.save_records([root, open_part])
    run = store.load_run("run_open")
    assert run is not None
    before = root["metrics"]
    assert run.metrics.total_decisions == before["total_decisions"] + 1
    assert (run.metrics.successful_decisions, run.metrics.failed_decisions) == (
        before["successful_decisions"],
        before["failed_decisions"],
    )


def test_a_late_fragment_updates_the_run_and_a_resaved_one_replaces_itself(
    store_under_test: StoreUnderTest,
) -> None:
    store = store_under_test.open()
    store.save_records([root_record("run_late")])
    (before,) = store.list_runs()
    assert before.decision_count == 2
    late = fragment("run_late", "late:7:cc", "late", at=T0 + timedelta(seconds=1), tokens=3,
                    node="late-node")  # fmt: skip
    store.save_records([late])
    store.save_records([late])  # the same fragment again: replaced, not added
    (after,) = store.list_runs()
    assert after.decision_count == 3
    assert [s.run_id for s in store.list_runs(node_id="late-node")] == ["run_late"]
    reopened = store_under_test.open()
    run = reopened.load_run("run_late")
    assert run is not None and [d.id for d in run.decisions][-1] == "dec_0@late:7:cc"
    assert len(run.decisions) == 3
    # And the root, saved again (e.g. by a resumed writer), keeps the fragment.
    store.save_records([root_record("run_late")])
    assert store.list_runs()[0].decision_count == 3


def test_a_run_known_only_from_fragments_is_listed_as_running(store: RunStore) -> None:
    store.save_records([fragment("run_headless", "w:1:dd", "worker", at=T0, tokens=4, node="w")])
    (summary,) = store.list_runs()
    assert (summary.run_id, summary.status, summary.decision_count) == (
        "run_headless",
        RunStatus.RUNNING,
        1,
    )
    assert [s.run_id for s in store.list_runs(status="running")] == ["run_headless"]
    run = store.load_run("run_headless")
    assert run is not None and run.status == RunStatus.RUNNING and run.completed_at is None
    # The root arrives: now it is the root's run, counted once.
    store.save_records([root_record("run_headless")])
    (summary,) = store.list_runs()
    assert (summary.status, summary.decision_count) == (RunStatus.COMPLETED, 3)


# -- real processes -----------------------------------------------------------------------

PRELUDE = """
import json, os, sys, threading, time
from opentelemetry.sdk.trace import TracerProvider
import decisiontrace as dt
from decisiontrace.stores import open_store

def pipeline(url, **options):
    store = open_store(url)
    options.setdefault("handle_sigterm", False)
    processor = dt.RunRecordProcessor(store, **options)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    return store, processor, provider, dt.DecisionTracker("contract", tracer_provider=provider)

def say(*words):
    print(*words, flush=True)
"""

WRITER = """
store, processor, provider, tracker = pipeline(sys.argv[1], flush_interval=0.01)
worker = sys.argv[2]
run_ids = []
for index in range(int(sys.argv[3])):
    with tracker.run(f"goal-{worker}", input_data={"index": index}) as scope:
        decision = tracker.decide(intent="step", options=[{"id": "a"}], chosen="a",
                                  reasoning="r")
        tracker.record_outcome(decision_id=decision, success=True, tokens_used=1)
    run_ids.append(scope.run_id)
provider.shutdown()
# And this process's fragment of a run every writer shares.
record = {
    "id": "run_shared", "goal_id": "shared", "fragment_id": f"writer:{os.getpid()}:{worker}",
    "service": f"writer-{worker}", "started_at": f"2026-11-24T22:00:0{worker}",
    "decisions": [{"id": f"dec_w{worker}", "timestamp": f"2026-11-24T22:00:0{worker}",
                   "node_id": "n", "intent": "share", "service": f"writer-{worker}",
                   "outcome": {"success": True, "tokens_used": 1}}],
    "metrics": {"total_tokens": 1},
}
store.save_records([record])
say(json.dumps(run_ids))
"""

PROCESSES = 4
RUNS_EACH = 12


def spawn(tmp_path: Path, body: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / f"child_{len(list(tmp_path.glob('child_*')))}.py"
    script.write_text(PRELUDE + textwrap.dedent(body), encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_many_writer_processes_lose_and_duplicate_no_run(
    store_under_test: StoreUnderTest, tmp_path: Path
) -> None:
    if not store_under_test.shared:
        pytest.skip("a memory store lives in one process")
    children = [
        spawn(tmp_path, WRITER, store_under_test.url, str(worker), str(RUNS_EACH))
        for worker in range(PROCESSES)
    ]
    written: list[str] = []
    for child in children:
        stdout, stderr = child.communicate(timeout=120)
        assert child.returncode == 0, stderr
        written += json.loads(stdout.splitlines()[-1])
    assert len(set(written)) == PROCESSES * RUNS_EACH

    store = store_under_test.open()
    listed = [summary.run_id for summary in store.list_runs()]
    assert sorted(listed) == sorted([*written, "run_shared"])  # each exactly once
    for run_id in written:
        run = store.load_run(run_id)
        assert run is not None and run.status == RunStatus.COMPLETED
        assert run.metrics.total_tokens == 1
    shared = store.load_run("run_shared")
    assert shared is not None and shared.status == RunStatus.RUNNING  # no root yet
    assert [d.id for d in shared.decisions] == [f"dec_w{w}" for w in range(PROCESSES)]
    assert sorted(shared.model_dump()["services"]) == [f"writer-{w}" for w in range(PROCESSES)]
    assert shared.metrics.total_tokens == PROCESSES
    # The listing saw every writer's fragment too (they locked the run in turn).
    (listed_shared,) = [s for s in store.list_runs() if s.run_id == "run_shared"]
    assert listed_shared.decision_count == PROCESSES


IN_FLIGHT = """
store, processor, provider, tracker = pipeline(sys.argv[1], flush_interval=0.02, journal=True)
with tracker.run("in-flight", input_data={"ticket": "T-9"}) as scope:
    tracker.set_node("classifier")
    first = tracker.decide(intent="classify", options=[{"id": "bug"}], chosen="bug",
                           reasoning="stack trace")
    tracker.record_outcome(decision_id=first, success=True, tokens_used=40)
    processor.force_flush(5_000)  # the writer has seen (and journaled) it
    time.sleep(0.2)
    say(json.dumps({"in_flight": scope.run_id}))
    time.sleep(60)
"""


def test_the_journal_brings_back_the_run_of_a_killed_process(
    store_under_test: StoreUnderTest, tmp_path: Path
) -> None:
    store = store_under_test.open()
    if not store.supports_journal:
        pytest.skip(f"the {store_under_test.kind} store keeps no journal")
    child = spawn(tmp_path, IN_FLIGHT, store_under_test.url)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.communicate(timeout=10)[1]
        in_flight = json.loads(line)["in_flight"]
        assert store.load_run(in_flight) is None  # not saved: the process is alive
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)

    processor = dt.RunRecordProcessor(
        store, journal=True, flush_interval=0.02, handle_sigterm=False
    )
    assert processor.force_flush(10_000)
    recovered = store.load_run(in_flight)
    assert recovered is not None and recovered.status == RunStatus.STUCK
    assert recovered.model_dump()["end_reason"] == RECOVERED_REASON
    assert [(d.intent, d.chosen_option_id) for d in recovered.decisions] == [("classify", "bug")]
    assert recovered.metrics.total_tokens == 40
    assert store.journal_take_orphans() == []  # cleared with the save
    processor.shutdown()


def test_entries_released_at_shutdown_are_orphans_even_for_a_process_of_the_same_pid(
    store_under_test: StoreUnderTest,
) -> None:
    # Released entries are anyone's orphans at once, even those of a process that lives
    # on with the same pid and start (here: this one, through another handle).
    store = store_under_test.open()
    if not store.supports_journal:
        pytest.skip(f"the {store_under_test.kind} store keeps no journal")
    entry = ("run_held", "ab" * 16, {"kind": "decision", "note": "held"})
    store.journal_append([entry])
    assert store.journal_take_orphans() == []  # this process is alive
    store.journal_release()
    again = store_under_test.open()
    assert again.journal_take_orphans() == [entry]


def test_a_judgement_of_a_remote_decision_survives_a_late_fragment(store: RunStore) -> None:
    from decisiontrace.evaluation.judgement import build, stored_form

    remote = fragment("run_j", "a:1:aa", "a", at=T0 + timedelta(seconds=1), tokens=1, node="a")
    store.save_records([root_record("run_j"), remote])
    judgement = stored_form(build("judge", None, 0.9, "good", "fine", None))
    assert store.update_evaluations(
        "run_j", [("dec_0@a:1:aa", judgement), ("nope", judgement)]
    ) == ["nope"]
    store.save_records([fragment("run_j", "b:2:bb", "b", at=T0 + timedelta(seconds=2),
                                 tokens=1, node="b")])  # fmt: skip
    run = store.load_run("run_j")
    assert run is not None and len(run.decisions) == 4
    (judged,) = [d for d in run.decisions if d.id == "dec_0@a:1:aa"]
    assert [j["evaluator"] for j in judged.model_dump()["evaluations"]] == ["judge"]
    assert store.list_runs()[0].decision_count == 4
