"""Secrets never reach spans or stores: default patterns, user patterns, callback."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

import decisiontrace as dt
from decisiontrace.spanmodel import _redact
from decisiontrace.spanmodel._redact import REDACTED, configure_redaction
from tests.conftest import Pipeline


@pytest.fixture(autouse=True)
def _default_rules() -> Iterator[None]:
    configure_redaction()
    yield
    configure_redaction()


SECRETS = [
    "hunter2-password",
    "sk-abcdefghijklmnopqrstuvwx",
    "AKIAABCDEFGHIJKLMNOP",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "s3ss10n-c00kie",
]


def record_secret_run(tracker: dt.DecisionTracker) -> str:
    with tracker.run(
        "g", input_data={"user": "ann", "password": SECRETS[0], "note": f"key {SECRETS[1]}"}
    ) as run:
        decision_id = tracker.decide(
            intent="call api",
            options=[
                {
                    "id": "a",
                    "action_params": {
                        "headers": {"Authorization": "Bearer abcdefghijklmnop", "Accept": "json"},
                        "aws": SECRETS[2],
                        "nested": json.dumps({"api_key": "inner-secret", "q": "ok"}),
                    },
                }
            ],
            chosen="a",
            reasoning=f"use token={SECRETS[3]}",
            context={"cookies": {"sid": SECRETS[5]}, "topic": "billing"},
        )
        tracker.report_problem(
            severity="warning",
            description=f"leaked {SECRETS[4]}",
            root_cause="password=swordfish in logs",
        )
        tracker.record_outcome(
            decision_id=decision_id,
            success=False,
            result={"session_id": "abc", "body": f"jwt {SECRETS[3]}", "items": [1, 2]},
            error=f"401 for {SECRETS[1]}",
        )
    return run.run_id


def test_secrets_are_redacted_in_spans_and_store(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    run_id = record_secret_run(tracker)
    pipeline.flush()
    stored = pipeline.store.load_run(run_id)
    assert stored is not None
    exported = json.dumps(
        [dict(s.attributes or {}) for s in pipeline.spans()]
        + [dict(e.attributes or {}) for s in pipeline.spans() for e in s.events]
    )
    for text in (exported, stored.model_dump_json()):
        for secret in [*SECRETS, "swordfish", "inner-secret", "abcdefghijklmnop"]:
            assert secret not in text, secret
    # and what is not secret survives, in place
    assert stored.input_data == {"user": "ann", "password": REDACTED, "note": f"key {REDACTED}"}
    params = stored.decisions[0].options[0].action_params
    assert params["headers"] == {"Authorization": REDACTED, "Accept": "json"}
    assert params["aws"] == REDACTED
    assert json.loads(params["nested"]) == {"api_key": REDACTED, "q": "ok"}
    assert stored.decisions[0].input_context == {"cookies": REDACTED, "topic": "billing"}
    assert stored.decisions[0].reasoning == f"use {REDACTED}"
    outcome = stored.decisions[0].outcome
    assert outcome is not None
    assert outcome.result == {"session_id": REDACTED, "body": f"jwt {REDACTED}", "items": [1, 2]}
    assert outcome.error == f"401 for {REDACTED}"
    assert stored.problems[0].description == f"leaked {REDACTED}"
    assert stored.problems[0].root_cause == f"{REDACTED} in logs"


def test_user_patterns_and_callback(pipeline: Pipeline) -> None:
    seen: list[str] = []

    def callback(path: str, text: str) -> str:
        seen.append(path)
        return text.replace("ACME-", "<customer>-")

    configure_redaction(
        extra_key_patterns=[r"^ssn$"], extra_value_patterns=[r"\b\d{4}-\d{4}\b"], callback=callback
    )
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("g", input_data={"ssn": 123, "card": "pay 1234-5678", "who": "ACME-7"}) as run:
        pass
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert stored.input_data == {"ssn": REDACTED, "card": f"pay {REDACTED}", "who": "<customer>-7"}
    assert {"card", "who"} <= set(seen)


def test_a_failing_redaction_drops_the_value(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(path: str, text: str) -> str:
        raise RuntimeError("redactor bug")

    configure_redaction(callback=broken)
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("g", input_data={"password": "x", "plain": "visible?"}) as run:
        pass
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert stored.input_data == {"_decisiontrace_redacted": "redaction failed; value dropped"}
    assert "visible?" not in json.dumps([dict(s.attributes or {}) for s in pipeline.spans()])
    assert caplog.text.count("redaction failed") == 1


def test_redaction_can_be_turned_off(pipeline: Pipeline) -> None:
    configure_redaction(enabled=False)
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    with tracker.run("g", input_data={"password": "x"}) as run:
        pass
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None and stored.input_data == {"password": "x"}


def test_bad_rules_raise_value_error() -> None:
    with pytest.raises(ValueError, match="invalid redaction pattern"):
        configure_redaction(extra_value_patterns=["("])
    with pytest.raises(ValueError, match="callback must be callable"):
        configure_redaction(callback="nope")  # type: ignore[arg-type]


def test_plain_values_pass_untouched_and_cheaply() -> None:
    text = json.dumps({"query": "how do I reset my account", "n": 3, "tags": ["a"]})
    assert _redact.redact_json(text) is text


def test_texts_remembered_as_clean_never_hide_a_later_secret() -> None:
    clean = json.dumps({"query": "status of order 42"})
    assert _redact.redact_json(clean) is clean
    assert _redact.redact_json(clean) is clean  # now from the clean cache
    leaky = json.dumps({"query": "status of order 42", "token": "t0p"})
    assert json.loads(_redact.redact_json(leaky)) == {
        "query": "status of order 42",
        "token": REDACTED,
    }
    assert _redact.redact_text("plain words") == "plain words"
    assert _redact.redact_text("plain words") == "plain words"
    assert _redact.redact_text("use Bearer abcdefghijkl now") == f"use {REDACTED} now"


def test_options_prepared_at_decoration_follow_later_redaction_rules(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)

    @dt.decision(
        "look up", options=[{"id": "a", "action_params": {"q": "ACME-1"}}], tracker=tracker
    )
    def look_up() -> str:
        return "a"

    with tracker.run("g") as before:
        look_up()
    configure_redaction(extra_value_patterns=[r"ACME-\d"])
    with tracker.run("g") as after:
        look_up()
    pipeline.flush()
    first, second = (pipeline.store.load_run(r.run_id) for r in (before, after))
    assert first is not None and second is not None
    assert first.decisions[0].options[0].action_params == {"q": "ACME-1"}
    assert second.decisions[0].options[0].action_params == {"q": REDACTED}
    assert second.decisions[0].chosen_option_id == "a"


def test_compound_secret_keys_are_redacted(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    values = {"db_password": "plain-1", "openai_api_key": "plain-2", "userPassword": "plain-3"}
    with tracker.run("g", input_data={**values, "user": "ann"}) as run:
        decision_id = tracker.decide(
            intent="i", options=[], chosen="", reasoning="", context={"nested": values}
        )
        tracker.record_outcome(decision_id=decision_id, success=True)
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    hidden = dict.fromkeys(values, REDACTED)
    assert stored.input_data == {**hidden, "user": "ann"}
    assert stored.decisions[0].input_context == {"nested": hidden}
    spans = json.dumps([dict(s.attributes or {}) for s in pipeline.spans()])
    assert not any(value in spans for value in values.values())
