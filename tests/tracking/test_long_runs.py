"""A long open run keeps its ended decisions packed (``spanmodel/_packed.py``) beyond
its first ``PACK_AFTER``, in chunks frozen into bytes: the tracker's live view once a
decision has its outcome, the processor's pending run as its spans arrive. Packed or
not, what ``get_run`` returns and what is stored are the decisions as they were
recorded: checked here against the exported SDK spans, which no packing touches."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

import decisiontrace as dt
from decisiontrace.spanmodel import _decode
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._packed import CHUNK, PACK_AFTER
from decisiontrace.stores import SQLiteStore
from decisiontrace.tracking._live import ENDED_SPAN, LiveDecision
from tests.conftest import Pipeline, make_pipeline

OPTIONS: list[dict[str, Any]] = [
    {"id": "howto", "description": "How-to", "confidence": 0.8},
    {"id": "bug", "description": "Bug", "confidence": 0.2},
]
#: Enough decisions to pack most of them, in two frozen chunks and some more.
DECISIONS = PACK_AFTER + 2 * CHUNK + 7


def _record_long_run(tracker: dt.DecisionTracker, execution_id: str) -> list[str]:
    """Decisions of every kind: failed with state changes, a late choice, constraints
    and context, without options; the last one left open."""
    ids = []
    for i in range(DECISIONS):
        decision_id = tracker.decide(
            execution_id=execution_id,
            intent=f"step {i}",
            options=OPTIONS if i % 3 else [],
            chosen="howto" if i % 3 == 1 else "",
            reasoning="because" if i % 2 else "",
            node_id=f"node{i % 4}",
            constraints=["budget"] if i % 5 == 0 else None,
            context={"i": i} if i % 7 == 0 else None,
        )
        ids.append(decision_id)
        if i == DECISIONS - 1:
            break  # left open
        if i % 11 == 0:
            tracker.record_outcome(
                execution_id=execution_id, decision_id=decision_id, success=False,
                error="boom", error_type="ValueError", tokens_used=i, state_changes={"k": i},
            )  # fmt: skip
        elif i % 3 == 2:
            tracker.record_outcome(
                execution_id=execution_id, decision_id=decision_id, success=True,
                chosen="bug", reasoning="late",
            )  # fmt: skip
        else:
            tracker.record_outcome(
                execution_id=execution_id, decision_id=decision_id, success=True,
                result={"i": i}, tokens_used=1, latency_ms=2,
            )  # fmt: skip
    return ids


def _from_spans(spans: list[ReadableSpan]) -> dict[str, dict[str, Any]]:
    """Each exported decision span decoded from the SDK's own attributes, by id."""
    records = {}
    for span in spans:
        attributes = dict(span.attributes or {})
        if attributes.get(sc.SPAN_KIND) != sc.KIND_DECISION:
            continue
        record = _decode.decision_record(
            attributes, span.start_time or 0, span.end_time, span_id=span.context.span_id
        )
        records[record["id"]] = dt.Decision.model_validate(record).model_dump()
    return records


def test_a_long_run_reads_and_stores_its_decisions_as_recorded(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    tracker.start_run(execution_id="e", goal_id="g")
    ids = _record_long_run(tracker, "e")
    live = tracker.registry.lookup("e")
    assert live is not None
    kept = list(live.decisions.values())
    # a run's first decisions as they are, those ended in a long run packed apart
    assert [d.decision_id for d in kept] == [*ids[:PACK_AFTER], ids[-1]]
    assert all(isinstance(d, LiveDecision) for d in kept)
    assert kept[-1].end_ns is None
    packed = live.ended
    assert packed is not None and len(packed) == DECISIONS - PACK_AFTER - 1
    assert len(packed.chunks) == 2 and all(type(c) is bytes for c in packed.chunks)
    gc.collect()  # untracks the option ids' tuples; the next collection, the decisions
    gc.collect()
    assert not any(gc.is_tracked(p) for p in packed.latest)
    for decision_id in (ids[-2], ids[PACK_AFTER]):  # in the latest, in a frozen chunk
        ended = live.decision(decision_id)
        assert ended is not None and ended.span is ENDED_SPAN
        assert ended.decision_id == decision_id
        assert ended.end_ns is not None and ended.outcome is not None
    # ids the run did not make are not looked for
    assert live.decision(f"dec_{DECISIONS}") is None and live.decision("dec_x") is None
    assert live.decision(f"{ids[PACK_AFTER]}@elsewhere") is None
    view = tracker.get_run("e")
    assert view is not None
    exported = _from_spans(pipeline.spans())
    assert [d.id for d in view.decisions] == ids
    # every ended decision, read from its packed form, is what its span says
    assert [d.model_dump() for d in view.decisions[:-1]] == [exported[i] for i in ids[:-1]]
    assert view.decisions[-1].outcome is None

    tracker.end_run(execution_id="e", success=True)
    pipeline.flush()
    stored = pipeline.store.load_run(view.id)
    assert stored is not None
    exported = _from_spans(pipeline.spans())
    assert [d.model_dump() for d in stored.decisions] == [exported[i] for i in ids]
    failed = sum(1 for i in range(DECISIONS - 1) if i % 11 == 0)
    metrics = stored.metrics
    assert (metrics.total_decisions, metrics.failed_decisions) == (DECISIONS, failed)
    assert metrics.successful_decisions == DECISIONS - 1 - failed
    # the run span's totals and narrative were computed from the packed decisions
    [run_span] = [dict(s.attributes or {}) for s in pipeline.spans() if s.parent is None]
    assert run_span[sc.RUN_NARRATIVE] == stored.narrative
    assert run_span[sc.RUN_FAILURE_COUNT] == failed
    assert run_span[sc.RUN_TOTAL_TOKENS] == metrics.total_tokens
    assert stored.narrative.endswith("Failed on: step 0, step 11, step 22")  # packed intents


def test_a_packed_decision_takes_no_second_outcome(pipeline: Pipeline, caplog: Any) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("g") as run:
        decision_id = tracker.decide(intent="i", options=OPTIONS, chosen="howto", reasoning="")
        tracker.record_outcome(decision_id=decision_id, success=True, tokens_used=4)
        tracker.record_outcome(decision_id=decision_id, success=False, tokens_used=9)
        view = run.get_run()
    assert "already ended" in caplog.text
    assert view is not None and view.decisions[0].outcome is not None
    assert (view.decisions[0].outcome.success, view.decisions[0].outcome.tokens_used) == (True, 4)


def test_a_long_run_in_a_sqlite_store(tmp_path: Path) -> None:
    pipeline = make_pipeline(SQLiteStore(tmp_path / "runs.db"))
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    tracker.start_run(execution_id="e", goal_id="g")
    ids = _record_long_run(tracker, "e")
    view = tracker.get_run("e")
    assert view is not None
    tracker.end_run(execution_id="e", success=False)
    pipeline.flush()
    stored = pipeline.store.load_run(view.id)
    pipeline.provider.shutdown()
    assert stored is not None
    exported = _from_spans(pipeline.spans())
    assert [d.model_dump() for d in stored.decisions] == [exported[i] for i in ids]
    assert stored.status == dt.RunStatus.FAILED
