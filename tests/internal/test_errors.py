"""The error policy: internal errors logged once per kind and never raised into the
agent, except under the test suite (``DECISIONTRACE_RAISE_INTERNAL_ERRORS``)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import decisiontrace as dt
from decisiontrace._internal import errors as _errors
from decisiontrace._internal.errors import RAISE_ENV, Once, guard, internal_error, warn_once


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch) -> None:
    """Internal errors as in production: logged, not raised."""
    monkeypatch.delenv(RAISE_ENV)


def error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "decisiontrace" and r.levelno >= logging.ERROR]


def test_the_suite_runs_with_internal_errors_raised() -> None:
    # Set by tests/conftest.py, inherited by every subprocess a test starts.
    assert _errors.raising()
    code = (
        "from decisiontrace._internal import errors; raise SystemExit(0 if errors.raising() else 1)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.usefixtures("production")
def test_a_guard_logs_once_per_kind_with_the_traceback_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    once = Once()

    @guard("first kind", default="fallback", once=once)
    def broken(value: int) -> str:
        raise KeyError(value)

    assert [broken(1), broken(2), broken(3)] == ["fallback"] * 3
    for index in range(2):
        with guard("second kind", once=once):
            raise RuntimeError(f"bug {index}")
    errors = error_records(caplog)
    assert [r.getMessage().split(" failed")[0] for r in errors] == [
        "decisiontrace: first kind",
        "decisiontrace: second kind",
    ]
    assert all(r.exc_info is not None for r in errors)
    assert isinstance(errors[0].exc_info[1], KeyError)  # type: ignore[index]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 0 or all("failed again" in r.getMessage() for r in debug)


def test_a_guard_reraises_under_the_environment_variable() -> None:
    @guard("kind", default="fallback", once=Once())
    def broken() -> str:
        raise KeyError("bug")

    with pytest.raises(KeyError, match="bug"):
        broken()
    with pytest.raises(RuntimeError, match="bug"), guard("kind", once=Once()):
        raise RuntimeError("bug")


@pytest.mark.usefixtures("production")
def test_a_guard_never_raises_without_it_but_lets_cancellation_through() -> None:
    with guard("kind", once=Once()):
        raise ValueError("swallowed")
    with pytest.raises(KeyboardInterrupt), guard("kind", once=Once()):
        raise KeyboardInterrupt
    assert guard("kind", once=Once())(lambda: 1 // 0)() is None


@pytest.mark.parametrize("value", ["0", ""])
def test_zero_or_empty_means_not_raising(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(RAISE_ENV, value)
    with guard("kind", once=Once()):
        raise ValueError("swallowed")


@pytest.mark.usefixtures("production")
def test_internal_error_from_an_except_block(caplog: pytest.LogCaptureFixture) -> None:
    once = Once()
    for _ in range(3):
        try:
            {}["missing"]
        except KeyError as error:
            internal_error("lookup", error, once=once)
    assert len(error_records(caplog)) == 1


def test_warn_once_logs_each_key_once_and_again_after_forget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    once = Once()
    assert warn_once("k", "decisiontrace: %s happened", "x", once=once)
    assert not warn_once("k", "decisiontrace: %s happened", "y", once=once)
    once.forget("k")
    assert warn_once("k", "decisiontrace: %s happened", "z", once=once)
    assert [r.getMessage() for r in caplog.records] == [
        "decisiontrace: x happened",
        "decisiontrace: z happened",
    ]


def test_once_is_bounded() -> None:
    once = Once(limit=2)
    assert [once.first(k) for k in "aabbcc"] == [True, False, True, False, True, True]


@pytest.mark.usefixtures("production")
def test_a_tracker_bug_is_logged_once_and_the_agent_goes_on(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = dt.DecisionTracker("s")

    def broken(*args: object, **kwargs: object) -> str:
        raise AssertionError("a bug in open_decision")

    monkeypatch.setattr(tracker.emitter, "open_decision", broken)
    with tracker.run("g"):
        for _ in range(3):
            assert tracker.decide(intent="i", options=[], chosen="", reasoning="") == ""
    errors = error_records(caplog)
    assert [r.getMessage().split(" failed")[0] for r in errors] == ["decisiontrace: decide"]


def test_a_tracker_bug_fails_the_test_suite(monkeypatch: pytest.MonkeyPatch) -> None:
    tracker = dt.DecisionTracker("s")

    def broken(*args: object, **kwargs: object) -> str:
        raise AssertionError("a bug in open_decision")

    monkeypatch.setattr(tracker.emitter, "open_decision", broken)
    with tracker.run("g"), pytest.raises(AssertionError, match="a bug in open_decision"):
        tracker.decide(intent="i", options=[], chosen="", reasoning="")
