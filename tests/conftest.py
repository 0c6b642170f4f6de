"""Shared fixtures: a real SDK pipeline per test, and no writes outside tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from decisiontrace import RunRecordProcessor
from decisiontrace.stores import MemoryStore

#: The original framework's record format (see tests/reference/README.md).
REFERENCE = Path(__file__).resolve().parent / "reference"


@dataclass
class Pipeline:
    """A TracerProvider with an in-memory exporter and a run-record processor."""

    provider: TracerProvider
    exporter: InMemorySpanExporter
    processor: RunRecordProcessor
    store: MemoryStore

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def flush(self) -> None:
        assert self.processor.force_flush(10_000), "processor did not flush in time"


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default store of every test lives in its tmp_path, never in $HOME."""
    monkeypatch.setenv("DECISIONTRACE_STORE", f"sqlite:///{tmp_path / 'default.db'}")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    store = MemoryStore()
    processor = RunRecordProcessor(store, flush_interval=0.05)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Pipeline(provider, exporter, processor, store)
    provider.shutdown()


@pytest.fixture(scope="session")
def run_schema() -> dict[str, Any]:
    return json.loads((REFERENCE / "run.schema.json").read_text())


def span_dict(span: ReadableSpan) -> dict[str, Any]:
    """A span as a plain dict, for assertions."""
    return {
        "name": span.name,
        "trace_id": span.context.trace_id if span.context else None,
        "span_id": span.context.span_id if span.context else None,
        "parent_id": span.parent.span_id if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "events": [(e.name, dict(e.attributes or {})) for e in span.events],
        "start": span.start_time,
        "end": span.end_time,
    }
