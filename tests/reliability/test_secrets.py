"""Secrets handed to the recording API and the decorators never reach spans or stores.

End to end: decorated agent code with secrets in the run input, decision context,
option parameters, reasoning, results, errors and problem text (as keys, as values, and
inside JSON strings); spans exported as OTLP JSON lines, runs stored in SQLite, the
live view, and runs rebuilt from the OTLP JSON. Then user patterns, a callback, and a
callback that fails: the value is dropped, never sent in clear.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

import decisiontrace as dt
from decisiontrace.export._otlp_json import OTLPJSONLinesExporter
from decisiontrace.spanmodel._redact import DROPPED, REDACTED, configure_redaction
from decisiontrace.stores import SQLiteStore

from ._support import UrandomIdGenerator, rows

PASSWORD = "hunter2-correct-horse"
OPENAI_KEY = "sk-proj-abcdefghijklmnop0123456789"
BEARER = "Bearer eyJraWQiOiJrMSJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLXZhbHVl"
GITHUB = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"
AWS = "AKIAABCDEFGHIJKLMNOP"
COOKIE = "sessionid=9f8e7d6c5b4a"
CLIENT_SECRET = "cs-very-secret-value-42"
DEFAULT_SECRETS = [
    PASSWORD,
    OPENAI_KEY,
    BEARER.split()[1],
    GITHUB,
    AWS,
    "9f8e7d6c5b4a",
    CLIENT_SECRET,
]
# Only the user's own rules know these are secret.
EMPLOYEE_ID = "ACME-204863"
SSN = "078-05-1120"
EMAIL = "ann.smith@example.com"


@pytest.fixture(autouse=True)
def _default_rules() -> Iterator[None]:
    configure_redaction()
    yield
    configure_redaction()


class Sinks:
    """Everywhere a secret could end up."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "runs.db"
        self.otlp = tmp_path / "traces.jsonl"
        self.store = SQLiteStore(self.db)
        self.processor = dt.RunRecordProcessor(self.store, flush_interval=0.02)
        self.provider = TracerProvider(id_generator=UrandomIdGenerator())
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(OTLPJSONLinesExporter(self.otlp)))
        self.tracker = dt.DecisionTracker("secrets", tracer_provider=self.provider)
        self.live: list[str] = []

    def texts(self, tmp_path: Path) -> dict[str, str]:
        """The text of every sink, after the pipeline has shut down."""
        self.provider.shutdown()
        stored = [
            zlib.decompress(record).decode() if isinstance(record, bytes) else str(record)
            for (record,) in rows(self.db, "SELECT record FROM runs")
        ]
        summaries = [str(summary) for (summary,) in rows(self.db, "SELECT summary FROM runs")]
        rebuilt = SQLiteStore(tmp_path / "rebuilt.db")
        result = dt.rebuild(self.otlp, rebuilt)
        assert result.errors == [] and result.runs_written == 1
        rebuilt_runs = [
            rebuilt.load_run(summary.run_id).model_dump_json()  # type: ignore[union-attr]
            for summary in rebuilt.list_runs()
        ]
        return {
            "otlp json": self.otlp.read_text(),
            "sqlite rows": "\n".join(stored + summaries),
            "sqlite file": self.db.read_bytes().decode("latin-1"),
            "loaded runs": "\n".join(
                self.store.load_run(s.run_id).model_dump_json()  # type: ignore[union-attr]
                for s in self.store.list_runs()
            ),
            "live view": "\n".join(self.live),
            "rebuilt from otlp": "\n".join(rebuilt_runs),
        }


def run_agent(sinks: Sinks, extra: dict[str, Any] | None = None) -> None:
    tracker = sinks.tracker

    @dt.decision(
        "call the billing api",
        options=lambda account: [
            {
                "id": "api",
                "description": "call the API",
                "action_params": {
                    "headers": {"Authorization": BEARER, "Cookie": COOKIE},
                    "api_key": OPENAI_KEY,
                    "body": json.dumps({"client_secret": CLIENT_SECRET, "account": account}),
                },
            },
            {"id": "skip", "description": f"skip, key {GITHUB} is expired"},
        ],
        chosen=lambda result: "api",
        reasoning=lambda result: f"login with password={PASSWORD} worked",
    )
    def call_api(account: str) -> dict[str, Any]:
        return {"status": "ok", "token": GITHUB, "echo": f"used {OPENAI_KEY}", **(extra or {})}

    @dt.decision("retry", options=["again"])
    def retry() -> None:
        raise PermissionError(f"rejected credentials {AWS} for {EMAIL}")

    with tracker.run(
        "billing", input_data={"user": "ann", "password": PASSWORD, "note": extra or {}}
    ) as scope:
        call_api("acct-1")
        with pytest.raises(PermissionError):
            retry()
        decision_id = tracker.decide(
            intent="escalate",
            options=[{"id": "human"}],
            chosen="human",
            reasoning=f"{EMPLOYEE_ID} asked, ssn {SSN}",
            context={"cookies": {"sid": COOKIE}, "ssn": SSN, "contact": EMAIL},
        )
        tracker.record_outcome(
            decision_id=decision_id,
            success=False,
            error=f"upstream said: token={GITHUB}",
            summary=f"escalated for {EMPLOYEE_ID}",
        )
        tracker.report_problem(
            severity="critical",
            description=f"secret in logs: {AWS} / {BEARER}",
            root_cause=f"password={PASSWORD} printed",
        )
        view = scope.get_run()
        assert view is not None
        sinks.live.append(view.model_dump_json())


def leaks(texts: dict[str, str], secrets: list[str]) -> list[tuple[str, str]]:
    return [(sink, secret) for sink, text in texts.items() for secret in secrets if secret in text]


def test_default_patterns_keep_secrets_out_of_spans_stores_and_the_live_view(
    tmp_path: Path,
) -> None:
    sinks = Sinks(tmp_path)
    run_agent(sinks)
    texts = sinks.texts(tmp_path)
    assert leaks(texts, DEFAULT_SECRETS) == []
    assert REDACTED in texts["otlp json"] and REDACTED in texts["loaded runs"]
    # Not secret, so kept: redaction is targeted, not a blanket wipe.
    assert "acct-1" in texts["loaded runs"] and "call the API" in texts["otlp json"]
    # Without the user's rules these are just text.
    assert EMPLOYEE_ID in texts["loaded runs"]


def test_user_patterns_and_callback_are_applied_everywhere(tmp_path: Path) -> None:
    seen_paths: list[str] = []

    def mask_emails(path: str, text: str) -> str:
        seen_paths.append(path)
        return text.replace(EMAIL, "<email>")

    configure_redaction(
        extra_key_patterns=[r"ssn"],
        extra_value_patterns=[r"ACME-\d{6}", r"\b\d{3}-\d{2}-\d{4}\b"],
        callback=mask_emails,
    )
    sinks = Sinks(tmp_path)
    run_agent(sinks)
    texts = sinks.texts(tmp_path)
    assert leaks(texts, [*DEFAULT_SECRETS, EMPLOYEE_ID, SSN, EMAIL]) == []
    assert "<email>" in texts["loaded runs"]
    assert "contact" in seen_paths  # the callback sees where each string sits


def test_a_failing_redaction_drops_the_value_instead_of_sending_it(tmp_path: Path) -> None:
    def broken(path: str, text: str) -> str:
        if "marker-for-the-broken-callback" in text:
            raise RuntimeError("redaction bug")
        return text

    configure_redaction(callback=broken)
    sinks = Sinks(tmp_path)
    # The callback fails on this value (in the run input and in a result): the whole
    # value goes, including what no pattern would have caught.
    run_agent(sinks, extra={"x": "marker-for-the-broken-callback unique-value-7741"})
    texts = sinks.texts(tmp_path)
    assert leaks(texts, [*DEFAULT_SECRETS, "unique-value-7741"]) == []
    dropped = json.loads(DROPPED)
    assert dropped["_decisiontrace_redacted"] in texts["otlp json"]
    assert dropped["_decisiontrace_redacted"] in texts["loaded runs"]
