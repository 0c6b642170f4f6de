"""Derived values (``spanmodel/_records.py``) are computed by one rule wherever a run is
made: the tracker's run span, the live view and the stored record agree on the totals
and on the narrative it generates."""

from __future__ import annotations

import decisiontrace as dt
from decisiontrace.spanmodel import _records
from decisiontrace.spanmodel import semconv as sc
from tests.conftest import Pipeline


def test_the_tracker_the_live_view_and_the_store_agree_on_totals_and_narrative(
    pipeline: Pipeline,
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("g") as run:
        done = tracker.decide(intent="look up", options=[], chosen="", reasoning="")
        tracker.record_outcome(decision_id=done, success=True, tokens_used=7, latency_ms=3)
        broke = tracker.decide(intent="call api", options=[], chosen="", reasoning="")
        tracker.record_outcome(decision_id=broke, success=False, error="x", tokens_used=2)
        tracker.decide(intent="left open", options=[], chosen="", reasoning="")
        paused = tracker.decide(intent="ask the user", options=[], chosen="", reasoning="")
        live_run = run._live
        assert live_run is not None
        decision = live_run.decision(paused)
        assert decision is not None
        live_run.pause_decision(decision)  # as a LangGraph interrupt leaves it
        tracker.report_problem(severity="warning", description="slow")
    assert run._live is not None
    live = run._live.view()  # the live view of the ended run, decoded from its attributes
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert stored.narrative == (
        "Run completed successfully. Made 4 decisions: 1 succeeded, 1 failed. "
        "Warnings: slow Failed on: call api, left open"
    )
    metrics = stored.metrics
    assert (metrics.total_decisions, metrics.successful_decisions, metrics.failed_decisions) == (
        4,
        1,
        1,
    )
    assert (metrics.total_tokens, metrics.total_latency_ms) == (9, 3)
    [run_span] = [dict(s.attributes or {}) for s in pipeline.spans() if s.parent is None]
    assert run_span[sc.RUN_NARRATIVE] == stored.narrative
    assert (
        run_span[sc.RUN_DECISION_COUNT],
        run_span[sc.RUN_SUCCESS_COUNT],
        run_span[sc.RUN_FAILURE_COUNT],
        run_span[sc.RUN_TOTAL_TOKENS],
        run_span[sc.RUN_PROBLEM_COUNT],
    ) == (4, 1, 1, 9, 1)
    assert live.narrative == stored.narrative and live.metrics == stored.metrics


def test_iso_text_from_the_second_cache_is_the_datetimes_isoformat() -> None:
    """``ns_to_iso`` (cached per second, what stored records hold) writes what
    ``ns_to_datetime(...).isoformat()`` writes, fraction or none, either side of 1970."""
    times = [0, 1, 999, 1000, -1, -1000, -1_000_000_001, 1_764_626_442_000_000_000]
    times += [1_764_626_442_000_000_000 + n * 333_333_337 for n in range(1, 40)]
    for time_ns in times + times:  # the second time from the caches
        assert _records.ns_to_iso(time_ns) == _records.ns_to_datetime(time_ns).isoformat()
    assert _records.ns_to_iso(1_764_626_442_000_001_000).endswith(".000001")
    assert "." not in _records.ns_to_iso(1_764_626_442_000_000_999)
