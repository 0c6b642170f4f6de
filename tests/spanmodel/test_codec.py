"""The span model both ways: records encoded into span attributes and events
(``spanmodel/_codec.py``) decode back into the same records (``spanmodel/_decode.py``),
for plain, unicode, empty, large and secret-bearing values; a missing attribute decodes
as the field's default; the light form is a projection; ids and span statuses follow
their one rule each."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.trace import StatusCode

from decisiontrace.models import Decision, Run, RunStatus
from decisiontrace.spanmodel import _codec, _decode, _ids, _records
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.spanmodel._redact import REDACTED

START = 1_764_590_400_123_456_000  # 2025-12-01, with microseconds
END = START + 2_500_000_000


def option(
    option_id: str, description: str = "", confidence: float = 0.5, **extra: Any
) -> dict[str, Any]:
    """An option as the tracker normalizes it."""
    return {
        "id": option_id,
        "description": description,
        "action_type": extra.pop("action_type", "custom"),
        "action_params": extra.pop("action_params", {}),
        "pros": extra.pop("pros", []),
        "cons": extra.pop("cons", []),
        "confidence": confidence,
        **extra,
    }


def decision_fields(**given: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "run_id": "run_s_20251201_120000_0123abcd",
        "decision_id": "dec_0",
        "intent": "classify",
        "options": [],
        "chosen": "",
        "reasoning": "",
        "node_id": "unknown",
        "decision_type": "custom",
        "constraints": [],
        "context": None,
        "where": "test",
    }
    fields.update(given)
    return fields


def outcome_fields(**given: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "success": True,
        "result": None,
        "error": None,
        "summary": "",
        "state_changes": None,
        "tokens_used": 0,
        "latency_ms": 0,
    }
    fields.update(given)
    return fields


def encode(decision: dict[str, Any], outcome: dict[str, Any] | None) -> dict[str, Any]:
    attributes = _codec.decision_attributes(**decision)
    if outcome is not None:
        attributes.update(_codec.outcome_attributes(**outcome))
    return attributes


def expected_record(decision: dict[str, Any], outcome: dict[str, Any] | None) -> dict[str, Any]:
    """The stored Decision dict the fields describe (values that need no redaction)."""
    stored_outcome = None
    if outcome is not None:
        stored_outcome = {
            "success": outcome["success"],
            "result": outcome["result"],
            "error": outcome["error"],
            "state_changes": outcome["state_changes"] or {},
            "tokens_used": outcome["tokens_used"],
            "latency_ms": outcome["latency_ms"],
            "summary": outcome["summary"],
            "timestamp": _records.ns_to_iso(END),
        }
    chosen = next((o for o in decision["options"] if o["id"] == decision["chosen"]), None)
    successful = stored_outcome is not None and stored_outcome["success"]
    return {
        "id": decision["decision_id"],
        "timestamp": _records.ns_to_iso(START),
        "node_id": decision["node_id"],
        "intent": decision["intent"],
        "decision_type": decision["decision_type"],
        "options": decision["options"],
        "chosen_option_id": decision["chosen"],
        "reasoning": decision["reasoning"],
        "active_constraints": decision["constraints"],
        "input_context": decision["context"] or {},
        "outcome": stored_outcome,
        "evaluation": None,
        "chosen_option": chosen,
        "was_successful": successful,
        "was_good_decision": successful,
    }


def round_trip(decision: dict[str, Any], outcome: dict[str, Any] | None) -> dict[str, Any]:
    record = _decode.decision_record(encode(decision, outcome), START, END)
    # The decoded dict is the stored form: the model reads it and writes it back unchanged.
    assert Decision.model_validate(record).model_dump(mode="json") == json.loads(json.dumps(record))
    return record


ROUND_TRIPS: dict[str, tuple[dict[str, Any], dict[str, Any] | None]] = {
    "plain": (
        decision_fields(
            intent="route the ticket",
            options=[
                option("howto", "answer from docs", 0.8, pros=["fast"], cons=["shallow"]),
                option("bug", "file a bug", 0.2, action_type="tool", action_params={"q": 1}),
            ],
            chosen="howto",
            reasoning="it reads like a question",
            node_id="classifier",
            decision_type="tool_selection",
            constraints=["be polite", "no refunds"],
            context={"ticket": 42, "tags": ["a", "b"], "nested": {"x": [1.5, None, True]}},
        ),
        outcome_fields(
            result={"answer": "see docs", "score": 0.9},
            summary="answered",
            state_changes={"status": "closed"},
            tokens_used=120,
            latency_ms=35,
        ),
    ),
    "unicode": (
        decision_fields(
            intent="選択 🚀 – «route»",
            options=[option("ü", "Zürich ☃"), option("𝔘", "mathematical")],
            chosen="𝔘",
            reasoning='Ünïcödé reasoning, 中文, emoji 🙂, quotes " and \\ and \n newline',
            node_id="узел",
            constraints=["ограничение", ""],
            context={"ключ": "значение", "emoji🙂": ["🙂", "\u0000 nul", "\t"]},
        ),
        outcome_fields(
            result="résultat ✓", summary="概要", state_changes={"état": "fini"}, tokens_used=3
        ),
    ),
    "empty": (
        decision_fields(intent="", node_id="", context={}),
        outcome_fields(result="", summary="", state_changes={}),
    ),
    "no outcome": (decision_fields(options=[option("a")], chosen="a"), None),
    "failed": (
        decision_fields(options=[option("retry", confidence=0.3)], chosen="retry"),
        outcome_fields(success=False, error="TimeoutError: upstream", result=[1, 2, 3]),
    ),
    "result of every JSON type": (
        decision_fields(),
        outcome_fields(result=[0, -1, 2**53, 1.25, -0.5, True, False, None, "s", [], {}]),
    ),
    "large but under the limits": (
        decision_fields(
            options=[option(f"o{n}", "x" * 100) for n in range(50)],
            chosen="o49",
            context={f"k{n}": "v" * 200 for n in range(100)},
        ),
        outcome_fields(result="r" * 16_000, tokens_used=10**12, latency_ms=2**31),
    ),
}


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_a_decision_round_trips(case: str) -> None:
    decision, outcome = ROUND_TRIPS[case]
    assert round_trip(decision, outcome) == expected_record(decision, outcome)


def test_secret_bearing_values_decode_redacted_and_otherwise_unchanged() -> None:
    secret = "sk-abcdefghijklmnopqrstuvwx"
    decision = decision_fields(
        reasoning=f"called it with {secret}",
        context={
            "user": "ann",
            "password": "hunter2",
            "db_password": "x1",
            "openai_api_key": "y2",
            "note": f"key {secret}",
        },
    )
    outcome = outcome_fields(
        success=False,
        error=f"401 for Bearer {secret}",
        summary="token=abc123 rejected",
        result={"session_id": "s3ss10n", "rows": 2},
        state_changes={"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
    )
    attributes = encode(decision, outcome)
    assert not any(
        s in json.dumps(attributes) for s in (secret, "hunter2", "x1", "y2", "abc123", "s3ss10n")
    )
    record = round_trip(decision, outcome)
    assert record["input_context"] == {
        "user": "ann",
        "password": REDACTED,
        "db_password": REDACTED,
        "openai_api_key": REDACTED,
        "note": f"key {REDACTED}",
    }
    assert record["reasoning"] == f"called it with {REDACTED}"
    assert record["outcome"]["result"] == {"session_id": REDACTED, "rows": 2}
    assert record["outcome"]["state_changes"] == {"Authorization": REDACTED}
    assert "abc123" not in record["outcome"]["summary"]
    assert secret not in record["outcome"]["error"]
    assert record["outcome"]["error"].startswith("401 for ")


def test_values_over_the_limits_decode_bounded() -> None:
    long_text = "é" * 20_000
    # Plain JSON under 64 KiB is kept whole; a value that needs converting (a set here)
    # has its long strings cut; a value over 64 KiB becomes a bounded marker.
    plain = round_trip(decision_fields(context={"text": long_text}), None)
    assert plain["input_context"] == {"text": long_text}
    decision = decision_fields(context={"converted": {long_text}})
    outcome = outcome_fields(result={"rows": ["y" * 1000 for _ in range(100)]})
    record = round_trip(decision, outcome)
    [cut] = record["input_context"]["converted"]
    assert cut == "é" * 16 * 1024 + f"…[truncated {20_000 - 16 * 1024} chars]"
    result = record["outcome"]["result"]
    assert result["_decisiontrace_truncated"] is True
    assert result["original_chars"] > 100_000 and isinstance(result["preview"], str)


# --- generated records ---------------------------------------------------------------
# Text that can never look like a secret (no letters to spell a key name or a token
# prefix with) nor hold a lone surrogate, so that every value must come back unchanged.
_TEXT = st.text(alphabet='aé中🙂 _-.,:"\\\n\t\u0000€', max_size=30)
_KEYS = st.sampled_from(["a", "b", "名前", "emoji🙂", "", "a b", "ключ"])
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=12,
)
_OPTION_IDS = st.sampled_from(["a", "b", "é", "🙂", "a b"])


@st.composite
def _decisions(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any] | None]:
    ids = draw(st.lists(_OPTION_IDS, unique=True, max_size=3))
    options = [
        option(
            i,
            draw(_TEXT),
            draw(st.floats(min_value=0, max_value=1)),
            pros=draw(st.lists(_TEXT, max_size=2)),
            action_params=draw(st.dictionaries(_KEYS, _JSON, max_size=2)),
        )
        for i in ids
    ]
    decision = decision_fields(
        intent=draw(_TEXT),
        options=options,
        chosen=draw(st.sampled_from([*ids, ""])),
        reasoning=draw(_TEXT),
        node_id=draw(_TEXT),
        decision_type=draw(st.sampled_from(["custom", "tool_selection", "delegation"])),
        constraints=draw(st.lists(_TEXT, max_size=3)),
        context=draw(st.none() | st.dictionaries(_KEYS, _JSON, max_size=4)),
    )
    if draw(st.booleans()):
        return decision, None
    success = draw(st.booleans())
    outcome = outcome_fields(
        success=success,
        result=draw(_JSON),
        error=None if success else draw(st.none() | _TEXT),
        summary=draw(_TEXT),
        state_changes=draw(st.none() | st.dictionaries(_KEYS, _JSON, max_size=3)),
        tokens_used=draw(st.integers(min_value=0, max_value=2**40)),
        latency_ms=draw(st.integers(min_value=0, max_value=2**31)),
    )
    return decision, outcome


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_decisions())
def test_generated_decisions_round_trip(
    case: tuple[dict[str, Any], dict[str, Any] | None],
) -> None:
    decision, outcome = case
    assert round_trip(decision, outcome) == expected_record(decision, outcome)


# --- runs ----------------------------------------------------------------------------


def run_attributes(**end: Any) -> dict[str, Any]:
    attributes = _codec.run_start_attributes(
        run_id="run_s_20251201_120000_0123abcd",
        goal_id="goal ☃",
        goal_description="answer the ticket",
        stream_id="s",
        execution_id="e1",
        input_data={"ticket": "Ünïcödé"},
    )
    attributes.update(_codec.run_end_attributes(**end))
    return attributes


def test_a_run_round_trips_with_its_totals_problems_and_extras() -> None:
    outcomes = [(True, 10, 5), (False, 7, 3), None]
    decisions = []
    totals = _records.Totals()
    for number, outcome in enumerate(outcomes):
        fields = decision_fields(decision_id=_ids.decision_id(number), node_id=f"n{number % 2}")
        if outcome is None:
            totals.add(None)
            out = None
        else:
            totals.add(outcome[0], outcome[1])
            out = outcome_fields(success=outcome[0], tokens_used=outcome[1], latency_ms=outcome[2])
        decisions.append(_decode.decision_record(encode(fields, out), START, END))
    problem = _codec.problem_attributes(
        problem_id=_ids.problem_id(0),
        severity="warning",
        description="slow upstream",
        decision_id="dec_1",
        root_cause=None,
        suggested_fix="cache it",
    )
    attributes = run_attributes(
        status="failed",
        narrative="it went wrong",
        totals=totals,
        problem_count=1,
        nodes=["n0", "n1"],
        llm_tokens=30,
        edges=["n0->n1"],
        output_data={"answer": "🙂"},
        end_reason="cancelled by the test",
        paused=True,
    )
    assert attributes[sc.RUN_TOTAL_TOKENS] == 17 + 30
    record = _decode.run_record(
        attributes,
        START,
        END,
        list(reversed(decisions)),
        _decode.problems_of([_decode.EventData(sc.PROBLEM_EVENT, START + 1000, problem)]),
        trace_id=7,
        span_id=9,
        service_name="svc",
    )
    assert [d["id"] for d in record["decisions"]] == ["dec_0", "dec_1", "dec_2"]
    assert record["metrics"] == {
        "total_decisions": 3,
        "successful_decisions": 1,
        "failed_decisions": 1,
        "total_tokens": 47,  # the run span's total: decisions' and the run's LLM tokens
        "total_latency_ms": 8,
        "nodes_executed": ["n0", "n1"],
        "edges_traversed": ["n0->n1"],
        "success_rate": 1 / 3,
    }
    assert record["problems"] == [
        {
            "id": "prob_0",
            "severity": "warning",
            "description": "slow upstream",
            "root_cause": None,
            "decision_id": "dec_1",
            "timestamp": _records.ns_to_iso(START + 1000),
            "suggested_fix": "cache it",
        }
    ]
    expected = {
        "id": "run_s_20251201_120000_0123abcd",
        "goal_id": "goal ☃",
        "status": "failed",
        "narrative": "it went wrong",
        "goal_description": "answer the ticket",
        "input_data": {"ticket": "Ünïcödé"},
        "output_data": {"answer": "🙂"},
        "duration_ms": 2500,
        "end_reason": "cancelled by the test",
        "paused": True,
        "trace_id": f"{7:032x}",
        "span_id": f"{9:016x}",
        "service_name": "svc",
    }
    assert {key: record[key] for key in expected} == expected
    assert Run.model_validate(record).metrics.total_tokens == 47


def test_run_tokens_counted_by_the_processor_and_on_the_span_count_once() -> None:
    attributes = run_attributes(
        status="completed", narrative="", totals=_records.Totals(), problem_count=0, nodes=[],
        llm_tokens=30,
    )  # fmt: skip
    total = lambda run_tokens: _decode.run_record(  # noqa: E731
        attributes, START, END, [], [], run_tokens=run_tokens
    )["metrics"]["total_tokens"]
    assert total(0) == 30  # from the spans alone (rebuild of an export, the live view)
    assert total(30) == 30  # the same LLM spans, counted by the processor too
    assert total(42) == 42  # and one that ended after the run span


# --- missing attributes decode as the defaults ------------------------------------------


def _without(attributes: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if k not in keys}


DECISION_REQUIRED = (sc.SPAN_KIND, sc.RUN_ID, sc.DECISION_ID, sc.DECISION_INTENT)


def test_a_decision_with_only_its_required_attributes_decodes_as_the_default_record() -> None:
    full = encode(decision_fields(), None)
    default = _decode.decision_record(full, START, END)
    assert default == expected_record(decision_fields(), None)
    optional = [key for key in full if key not in DECISION_REQUIRED]
    assert optional  # the encoder writes them all today; the decoder must not need them
    for key in optional:
        assert _decode.decision_record(_without(full, key), START, END) == default, key
    minimal = {key: full[key] for key in DECISION_REQUIRED}
    assert _decode.decision_record(minimal, START, END) == default


def test_an_outcome_with_only_its_success_decodes_as_the_default_outcome() -> None:
    for success in (True, False):
        full = encode(decision_fields(), outcome_fields(success=success))
        default = _decode.decision_record(full, START, END)
        assert default == expected_record(decision_fields(), outcome_fields(success=success))
        decision_keys = set(encode(decision_fields(), None))
        outcome_keys = [k for k in full if k not in decision_keys and k != sc.OUTCOME_SUCCESS]
        for key in outcome_keys:
            assert _decode.decision_record(_without(full, key), START, END) == default, key
        minimal = {key: full[key] for key in (*DECISION_REQUIRED, sc.OUTCOME_SUCCESS)}
        assert _decode.decision_record(minimal, START, END) == default


def test_a_run_with_only_its_required_attributes_decodes_as_the_default_record() -> None:
    full = _codec.run_start_attributes(
        run_id="run_1", goal_id="g", goal_description="", stream_id="", execution_id="",
        input_data=None,
    )  # fmt: skip
    full.update(
        _codec.run_end_attributes(
            status="completed", narrative="", totals=_records.Totals(), problem_count=0, nodes=[]
        )
    )
    required = (sc.SPAN_KIND, sc.RUN_ID, sc.GOAL_ID)
    default = _decode.run_record(full, START, END, [], [])
    assert default == {
        "id": "run_1",
        "goal_id": "g",
        "started_at": _records.ns_to_datetime(START).isoformat(),
        "status": "completed",
        "completed_at": _records.ns_to_datetime(END).isoformat(),
        "decisions": [],
        "problems": [],
        "metrics": {
            "total_decisions": 0,
            "successful_decisions": 0,
            "failed_decisions": 0,
            "total_tokens": 0,
            "total_latency_ms": 0,
            "nodes_executed": [],
            "edges_traversed": [],
            "success_rate": 0.0,
        },
        "narrative": "Run completed successfully. Made 0 decisions: 0 succeeded, 0 failed.",
        "goal_description": "",
        "input_data": {},
        "output_data": {},
        "duration_ms": 2500,
    }
    for key in [k for k in full if k not in required]:
        assert _decode.run_record(_without(full, key), START, END, [], []) == default, key
    minimal = {key: full[key] for key in required}
    assert _decode.run_record(minimal, START, END, [], []) == default


def test_a_problem_with_only_its_required_attributes_decodes_with_none_for_the_rest() -> None:
    full = _codec.problem_attributes(
        problem_id="prob_0", severity="minor", description="d", decision_id=None,
        root_cause=None, suggested_fix=None,
    )  # fmt: skip
    assert set(full) == {sc.PROBLEM_ID, sc.PROBLEM_SEVERITY, sc.PROBLEM_DESCRIPTION}
    assert _decode.problem_record(full, START) == {
        "id": "prob_0",
        "severity": "minor",
        "description": "d",
        "root_cause": None,
        "decision_id": None,
        "timestamp": _records.ns_to_iso(START),
        "suggested_fix": None,
    }


# --- the light form is a projection of the full one ------------------------------------


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_the_light_form_is_a_projection_of_the_full_record(case: str) -> None:
    decision, outcome = ROUND_TRIPS[case]
    attributes = encode(decision, outcome)
    full = _decode.decision_record(attributes, START, END)
    light = _decode.decision_record(attributes, START, END, light=True)
    assert light["timestamp"] == ""
    assert set(light) < set(full)
    for key in set(light) - {"timestamp", "outcome", "chosen_option"}:
        assert light[key] == full[key], key
    if full["outcome"] is None:
        assert light["outcome"] is None
    else:
        assert light["outcome"] == {
            k: full["outcome"][k] for k in ("success", "tokens_used", "latency_ms", "summary")
        }
    # Summaries name the choice of a decision that did not succeed.
    expected_choice = None if full["was_successful"] else full["chosen_option"]
    assert light["chosen_option"] == expected_choice


# --- ids and span statuses: one rule each ------------------------------------------------


def test_run_ids_carry_their_stream_and_start_second() -> None:
    start_ns = time.time_ns()
    for stream in ("support-bot", "my_agent", "a_20250101_120000_0123abcd"):
        run_id = _ids.new_run_id(_ids.run_id_prefix(stream), start_ns)
        assert re.fullmatch(rf"run_{re.escape(stream)}_\d{{8}}_\d{{6}}_[0-9a-f]{{8}}", run_id)
        assert _ids.stream_of_run_id(run_id) == stream
        assert _ids.run_id_time(run_id) == _records.ns_to_datetime(start_ns).replace(microsecond=0)
    compat = _ids.new_run_id(_ids.run_id_prefix(None), start_ns)
    assert re.fullmatch(r"run_\d{8}_\d{6}_[0-9a-f]{8}", compat)
    assert _ids.stream_of_run_id(compat) is None and _ids.run_id_time(compat) is not None
    assert _ids.stream_of_run_id("custom-id") is None and _ids.run_id_time("custom-id") is None
    assert _ids.run_id_time("run_s_20251341_120000_0123abcd") is None  # no 41st of month 13
    assert len({_ids.new_run_id("run_", start_ns) for _ in range(100)}) == 100


def test_decision_and_problem_ids_are_numbered_per_run_with_the_fragment_suffix() -> None:
    assert (_ids.decision_id(0), _ids.problem_id(3)) == ("dec_0", "prob_3")
    fragment = _ids.new_fragment_id("svc")
    assert re.fullmatch(r"svc:\d+:[0-9a-f]{8}", fragment)
    assert _ids.decision_id(2, fragment) == f"dec_2@{fragment}"
    assert _ids.problem_id(1, fragment) == f"prob_1@{fragment}"
    assert _ids.decision_number("dec_12") == 12
    assert _ids.decision_number(f"dec_2@{fragment}") is None
    assert _ids.decision_number("prob_1") is None and _ids.decision_number("dec_") is None
    assert re.fullmatch(r"[0-9a-f]{32}", _ids.new_execution_id())


def test_decisions_recorded_elsewhere_sort_after_the_runs_own_by_time() -> None:
    fields = [("dec_10", START), ("dec_2@svc:1:00000000", START + 2000), ("dec_2", START + 5000)]
    fields.append(("dec_0@svc:1:00000000", START + 1000))
    decisions = [
        _decode.decision_record(encode(decision_fields(decision_id=i), None), t, None)
        for i, t in fields
    ]
    record = _decode.run_record({sc.RUN_ID: "r"}, START, None, decisions, [])
    assert [d["id"] for d in record["decisions"]] == [
        "dec_2", "dec_10", "dec_0@svc:1:00000000", "dec_2@svc:1:00000000",
    ]  # fmt: skip


@pytest.mark.parametrize("status", [s.value for s in RunStatus])
def test_failed_and_stuck_run_spans_have_status_error(status: str) -> None:
    span_status = _codec.run_span_status(status)
    if status in ("failed", "stuck"):
        assert span_status is not None and span_status.status_code is StatusCode.ERROR
        assert span_status.description == f"run {status}"
        assert _codec.is_error_status(status)
    else:
        assert span_status is None and not _codec.is_error_status(status)


def test_a_failed_outcome_gives_its_decision_span_status_error() -> None:
    assert _codec.outcome_span_status(True, None) is None
    failed = _codec.outcome_span_status(False, "boom")
    assert failed is not None and failed.status_code is StatusCode.ERROR
    assert failed.description == "boom"
    assert {"failed", "stuck", "cancelled"} == sc.RUN_STATUSES_EXPORTED
    assert sc.RUN_STATUSES_ERROR < sc.RUN_STATUSES_EXPORTED


def test_attributes_of_the_wrong_type_decode_as_the_defaults() -> None:
    # Spans not written by this encoder (another version, another tool) may carry anything.
    attributes = {
        **encode(decision_fields(), outcome_fields()),
        sc.DECISION_INPUT_CONTEXT: '"text"',
        sc.DECISION_OPTIONS: '{"id": "a"}',
        sc.OUTCOME_STATE_CHANGES: "[1, 2]",
        sc.OUTCOME_TOKENS: "many",
        sc.OUTCOME_LATENCY_MS: None,
        sc.DECISION_EVALUATION: "[]",
    }
    record = _decode.decision_record(attributes, START, END)
    assert record == expected_record(decision_fields(), outcome_fields())


def test_a_run_span_without_a_status_decodes_it_from_its_span_status() -> None:
    attributes = {sc.RUN_ID: "r"}
    statuses = [
        _decode.run_record(attributes, START, end, [], [], error=error)["status"]
        for end, error in ((None, False), (END, False), (END, True))
    ]
    assert statuses == ["running", "completed", "failed"]
    assert (_codec.ended_status(True), _codec.ended_status(False)) == ("completed", "failed")
    assert _codec.is_error_status(_codec.ended_status(False))


def test_the_generated_narrative_names_failed_and_unfinished_decisions_not_paused_ones() -> None:
    cases = [
        ("ok", outcome_fields(success=True), False),
        ("broke", outcome_fields(success=False, error="x"), False),
        ("left open", None, False),
        ("waits for the user", None, True),
    ]
    decisions = []
    for number, (intent, outcome, paused) in enumerate(cases):
        attributes = encode(decision_fields(decision_id=f"dec_{number}", intent=intent), outcome)
        if paused:
            attributes[sc.DECISION_PAUSED] = True
        decisions.append(_decode.decision_record(attributes, START, END))
    problem = _codec.problem_attributes(
        problem_id="prob_0", severity="critical", description="db down", decision_id=None,
        root_cause=None, suggested_fix=None,
    )  # fmt: skip
    record = _decode.run_record(
        {sc.RUN_ID: "r", sc.RUN_STATUS: "failed"},
        START,
        END,
        decisions,
        [_decode.problem_record(problem, START)],
    )
    assert record["narrative"] == (
        "Run failed. Made 4 decisions: 1 succeeded, 1 failed. Critical issues: db down "
        "Failed on: broke, left open"
    )
    assert _records.failed_on([("a", False, True), ("b", None, True), ("c", True, False)]) == ["a"]
