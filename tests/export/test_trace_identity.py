"""Every stored run and decision keeps its trace identity: the ids of its spans and the
service that made them, through every store, the journal, rebuild and export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import decisiontrace as dt
from decisiontrace import rebuild
from decisiontrace.cli._links import trace_url
from decisiontrace.export._otlp_export import otlp_json_line
from decisiontrace.export._otlp_json import OTLPJSONLinesExporter
from decisiontrace.stores import open_store


def record_one(store_url: str, tmp_path: Path) -> tuple[str, InMemorySpanExporter, Path]:
    exporter = InMemorySpanExporter()
    otlp_file = tmp_path / "spans.jsonl"
    provider = TracerProvider(resource=Resource.create({"service.name": "support-agent"}))
    provider.add_span_processor(dt.RunRecordProcessor(open_store(store_url)))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(SimpleSpanProcessor(OTLPJSONLinesExporter(str(otlp_file))))
    tracker = dt.DecisionTracker("webhook", tracer_provider=provider)
    with tracker.run("support-goal", "Handle tickets") as run:
        for chosen in ("a", "b"):
            decision_id = tracker.decide(
                intent="pick", options=[{"id": "a"}, {"id": "b"}], chosen=chosen, reasoning="r"
            )
            tracker.record_outcome(decision_id=decision_id, success=True)
    provider.shutdown()
    return run.run_id, exporter, otlp_file


def expected_ids(exporter: InMemorySpanExporter) -> tuple[str, str, list[str]]:
    spans = exporter.get_finished_spans()
    [root] = [s for s in spans if s.parent is None]
    decisions = sorted((s for s in spans if s.parent is not None), key=lambda s: s.start_time or 0)
    assert root.context is not None
    return (
        f"{root.context.trace_id:032x}",
        f"{root.context.span_id:016x}",
        [f"{s.context.span_id:016x}" for s in decisions if s.context is not None],
    )


@pytest.mark.parametrize("form", ["sqlite", "json-files"])
def test_stored_records_keep_the_span_ids_and_service(tmp_path: Path, form: str) -> None:
    url = {
        "sqlite": f"sqlite:///{tmp_path / 'runs.db'}",
        "json-files": (tmp_path / "runs").as_uri(),
    }[form]
    run_id, exporter, _ = record_one(url, tmp_path)
    trace_id, span_id, decision_span_ids = expected_ids(exporter)
    with open_store(url) as store:
        record = store.load_record(run_id)
    assert record is not None
    assert record["trace_id"] == trace_id
    assert record["span_id"] == span_id
    assert record["service_name"] == "support-agent"
    assert [d["span_id"] for d in record["decisions"]] == decision_span_ids


def test_rebuild_and_export_reuse_the_real_ids(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    run_id, exporter, otlp_file = record_one(url, tmp_path)
    trace_id, span_id, decision_span_ids = expected_ids(exporter)
    copy = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    rebuild(str(otlp_file), copy)
    rebuilt = copy.load_record(run_id)
    assert rebuilt is not None
    assert (rebuilt["trace_id"], rebuilt["span_id"]) == (trace_id, span_id)
    assert rebuilt["service_name"] == "support-agent"
    assert [d["span_id"] for d in rebuilt["decisions"]] == decision_span_ids

    run = open_store(url).load_run(run_id)
    assert run is not None
    line = json.loads(otlp_json_line(run))
    [resource_spans] = line["resourceSpans"]
    assert {"key": "service.name", "value": {"stringValue": "support-agent"}} in (
        resource_spans["resource"]["attributes"]
    )
    spans = [s for scope in resource_spans["scopeSpans"] for s in scope["spans"]]
    assert {s["traceId"] for s in spans} == {trace_id}
    assert {s["spanId"] for s in spans} == {span_id, *decision_span_ids}


def test_the_live_view_has_the_ids_too() -> None:
    provider = TracerProvider()
    tracker = dt.DecisionTracker("live", tracer_provider=provider)
    with tracker.run("goal", "g"):
        tracker.decide(intent="pick", options=[{"id": "a"}], chosen="a", reasoning="r")
        view = tracker.get_run()
        assert view is not None
        extra = view.model_extra or {}
        assert extra["trace_id"] == f"{trace.get_current_span().get_span_context().trace_id:032x}"
        assert (view.decisions[0].model_extra or {})["span_id"]
    provider.shutdown()


def test_trace_url_fills_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    run_id, exporter, _ = record_one(url, tmp_path)
    trace_id, _, decision_span_ids = expected_ids(exporter)
    run = open_store(url).load_run(run_id)
    assert run is not None
    assert trace_url(run) is None  # no template: no link
    monkeypatch.setenv("DECISIONTRACE_TRACE_URL", "http://localhost:16686/trace/{trace_id}")
    assert trace_url(run) == f"http://localhost:16686/trace/{trace_id}"
    grafana = 'http://g/explore?left={"queries":[{"query":"{trace_id}"}]}&span={span_id}'
    assert trace_url(run, run.decisions[1], template=grafana) == (
        f'http://g/explore?left={{"queries":[{{"query":"{trace_id}"}}]}}'
        f"&span={decision_span_ids[1]}"
    )
    assert trace_url({"id": "x"}, template="http://j/{trace_id}") is None  # no trace id kept
