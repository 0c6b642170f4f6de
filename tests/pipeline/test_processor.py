"""RunRecordProcessor on spans that did not come from the tracker, and on faults."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

import decisiontrace as dt
from decisiontrace._internal.errors import RAISE_ENV
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore

Record = dict[str, Any]


class FlakyStore(MemoryStore):
    """A real in-memory store whose writes fail while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.attempts = 0

    def save_records(self, records: Sequence[Record]) -> None:
        self.attempts += 1
        if self.failing:
            raise OSError("disk full")
        super().save_records(records)


class HangingStore(MemoryStore):
    """A store whose writes block until released."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def save_records(self, records: Sequence[Record]) -> None:
        self.release.wait(30)
        super().save_records(records)


@pytest.fixture
def setup() -> Iterator[tuple[TracerProvider, dt.RunRecordProcessor, MemoryStore]]:
    store = MemoryStore()
    processor = dt.RunRecordProcessor(store, flush_interval=0.05, late_span_grace=0.2)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    yield provider, processor, store
    provider.shutdown()


def run_attributes(run_id: str = "run_x", **extra: Any) -> dict[str, Any]:
    return {sc.SPAN_KIND: sc.KIND_RUN, sc.RUN_ID: run_id, sc.GOAL_ID: "goal", **extra}


def decision_attributes(decision_id: str, **extra: Any) -> dict[str, Any]:
    return {
        sc.SPAN_KIND: sc.KIND_DECISION,
        sc.DECISION_ID: decision_id,
        sc.DECISION_INTENT: f"intent {decision_id}",
        sc.NODE_ID: "n1",
        sc.DECISION_OPTIONS: json.dumps(
            [{"id": "a", "description": "A", "action_type": "t", "confidence": 0.9}]
        ),
        sc.DECISION_CHOSEN_ID: "a",
        **extra,
    }


def test_hand_made_spans_become_a_run_record(
    setup: tuple[TracerProvider, dt.RunRecordProcessor, MemoryStore],
) -> None:
    provider, processor, store = setup
    tracer = provider.get_tracer("hand")
    with tracer.start_as_current_span("my run", attributes=run_attributes()) as root:
        with tracer.start_as_current_span(
            "d0",
            attributes=decision_attributes(
                "dec_0", **{sc.OUTCOME_SUCCESS: True, sc.OUTCOME_TOKENS: 5}
            ),
        ):
            pass
        with tracer.start_as_current_span(
            "d1", attributes=decision_attributes("dec_1", **{sc.OUTCOME_SUCCESS: False})
        ):
            pass
        root.add_event(
            sc.PROBLEM_EVENT,
            {sc.PROBLEM_ID: "prob_0", sc.PROBLEM_SEVERITY: "critical", sc.PROBLEM_DESCRIPTION: "x"},
        )
        root.set_status(trace.Status(trace.StatusCode.ERROR))
    assert processor.force_flush(5000)
    run = store.load_run("run_x")
    assert run is not None
    assert [d.id for d in run.decisions] == ["dec_0", "dec_1"]
    assert run.status == dt.RunStatus.FAILED  # from the span's ERROR status
    assert run.metrics.successful_decisions == 1
    assert run.metrics.failed_decisions == 1
    assert run.metrics.total_tokens == 5
    assert run.decisions[0].chosen_option is not None
    assert run.decisions[0].chosen_option.confidence == 0.9
    assert run.problems[0].description == "x"
    assert run.narrative == (
        "Run failed. Made 2 decisions: 1 succeeded, 1 failed. Critical issues: x "
        "Failed on: intent dec_1"
    )


def test_a_decision_span_ending_after_its_run_still_lands(
    setup: tuple[TracerProvider, dt.RunRecordProcessor, MemoryStore],
) -> None:
    provider, processor, store = setup
    tracer = provider.get_tracer("hand")
    root = tracer.start_span("run", attributes=run_attributes(**{sc.RUN_DECISION_COUNT: 2}))
    context = trace.set_span_in_context(root)
    early = tracer.start_span("d0", context=context, attributes=decision_attributes("dec_0"))
    late = tracer.start_span("d1", context=context, attributes=decision_attributes("dec_1"))
    early.end()
    root.end()
    time.sleep(0.1)
    assert store.load_run("run_x") is None  # waiting for the counted decision
    late.set_attribute(sc.OUTCOME_SUCCESS, True)
    late.end()
    assert processor.force_flush(5000)
    run = store.load_run("run_x")
    assert run is not None
    assert [d.id for d in run.decisions] == ["dec_0", "dec_1"]
    assert run.decisions[1].was_successful


def test_a_late_decision_after_the_run_was_written_rewrites_it(
    setup: tuple[TracerProvider, dt.RunRecordProcessor, MemoryStore],
) -> None:
    provider, processor, store = setup
    tracer = provider.get_tracer("hand")
    root = tracer.start_span("run", attributes=run_attributes())
    late = tracer.start_span(
        "d0", context=trace.set_span_in_context(root), attributes=decision_attributes("dec_0")
    )
    root.end()
    assert processor.force_flush(5000)
    first = store.load_run("run_x")
    assert first is not None and first.decisions == []
    late.end()
    assert processor.force_flush(5000)
    second = store.load_run("run_x")
    assert second is not None
    assert [d.id for d in second.decisions] == ["dec_0"]
    assert len(store.list_runs()) == 1


def test_llm_spans_under_a_decision_add_their_tokens(
    setup: tuple[TracerProvider, dt.RunRecordProcessor, MemoryStore],
) -> None:
    provider, processor, store = setup
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    tracer = provider.get_tracer("openai-like")
    with tracker.run("g") as run:
        decision_id = tracker.decide(intent="ask", options=[], chosen="", reasoning="")
        decision_span = run._live.decisions[decision_id].span  # type: ignore[union-attr]
        with trace.use_span(decision_span, end_on_exit=False):
            with (
                tracer.start_as_current_span("chain"),
                tracer.start_as_current_span(
                    "chat",
                    attributes={
                        sc.GEN_AI_USAGE_INPUT_TOKENS: 100,
                        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 20,
                    },
                ),
            ):
                pass
            with tracer.start_as_current_span(
                "completion", attributes={sc.LLM_TOKEN_COUNT_PROMPT: 3}
            ):
                pass
        tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=7)
        # In the run but after the decision: it counts for the run only.
        with tracer.start_as_current_span(
            "outside any decision", attributes={sc.GEN_AI_USAGE_INPUT_TOKENS: 1000}
        ):
            pass
    assert processor.force_flush(5000)
    stored = store.load_run(run.run_id)
    assert stored is not None and stored.decisions[0].outcome is not None
    assert stored.decisions[0].outcome.tokens_used == 7 + 120 + 3
    assert stored.metrics.total_tokens == 1130


def test_decisions_whose_run_span_never_ends_are_stored_as_stuck() -> None:
    store = MemoryStore()
    processor = dt.RunRecordProcessor(store, flush_interval=0.02, run_timeout=0.2)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("hand")
    root = tracer.start_span("run", attributes=run_attributes("run_lost"))
    decision = tracer.start_span(
        "d0", context=trace.set_span_in_context(root), attributes=decision_attributes("dec_0")
    )
    decision.end()
    deadline = time.monotonic() + 30  # only waits as long as the writer needs
    while store.load_run("run_lost") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    run = store.load_run("run_lost")
    assert run is not None
    assert run.status == dt.RunStatus.STUCK
    assert [d.id for d in run.decisions] == ["dec_0"]
    assert run.model_dump()["end_reason"]
    provider.shutdown()


def test_runs_open_at_shutdown_are_stored_as_cancelled() -> None:
    store = MemoryStore()
    processor = dt.RunRecordProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    run_id = tracker.start_run(execution_id="e", goal_id="g")
    tracker.quick_decision(execution_id="e", intent="i", action="a", reasoning="r")
    provider.shutdown()
    run = store.load_run(run_id)
    assert run is not None
    assert run.status == dt.RunStatus.CANCELLED
    assert run.model_dump()["end_reason"] == "tracer provider shut down with the run still open"


def test_runs_wait_while_the_store_fails_and_are_written_when_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FlakyStore()
    store.failing = True
    processor = dt.RunRecordProcessor(store, flush_interval=0.02)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    run_ids = []
    for _ in range(5):
        with tracker.run("g") as run:
            tracker.quick_decision(intent="i", action="a", reasoning="r")
        run_ids.append(run.run_id)
    assert processor.force_flush(300) is False
    assert store.list_runs() == []
    store.failing = False
    assert processor.force_flush(10_000)
    assert sorted(s.run_id for s in store.list_runs()) == sorted(run_ids)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "disk full" in errors[0].getMessage()
    provider.shutdown()


def test_a_hanging_store_never_blocks_span_end_and_shutdown_honours_its_timeout() -> None:
    store = HangingStore()
    processor = dt.RunRecordProcessor(store, flush_interval=0.01)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    with tracker.run("g"):
        tracker.quick_decision(intent="i", action="a", reasoning="r")
    time.sleep(0.05)  # the writer is now stuck inside save_records
    started = time.monotonic()
    with tracker.run("g"):
        tracker.quick_decision(intent="i", action="a", reasoning="r")
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    processor.shutdown(timeout_millis=300)
    assert time.monotonic() - started < 1.5
    store.release.set()


class BrokenSpan:
    """Not a span at all: what a misbehaving SDK or test double might hand over."""


def test_processor_methods_never_raise(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RAISE_ENV)  # in production: logged once per hook, never raised
    processor = dt.RunRecordProcessor(MemoryStore())
    processor.on_start(BrokenSpan())  # type: ignore[arg-type]
    processor.on_start(BrokenSpan())  # type: ignore[arg-type]
    processor.on_end(BrokenSpan())  # type: ignore[arg-type]
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged == [
        "decisiontrace: RunRecordProcessor on_start failed",
        "decisiontrace: RunRecordProcessor on_end failed",
    ]
    processor.shutdown()


def test_record_only_sampling_stores_every_run_but_exports_none() -> None:
    class RecordOnly(Sampler):
        def should_sample(
            self, parent_context: Any, trace_id: int, name: str, kind: Any = None,
            attributes: Any = None, links: Any = None, trace_state: Any = None,
        ) -> SamplingResult:  # fmt: skip
            # A sampler hands back the attributes the span is created with.
            return SamplingResult(Decision.RECORD_ONLY, attributes)

        def get_description(self) -> str:
            return "RecordOnly"

    store = MemoryStore()
    processor = dt.RunRecordProcessor(store)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=RecordOnly())
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    with tracker.run("g") as run:
        tracker.quick_decision(intent="i", action="a", reasoning="r")
    assert processor.force_flush(5000)
    assert exporter.get_finished_spans() == ()
    stored = store.load_run(run.run_id)
    assert stored is not None and stored.metrics.total_decisions == 1
    provider.shutdown()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"flush_interval": 0},
        {"max_queue_size": -1},
        {"run_timeout": "x"},
        {"late_span_grace": True},
    ],
)
def test_bad_configuration_raises_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be a positive number"):
        dt.RunRecordProcessor(MemoryStore(), **kwargs)


@pytest.mark.parametrize("journal", [1, "yes", "Resume", None])
def test_a_journal_that_is_not_false_true_or_resume_raises_value_error(journal: Any) -> None:
    with pytest.raises(ValueError, match='journal must be False, True or "resume"'):
        dt.RunRecordProcessor(MemoryStore(), journal=journal)


def test_a_journal_on_a_store_without_one_names_the_stores_that_keep_one() -> None:
    with pytest.raises(ValueError, match=r"keeps a journal \(SQLite, PostgreSQL\)"):
        dt.RunRecordProcessor(MemoryStore(), journal="resume")


def test_a_store_url_is_opened(tmp_path: Any) -> None:
    processor = dt.RunRecordProcessor(f"sqlite:///{tmp_path}/x.db")
    assert type(processor.store).__name__ == "SQLiteStore"
    processor.shutdown()
    with pytest.raises(ValueError, match="accepted forms"):
        dt.RunRecordProcessor("ftp://nowhere")


def test_listeners_see_each_assembled_run_once_and_cannot_break_writes(
    setup: tuple[TracerProvider, dt.RunRecordProcessor, MemoryStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, processor, store = setup
    seen: list[str] = []

    def broken(records: list[Record]) -> None:
        raise RuntimeError("listener bug")

    processor.add_listener(lambda records: seen.extend(r["id"] for r in records))
    processor.add_listener(broken)
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    run_ids = []
    for _ in range(3):
        with tracker.run("g") as run:
            tracker.quick_decision(intent="i", action="a", reasoning="r")
        run_ids.append(run.run_id)
    assert processor.force_flush(5000)
    assert sorted(seen) == sorted(run_ids)
    assert len(store.list_runs()) == 3
    assert sum("listener failed" in r.getMessage() for r in caplog.records) == 1


def test_sqlite_keeps_the_span_form_and_loads_exactly_the_live_run(
    tmp_path: Any, run_schema: dict[str, Any]
) -> None:
    import jsonschema

    from decisiontrace.stores import SQLiteStore

    store = SQLiteStore(tmp_path / "runs.db")
    processor = dt.RunRecordProcessor(store)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    with tracker.run("goal", input_data={"q": "é"}) as run:
        ok = tracker.decide(
            intent="first",
            options=[{"id": "a", "description": "Do A", "action_type": "t", "confidence": 0.7}],
            chosen="a",
            reasoning="r",
            node_id="n1",
            context={"k": [1, 2]},
        )
        tracker.record_outcome(decision_id=ok, success=True, result={"x": 1}, summary="did A")
        bad = tracker.decide(
            intent="second",
            options=[{"id": "b", "description": "Do B", "action_type": "t"}],
            chosen="b",
            reasoning="r",
            node_id="n2",
        )
        tracker.report_problem(severity="critical", description="boom", decision_id=bad)
        tracker.record_outcome(decision_id=bad, success=False, error="nope")
        run.success = False
    assert processor.force_flush(5000)
    stored = store.load_run(run.run_id)
    assert stored == run.get_run()
    assert stored is not None
    jsonschema.validate(json.loads(stored.model_dump_json()), run_schema)
    [summary] = store.list_runs(node_id="n2")
    assert summary.model_dump() == {
        "run_id": run.run_id,
        "goal_id": "goal",
        "status": dt.RunStatus.FAILED,
        "duration_ms": stored.duration_ms,
        "decision_count": 2,
        "success_rate": 0.5,
        "problem_count": 1,
        "narrative": stored.narrative,
        "key_decisions": ["✗ [n2] second → Do B"],
        "critical_problems": ["boom"],
        "warnings": [],
        "successes": ["did A"],
    }
    assert dt.RunSummary.from_run(stored) == summary
    provider.shutdown()
