"""Runs rebuilt from OTLP JSON equal the runs the processor stored in-process."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from decisiontrace.__main__ import main
from decisiontrace.export import _otlp_json
from decisiontrace.export.rebuild import rebuild
from decisiontrace.models import DecisionType, RunStatus
from decisiontrace.pipeline.processor import RunRecordProcessor
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore, open_store
from decisiontrace.tracking.tracker import DecisionTracker


def record_runs(provider: TracerProvider) -> list[str]:
    """Four runs covering the span model: outcomes, problems, LLM tokens, failure."""
    tracker = DecisionTracker("rebuild-agent", tracer_provider=provider)
    tracer = provider.get_tracer("llm-instrumentation")
    run_ids = []
    with tracker.run("support", "Handle a ticket", {"ticket": "T-1", "n": 3}) as run:
        tracker.set_node("classifier")
        decision_id = tracker.decide(
            intent="Classify ticket",
            options=[
                {"id": "howto", "description": "How-to", "action_type": "route",
                 "pros": ["asks how"], "cons": [], "confidence": 0.8,
                 "action_params": {"queue": "kb"}},
                {"id": "bug", "description": "Bug", "action_type": "route", "confidence": 0.1},
            ],
            chosen="howto",
            reasoning="matches how-to",
            decision_type=DecisionType.PATH_CHOICE,
            constraints=["be polite"],
            context={"lang": "en"},
        )  # fmt: skip
        # An LLM span under the decision: its tokens count for the decision.
        with tracer.start_as_current_span(
            "chat gpt",
            context=trace.set_span_in_context(
                tracker.registry.current().decisions[decision_id].span  # type: ignore[union-attr]
            ),
            attributes={sc.GEN_AI_USAGE_INPUT_TOKENS: 30, sc.GEN_AI_USAGE_OUTPUT_TOKENS: 12},
        ):
            pass
        tracker.record_outcome(
            decision_id=decision_id,
            success=True,
            result={"category": "howto"},
            summary="classified",
            state_changes={"routed": True},
            tokens_used=100,
            latency_ms=230,
        )
        tracker.report_problem(
            severity="warning",
            description="KB slow",
            decision_id=decision_id,
            root_cause="index",
            suggested_fix="reindex",
        )
        run.output_data = {"answer": "use the link"}
    run_ids.append(run.run_id)

    with tracker.run("support", "Second ticket") as run:
        tracker.set_node("responder")
        decision_id = tracker.quick_decision(intent="Answer", action="reply", reasoning="simple")
        tracker.record_outcome(
            decision_id=decision_id, success=False, error="timeout", error_type="TimeoutError"
        )
    run_ids.append(run.run_id)

    def refund() -> None:
        with tracker.run("billing", "Refund") as run:
            tracker.decide(intent="Refund?", options=[], chosen="yes", reasoning="policy")
            run_ids.append(run.run_id)
            raise RuntimeError("payment API down")

    with pytest.raises(RuntimeError, match="payment API down"):
        refund()

    with tracker.run("empty", "No decisions") as run:
        pass
    run_ids.append(run.run_id)
    return run_ids


@pytest.fixture
def exported(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, MemoryStore, list[str]]:
    """Runs recorded through a real pipeline: stored in memory and written as OTLP JSON."""
    hex_ids, batched = request.param
    path = tmp_path / "traces.jsonl"
    store = MemoryStore()
    provider = TracerProvider()
    provider.add_span_processor(RunRecordProcessor(store, flush_interval=0.05))
    exporter = _otlp_json.OTLPJSONLinesExporter(path, hex_ids=hex_ids)
    provider.add_span_processor(
        BatchSpanProcessor(exporter, max_export_batch_size=3)
        if batched
        else SimpleSpanProcessor(exporter)
    )
    run_ids = record_runs(provider)
    provider.shutdown()
    return path, store, run_ids


@pytest.mark.parametrize(
    "exported",
    [(True, False), (False, True)],
    ids=["collector-hex-ids-span-per-line", "proto3-base64-ids-batched"],
    indirect=True,
)
def test_rebuilt_runs_equal_the_stored_runs(exported: tuple[Path, MemoryStore, list[str]]) -> None:
    path, stored, run_ids = exported
    rebuilt = MemoryStore()
    result = rebuild(path, rebuilt)
    assert result.errors == []
    assert sorted(result.run_ids) == sorted(run_ids)
    assert result.runs_written == 4
    for run_id in run_ids:
        original = stored.load_run(run_id)
        assert original is not None
        assert rebuilt.load_run(run_id) == original
    first = rebuilt.load_run(run_ids[0])
    assert first is not None
    assert first.decisions[0].outcome is not None
    assert first.decisions[0].outcome.tokens_used == 142  # 100 + the LLM span's 30 + 12
    assert first.problems[0].suggested_fix == "reindex"
    failed = rebuilt.load_run(run_ids[2])
    assert failed is not None and failed.status == RunStatus.FAILED


@pytest.mark.parametrize("exported", [(True, False)], indirect=True)
def test_the_writer_emits_hex_ids_and_numeric_enums_like_the_collector(
    exported: tuple[Path, MemoryStore, list[str]],
) -> None:
    path, _, _ = exported
    request = json.loads(path.read_text().splitlines()[0])
    span = request["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and int(span["traceId"], 16)
    assert len(span["spanId"]) == 16 and int(span["spanId"], 16)
    assert isinstance(span["kind"], int)


def _pretty_document(path: Path, wrap: str) -> str:
    """All lines merged into one pretty-printed document, as a trace download looks."""
    resource_spans = []
    for line in path.read_text().splitlines():
        resource_spans.extend(json.loads(line)["resourceSpans"])
    if wrap == "tempo-batches":
        document: dict[str, Any] = {"batches": resource_spans}
    elif wrap == "jaeger-result":
        document = {"result": {"resourceSpans": resource_spans}}
    else:
        document = {"resourceSpans": resource_spans}
    return json.dumps(document, indent=2)


@pytest.mark.parametrize("wrap", ["plain", "tempo-batches", "jaeger-result"])
@pytest.mark.parametrize("exported", [(True, False)], indirect=True)
def test_a_downloaded_trace_document_rebuilds_the_same_runs(
    exported: tuple[Path, MemoryStore, list[str]], tmp_path: Path, wrap: str
) -> None:
    path, stored, run_ids = exported
    document = tmp_path / "trace.json"
    document.write_text(_pretty_document(path, wrap))
    rebuilt = MemoryStore()
    result = rebuild(document, rebuilt)
    assert result.errors == []
    assert result.lines_read == len(document.read_text().splitlines())
    for run_id in run_ids:
        assert rebuilt.load_run(run_id) == stored.load_run(run_id)


# --- bad input -------------------------------------------------------------------------


def _span(
    trace_id: str, span_id: str, attributes: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "traceId": trace_id,
        "spanId": span_id,
        "name": "s",
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
        "attributes": attributes,
        **extra,
    }


def _request(*spans: dict[str, Any]) -> str:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]})


def _run_span(trace_id: str, run_id: str) -> dict[str, Any]:
    return _span(
        trace_id,
        "00000000000000a1",
        [
            {"key": sc.SPAN_KIND, "value": {"stringValue": sc.KIND_RUN}},
            {"key": sc.RUN_ID, "value": {"stringValue": run_id}},
            {"key": sc.RUN_STATUS, "value": {"stringValue": "completed"}},
            {"key": sc.RUN_DECISION_COUNT, "value": {"intValue": "0"}},
        ],
    )


def test_malformed_lines_and_fields_are_named_and_the_rest_is_rebuilt(tmp_path: Path) -> None:
    good_trace = "0af7651916cd43dd8448eb211c80319c"
    bad = _run_span("0af7651916cd43dd8448eb211c80319d", "run_bad")
    bad["attributes"][3]["value"] = {"intValue": "many"}
    lines = [
        _request(_run_span(good_trace, "run_good")),
        "{not json",
        _request(_span("xyz", "00000000000000a1", [])),
        _request(bad),
        _request(_span(good_trace, "00000000000000b2", [], status={"code": "STATUS_CODE_WHAT"})),
        "",
        json.dumps({"data": [{"traceID": "abc", "spans": []}]}),
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    store = MemoryStore()
    result = rebuild(path, store)
    assert result.run_ids == ["run_good"]
    assert store.load_run("run_good") is not None
    assert result.lines_read == 7
    assert len(result.errors) == 5
    assert result.errors[0].startswith("line 2: invalid JSON")
    assert result.errors[1].startswith("line 3: resourceSpans[0].scopeSpans[0].spans[0].traceId:")
    assert result.errors[2].startswith(
        "line 4: resourceSpans[0].scopeSpans[0].spans[0].attributes[3].value.intValue: "
        "not an integer"
    )
    assert result.errors[3].startswith(
        "line 5: resourceSpans[0].scopeSpans[0].spans[0].status.code"
    )
    assert result.errors[4].startswith("line 7: data: this is Jaeger's own JSON format")


def test_a_broken_document_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    path.write_text('{\n  "resourceSpans": [\n    {"scopeSpans": ]\n  ]\n}\n')
    result = rebuild(path, MemoryStore())
    assert result.runs_written == 0
    assert len(result.errors) == 1
    assert result.errors[0].startswith("line 3: invalid JSON")


def test_spans_that_are_not_ours_are_ignored() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("web")
    with (
        tracer.start_as_current_span("GET /", attributes={"http.request.method": "GET"}),
        tracer.start_as_current_span("chat", attributes={sc.GEN_AI_USAGE_INPUT_TOKENS: 5}),
    ):
        pass
    provider.shutdown()
    line = _otlp_json.request_line(exporter.get_finished_spans())
    store = MemoryStore()
    result = rebuild([line], store)
    assert (result.runs_written, result.spans_read, result.errors) == (0, 2, [])
    assert store.list_runs() == []


def test_decisions_without_their_run_span_become_a_stuck_run() -> None:
    decision = _span(
        "0af7651916cd43dd8448eb211c80319c",
        "00000000000000b1",
        [
            {"key": sc.SPAN_KIND, "value": {"stringValue": sc.KIND_DECISION}},
            {"key": sc.RUN_ID, "value": {"stringValue": "run_lost"}},
            {"key": sc.DECISION_ID, "value": {"stringValue": "dec_0"}},
        ],
        parentSpanId="00000000000000a1",
    )
    store = MemoryStore()
    rebuild([_request(decision)], store)
    run = store.load_run("run_lost")
    assert run is not None
    assert run.status == RunStatus.STUCK
    assert [d.id for d in run.decisions] == ["dec_0"]


# --- the OTLP JSON reader's details ------------------------------------------------------


def test_ids_are_read_as_hex_or_base64() -> None:
    raw = bytes(range(1, 17))
    assert _otlp_json.decode_id(raw.hex(), 16, "t") == int.from_bytes(raw, "big")
    assert _otlp_json.decode_id(base64.b64encode(raw).decode(), 16, "t") == int.from_bytes(
        raw, "big"
    )
    assert _otlp_json.decode_id(base64.b64encode(raw[:8]).decode(), 8, "s") == int.from_bytes(
        raw[:8], "big"
    )
    for bad in ("", "zz" * 16, base64.b64encode(raw[:8]).decode(), 7, None):
        with pytest.raises(_otlp_json.FieldError, match=r"^t: "):
            _otlp_json.decode_id(bad, 16, "t")


def test_any_values_of_every_kind() -> None:
    value = {
        "kvlistValue": {
            "values": [
                {"key": "s", "value": {"stringValue": "x"}},
                {"key": "b", "value": {"boolValue": False}},
                {"key": "i", "value": {"intValue": 7}},
                {"key": "d", "value": {"doubleValue": "NaN"}},
                {
                    "key": "a",
                    "value": {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "y"}]}},
                },
                {"key": "y", "value": {"bytesValue": base64.b64encode(b"\x00\x01").decode()}},
                {"key": "empty", "value": {}},
            ]
        }
    }
    decoded = _otlp_json.any_value(value, "v")
    assert decoded["s"] == "x" and decoded["b"] is False and decoded["i"] == 7
    assert decoded["d"] != decoded["d"]  # NaN
    assert decoded["a"] == [1, "y"]
    assert decoded["y"] == b"\x00\x01"
    assert "empty" not in decoded
    with pytest.raises(_otlp_json.FieldError, match=r"^v\.boolValue: "):
        _otlp_json.any_value({"boolValue": "yes"}, "v")
    with pytest.raises(_otlp_json.FieldError, match=r"^v: unknown AnyValue kind"):
        _otlp_json.any_value({"fooValue": 1}, "v")


@pytest.mark.parametrize(
    ("status", "error"),
    [({"code": 2}, True), ({"code": "STATUS_CODE_ERROR"}, True), ({"code": "2"}, True),
     ({"code": 1}, False), ({}, False), (None, False)],
)  # fmt: skip
def test_status_codes_as_numbers_or_names(status: Any, error: bool) -> None:
    span = _span("0af7651916cd43dd8448eb211c80319c", "00000000000000a1", [])
    if status is not None:
        span["status"] = status
    assert _otlp_json.span(span, "s").error is error


def test_older_instrumentation_library_spans_and_snake_case_names_are_read() -> None:
    span = {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "00000000000000a1",
        "name": "old",
        "start_time_unix_nano": 5,
        "end_time_unix_nano": 6,
    }
    errors: list[Exception] = []
    spans = list(
        _otlp_json.request_spans(
            {"resourceSpans": [{"instrumentationLibrarySpans": [{"spans": [span]}]}]}, errors.append
        )
    )
    assert errors == []
    assert [(s.name, s.start_ns, s.end_ns, s.parent_id) for s in spans] == [("old", 5, 6, None)]


def test_the_lines_exporter_reports_a_closed_stream(tmp_path: Path) -> None:
    exporter = _otlp_json.OTLPJSONLinesExporter(tmp_path / "out.jsonl")
    exporter.shutdown()
    assert exporter.export([]) is SpanExportResult.FAILURE


# --- the command line --------------------------------------------------------------------


@pytest.mark.parametrize("exported", [(True, True)], indirect=True)
def test_cli_rebuilds_into_a_store(
    exported: tuple[Path, MemoryStore, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, stored, run_ids = exported
    url = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    assert main(["rebuild", str(path), "--store", url]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith("rebuilt 4 runs from ")
    with open_store(url) as store:
        for run_id in run_ids:
            assert store.load_run(run_id) == stored.load_run(run_id)


def test_cli_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rebuild", str(tmp_path / "missing.jsonl"), "--store", "memory://"]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: ") and "missing.jsonl" in err

    good = tmp_path / "t.jsonl"
    good.write_text("")
    assert main(["rebuild", str(good), "--store", "nosuch://x"]) == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("error: --store: unknown store URL scheme")

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")
    assert main(["rebuild", str(garbage), "--store", "memory://"]) == 2


def test_cli_partly_malformed_file_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(_request(_run_span("0af7651916cd43dd8448eb211c80319c", "run_ok")) + "\n{oops\n")
    assert main(["rebuild", str(path), "--store", "memory://"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("rebuilt 1 run from 1 span")  # plurals right
    assert err.startswith(f"{path}: line 2: invalid JSON")


def test_python_m_decisiontrace_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(_request(_run_span("0af7651916cd43dd8448eb211c80319c", "run_cli")) + "\n")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "decisiontrace", "rebuild", str(path), "--store", url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with open_store(url) as store:
        assert store.load_run("run_cli") is not None
    bad = subprocess.run(
        [sys.executable, "-m", "decisiontrace", "rebuild", str(tmp_path / "nope")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and bad.stderr.count("\n") == 1
