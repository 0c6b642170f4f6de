"""The tracker: the spans it emits, the live view, and the records rebuilt from them."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import threading
from typing import Any

import jsonschema
import pytest
from opentelemetry.sdk.trace import TracerProvider

import decisiontrace as dt
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.tracking import _normalize
from decisiontrace.tracking._live import ENDED_SPAN
from tests.conftest import Pipeline, span_dict

OPTIONS = [
    {
        "id": "howto",
        "description": "Route to how-to answer",
        "action_type": "route",
        "pros": ["matches how-to pattern"],
        "confidence": 0.82,
    },
    {"id": "bug", "description": "Route to bug triage", "action_type": "route", "cons": ["no"]},
]


def record_support_run(tracker: dt.DecisionTracker) -> Any:
    """A run like the reference example: one decision succeeds, one fails, one problem."""
    with tracker.run("support-goal", "Handle support tickets", {"ticket_id": "T-1"}) as run:
        first = tracker.decide(
            intent="Classify ticket",
            options=OPTIONS,
            chosen="howto",
            reasoning="Question matches how-to pattern",
            node_id="classifier",
            decision_type=dt.DecisionType.PATH_CHOICE,
            constraints=["respond within 1h"],
            context={"language": "en"},
        )
        tracker.record_outcome(
            decision_id=first,
            success=True,
            result={"category": "howto"},
            summary="Classified as how-to",
            tokens_used=412,
            latency_ms=230,
        )
        second = tracker.decide(
            intent="Pick answer source",
            options=[{"id": "kb", "description": "Search KB", "action_type": "tool_call"}],
            chosen="kb",
            reasoning="KB article likely exists",
            node_id="responder",
            decision_type="tool_selection",
        )
        tracker.report_problem(
            severity="warning",
            description="Knowledge base slow",
            decision_id=second,
            root_cause="index rebuild",
            suggested_fix="retry with backoff",
        )
        tracker.record_outcome(
            decision_id=second, success=False, error="kb timed out", latency_ms=5003
        )
        run.success = False
    return run


def test_a_run_is_a_root_span_and_decisions_are_its_children(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("webhook", tracer_provider=pipeline.provider)
    record_support_run(tracker)
    spans = [span_dict(s) for s in pipeline.spans()]
    runs = [s for s in spans if s["attributes"].get(sc.SPAN_KIND) == sc.KIND_RUN]
    decisions = [s for s in spans if s["attributes"].get(sc.SPAN_KIND) == sc.KIND_DECISION]
    assert len(runs) == 1 and len(decisions) == 2
    run = runs[0]
    assert run["parent_id"] is None
    assert run["name"] == "invoke_agent webhook"
    assert all(d["parent_id"] == run["span_id"] for d in decisions)
    assert all(d["trace_id"] == run["trace_id"] for d in decisions)
    attributes = run["attributes"]
    assert attributes[sc.GOAL_ID] == "support-goal"
    assert attributes[sc.STREAM_ID] == "webhook"
    assert attributes[sc.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert attributes[sc.GEN_AI_AGENT_NAME] == "webhook"
    assert json.loads(attributes[sc.RUN_INPUT]) == {"ticket_id": "T-1"}
    assert attributes[sc.RUN_STATUS] == "failed"
    assert attributes[sc.RUN_NARRATIVE].startswith("Run failed. Made 2 decisions")
    assert attributes[sc.RUN_PROBLEM_COUNT] == 1
    assert run["status"] == "ERROR"
    [(event_name, problem)] = run["events"]
    assert event_name == sc.PROBLEM_EVENT
    assert problem == {
        sc.PROBLEM_ID: "prob_0",
        sc.PROBLEM_SEVERITY: "warning",
        sc.PROBLEM_DESCRIPTION: "Knowledge base slow",
        sc.PROBLEM_DECISION_ID: "dec_1",
        sc.PROBLEM_ROOT_CAUSE: "index rebuild",
        sc.PROBLEM_SUGGESTED_FIX: "retry with backoff",
    }


def test_decision_attributes_are_typed_for_queries(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("webhook", tracer_provider=pipeline.provider)
    record_support_run(tracker)
    by_id = {
        s["attributes"][sc.DECISION_ID]: s
        for s in map(span_dict, pipeline.spans())
        if sc.DECISION_ID in s["attributes"]
    }
    ok, failed = by_id["dec_0"], by_id["dec_1"]
    a = ok["attributes"]
    assert a[sc.DECISION_TYPE] == "path_choice"
    assert a[sc.NODE_ID] == "classifier"
    assert a[sc.DECISION_CHOSEN_ID] == "howto"
    assert a[sc.DECISION_CHOSEN_CONFIDENCE] == 0.82
    assert a[sc.DECISION_OPTION_COUNT] == 2
    assert a[sc.DECISION_OPTION_IDS] == ("howto", "bug")
    assert a[sc.DECISION_CONSTRAINTS] == ("respond within 1h",)
    assert a[sc.OUTCOME_SUCCESS] is True
    assert a[sc.OUTCOME_TOKENS] == 412 and a[sc.OUTCOME_LATENCY_MS] == 230
    assert json.loads(a[sc.OUTCOME_RESULT]) == {"category": "howto"}
    assert json.loads(a[sc.DECISION_INPUT_CONTEXT]) == {"language": "en"}
    # the full options travel losslessly as JSON
    options = json.loads(a[sc.DECISION_OPTIONS])
    assert options[0] == {
        "id": "howto",
        "description": "Route to how-to answer",
        "action_type": "route",
        "action_params": {},
        "pros": ["matches how-to pattern"],
        "cons": [],
        "confidence": 0.82,
    }
    assert ok["status"] == "UNSET"
    assert failed["status"] == "ERROR"
    assert failed["attributes"][sc.OUTCOME_SUCCESS] is False
    assert failed["attributes"][sc.OUTCOME_ERROR] == "kb timed out"
    assert failed["attributes"][sc.ERROR_TYPE] == "_OTHER"
    for value in a.values():
        assert isinstance(value, str | bool | int | float | tuple)


def test_decision_span_lasts_from_decide_until_its_outcome(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("g") as run:
        decision_id = tracker.decide(intent="i", options=[], chosen="", reasoning="")
        assert pipeline.spans() == []  # still open
        tracker.record_outcome(decision_id=decision_id, success=True)
        [decision] = pipeline.spans()
        assert decision.end_time is not None
        stored_timestamp = run.get_run().decisions[0].outcome.timestamp  # type: ignore[union-attr]
    assert (
        stored_timestamp
        == dt.Run.model_validate(
            {"id": "x", "goal_id": "g", "started_at": stored_timestamp}
        ).started_at
    )


def test_end_run_ends_decisions_still_open(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("g") as run:
        tracker.decide(intent="never finished", options=[], chosen="", reasoning="")
    spans = {s.name: s for s in pipeline.spans()}
    decision, root = spans["decision never finished"], spans["invoke_agent s"]
    assert decision.end_time == root.end_time
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert stored.decisions[0].outcome is None
    assert stored.metrics.total_decisions == 1 and stored.metrics.failed_decisions == 0


def test_stored_record_equals_live_view_and_validates(
    pipeline: Pipeline, run_schema: dict[str, Any]
) -> None:
    tracker = dt.DecisionTracker("webhook", tracer_provider=pipeline.provider)
    run = record_support_run(tracker)
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    live = run.get_run()
    assert stored is not None and live is not None
    assert stored == live
    assert stored.status == dt.RunStatus.FAILED
    assert stored.metrics.model_dump() == {
        "total_decisions": 2,
        "successful_decisions": 1,
        "failed_decisions": 1,
        "total_tokens": 412,
        "total_latency_ms": 5233,
        "nodes_executed": ["classifier", "responder"],
        "edges_traversed": [],
        "success_rate": 0.5,
    }
    assert stored.narrative == (
        "Run failed. Made 2 decisions: 1 succeeded, 1 failed. Warnings: Knowledge base slow "
        "Failed on: Pick answer source"
    )
    jsonschema.validate(json.loads(stored.model_dump_json()), run_schema)
    assert re.fullmatch(r"run_webhook_\d{8}_\d{6}_[0-9a-f]{8}", run.run_id)


def test_live_view_while_running(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    execution_id = "exec-1"
    run_id = tracker.start_run(execution_id=execution_id, goal_id="g", input_data={"a": 1})
    decision_id = tracker.decide(
        execution_id=execution_id, intent="i", options=OPTIONS, chosen="bug", reasoning="r"
    )
    live = tracker.get_run(execution_id)
    assert live is not None
    assert (live.id, live.status, live.input_data) == (run_id, dt.RunStatus.RUNNING, {"a": 1})
    assert [d.id for d in live.decisions] == [decision_id] == ["dec_0"]
    assert live.decisions[0].chosen_option is not None
    assert live.decisions[0].chosen_option.id == "bug"
    assert tracker.get_active_executions() == [execution_id]
    assert tracker.get_stats() == {
        "stream_id": "s",
        "active_executions": 1,
        "execution_ids": [execution_id],
    }
    tracker.end_run(execution_id=execution_id, success=True, narrative="done")
    assert tracker.get_run(execution_id) is None
    assert tracker.get_active_executions() == []
    pipeline.flush()
    stored = pipeline.store.load_run(run_id)
    assert stored is not None and stored.narrative == "done"


def test_execution_id_may_be_left_out_only_inside_a_run(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    assert tracker.decide(intent="x", options=[], chosen="", reasoning="") == ""
    assert "outside a run" in caplog.text
    with tracker.run("g") as run:
        tracker.set_node("planner")
        decision_id = tracker.quick_decision(intent="act", action="do it", reasoning="because")
        problem_id = tracker.report_problem(severity="minor", description="meh")
    assert (decision_id, problem_id) == ("dec_0", "prob_0")
    final = run.get_run()
    assert final is not None
    [decision] = final.decisions
    assert decision.node_id == "planner"
    assert [o.model_dump() for o in decision.options] == [
        {
            "id": "action",
            "description": "do it",
            "action_type": "execute",
            "action_params": {},
            "pros": [],
            "cons": [],
            "confidence": 0.5,
            "confidence_defaulted": True,
        }
    ]
    assert decision.chosen_option_id == "action"


def test_a_decision_nests_under_the_current_span_of_its_run(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    tracer = pipeline.provider.get_tracer("test")
    with tracker.run("g"), tracer.start_as_current_span("retrieve") as step:
        decision_id = tracker.decide(intent="i", options=[], chosen="", reasoning="")
        tracker.record_outcome(decision_id=decision_id, success=True)
    decision = next(s for s in pipeline.spans() if s.name == "decision i")
    assert decision.parent is not None
    assert decision.parent.span_id == step.get_span_context().span_id


def test_a_block_that_raises_fails_the_run(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    scope = tracker.run("g")
    with pytest.raises(KeyError) as raised, scope:
        raise KeyError("missing")
    pipeline.flush()
    stored = pipeline.store.load_run(scope.run_id)
    assert stored is not None
    assert stored.status == dt.RunStatus.FAILED
    assert stored.problems[0].severity == "critical"
    assert stored.problems[0].description == f"KeyError: {raised.value}"
    root = next(s for s in pipeline.spans() if s.parent is None)
    assert "exception" in [e.name for e in root.events]


def test_a_cancelled_block_cancels_the_run(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)

    async def work() -> str:
        async with tracker.run("g") as run:
            task = asyncio.current_task()
            assert task is not None
            asyncio.get_running_loop().call_soon(task.cancel)
            await asyncio.sleep(1)
        return run.run_id

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(work())

    asyncio.run(main())
    pipeline.flush()
    [summary] = pipeline.store.list_runs()
    assert summary.status == dt.RunStatus.CANCELLED


def test_concurrent_asyncio_runs_never_see_each_others_decisions(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)

    async def one(index: int) -> str:
        async with tracker.run("g", input_data={"index": index}) as run:
            for step in range(5):
                decision_id = tracker.decide(
                    intent=f"step {step}",
                    options=[{"id": f"o{index}"}],
                    chosen=f"o{index}",
                    reasoning="",
                    context={"index": index},
                )
                await asyncio.sleep(0)
                tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=index)
        return run.run_id

    async def main() -> list[str]:
        return list(await asyncio.gather(*(one(i) for i in range(200))))

    run_ids = asyncio.run(main())
    pipeline.flush()
    assert len(set(run_ids)) == 200
    for run_id in run_ids:
        stored = pipeline.store.load_run(run_id)
        assert stored is not None
        index = stored.input_data["index"]
        assert [d.input_context for d in stored.decisions] == [{"index": index}] * 5
        assert [d.id for d in stored.decisions] == [f"dec_{n}" for n in range(5)]
        assert stored.metrics.total_tokens == 5 * index


def test_threads_and_thread_pools_keep_their_runs(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    run_ids: dict[int, str] = {}

    def decide_in_pool(index: int) -> None:
        tracker.quick_decision(intent=f"pooled {index}", action="a", reasoning="r")

    def worker(index: int) -> None:
        with (
            tracker.run("g", input_data={"index": index}) as run,
            dt.ContextThreadPoolExecutor(2) as pool,
        ):
            run_ids[index] = run.run_id
            for _ in range(3):
                tracker.quick_decision(intent=f"thread {index}", action="a", reasoning="r")
            pool.submit(decide_in_pool, index).result()
            pool.submit(dt.bind_context(decide_in_pool), index).result()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pipeline.flush()
    for index, run_id in run_ids.items():
        stored = pipeline.store.load_run(run_id)
        assert stored is not None
        assert [d.intent for d in stored.decisions] == [f"thread {index}"] * 3 + [
            f"pooled {index}"
        ] * 2


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.decide(execution_id="nope", intent="i", options=[], chosen="", reasoning=""),
         "no run for execution 'nope'"),
        (lambda t: t.record_outcome(execution_id="nope", decision_id="dec_0", success=True),
         "no run for execution 'nope'"),
        (lambda t: t.report_problem(execution_id="nope", severity="x", description="y"),
         "no run for execution 'nope'"),
        (lambda t: t.end_run(execution_id="nope", success=True), "no run for execution 'nope'"),
    ],
)  # fmt: skip
def test_unknown_execution_warns_and_returns_empty(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture, call: Any, message: str
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    assert call(tracker) in ("", None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and message in warnings[0].getMessage()


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("boom")

    __str__ = __repr__


def test_bad_input_warns_once_each_and_the_rest_is_recorded(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    cyclic: dict[str, Any] = {}
    cyclic["me"] = cyclic
    with tracker.run("g") as run:
        decision_id = tracker.decide(
            intent="bad options",
            options=[{"description": "no id"}, "plain", 42, {"id": "c", "confidence": math.nan}],
            chosen="c",
            reasoning="r",
            context={"bytes": b"\x00\xff", "nan": math.nan},
        )
        tracker.record_outcome(
            decision_id=decision_id,
            success=True,
            result={"cyclic": cyclic, "odd": Unprintable(), "huge": "x" * 200_000},
        )
        tracker.record_outcome(decision_id="dec_99", success=True)
        tracker.record_outcome(decision_id=decision_id, success=False)
        second = tracker.decide(
            intent="type", options=[], chosen="", reasoning="", decision_type="nonsense"
        )
        tracker.record_outcome(decision_id=second, success=True, result=["y" * 50_000] * 3)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    expected = [
        "option 0 has no 'id'",
        "option 2 is a int",
        "confidence is not finite",
        "context: value is not plain JSON",
        "result: value is not plain JSON",
        "result: value was larger than",
        "has no decision 'dec_99'",
        "already ended",
        "unknown decision_type 'nonsense'",
    ]
    for fragment in expected:
        assert sum(fragment in m for m in messages) == 1, (fragment, messages)
    assert len(messages) == len(expected)
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    first = stored.decisions[0]
    assert [o.id for o in first.options] == ["option_0", "plain", "42", "c"]
    assert first.options[1].description == "plain"
    assert first.options[3].confidence == 0.5
    assert first.input_context["bytes"].startswith("base64:")
    assert first.outcome is not None and first.outcome.success is True
    assert first.outcome.result["cyclic"] == {"me": "<cycle>"}
    assert first.outcome.result["odd"] == "<tests.tracking.test_tracker.Unprintable>"
    assert first.outcome.result["huge"].endswith("[truncated 183616 chars]")
    assert stored.decisions[1].decision_type == dt.DecisionType.CUSTOM
    truncated = stored.decisions[1].outcome.result  # type: ignore[union-attr]
    assert truncated["_decisiontrace_truncated"] is True
    assert truncated["original_chars"] > 150_000
    assert stored.metrics.successful_decisions == 2


def test_a_non_json_result_is_recorded_in_readable_form(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("g") as run:
        decision_id = tracker.quick_decision(intent="i", action="a", reasoning="r")
        tracker.record_outcome(decision_id=decision_id, success=True, result={"when": {1, 2}})
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None and stored.decisions[0].outcome is not None
    assert stored.decisions[0].outcome.result == {"when": [1, 2]}


def test_starting_a_second_run_for_an_execution_cancels_the_first(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    first = tracker.start_run(execution_id="e", goal_id="g")
    second = tracker.start_run(execution_id="e", goal_id="g")
    tracker.end_run(execution_id="e", success=True)
    pipeline.flush()
    assert "already has run" in caplog.text
    statuses = {s.run_id: s.status for s in pipeline.store.list_runs()}
    assert statuses == {first: dt.RunStatus.CANCELLED, second: dt.RunStatus.COMPLETED}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"stream_id": ""},
        {"stream_id": 3},
        {"stream_id": "s", "tracer_provider": object()},
        {"stream_id": "s", "outcome_aggregator": object()},
    ],
)
def test_bad_configuration_raises_value_error(kwargs: dict[str, Any]) -> None:
    stream_id = kwargs.pop("stream_id")
    with pytest.raises(ValueError, match="must"):
        dt.DecisionTracker(stream_id, **kwargs)


def test_the_tracker_never_installs_a_global_provider() -> None:
    from opentelemetry import trace

    before = trace.get_tracer_provider()
    dt.DecisionTracker("s")
    assert trace.get_tracer_provider() is before
    assert not isinstance(before, TracerProvider)


def test_a_nested_run_hands_the_context_back_to_the_outer_run(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("outer") as outer:
        with tracker.run("inner") as inner:
            tracker.quick_decision(intent="in inner", action="a", reasoning="r")
        tracker.quick_decision(intent="in outer", action="a", reasoning="r")
    pipeline.flush()
    stored_outer = pipeline.store.load_run(outer.run_id)
    stored_inner = pipeline.store.load_run(inner.run_id)
    assert stored_outer is not None and stored_inner is not None
    assert [d.intent for d in stored_outer.decisions] == ["in outer"]
    assert [d.intent for d in stored_inner.decisions] == ["in inner"]
    outer_trace = next(
        s.context.trace_id for s in pipeline.spans() if s.context and s.name == "decision in outer"
    )
    inner_trace = next(
        s.context.trace_id for s in pipeline.spans() if s.context and s.name == "decision in inner"
    )
    assert outer_trace != inner_trace  # each run is its own trace


def test_a_run_nobody_records_skips_encoding_but_keeps_ids_and_the_live_view(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # No SDK: the global no-op provider. Nothing is stored or exported, so nothing is
    # encoded (not even the bad option below is looked at), but agent code works.
    tracker = dt.DecisionTracker("s")
    with tracker.run("g") as run:
        first = tracker.decide(
            intent="i", options=[{"no": "id"}], chosen="a", reasoning="r", node_id="n"
        )
        tracker.record_outcome(decision_id=first, success=False, tokens_used=3)
        second = tracker.quick_decision(intent="j", action="x", reasoning="r")
        live = run.get_run()
    assert (first, second) == ("dec_0", "dec_1")
    assert "has no 'id'" not in caplog.text
    assert live is not None
    assert [(d.intent, d.node_id, d.chosen_option_id) for d in live.decisions] == [
        ("i", "n", "a"),
        ("j", "unknown", "action"),
    ]
    assert live.decisions[0].outcome is not None
    assert live.decisions[0].outcome.success is False
    assert live.decisions[0].options == []
    final = run.get_run()
    assert final is not None
    assert final.status == dt.RunStatus.COMPLETED
    assert final.metrics.failed_decisions == 1
    assert final.metrics.total_tokens == 3


def test_an_ended_decision_keeps_its_ids_not_its_sdk_span(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    tracker.start_run(execution_id="e", goal_id="g")
    first = tracker.decide(
        execution_id="e", intent="i", options=OPTIONS, chosen="bug", reasoning="r"
    )
    tracker.record_outcome(execution_id="e", decision_id=first, success=True, tokens_used=3)
    second = tracker.decide(
        execution_id="e", intent="j", options=OPTIONS, chosen="howto", reasoning="r"
    )
    live = tracker.registry.lookup("e")
    assert live is not None
    ended, still_open = live.decisions[first], live.decisions[second]
    # The SDK span (events, links, attribute copy) is the processors' once it ended.
    assert ended.span is ENDED_SPAN and ended.options is None
    assert still_open.span.is_recording() and still_open.options is not None
    exported = next(s for s in pipeline.spans() if s.attributes[sc.DECISION_ID] == first)
    assert ended.span_id == exported.get_span_context().span_id
    view = tracker.get_run("e")
    assert view is not None
    assert view.decisions[0].outcome is not None and view.decisions[0].outcome.tokens_used == 3
    assert [o.id for o in view.decisions[0].options] == ["howto", "bug"]
    assert view.decisions[0].model_extra["span_id"] == format(exported.context.span_id, "016x")
    tracker.end_run(execution_id="e", success=True)
    pipeline.flush()
    stored = pipeline.store.load_run(view.id)
    assert stored is not None
    assert stored.decisions[0].model_dump() == view.decisions[0].model_dump()


def test_an_option_list_is_prepared_once_and_again_when_changed_in_place(
    pipeline: Pipeline,
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    options = [dict(o) for o in OPTIONS]
    assert _normalize.prepare_options(options, "w") is _normalize.prepare_options(options, "w")

    class Touchy:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("compared")

        __hash__ = object.__hash__

    with tracker.run("g") as run:
        tracker.decide(intent="i", options=options, chosen="bug", reasoning="r")
        options[0]["description"] = "changed"
        options.append({"id": "new", "description": "added"})
        tracker.decide(intent="i", options=options, chosen="new", reasoning="r")
        tracker.decide(intent="i", options=options, chosen="new", reasoning="r")
        options[0]["description"] = Touchy()  # compared against the remembered copy
        tracker.decide(intent="i", options=options, chosen="bug", reasoning="r")
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    descriptions = [[o.description for o in d.options] for d in stored.decisions]
    assert descriptions[0] == ["Route to how-to answer", "Route to bug triage"]
    assert descriptions[1] == descriptions[2] == ["changed", "Route to bug triage", "added"]
    assert descriptions[3][0] != "changed" and descriptions[3][1:] == descriptions[1][1:]


# --- behaviours a broken rule would change silently (issue #12, item 7) --------------------


def test_tracker_b_never_records_into_tracker_a_run(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker_a = dt.DecisionTracker("a", tracer_provider=pipeline.provider)
    tracker_b = dt.DecisionTracker("b", tracer_provider=pipeline.provider)
    with tracker_a.run("g") as run:
        # A's run is current here, but it is not B's: B has no run to record into.
        assert tracker_b.decide(intent="b's", options=[], chosen="", reasoning="") == ""
        tracker_b.report_problem(severity="warning", description="b's problem")
        tracker_b.set_node("b-node")
        own = tracker_a.decide(intent="a's", options=[], chosen="", reasoning="")
        tracker_a.record_outcome(decision_id=own, success=True)
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert [d.intent for d in stored.decisions] == ["a's"]
    assert stored.problems == [] and "b-node" not in stored.metrics.nodes_executed
    assert caplog.text.count("called outside a run") == 3


def test_a_stuck_run_span_has_error_status(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    execution_id = "exec-stuck"
    tracker.start_run(goal_id="g", execution_id=execution_id)
    tracker.end_run(success=True, status="stuck", execution_id=execution_id)
    [run_span] = [span_dict(s) for s in pipeline.spans()]
    assert run_span["attributes"][sc.RUN_STATUS] == "stuck"
    assert run_span["status"] == "ERROR"


def test_a_late_choice_updates_the_chosen_confidence(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    options = [{"id": "a", "confidence": 0.8}, {"id": "b", "confidence": 0.3}]
    with tracker.run("g") as run:
        decision_id = tracker.decide(intent="pick", options=options, chosen="a", reasoning="")
        tracker.record_outcome(decision_id=decision_id, success=True, chosen="b")
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    [decision] = stored.decisions
    assert decision.chosen_option_id == "b"
    assert decision.chosen_option is not None and decision.chosen_option.confidence == 0.3
    [span] = [s for s in pipeline.spans() if s.name == "decision pick"]
    assert (span.attributes or {})[sc.DECISION_CHOSEN_CONFIDENCE] == 0.3


def test_a_decision_after_its_run_ended_is_refused(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("g") as run:
        # What a decorator holds while the function runs: the live run itself.
        live = tracker.registry.current()
        assert live is not None
    assert (
        tracker.decide(
            intent="late", options=[], chosen="", reasoning="", execution_id=run.execution_id
        )
        == ""
    )
    # A decorator that looked the run up before it ended, deciding after the end.
    assert live.open_decision("late too", [], "", "") is None
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None and stored.decisions == []
    assert [s.name for s in pipeline.spans()] == ["invoke_agent s"]
    assert "after it ended: late too" in caplog.text
