"""The attribute reader of ``ingest/_wire.py`` against protobuf's own reading.

Every value is built with the generated OTLP classes and serialized by protobuf; what
``_wire`` reads from the bytes must be what the generated classes read from them.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import decisiontrace as dt
from decisiontrace.ingest import _wire
from decisiontrace.pipeline._assembly import RunAssembler
from decisiontrace.pipeline._inbox import span_data
from decisiontrace.spanmodel import semconv as sc


def _expected(value: AnyValue) -> Any:
    """What protobuf reads: arrays as tuples (as the SDK keeps them), lists as dicts."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(_expected(v) for v in value.array_value.values)
    if which == "kvlist_value":
        return {kv.key: _expected(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which)


_scalars = st.one_of(
    st.text().map(lambda s: AnyValue(string_value=s)),
    st.text(min_size=130, max_size=400).map(lambda s: AnyValue(string_value=s)),
    st.booleans().map(lambda b: AnyValue(bool_value=b)),
    st.integers(-(2**63), 2**63 - 1).map(lambda i: AnyValue(int_value=i)),
    st.floats(allow_nan=False).map(lambda f: AnyValue(double_value=f)),
    st.binary().map(lambda b: AnyValue(bytes_value=b)),
    st.just(AnyValue()),
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5).map(lambda vs: AnyValue(array_value=ArrayValue(values=vs))),
        st.lists(st.tuples(st.text(max_size=5), children), max_size=3).map(
            lambda kvs: AnyValue(
                kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v) for k, v in kvs])
            )
        ),
    ),
    max_leaves=8,
)
_keys = st.one_of(
    st.sampled_from([sc.DECISION_INTENT, sc.OUTCOME_SUCCESS, sc.GEN_AI_USAGE_INPUT_TOKENS]),
    st.text(max_size=10).map(lambda s: "decisiontrace." + s),
    st.text(max_size=140),  # mostly not ours; long ones take the slow path
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_any_value_reads_what_protobuf_reads(value: AnyValue) -> None:
    raw = value.SerializeToString()
    read = _wire.any_value(raw, 0, len(raw))
    if value.WhichOneof("value") is None:
        assert read is _wire._UNSET
    else:
        assert read == _expected(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_keys, _values), max_size=8), st.booleans())
def test_read_attributes_keeps_ours_as_protobuf_reads_them(
    pairs: list[tuple[str, AnyValue]], twice: bool
) -> None:
    raws = [KeyValue(key=k, value=v).SerializeToString() for k, v in pairs]
    expected = {
        k: _expected(v) for k, v in pairs if _wire.kept(k) and v.WhichOneof("value") is not None
    }
    assert _wire.read_attributes(raws) == expected
    if twice:  # the second time from what was remembered
        assert _wire.read_attributes(raws) == expected


def test_forms_no_encoder_writes_are_read_by_protobuf() -> None:
    key = sc.DECISION_INTENT
    one, two = AnyValue(string_value="one"), AnyValue(int_value=-2)
    value_first = (
        b"\x12" + bytes([len(one.SerializeToString())]) + one.SerializeToString()
        + b"\x0a" + bytes([len(key)]) + key.encode()
    )  # fmt: skip
    both = one.SerializeToString() + two.SerializeToString()  # last wins
    both_value = KeyValue(key=key).SerializeToString() + b"\x12" + bytes([len(both)]) + both
    trailing = KeyValue(key=key, value=one).SerializeToString() + b"\x18\x05"  # unknown field 3
    assert _wire.read_attributes([value_first]) == {key: "one"}
    assert _wire.read_attributes([both_value]) == {key: -2}
    assert _wire.read_attributes([trailing]) == {key: "one"}
    assert _wire.read_attributes([KeyValue(key=key).SerializeToString()]) == {}
    duplicated = [KeyValue(key=key, value=v).SerializeToString() for v in (one, two)]
    assert _wire.read_attributes(duplicated) == {key: -2}
    items = ArrayValue(values=[one, two]).SerializeToString() + b"\x10\x01"  # unknown field 2
    array = b"\x2a" + bytes([len(items)]) + items
    raw = KeyValue(key=key).SerializeToString() + b"\x12" + bytes([len(array)]) + array
    assert _wire.read_attributes([raw]) == {key: ("one", -2)}


def test_values_are_immutable_and_shared_safely() -> None:
    array = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="a")]))
    raw = KeyValue(key=sc.DECISION_CONSTRAINTS, value=array).SerializeToString()
    first, second = _wire.read_attributes([raw]), _wire.read_attributes([raw])
    assert first == second == {sc.DECISION_CONSTRAINTS: ("a",)}
    nested = AnyValue(
        kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(int_value=1))])
    )
    raw = KeyValue(key=sc.DECISION_EVALUATION, value=nested).SerializeToString()
    first = _wire.read_attributes([raw])
    first[sc.DECISION_EVALUATION]["k"] = 2  # a dict is never shared
    assert _wire.read_attributes([raw]) == {sc.DECISION_EVALUATION: {"k": 1}}


def test_our_unread_attributes_are_skipped_by_their_bytes_once_met(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Option ids and counts repeat as options do: read once, then a look-up."""
    unread = KeyValue(
        key=sc.DECISION_OPTION_IDS,
        value=AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="kb")])),
    ).SerializeToString()
    theirs = KeyValue(key="http.url", value=AnyValue(string_value="x")).SerializeToString()
    kept = KeyValue(key=sc.DECISION_INTENT, value=AnyValue(string_value="i")).SerializeToString()
    assert _wire.read_attributes([unread, theirs, kept]) == {sc.DECISION_INTENT: "i"}
    read: list[bytes] = []
    original = _wire._read_pair

    def counting(kv: bytes) -> Any:
        read.append(kv)
        return original(kv)

    monkeypatch.setattr(_wire, "_read_pair", counting)
    assert _wire.read_attributes([unread, theirs, kept]) == {sc.DECISION_INTENT: "i"}
    assert read == [theirs]  # not ours: its key is looked at each time


def test_bad_bytes_in_kept_attributes_are_errors_and_others_are_skipped() -> None:
    bad_text = b"\x0a\x02\xff\xfe"  # AnyValue.string_value, not UTF-8
    ours = KeyValue(key=sc.DECISION_INTENT).SerializeToString() + b"\x12\x04" + bad_text
    theirs = KeyValue(key="http.url").SerializeToString() + b"\x12\x04" + bad_text
    with pytest.raises(ValueError, match="UTF-8"):
        _wire.read_attributes([ours])
    assert _wire.read_attributes([theirs]) == {}
    cut_short = KeyValue(key=sc.DECISION_INTENT).SerializeToString() + b"\x12\x09\x0a\x07ab"
    with pytest.raises(ValueError, match="KeyValue"):
        _wire.read_attributes([cut_short])


def test_doubles_round_trip_exactly() -> None:
    for number in (0.1, -0.0, math.inf, 1e308, 5e-324):
        raw = AnyValue(double_value=number).SerializeToString()
        assert _wire.any_value(raw, 0, len(raw)) == number


def test_records_do_not_read_the_attributes_the_service_leaves_out() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = dt.DecisionTracker("agent", tracer_provider=provider)
    with tracker.run("goal", "Goal", {"x": 1}):
        decision = tracker.decide(
            intent="Pick", options=[{"id": "a", "confidence": 0.9}, {"id": "b"}],
            chosen="a", reasoning="best", constraints=["c"], context={"k": "v"},
        )  # fmt: skip
        tracker.record_outcome(
            decision_id=decision, success=False, tokens_used=7, latency_ms=3, error="e",
            input_tokens=1, output_tokens=2, summary="s", result={"r": 1},
        )  # fmt: skip
        tracker.report_problem(severity="error", description="broke")
    provider.shutdown()
    spans = [span_data(span) for span in exporter.get_finished_spans()]
    left_out = {key for span in spans for key in span.attributes} & _wire.UNREAD_KEYS
    assert left_out, "the tracker writes some of them: the check below checks something"

    def records(drop: frozenset[str]) -> list[dict[str, Any]]:
        assembler = RunAssembler()
        for span in spans:
            kept = {k: v for k, v in span.attributes.items() if k not in drop}
            assembler.add(type(span)(**{**_fields(span), "attributes": kept}))
        return assembler.take_ready(force=True)

    assert records(_wire.UNREAD_KEYS) == records(frozenset())


def _fields(span: Any) -> dict[str, Any]:
    return {name: getattr(span, name) for name in type(span).__slots__}
