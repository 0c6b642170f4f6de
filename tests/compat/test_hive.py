"""The Hive compat trackers, end to end through the real pipeline.

The original ``StreamDecisionTracker``, ``StreamRuntimeAdapter`` and single-run
``DecisionTracker`` (``tests/reference`` and the seed source) are the specification: signatures,
return values, id formats, metrics, narrative, aggregator calls and the stored layout.
Every run here goes tracker -> spans -> private ``RunRecordProcessor`` -> store, and is
read back through an independently opened store (JSON files and SQLite).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from decisiontrace.compat.hive import DecisionTracker, StreamDecisionTracker, StreamRuntimeAdapter
from decisiontrace.models import Decision, DecisionType, Option, Outcome, Run, RunStatus
from decisiontrace.stores import JSONFilesStore, MemoryStore, RunStore, open_store

from ..conftest import REFERENCE

EXAMPLE: dict[str, Any] = json.loads((REFERENCE / "example-run.json").read_text("utf-8"))
SUMMARY_SCHEMA: dict[str, Any] = json.loads(
    (REFERENCE / "run_summary.schema.json").read_text("utf-8")
)

HEX8 = r"[0-9a-f]{8}"
STAMP = r"(?P<stamp>\d{8}_\d{6})"
SINGLE_RUN_ID = re.compile(rf"run_{STAMP}_{HEX8}")
#: Fields that legitimately change when a run ends (live view vs stored record).
ENDING_FIELDS = {"status", "completed_at", "narrative", "output_data", "duration_ms"}


def stream_run_id(stream_id: str) -> re.Pattern[str]:
    return re.compile(rf"run_{re.escape(stream_id)}_{STAMP}_{HEX8}")


# --- the original's signatures, as written in seed-stream_runtime.txt and the README ---

_ = inspect.Parameter.empty
STREAM_TRACKER_SIGNATURES: dict[str, list[tuple[str, Any]]] = {
    "__init__": [("stream_id", _), ("storage", _), ("outcome_aggregator", None)],
    "start_run": [
        ("execution_id", _),
        ("goal_id", _),
        ("goal_description", ""),
        ("input_data", None),
    ],
    "end_run": [("execution_id", _), ("success", _), ("narrative", ""), ("output_data", None)],
    "set_node": [("execution_id", _), ("node_id", _)],
    "get_run": [("execution_id", _)],
    "decide": [
        ("execution_id", _),
        ("intent", _),
        ("options", _),
        ("chosen", _),
        ("reasoning", _),
        ("node_id", None),
        ("decision_type", DecisionType.CUSTOM),
        ("constraints", None),
        ("context", None),
    ],
    "record_outcome": [
        ("execution_id", _),
        ("decision_id", _),
        ("success", _),
        ("result", None),
        ("error", None),
        ("summary", ""),
        ("state_changes", None),
        ("tokens_used", 0),
        ("latency_ms", 0),
    ],
    "report_problem": [
        ("execution_id", _),
        ("severity", _),
        ("description", _),
        ("decision_id", None),
        ("root_cause", None),
        ("suggested_fix", None),
    ],
    "quick_decision": [
        ("execution_id", _),
        ("intent", _),
        ("action", _),
        ("reasoning", _),
        ("node_id", None),
    ],
    "get_active_executions": [],
    "get_stats": [],
}

#: The single-run API: the stream tracker's methods without ``execution_id``.
SINGLE_RUN_METHODS: dict[str, list[tuple[str, Any]]] = {
    name: [p for p in params if p[0] != "execution_id"]
    for name, params in STREAM_TRACKER_SIGNATURES.items()
    if name
    in (
        "start_run",
        "end_run",
        "set_node",
        "decide",
        "record_outcome",
        "report_problem",
        "quick_decision",
    )
}
ADAPTER_SIGNATURES = {
    "__init__": [("stream_runtime", _), ("execution_id", _)],
    **SINGLE_RUN_METHODS,
}
SINGLE_RUN_SIGNATURES = {
    "__init__": [("storage_path", _)],
    **SINGLE_RUN_METHODS,
    "decide_and_execute": [
        ("intent", _),
        ("options", _),
        ("chosen", _),
        ("reasoning", _),
        ("executor", _),
        ("**decide_kwargs", _),
    ],
}


def positional_signature(function: Any) -> tuple[list[tuple[str, Any]], list[inspect.Parameter]]:
    """(name, default) of every parameter a caller can pass positionally, and the others."""
    params = list(inspect.signature(function).parameters.values())[1:]  # drop self
    positional, keyword_only = [], []
    for param in params:
        if param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            positional.append((param.name, param.default))
        elif param.kind is inspect.Parameter.VAR_KEYWORD:
            positional.append((f"**{param.name}", _))
        else:
            keyword_only.append(param)
    return positional, keyword_only


@pytest.mark.parametrize(
    ("cls", "expected"),
    [
        (StreamDecisionTracker, STREAM_TRACKER_SIGNATURES),
        (StreamRuntimeAdapter, ADAPTER_SIGNATURES),
        (DecisionTracker, SINGLE_RUN_SIGNATURES),
    ],
    ids=["StreamDecisionTracker", "StreamRuntimeAdapter", "DecisionTracker"],
)
def test_signatures_are_the_originals(cls: type, expected: dict[str, Any]) -> None:
    for name, params in expected.items():
        positional, extra = positional_signature(getattr(cls, name))
        assert positional == params, f"{cls.__name__}.{name}"
        # Additions must not shift or require anything an original caller passes.
        for param in extra:
            assert param.kind is inspect.Parameter.KEYWORD_ONLY, f"{cls.__name__}.{name}"
            assert param.default is not _, f"{cls.__name__}.{name}({param.name})"
        if "decision_type" in dict(params):
            default = inspect.signature(getattr(cls, name)).parameters["decision_type"].default
            assert default is DecisionType.CUSTOM


@pytest.mark.parametrize("cls", [StreamRuntimeAdapter, DecisionTracker])
def test_single_run_api_exposes_the_originals_properties(cls: type) -> None:
    for name in ("storage", "execution_id", "current_run"):
        assert isinstance(inspect.getattr_static(cls, name), property), name


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(params=["json-files", "sqlite"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What an agent passes as ``storage``: a folder, or a ``sqlite:///`` URL."""
    if request.param == "json-files":
        return str(tmp_path / "store")
    return f"sqlite:///{tmp_path / 'runs.db'}"


@pytest.fixture
def reader(storage: str) -> Iterator[RunStore]:
    """The same store opened independently, as another process would read it."""
    store = open_store(storage)
    yield store
    store.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "json-store"


def stored(tracker: StreamDecisionTracker, reader: RunStore, run_id: str) -> Run:
    assert tracker.flush(10.0), "runs were not written in time"
    run = reader.load_run(run_id)
    assert run is not None, f"{run_id} not in the store"
    return run


def decisiontrace_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "decisiontrace" and r.levelno == logging.WARNING
    ]


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record without what differs between any two runs: ids and times (and
    the trace identity extras, which the reference example predates)."""
    record = copy.deepcopy(record)
    for key in ("id", "started_at", "completed_at", "duration_ms"):
        record.pop(key)
    for key in ("trace_id", "span_id", "service_name"):
        record.pop(key, None)
    for decision in record["decisions"]:
        decision.pop("timestamp")
        decision.pop("span_id", None)
        if decision["outcome"] is not None:
            decision["outcome"].pop("timestamp")
    for problem in record["problems"]:
        problem.pop("timestamp")
    return record


def replay_example(tracker: StreamDecisionTracker, execution_id: str) -> tuple[str, Run | None]:
    """Record the reference example run with positional calls, as old agents do.

    Returns the run id and the live view taken just before ``end_run``.
    """
    first_options = copy.deepcopy(EXAMPLE["decisions"][0]["options"])
    second_options = copy.deepcopy(EXAMPLE["decisions"][1]["options"])
    run_id = tracker.start_run(
        execution_id, "support-goal", "Handle support tickets", dict(EXAMPLE["input_data"])
    )
    tracker.set_node(execution_id, "classifier")
    first = tracker.decide(
        execution_id,
        "Classify ticket",
        first_options,
        "howto",
        "Question matches how-to pattern",
        None,
        DecisionType.PATH_CHOICE,
        ["respond within 1h"],
        {"language": "en"},
    )
    tracker.record_outcome(
        execution_id,
        first,
        True,
        {"category": "howto"},
        None,
        "Classified as how-to",
        None,
        412,
        230,
    )
    second = tracker.decide(
        execution_id,
        "Pick answer source",
        second_options,
        "kb",
        "KB article likely exists",
        "responder",
        DecisionType.TOOL_SELECTION,
    )
    tracker.record_outcome(
        execution_id, second, False, None, "knowledge base timed out after 5s", "", None, 0, 5003
    )
    problem = tracker.report_problem(
        execution_id,
        "warning",
        "Knowledge base slow",
        second,
        "index rebuild in progress",
        "retry with backoff",
    )
    assert (first, second, problem) == ("dec_0", "dec_1", "prob_0")
    live = tracker.get_run(execution_id)
    tracker.end_run(execution_id, False)
    return run_id, live


# --- the stream tracker: records, ids, metrics, narrative --------------------------------


def test_positional_replay_of_the_example_stores_the_example(
    storage: str, reader: RunStore
) -> None:
    tracker = StreamDecisionTracker("webhook", storage)
    run_id, _live = replay_example(tracker, "exec_123")

    assert tracker.flush(10.0)
    record = reader.load_record(run_id)
    assert record is not None
    assert comparable(record) == comparable(EXAMPLE)
    assert record["id"] == run_id
    assert record["narrative"] == (
        "Run failed. Made 2 decisions: 1 succeeded, 1 failed. "
        "Warnings: Knowledge base slow Failed on: Pick answer source"
    )


def test_metrics_count_decisions_outcomes_tokens_latency_and_nodes(folder: Path) -> None:
    tracker = StreamDecisionTracker("metrics", str(folder))
    run_id = tracker.start_run("e", "goal")
    tracker.set_node("e", "planner")
    d0 = tracker.decide("e", "plan", [{"id": "a"}], "a", "r")
    d1 = tracker.decide("e", "search", [{"id": "b"}], "b", "r", "searcher")
    d2 = tracker.decide("e", "plan again", [{"id": "c"}], "c", "r")  # planner, seen already
    d3 = tracker.quick_decision("e", "write", "write the answer", "r", "writer")
    tracker.decide("e", "left open", [{"id": "d"}], "d", "r", "searcher")
    tracker.record_outcome("e", d0, True, tokens_used=100, latency_ms=10)
    tracker.record_outcome("e", d1, False, error="no hits", tokens_used=20, latency_ms=300)
    tracker.record_outcome("e", d2, True, tokens_used=3, latency_ms=7)
    tracker.record_outcome("e", d3, True, latency_ms=1)
    tracker.end_run("e", True, "Answered", {"answer": 42})

    run = stored(tracker, open_store(str(folder)), run_id)
    assert run.metrics.model_dump() == {
        "total_decisions": 5,
        "successful_decisions": 3,
        "failed_decisions": 1,
        "total_tokens": 123,
        "total_latency_ms": 318,
        "nodes_executed": ["planner", "searcher", "writer"],
        "edges_traversed": [],
        "success_rate": 0.6,
    }
    assert [d.id for d in run.decisions] == ["dec_0", "dec_1", "dec_2", "dec_3", "dec_4"]
    assert [d.node_id for d in run.decisions] == [
        "planner",
        "searcher",
        "planner",
        "writer",
        "searcher",
    ]
    assert run.status is RunStatus.COMPLETED
    assert run.narrative == "Answered"  # a given narrative is kept
    assert run.output_data == {"answer": 42}
    assert run.decisions[4].outcome is None


@pytest.mark.parametrize(
    ("success", "problems", "outcomes", "expected"),
    [
        (True, [], [], "Run completed successfully. Made 0 decisions: 0 succeeded, 0 failed."),
        (
            False,
            [
                ("critical", "db down"),
                ("minor", "slow"),
                ("warning", "retry"),
                ("critical", "oom"),
                ("warning", "stale cache"),
            ],
            [True, False, None],
            "Run failed. Made 3 decisions: 1 succeeded, 1 failed. "
            "Critical issues: db down, oom Warnings: retry, stale cache Failed on: step 1, step 2",
        ),
        (
            True,
            [],
            [False, False, False, False, True],
            "Run completed successfully. Made 5 decisions: 1 succeeded, 4 failed. "
            "Failed on: step 0, step 1, step 2",
        ),
    ],
    ids=["empty", "problems-and-open-decision", "failed-on-lists-three"],
)
def test_narrative_is_generated_as_the_original_does_when_none_is_given(
    folder: Path,
    success: bool,
    problems: list[tuple[str, str]],
    outcomes: list[bool | None],
    expected: str,
) -> None:
    tracker = StreamDecisionTracker("narrative", str(folder))
    run_id = tracker.start_run("e", "goal")
    for step, outcome in enumerate(outcomes):
        decision_id = tracker.decide("e", f"step {step}", [{"id": "x"}], "x", "r")
        if outcome is not None:
            tracker.record_outcome("e", decision_id, outcome)
    for severity, description in problems:
        tracker.report_problem("e", severity, description)
    tracker.end_run("e", success)

    run = stored(tracker, open_store(str(folder)), run_id)
    assert run.narrative == expected
    assert run.status is (RunStatus.COMPLETED if success else RunStatus.FAILED)


def test_run_ids_have_the_stream_timestamp_and_eight_hex(folder: Path) -> None:
    tracker = StreamDecisionTracker("web_hook-7", str(folder))
    before = datetime.now().replace(microsecond=0)
    run_ids = [tracker.start_run(f"e{i}", "goal") for i in range(20)]
    after = datetime.now()
    for execution in range(20):
        tracker.end_run(f"e{execution}", True)

    assert len(set(run_ids)) == 20
    for run_id in run_ids:
        match = stream_run_id("web_hook-7").fullmatch(run_id)
        assert match is not None, run_id
        assert before <= datetime.strptime(match["stamp"], "%Y%m%d_%H%M%S") <= after


def test_decision_and_problem_ids_are_numbered_per_run(folder: Path) -> None:
    tracker = StreamDecisionTracker("ids", str(folder))
    reader = open_store(str(folder))
    first_run = tracker.start_run("a", "goal")
    second_run = tracker.start_run("b", "goal")
    ids = {
        "a": [tracker.decide("a", f"a{i}", [{"id": "x"}], "x", "r") for i in range(3)],
        "b": [tracker.quick_decision("b", f"b{i}", "act", "r") for i in range(2)],
    }
    problems = {
        "a": [tracker.report_problem("a", "minor", f"p{i}") for i in range(2)],
        "b": [tracker.report_problem("b", "minor", "p")],
    }
    tracker.end_run("a", True)
    tracker.end_run("b", True)
    third_run = tracker.start_run("a", "goal")  # same execution, new run: numbering restarts
    third = tracker.decide("a", "again", [{"id": "x"}], "x", "r")
    tracker.end_run("a", True)

    assert ids == {"a": ["dec_0", "dec_1", "dec_2"], "b": ["dec_0", "dec_1"]}
    assert problems == {"a": ["prob_0", "prob_1"], "b": ["prob_0"]}
    assert third == "dec_0"
    assert [d.intent for d in stored(tracker, reader, first_run).decisions] == ["a0", "a1", "a2"]
    assert [d.intent for d in stored(tracker, reader, second_run).decisions] == ["b0", "b1"]
    assert [d.intent for d in stored(tracker, reader, third_run).decisions] == ["again"]
    assert [p.id for p in stored(tracker, reader, first_run).problems] == ["prob_0", "prob_1"]


def test_quick_decision_records_one_execute_option_named_action(folder: Path) -> None:
    tracker = StreamDecisionTracker("quick", str(folder))
    run_id = tracker.start_run("e", "goal")
    tracker.set_node("e", "worker")
    first = tracker.quick_decision("e", "Send reply", "send the drafted reply", "draft approved")
    second = tracker.quick_decision("e", "Close ticket", "close it", "resolved", "closer")
    tracker.end_run("e", True)

    run = stored(tracker, open_store(str(folder)), run_id)
    assert (first, second) == ("dec_0", "dec_1")
    decision = run.decisions[0]
    assert decision.options == [
        Option(
            id="action",
            description="send the drafted reply",
            action_type="execute",
            confidence_defaulted=True,  # quick_decision gives no confidence
        )
    ]
    assert decision.chosen_option_id == "action"
    assert decision.chosen_option == decision.options[0]
    assert decision.intent == "Send reply"
    assert decision.reasoning == "draft approved"
    assert decision.decision_type is DecisionType.CUSTOM
    assert decision.node_id == "worker"
    assert run.decisions[1].node_id == "closer"
    assert run.decisions[1].options[0].description == "close it"


def test_get_run_and_stats_follow_the_runs_in_progress(folder: Path) -> None:
    tracker = StreamDecisionTracker("stats", str(folder))
    assert tracker.get_run("a") is None
    run_a = tracker.start_run("a", "goal-a", "first goal", {"n": 1})
    tracker.start_run("b", "goal-b")

    live = tracker.get_run("a")
    assert live is not None
    assert (live.id, live.goal_id, live.goal_description, live.input_data, live.status) == (
        run_a,
        "goal-a",
        "first goal",
        {"n": 1},
        RunStatus.RUNNING,
    )
    assert tracker.get_active_executions() == ["a", "b"]
    assert tracker.get_stats() == {
        "stream_id": "stats",
        "active_executions": 2,
        "execution_ids": ["a", "b"],
    }
    tracker.end_run("a", True)
    assert tracker.get_run("a") is None
    assert tracker.get_active_executions() == ["b"]
    assert tracker.get_stats() == {
        "stream_id": "stats",
        "active_executions": 1,
        "execution_ids": ["b"],
    }
    tracker.end_run("b", False)
    assert tracker.get_stats()["active_executions"] == 0


# --- misuse: warn, never raise --------------------------------------------------------------


def test_calls_for_an_execution_without_a_run_warn_and_return_empty(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = StreamDecisionTracker("ghosts", str(folder))
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        results = [
            tracker.decide("ghost", "Classify", [{"id": "a"}], "a", "r"),
            tracker.record_outcome("ghost", "dec_0", True),
            tracker.report_problem("ghost", "critical", "it broke"),
            tracker.end_run("ghost", True),
            tracker.quick_decision("ghost", "Act", "act", "r"),
        ]
    assert results == ["", None, "", None, ""]
    messages = decisiontrace_warnings(caplog)
    assert len(messages) == 5
    assert all("'ghost'" in message for message in messages)
    for message, method in zip(
        messages, ["decide", "record_outcome", "report_problem", "end_run", "decide"], strict=True
    ):
        assert f"{method} called but no run" in message
    assert tracker.get_active_executions() == []


def test_calls_after_the_run_ended_warn_and_return_empty(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = StreamDecisionTracker("late", str(folder))
    run_id = tracker.start_run("e", "goal")
    decision_id = tracker.decide("e", "before", [{"id": "a"}], "a", "r")
    tracker.end_run("e", True)
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        assert tracker.decide("e", "after", [{"id": "a"}], "a", "r") == ""
        assert tracker.record_outcome("e", decision_id, True) is None
        assert tracker.report_problem("e", "minor", "late") == ""
    assert len(decisiontrace_warnings(caplog)) == 3

    run = stored(tracker, open_store(str(folder)), run_id)
    assert [d.intent for d in run.decisions] == ["before"]
    assert run.decisions[0].outcome is None
    assert run.problems == []
    assert run.status is RunStatus.COMPLETED


def test_option_without_id_is_recorded_instead_of_raising(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = StreamDecisionTracker("noid", str(folder))
    run_id = tracker.start_run("e", "goal")
    options = [
        {"id": "keep", "description": "keep it", "action_type": "noop"},
        {"description": "an option somebody forgot to name", "confidence": 0.3},
    ]
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        decision_id = tracker.decide("e", "Choose", options, "keep", "safest")
    tracker.record_outcome("e", decision_id, True)
    tracker.end_run("e", True)

    assert decision_id == "dec_0"
    assert len(decisiontrace_warnings(caplog)) == 1
    run = stored(tracker, open_store(str(folder)), run_id)
    [decision] = run.decisions
    assert decision.chosen_option == Option(
        id="keep", description="keep it", action_type="noop", confidence_defaulted=True
    )
    unnamed = decision.options[1]
    assert (unnamed.description, unnamed.confidence) == ("an option somebody forgot to name", 0.3)
    assert isinstance(unnamed.id, str)
    assert unnamed.id not in ("", "keep")
    assert decision.was_successful


# --- end_run with and without an event loop -------------------------------------------------


def test_end_run_stores_the_run_without_an_event_loop(storage: str, reader: RunStore) -> None:
    tracker = StreamDecisionTracker("sync", storage)
    run_id = tracker.start_run("e", "goal")
    tracker.quick_decision("e", "do", "it", "because")
    tracker.end_run("e", True, "done")  # the original raised RuntimeError: no running loop

    run = stored(tracker, reader, run_id)
    assert (run.status, run.narrative, len(run.decisions)) == (RunStatus.COMPLETED, "done", 1)


def test_end_run_inside_a_running_loop_survives_the_loop_closing(
    storage: str, reader: RunStore
) -> None:
    tracker = StreamDecisionTracker("async", storage)

    async def agent() -> str:
        run_id = tracker.start_run("e", "goal")
        tracker.quick_decision("e", "do", "it", "because")
        await asyncio.sleep(0)
        tracker.end_run("e", False)
        return run_id  # the loop closes at once: the original's save task would be lost

    run_id = asyncio.run(agent())
    run = stored(tracker, reader, run_id)
    assert run.status is RunStatus.FAILED
    assert [d.intent for d in run.decisions] == ["do"]


# --- what is stored: schema, layout, live view ------------------------------------------------


def build_rich_run(tracker: StreamDecisionTracker, execution_id: str) -> tuple[str, Run | None]:
    """A run with every kind of entry; returns its id and the live view before end_run."""
    run_id = tracker.start_run(execution_id, "rich-goal", "Everything at once", {"q": [1, 2]})
    tracker.set_node(execution_id, "router")
    d0 = tracker.decide(
        execution_id,
        "Route",
        [
            {
                "id": "fast",
                "description": "Fast path",
                "action_type": "route",
                "action_params": {"lane": 1},
                "pros": ["quick"],
                "cons": ["shallow"],
                "confidence": 0.7,
            },
            {"id": "slow", "description": "Slow path", "action_type": "route"},
        ],
        "fast",
        "deadline is close",
        None,
        DecisionType.PATH_CHOICE,
        ["under 2s"],
        {"user": "u-1", "priority": 2},
    )
    tracker.record_outcome(
        execution_id, d0, True, ["a", {"b": None}], None, "routed", {"lane": 1}, 50, 12
    )
    d1 = tracker.quick_decision(execution_id, "Fetch", "GET /items", "needed", "fetcher")
    tracker.record_outcome(execution_id, d1, False, None, "HTTP 503", "", None, 0, 900)
    tracker.report_problem(execution_id, "critical", "upstream down", d1, "outage", "retry later")
    tracker.report_problem(execution_id, "minor", "cosmetic")
    tracker.decide(execution_id, "Still open", [{"id": "z"}], "z", "pending")
    live = tracker.get_run(execution_id)
    tracker.end_run(execution_id, False, output_data={"partial": True})
    return run_id, live


def test_stored_run_equals_the_live_view_and_validates_against_the_schema(
    storage: str, reader: RunStore, run_schema: dict[str, Any]
) -> None:
    tracker = StreamDecisionTracker("rich", storage)
    run_id, live = build_rich_run(tracker, "exec-rich")

    run = stored(tracker, reader, run_id)
    assert live is not None
    assert live.status is RunStatus.RUNNING
    assert live.completed_at is None
    assert run.model_dump(exclude=ENDING_FIELDS) == live.model_dump(exclude=ENDING_FIELDS)
    assert run.status is RunStatus.FAILED
    assert run.completed_at is not None
    assert run.completed_at >= run.started_at
    assert run.output_data == {"partial": True}
    assert run.narrative == (
        "Run failed. Made 3 decisions: 1 succeeded, 1 failed. "
        "Critical issues: upstream down Failed on: Fetch, Still open"
    )
    record = reader.load_record(run_id)
    assert record is not None
    jsonschema.validate(record, run_schema)
    assert record["duration_ms"] == run.duration_ms


def test_json_files_layout_is_what_the_original_file_storage_reads(
    folder: Path, run_schema: dict[str, Any]
) -> None:
    tracker = StreamDecisionTracker("layout", str(folder))
    run_id, _live = replay_example(tracker, "exec-layout")
    assert tracker.flush(10.0)

    with (folder / "runs" / f"{run_id}.json").open(encoding="utf-8") as file:
        record = json.load(file)
    jsonschema.validate(record, run_schema)
    # The fields of the original's layout, plus the trace identity extras it allows.
    assert set(record) == set(EXAMPLE) | {"trace_id", "span_id", "service_name"}
    assert set(record["metrics"]) == set(EXAMPLE["metrics"])
    assert set(record["problems"][0]) == set(EXAMPLE["problems"][0])
    for ours, theirs in zip(record["decisions"], EXAMPLE["decisions"], strict=True):
        assert set(ours) == set(theirs) | {"span_id"}
        assert set(ours["outcome"]) == set(theirs["outcome"])
        assert [set(o) for o in ours["options"]] == [set(o) for o in theirs["options"]]
    # The original's FileStorage.load_run is Run.model_validate_json of this file.
    assert Run.model_validate_json((folder / "runs" / f"{run_id}.json").read_text()).id == run_id

    with (folder / "summaries" / f"{run_id}.json").open(encoding="utf-8") as file:
        summary = json.load(file)
    jsonschema.validate(summary, SUMMARY_SCHEMA)
    assert (summary["run_id"], summary["status"], summary["decision_count"]) == (
        run_id,
        "failed",
        2,
    )

    def index(kind: str, key: str) -> Any:
        with (folder / "indexes" / kind / f"{key}.json").open(encoding="utf-8") as file:
            return json.load(file)

    assert index("by_goal", "support-goal") == [run_id]
    assert index("by_status", "failed") == [run_id]
    assert index("by_node", "classifier") == [run_id]
    assert index("by_node", "responder") == [run_id]
    assert not (folder / "indexes" / "by_status" / "running.json").exists()


# --- the outcome aggregator -------------------------------------------------------------------


class RecordingAggregator:
    """An OutcomeAggregator stand-in taking keyword arguments only, as the original calls it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def record_decision(self, *, stream_id: str, execution_id: str, decision: Decision) -> None:
        self.calls.append(
            (
                "record_decision",
                {"stream_id": stream_id, "execution_id": execution_id, "decision": decision},
            )
        )

    def record_outcome(
        self, *, stream_id: str, execution_id: str, decision_id: str, outcome: Outcome
    ) -> None:
        self.calls.append(
            (
                "record_outcome",
                {
                    "stream_id": stream_id,
                    "execution_id": execution_id,
                    "decision_id": decision_id,
                    "outcome": outcome,
                },
            )
        )


class FailingAggregator:
    def record_decision(self, **kwargs: Any) -> None:
        raise RuntimeError("aggregator down")

    def record_outcome(self, **kwargs: Any) -> None:
        raise RuntimeError("aggregator down")


def test_outcome_aggregator_is_called_as_the_original_calls_it(folder: Path) -> None:
    aggregator = RecordingAggregator()
    tracker = StreamDecisionTracker("webhook", str(folder), aggregator)
    tracker.start_run("exec_123", "support-goal")
    tracker.set_node("exec_123", "classifier")
    decision_id = tracker.decide(
        "exec_123",
        "Classify ticket",
        [{"id": "howto", "description": "How-to", "action_type": "route", "confidence": 0.8}],
        "howto",
        "matches",
        None,
        DecisionType.PATH_CHOICE,
        ["fast"],
        {"lang": "en"},
    )
    tracker.record_outcome(
        "exec_123", decision_id, True, {"category": "howto"}, None, "done", {"k": 1}, 412, 230
    )
    tracker.decide("nobody", "ignored", [{"id": "a"}], "a", "r")  # no run: no call
    tracker.end_run("exec_123", True)

    assert [name for name, _kwargs in aggregator.calls] == ["record_decision", "record_outcome"]
    (_, on_decision), (_, on_outcome) = aggregator.calls
    assert set(on_decision) == {"stream_id", "execution_id", "decision"}
    assert (on_decision["stream_id"], on_decision["execution_id"]) == ("webhook", "exec_123")
    decision = on_decision["decision"]
    assert type(decision) is Decision
    assert (decision.id, decision.node_id, decision.intent) == (
        "dec_0",
        "classifier",
        "Classify ticket",
    )
    assert decision.decision_type is DecisionType.PATH_CHOICE
    assert decision.options == [
        Option(id="howto", description="How-to", action_type="route", confidence=0.8)
    ]
    assert (decision.chosen_option_id, decision.reasoning) == ("howto", "matches")
    assert (decision.active_constraints, decision.input_context) == (["fast"], {"lang": "en"})
    assert decision.outcome is None

    assert set(on_outcome) == {"stream_id", "execution_id", "decision_id", "outcome"}
    assert (on_outcome["stream_id"], on_outcome["execution_id"], on_outcome["decision_id"]) == (
        "webhook",
        "exec_123",
        "dec_0",
    )
    outcome = on_outcome["outcome"]
    assert type(outcome) is Outcome
    assert outcome.model_dump(exclude={"timestamp"}) == {
        "success": True,
        "result": {"category": "howto"},
        "error": None,
        "state_changes": {"k": 1},
        "tokens_used": 412,
        "latency_ms": 230,
        "summary": "done",
    }


def test_a_failing_aggregator_does_not_break_recording(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = StreamDecisionTracker("webhook", str(folder), FailingAggregator())
    run_id = tracker.start_run("e", "goal")
    with caplog.at_level(logging.ERROR, logger="decisiontrace"):
        decision_id = tracker.decide("e", "Classify", [{"id": "a"}], "a", "r")
        tracker.record_outcome("e", decision_id, False, error="bad", tokens_used=5)
    tracker.end_run("e", False)

    assert decision_id == "dec_0"
    errors = [r for r in caplog.records if r.name == "decisiontrace" and r.levelno >= logging.ERROR]
    assert len(errors) == 2
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in errors)
    run = stored(tracker, open_store(str(folder)), run_id)
    [decision] = run.decisions
    assert decision.outcome is not None
    assert (decision.outcome.success, decision.outcome.error) == (False, "bad")
    assert run.metrics.total_tokens == 5


# --- StreamRuntimeAdapter -------------------------------------------------------------------


def test_adapter_exposes_storage_execution_and_current_run(folder: Path) -> None:
    store = MemoryStore()
    tracker = StreamDecisionTracker("adapt", store)
    adapter = StreamRuntimeAdapter(tracker, "exec-1")
    assert adapter.storage is store
    assert adapter.execution_id == "exec-1"
    assert adapter.current_run is None

    run_id = adapter.start_run("goal", "desc", {"x": 1})
    current = adapter.current_run
    assert current is not None
    assert (current.id, current.goal_id, current.input_data) == (run_id, "goal", {"x": 1})
    assert stream_run_id("adapt").fullmatch(run_id)
    adapter.end_run(True)
    assert adapter.current_run is None

    # As the original's: the storage as given, a path stays a path (nothing is opened).
    on_disk = StreamRuntimeAdapter(StreamDecisionTracker("adapt", str(folder)), "e").storage
    assert on_disk == str(folder)
    assert not folder.exists()


def test_adapter_set_node_applies_to_later_decisions_only(folder: Path) -> None:
    tracker = StreamDecisionTracker("nodes", str(folder))
    adapter = StreamRuntimeAdapter(tracker, "exec-1")
    run_id = adapter.start_run("goal")
    adapter.decide("before any node", [{"id": "a"}], "a", "r")
    adapter.set_node("classifier")
    adapter.decide("classify", [{"id": "a"}], "a", "r")
    adapter.quick_decision("quick", "act", "r")
    adapter.decide("explicit node", [{"id": "a"}], "a", "r", "override")
    adapter.set_node("responder")
    adapter.decide("respond", [{"id": "a"}], "a", "r")
    adapter.end_run(True)

    run = stored(tracker, open_store(str(folder)), run_id)
    assert [(d.intent, d.node_id) for d in run.decisions] == [
        ("before any node", "unknown"),
        ("classify", "classifier"),
        ("quick", "classifier"),
        ("explicit node", "override"),
        ("respond", "responder"),
    ]
    assert run.metrics.nodes_executed == ["unknown", "classifier", "override", "responder"]


def test_adapter_node_set_before_start_run_is_kept(folder: Path) -> None:
    """The original adapter keeps its own current node, run or not."""
    tracker = StreamDecisionTracker("early", str(folder))
    adapter = StreamRuntimeAdapter(tracker, "exec-1")
    adapter.set_node("entry")
    run_id = adapter.start_run("goal")
    adapter.quick_decision("first", "act", "r")
    adapter.decide("second", [{"id": "a"}], "a", "r")
    adapter.end_run(True)

    run = stored(tracker, open_store(str(folder)), run_id)
    assert [d.node_id for d in run.decisions] == ["entry", "entry"]


def test_two_adapters_on_one_tracker_do_not_mix(storage: str, reader: RunStore) -> None:
    tracker = StreamDecisionTracker("shared", storage)
    alpha = StreamRuntimeAdapter(tracker, "alpha")
    beta = StreamRuntimeAdapter(tracker, "beta")
    run_alpha = alpha.start_run("goal-a", "A", {"who": "alpha"})
    run_beta = beta.start_run("goal-b", "B", {"who": "beta"})
    alpha.set_node("a-node")
    beta.set_node("b-node")
    a0 = alpha.decide("alpha decides", [{"id": "x"}], "x", "ra", context={"who": "alpha"})
    b0 = beta.decide("beta decides", [{"id": "y"}], "y", "rb", context={"who": "beta"})
    b1 = beta.quick_decision("beta acts", "act", "rb")
    alpha.record_outcome(a0, True, "alpha result", None, "ok", None, 7, 70)
    beta.record_outcome(b0, False, None, "beta failed", "", None, 1, 10)
    beta.record_outcome(b1, True)
    assert beta.report_problem("warning", "beta trouble", b0) == "prob_0"
    assert alpha.report_problem("minor", "alpha nit") == "prob_0"
    current_alpha, current_beta = alpha.current_run, beta.current_run
    assert current_alpha is not None
    assert current_beta is not None
    assert (current_alpha.id, current_beta.id) == (run_alpha, run_beta)
    alpha.end_run(True, "alpha done", {"out": "a"})
    assert tracker.get_active_executions() == ["beta"]
    assert beta.current_run is not None
    beta.end_run(False)

    stored_alpha = stored(tracker, reader, run_alpha)
    stored_beta = stored(tracker, reader, run_beta)
    assert (a0, b0, b1) == ("dec_0", "dec_0", "dec_1")
    assert stored_alpha.input_data == {"who": "alpha"}
    assert [(d.intent, d.node_id, d.input_context) for d in stored_alpha.decisions] == [
        ("alpha decides", "a-node", {"who": "alpha"})
    ]
    assert stored_alpha.decisions[0].outcome is not None
    assert stored_alpha.decisions[0].outcome.result == "alpha result"
    assert [p.description for p in stored_alpha.problems] == ["alpha nit"]
    assert (stored_alpha.status, stored_alpha.narrative, stored_alpha.output_data) == (
        RunStatus.COMPLETED,
        "alpha done",
        {"out": "a"},
    )
    assert stored_beta.input_data == {"who": "beta"}
    assert [(d.intent, d.node_id) for d in stored_beta.decisions] == [
        ("beta decides", "b-node"),
        ("beta acts", "b-node"),
    ]
    assert [p.description for p in stored_beta.problems] == ["beta trouble"]
    assert stored_beta.metrics.total_tokens == 1
    assert stored_alpha.metrics.total_tokens == 7
    assert stored_beta.status is RunStatus.FAILED


# --- concurrency ----------------------------------------------------------------------------


def test_fifty_interleaved_executions_keep_their_own_decisions(
    storage: str, reader: RunStore
) -> None:
    tracker = StreamDecisionTracker("concurrent", storage)
    executions, steps = 50, 5
    started: list[str] = []
    peak_active: list[int] = []

    async def execution(number: int) -> str:
        execution_id = f"exec-{number:02d}"
        run_id = tracker.start_run(execution_id, "concurrent-goal", "", {"execution": number})
        started.append(execution_id)
        while len(started) < executions:  # every run is open before anyone decides
            await asyncio.sleep(0)
        peak_active.append(len(tracker.get_active_executions()))
        for step in range(steps):
            tracker.set_node(execution_id, f"node-{number}")
            await asyncio.sleep(0)
            decision_id = tracker.decide(
                execution_id,
                f"step {step} of {number}",
                [{"id": f"opt-{number}-{step}"}],
                f"opt-{number}-{step}",
                "r",
                context={"execution": number, "step": step},
            )
            await asyncio.sleep(0)
            tracker.record_outcome(
                execution_id, decision_id, True, {"execution": number}, tokens_used=number
            )
        await asyncio.sleep(0)
        tracker.end_run(execution_id, True)
        return run_id

    async def main() -> list[str]:
        return await asyncio.gather(*(execution(n) for n in range(executions)))

    run_ids = asyncio.run(main())
    assert max(peak_active) == executions
    assert len(set(run_ids)) == executions
    assert tracker.flush(10.0)
    for number, run_id in enumerate(run_ids):
        run = reader.load_run(run_id)
        assert run is not None
        assert run.input_data == {"execution": number}
        assert [d.id for d in run.decisions] == [f"dec_{s}" for s in range(steps)]
        assert [d.input_context for d in run.decisions] == [
            {"execution": number, "step": step} for step in range(steps)
        ]
        assert {d.node_id for d in run.decisions} == {f"node-{number}"}
        assert [d.chosen_option_id for d in run.decisions] == [
            f"opt-{number}-{step}" for step in range(steps)
        ]
        assert all(
            d.outcome is not None and d.outcome.result == {"execution": number}
            for d in run.decisions
        )
        assert run.metrics.total_tokens == steps * number
        assert run.metrics.total_decisions == steps
    assert tracker.get_active_executions() == []


# --- the single-run DecisionTracker ---------------------------------------------------------


def test_single_run_tracker_creates_its_folder_and_writes_on_end_run(tmp_path: Path) -> None:
    path = tmp_path / "does" / "not" / "exist"
    tracker = DecisionTracker(path)
    assert path.is_dir()
    assert isinstance(tracker.storage, JSONFilesStore)
    assert tracker.storage.directory == path
    assert tracker.execution_id == ""
    assert tracker.current_run is None

    before = datetime.now().replace(microsecond=0)
    run_id = tracker.start_run("goal", "A goal", {"in": 1})
    match = SINGLE_RUN_ID.fullmatch(run_id)
    assert match is not None, run_id
    assert before <= datetime.strptime(match["stamp"], "%Y%m%d_%H%M%S") <= datetime.now()

    current = tracker.current_run
    assert current is not None
    assert (current.id, current.status, current.input_data) == (
        run_id,
        RunStatus.RUNNING,
        {"in": 1},
    )
    tracker.set_node("n1")
    assert tracker.decide("Pick", [{"id": "a"}], "a", "r") == "dec_0"
    tracker.record_outcome("dec_0", True, "ok", None, "fine", None, 3, 4)
    assert tracker.quick_decision("Act", "act", "r", "n2") == "dec_1"
    assert tracker.report_problem("warning", "hmm", "dec_1") == "prob_0"
    live = tracker.current_run
    assert live is not None
    assert [d.node_id for d in live.decisions] == ["n1", "n2"]
    tracker.end_run(True, "", {"out": 2})

    # No flush: the file is there as soon as end_run returns.
    with (path / "runs" / f"{run_id}.json").open(encoding="utf-8") as file:
        record = json.load(file)
    assert tracker.current_run is None
    assert record["status"] == "completed"
    assert record["output_data"] == {"out": 2}
    assert record["narrative"] == (
        "Run completed successfully. Made 2 decisions: 1 succeeded, 0 failed. "
        "Warnings: hmm Failed on: Act"
    )
    run = tracker.storage.load_run(run_id)
    assert run is not None
    assert run.model_dump(exclude=ENDING_FIELDS) == live.model_dump(exclude=ENDING_FIELDS)

    second = tracker.start_run("goal")
    assert second != run_id
    assert tracker.decide("again", [{"id": "a"}], "a", "r") == "dec_0"
    tracker.end_run(False)
    assert (path / "runs" / f"{second}.json").exists()


def test_single_run_decide_and_execute_records_a_successful_outcome(tmp_path: Path) -> None:
    tracker = DecisionTracker(tmp_path / "runs-store")
    run_id = tracker.start_run("goal")
    calls: list[tuple[Any, ...]] = []

    def executor(*args: Any, **kwargs: Any) -> dict[str, int]:
        calls.append((args, kwargs))
        time.sleep(0.02)
        return {"rows": 3}

    result = tracker.decide_and_execute(
        "Query",
        [{"id": "sql", "description": "Run SQL"}],
        "sql",
        "fastest",
        executor,
        node_id="db",
        context={"table": "t"},
        decision_type=DecisionType.TOOL_SELECTION,
    )
    tracker.end_run(True)

    assert result == ("dec_0", {"rows": 3})
    assert calls == [((), {})]
    run = tracker.storage.load_run(run_id)
    assert run is not None
    [decision] = run.decisions
    assert (decision.intent, decision.node_id, decision.input_context) == (
        "Query",
        "db",
        {"table": "t"},
    )
    assert decision.decision_type is DecisionType.TOOL_SELECTION
    assert decision.outcome is not None
    assert decision.outcome.success is True
    assert decision.outcome.result == {"rows": 3}
    assert decision.outcome.error is None
    assert decision.outcome.latency_ms >= 20
    assert run.metrics.successful_decisions == 1


class ExecutorError(Exception):
    pass


def test_single_run_decide_and_execute_records_failure_and_reraises(tmp_path: Path) -> None:
    tracker = DecisionTracker(tmp_path / "runs-store")
    run_id = tracker.start_run("goal")
    error = ExecutorError("the tool exploded")

    def executor() -> None:
        raise error

    with pytest.raises(ExecutorError) as raised:
        tracker.decide_and_execute("Call tool", [{"id": "t"}], "t", "only one", executor)
    tracker.end_run(False)

    assert raised.value is error
    run = tracker.storage.load_run(run_id)
    assert run is not None
    [decision] = run.decisions
    assert decision.outcome is not None
    assert decision.outcome.success is False
    assert decision.outcome.error == "the tool exploded"
    assert decision.outcome.result is None
    assert run.metrics.failed_decisions == 1
    assert run.narrative.endswith("Failed on: Call tool")


def test_single_run_decide_and_execute_names_the_exception_class_on_the_span(
    tmp_path: Path,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = DecisionTracker(tmp_path / "s", tracer_provider=provider)
    tracker.start_run("goal")

    def executor() -> None:
        raise ExecutorError("the tool exploded")

    with pytest.raises(ExecutorError):
        tracker.decide_and_execute("Call tool", [{"id": "t"}], "t", "only one", executor)
    tracker.end_run(False)

    failed = [span for span in exporter.get_finished_spans() if "error.type" in span.attributes]
    assert [span.attributes["error.type"] for span in failed] == ["ExecutorError"]
    provider.shutdown()


def test_single_run_calls_without_a_run_warn_and_return_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = DecisionTracker(tmp_path / "s")
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        results = [
            tracker.decide("x", [{"id": "a"}], "a", "r"),
            tracker.record_outcome("dec_0", True),
            tracker.report_problem("critical", "boom"),
            tracker.quick_decision("x", "act", "r"),
            tracker.end_run(True),
        ]
    assert results == ["", None, "", "", None]
    assert len(decisiontrace_warnings(caplog)) == 5
    assert list((tmp_path / "s" / "runs").iterdir()) == []


def test_single_run_node_set_before_start_run_is_kept(tmp_path: Path) -> None:
    tracker = DecisionTracker(tmp_path / "s")
    tracker.set_node("entry")
    run_id = tracker.start_run("goal")
    tracker.quick_decision("first", "act", "r")
    tracker.end_run(True)

    run = tracker.storage.load_run(run_id)
    assert run is not None
    assert run.decisions[0].node_id == "entry"
