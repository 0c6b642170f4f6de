"""Run assembly (``pipeline/_assembly.py``): ended spans, in any order, become the run
record the span model decodes; runs wait for the decisions they counted, late spans
and tokens update them, lost run spans make stuck runs, fragments stay apart, and the
compact span form decodes to the very same record."""

from __future__ import annotations

from typing import Any

import pytest

from decisiontrace.models import Run
from decisiontrace.pipeline._assembly import RunAssembler
from decisiontrace.pipeline._pending import PendingRun, record_from_compact
from decisiontrace.spanmodel import _codec, _decode, _ids, _packed, _records
from decisiontrace.spanmodel import semconv as sc

TRACE = 0x0123456789ABCDEF0123456789ABCDEF
RUN_SPAN = 0x1000
START = 1_764_590_400_000_000_000
RUN_ID = "run_s_20251201_120000_0123abcd"


def decision_span(
    number: int,
    *,
    success: bool | None = True,
    tokens: int = 0,
    llm_tokens: int = 0,
    trace_id: int = TRACE,
    fragment: str | None = None,
) -> _decode.SpanData:
    attributes = _codec.decision_attributes(
        run_id=RUN_ID,
        decision_id=_ids.decision_id(number, fragment),
        intent=f"step {number}",
        options=[],
        chosen="",
        reasoning="",
        node_id=f"node{number % 2}",
        decision_type="custom",
        constraints=[],
        context={"n": number},
        where="test",
    )
    if success is not None:
        attributes.update(
            _codec.outcome_attributes(
                success=success, result=number, error=None if success else "boom",
                summary=f"did {number}", state_changes=None, tokens_used=tokens + llm_tokens,
                latency_ms=10,
            )
        )  # fmt: skip
        if llm_tokens:
            attributes[sc.OUTCOME_LLM_TOKENS] = llm_tokens
    if fragment is not None:
        attributes[sc.FRAGMENT_ID] = fragment
        attributes[sc.FRAGMENT_SERVICE] = "worker"
        attributes[sc.GOAL_ID] = "g"
    start = START + (number + 1) * 1_000_000
    return _decode.SpanData(
        trace_id=trace_id,
        span_id=0x2000 + number,
        parent_id=RUN_SPAN,
        name=f"decision step {number}",
        start_ns=start,
        end_ns=start + 500_000,
        attributes=attributes,
        error=success is False,
    )


def run_span(decisions: int, *, llm_tokens: int = 0, problems: int = 0) -> _decode.SpanData:
    attributes = _codec.run_start_attributes(
        run_id=RUN_ID, goal_id="g", goal_description="d", stream_id="s", execution_id="e",
        input_data={"q": "?"},
    )  # fmt: skip
    totals = _records.Totals()
    for _ in range(decisions):
        totals.add(None)
    attributes.update(
        _codec.run_end_attributes(
            status="completed", narrative="done", totals=totals, problem_count=problems,
            nodes=[], llm_tokens=llm_tokens,
        )
    )  # fmt: skip
    events = [
        _decode.EventData(
            sc.PROBLEM_EVENT,
            START + 5,
            _codec.problem_attributes(
                problem_id=_ids.problem_id(n),
                severity="warning",
                description=f"p{n}",
                decision_id=None,
                root_cause=None,
                suggested_fix=None,
            ),
        )
        for n in range(problems)
    ]
    return _decode.SpanData(
        trace_id=TRACE,
        span_id=RUN_SPAN,
        parent_id=None,
        name="invoke_agent s",
        start_ns=START,
        end_ns=START + 100_000_000,
        attributes=attributes,
        events=events,
        service_name="agent",
    )


def assembled(spans: list[_decode.SpanData], **take: Any) -> list[dict[str, Any]]:
    assembler = RunAssembler()
    for span in spans:
        assembler.add(span, now=0.0)
    return assembler.take_ready(now=0.0, **take)


def test_spans_in_any_order_assemble_the_record_the_span_model_decodes() -> None:
    decisions = [decision_span(0), decision_span(1, success=False), decision_span(2, success=None)]
    run = run_span(3, problems=1)
    [first] = assembled([*decisions, run])
    [second] = assembled([decisions[2], run, decisions[0], decisions[1]])
    assert first == second
    expected = _decode.run_record(
        run.attributes,
        run.start_ns,
        run.end_ns,
        [_decode.decision_record(d.attributes, d.start_ns, d.end_ns, span_id=d.span_id)
         for d in decisions],
        _decode.problems_of(run.events),
        trace_id=TRACE,
        span_id=RUN_SPAN,
        service_name="agent",
    )  # fmt: skip
    assert first == expected
    assert [d["id"] for d in first["decisions"]] == ["dec_0", "dec_1", "dec_2"]
    assert first["metrics"]["successful_decisions"] == 1
    assert first["metrics"]["failed_decisions"] == 1
    assert first["trace_id"] == f"{TRACE:032x}" and first["span_id"] == f"{RUN_SPAN:016x}"
    Run.model_validate(first)


def test_a_run_waits_for_the_decisions_it_counted_then_late_ones_update_it() -> None:
    assembler = RunAssembler(late_span_grace=5.0)
    assembler.add(run_span(2), now=0.0)
    assembler.add(decision_span(0), now=0.0)
    assert assembler.take_ready(now=1.0) == []  # dec_1 may still come
    [partial] = assembler.take_ready(now=5.0)
    assert [d["id"] for d in partial["decisions"]] == ["dec_0"]
    assembler.add(decision_span(1), now=6.0)  # late, but within the grace: merged
    [whole] = assembler.take_ready(now=6.0)
    assert [d["id"] for d in whole["decisions"]] == ["dec_0", "dec_1"]
    assert assembler.take_ready(force=True, now=7.0) == []


def test_a_complete_run_is_ready_at_once_and_not_kept() -> None:
    assembler = RunAssembler()
    assembler.add(decision_span(0), now=0.0)
    assembler.add(run_span(1), now=0.0)
    [record] = assembler.take_ready(now=0.0)
    assert record["metrics"]["total_decisions"] == 1
    assembler.add(decision_span(5), now=0.1)  # a stray span of the trace makes a new run
    assert assembler.take_ready(now=0.1) == []


def test_llm_tokens_count_once_whether_already_on_the_span_or_counted_later() -> None:
    assembler = RunAssembler()
    # dec_0: 5 of the agent's + 20 from LLM spans the tracker put on the span already;
    # the processor counted those 20 and 7 more that ended after the outcome.
    assembler.add(decision_span(0, tokens=5, llm_tokens=20), now=0.0)
    assembler.add_tokens(TRACE, 0x2000, 27)
    # dec_1 has no outcome: its LLM tokens count for the run only.
    assembler.add(decision_span(1, success=None), now=0.0)
    assembler.add_tokens(TRACE, 0x2001, 4)
    # The run's own: 30 on the run span, counted by the processor too, and 3 later.
    assembler.add_tokens(TRACE, None, 33)
    assembler.add(run_span(2, llm_tokens=30), now=0.0)
    [record] = assembler.take_ready(now=0.0)
    assert record["decisions"][0]["outcome"]["tokens_used"] == 5 + 27
    assert record["metrics"]["total_tokens"] == 5 + 27 + 4 + 33


def test_the_run_spans_llm_tokens_count_when_the_llm_spans_are_not_there() -> None:
    # A run rebuilt from its exported spans alone: no LLM spans to count.
    [record] = assembled([decision_span(0, tokens=5), run_span(1, llm_tokens=30)])
    assert record["metrics"]["total_tokens"] == 35


def test_decisions_whose_run_span_never_ended_become_a_stuck_run() -> None:
    assembler = RunAssembler()
    assembler.add(decision_span(0), now=0.0)
    assembler.add(decision_span(1, success=False), now=0.0)
    assert assembler.take_orphans(max_age=10.0, now=5.0) == []
    [record] = assembler.take_orphans(max_age=10.0, now=10.0)
    assert record["id"] == RUN_ID and record["status"] == "stuck"
    assert record["end_reason"] == "run span never ended"
    assert record["completed_at"] is None
    assert [d["id"] for d in record["decisions"]] == ["dec_0", "dec_1"]
    Run.model_validate(record)


def test_a_fragment_is_a_running_record_of_its_own() -> None:
    fragment = "worker:42:0badcafe"
    assembler = RunAssembler(fragment_quiet=0.5)
    assembler.add(decision_span(0, fragment=fragment), now=0.0)
    assembler.add(decision_span(1, fragment=fragment), now=0.1)
    problem = _decode.SpanData(
        TRACE, 0x3000, 0x2000, "problem minor", START, START,
        {sc.SPAN_KIND: sc.KIND_PROBLEM, sc.RUN_ID: RUN_ID, sc.GOAL_ID: "g",
         sc.FRAGMENT_ID: fragment, sc.FRAGMENT_SERVICE: "worker"},
        [_decode.EventData(sc.PROBLEM_EVENT, START + 7, _codec.problem_attributes(
            problem_id=_ids.problem_id(0, fragment), severity="minor", description="slow",
            decision_id=None, root_cause=None, suggested_fix=None))],
    )  # fmt: skip
    assembler.add(problem, now=0.2)
    assert assembler.take_ready(now=0.3) == []  # still arriving
    [record] = assembler.take_ready(now=0.8)
    assert record["id"] == RUN_ID and record["status"] == "running"
    assert record["fragment_id"] == f"{fragment}/{0x2000:016x}"
    assert [d["id"] for d in record["decisions"]] == [f"dec_0@{fragment}", f"dec_1@{fragment}"]
    assert {d["service"] for d in record["decisions"]} == {"worker"}
    assert [p["id"] for p in record["problems"]] == [f"prob_0@{fragment}"]


def _pending(spans: list[_decode.SpanData], tokens: dict[int | None, int]) -> PendingRun:
    assembler = RunAssembler()
    for span in spans:
        assembler.add(span, now=0.0)
    for decision, count in tokens.items():
        assembler.add_tokens(TRACE, decision, count)
    ready = assembler.take_ready_runs(force=True, now=0.0)
    [pending] = ready + assembler.take_orphan_runs(0.0, now=0.0)
    return pending


@pytest.mark.parametrize(
    ("spans", "tokens"),
    [
        ([decision_span(0, tokens=3, llm_tokens=4), decision_span(1, success=False),
          run_span(2, llm_tokens=6, problems=2)], {0x2000: 9, None: 8}),
        ([decision_span(0), decision_span(1)], {}),  # no run span: stuck
        ([decision_span(0, fragment="w:1:00000001")], {0x2000: 2}),
    ],
    ids=["run", "lost run span", "fragment"],
)  # fmt: skip
def test_the_compact_span_form_decodes_to_the_same_record(
    spans: list[_decode.SpanData], tokens: dict[int | None, int]
) -> None:
    pending = _pending(spans, tokens)
    assert record_from_compact(pending.compact()) == pending.record()


def test_the_light_record_projects_each_decision() -> None:
    pending = _pending([decision_span(0), decision_span(1, success=False), run_span(2)], {})
    full, light = pending.record(), pending.record(light=True)
    assert light["metrics"] == full["metrics"]
    for decision, projected in zip(full["decisions"], light["decisions"], strict=True):
        assert projected == _decode.light_decision_record(
            {k: v for k, v in decision.items() if k != "span_id"}
        )


def _offering(number: int, options: list[dict[str, Any]], chosen: str) -> _decode.SpanData:
    span = decision_span(number)
    span.attributes.update(
        _codec.decision_attributes(
            run_id=RUN_ID, decision_id=_ids.decision_id(number, None), intent=f"step {number}",
            options=options, chosen=chosen, reasoning="", node_id="n", decision_type="custom",
            constraints=[], context={}, where="test",
        )
    )  # fmt: skip
    return span


def test_decisions_offering_the_same_options_share_their_decoding_and_decode_the_same() -> None:
    same = [{"id": "a", "description": "first", "confidence": 0.7}, {"id": "b", "confidence": 0.2}]
    spans = [
        _offering(0, same, "a"),
        _offering(1, same, "b"),
        _offering(2, [{"id": "c", "confidence": 0.5}], "c"),
        run_span(3),
    ]
    [record] = assembled(spans)
    first, second, third = record["decisions"]
    assert first["options"] is second["options"]  # decoded once
    assert third["options"] is not first["options"]
    assert first["chosen_option"]["id"] == "a" and second["chosen_option"]["id"] == "b"
    # The very records each span decodes to alone.
    alone = [
        _decode.decision_record(s.attributes, s.start_ns, s.end_ns, span_id=s.span_id)
        for s in spans[:3]
    ]
    assert record["decisions"] == alone


def test_the_options_cache_stays_bounded() -> None:
    cache = _decode.OptionsCache()
    for number in range(cache.MAX * 3):
        attributes = {sc.DECISION_OPTIONS: f'[{{"id": "o{number}"}}]'}
        assert _decode.decoded_options(attributes, cache) == [{"id": f"o{number}"}]
        assert len(cache) <= cache.MAX
    # A long text is decoded each time, not kept.
    cache.clear()
    long_text = "[" + ",".join(['{"id": "x"}'] * cache.MAX_CHARS) + "]"
    assert len(_decode.decoded_options({sc.DECISION_OPTIONS: long_text}, cache)) == cache.MAX_CHARS
    assert not cache
    # Not JSON text, not a list, no list of objects: decoded as without the cache.
    for value in ("[1, {", "{}", "[1, 2]", '[{"id": 1}, 2]'):
        attributes = {sc.DECISION_OPTIONS: value}
        assert _decode.decoded_options(attributes, cache) == _decode.decoded_options(attributes)


def test_a_long_run_packs_its_decisions_and_a_resent_one_replaces_its_earlier_copy() -> None:
    count = _packed.PACK_AFTER + 2 * _packed.CHUNK + 5
    spans = [decision_span(n, success=n % 3 != 0) for n in range(count)]
    resent = decision_span(_packed.PACK_AFTER + 3, success=False, tokens=42)  # frozen chunk
    pending = PendingRun(0.0)
    for span in spans[:-1]:
        pending.add_decision(span)
    assert pending.packed is not None
    assert all(type(chunk) is bytes for chunk in pending.packed.chunks)
    pending.add_decision(resent)
    pending.run = run_span(count)
    assert not pending.complete()  # the copy is not the decision still missing
    pending.add_decision(spans[-1])
    assert pending.complete() and pending.decision_count() == count
    record = pending.record()
    expected = [*spans[: _packed.PACK_AFTER + 3], resent, *spans[_packed.PACK_AFTER + 4 :]]
    assert record["decisions"] == [
        _decode.decision_record(s.attributes, s.start_ns, s.end_ns, span_id=s.span_id)
        for s in expected
    ]
    assert record_from_compact(pending.compact()) == record
