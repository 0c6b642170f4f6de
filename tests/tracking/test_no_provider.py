"""One warning per process, naming dt.configure(), when nothing can record."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.util._once import Once

import decisiontrace as dt
from decisiontrace.tracking import _no_provider


@pytest.fixture(autouse=True)
def no_global_provider() -> Iterator[None]:
    """The API's proxy provider, as in a program that never set one up."""
    saved = (trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER)
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    _no_provider.reset()
    yield
    trace._TRACER_PROVIDER_SET_ONCE, trace._TRACER_PROVIDER = saved
    _no_provider.reset()


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "dt.configure()" in r.getMessage()
    ]


def test_a_tracker_without_sdk_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    tracker = dt.DecisionTracker("nowhere")
    for _ in range(3):
        with tracker.run("goal", "g"):
            tracker.decide(intent="i", options=[{"id": "a"}], chosen="a", reasoning="r")
    other = dt.DecisionTracker("elsewhere")
    with other.run("goal", "g"):
        pass
    [message] = warnings_in(caplog)
    assert "no OpenTelemetry SDK TracerProvider" in message


def test_a_decorated_function_without_sdk_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    @dt.decision("pick", options=["a", "b"])
    def pick() -> str:
        return "a"

    @dt.agent()
    def handle() -> str:
        return pick()

    assert pick() == "a"  # outside a run
    assert handle() == "a"  # a run of its own, on the default tracker
    assert handle() == "a"
    assert len(warnings_in(caplog)) == 1


def test_no_warning_with_an_sdk_provider(caplog: pytest.LogCaptureFixture) -> None:
    provider = TracerProvider()
    tracker = dt.DecisionTracker("recorded", tracer_provider=provider)
    with tracker.run("goal", "g"):
        pass

    @dt.decision("pick", options=["a"])
    def pick() -> str:
        return "a"

    trace.set_tracer_provider(provider)
    pick()
    assert warnings_in(caplog) == []
    provider.shutdown()
