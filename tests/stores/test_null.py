"""``none``: the store of agents that only export their spans."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

import decisiontrace as dt
from decisiontrace.stores import NullStore, open_store


def test_none_names_the_store_that_keeps_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store("none"), NullStore)
    monkeypatch.setenv("DECISIONTRACE_STORE", "none")
    store = open_store()
    assert isinstance(store, NullStore)
    processor = dt.RunRecordProcessor(handle_sigterm=False)
    assert isinstance(processor.store, NullStore)
    written: list[object] = []
    processor.add_listener(written.extend)  # runs are still assembled (metrics)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracker = dt.DecisionTracker("s", tracer_provider=provider)
    with tracker.run("g") as run:
        tracker.quick_decision(intent="i", action="a", reasoning="r")
    provider.shutdown()
    assert [record["id"] for record in written] == [run.run_id]  # type: ignore[index]
    assert processor.store.load_run(run.run_id) is None
    assert processor.store.list_runs() == []
