"""Shared fixtures: a real SDK pipeline per test, no writes outside tmp_path, and a
PostgreSQL schema per test (from ``DECISIONTRACE_TEST_POSTGRES_URL``, dropped after it)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from decisiontrace import RunRecordProcessor
from decisiontrace._internal import errors as _errors
from decisiontrace._internal.errors import RAISE_ENV
from decisiontrace.stores import MemoryStore
from decisiontrace.tracking._context import current_run

# A bug that a guard would log and swallow in production fails the test instead; the
# subprocesses tests start inherit it. Tests of the production behaviour unset it.
os.environ[RAISE_ENV] = "1"

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
def _fresh_log_once() -> None:
    """What one test logged once, the next logs again."""
    _errors.PROCESS.clear()


@pytest.fixture(autouse=True)
def _no_background_internal_errors() -> Iterator[None]:
    """A bug the writer thread's guards caught (they cannot raise into the test) fails the
    test that was running; errors of threads of an earlier test are not blamed on it."""
    _errors.take_background_errors()
    yield
    caught = _errors.take_background_errors()
    if caught:
        kind, error = caught[0]
        pytest.fail(
            f"{len(caught)} internal error(s) on a background thread, the first in {kind}: "
            f"{error!r}",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default store of every test lives in its tmp_path, never in $HOME."""
    monkeypatch.setenv("DECISIONTRACE_STORE", f"sqlite:///{tmp_path / 'default.db'}")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture(autouse=True)
def _no_current_run_across_tests() -> Iterator[None]:
    """Each test starts outside any run.

    ``start_run`` makes its run current without a reset (as the original does), and
    pytest runs every test in one context: a run a test leaves open would otherwise be
    the "current run" of the next test.
    """
    token = current_run.set(None)
    try:
        yield
    finally:
        current_run.reset(token)


POSTGRES_ENV = "DECISIONTRACE_TEST_POSTGRES_URL"


def postgres_base_url() -> str:
    """The test server's URL, or skip the test saying which variable is missing."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server to test against")
    return url


def with_parameters(url: str, **parameters: str) -> str:
    """``url`` with these query parameters added."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(parameters)) if q)
    return urlunsplit(parts._replace(query=query))


def drop_schema(base_url: str, schema: str) -> None:
    """Drop a PostgreSQL schema and everything in it."""
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a PostgreSQL schema of this test's own, dropped after it."""
    base = postgres_base_url()
    schema = f"dt_test_{os.getpid()}_{secrets.token_hex(4)}"
    yield with_parameters(base, schema=schema, application_name=schema)
    drop_schema(base, schema)


def make_pipeline(store: Any) -> Pipeline:
    """A provider feeding ``store`` through a run-record processor, and an exporter."""
    processor = RunRecordProcessor(store, flush_interval=0.05)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Pipeline(provider, exporter, processor, store)


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    made = make_pipeline(MemoryStore())
    yield made
    made.provider.shutdown()


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
