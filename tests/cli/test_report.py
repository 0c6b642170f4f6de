"""The HTML report as markup and embedded data: its runs, decisions, safety and links.

What Chromium makes of it (scripts, filters, widths) is in ``test_report_browser.py``.
"""

from __future__ import annotations

import json
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from decisiontrace.cli.app import main
from decisiontrace.cli.report import render_report
from decisiontrace.cli.report._payload import embed_json
from decisiontrace.cli.stats import compute_stats
from decisiontrace.evaluation.judgement import build, stored_form
from decisiontrace.models import (
    Decision,
    DecisionEvaluation,
    Option,
    Outcome,
    Problem,
    Run,
    RunStatus,
)
from decisiontrace.stores import open_store
from tests.cli import DEMO_TICKETS, DemoStore, fill_demo_store


class Page(HTMLParser):
    """Every element as (tag, attributes, parents' tags), and text per element id."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, tuple(self.stack)))
        if tag not in ("meta", "rect", "line", "path", "br", "input"):
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, tuple(self.stack)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str, **attributes: str) -> list[dict[str, str]]:
        return [
            attrs
            for name, attrs, _ in self.elements
            if name == tag
            and all(attrs.get(k.replace("_", "-")) == v for k, v in attributes.items())
        ]

    def inside(self, tag: str, parent: str) -> list[dict[str, str]]:
        return [
            attrs for name, attrs, parents in self.elements if name == tag and parent in parents
        ]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    return page


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return fill_demo_store(tmp_path_factory.mktemp("report-demo"))


@pytest.fixture(scope="module")
def html(demo: DemoStore, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(main, ["--store", demo.url, "report", "--html", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote a report of {DEMO_TICKETS} runs to {path}\n"
    return path.read_text(encoding="utf-8")


def page_data(html: str) -> list[dict[str, Any]]:
    """The decision details the page embeds for its script, parsed as the script does."""
    start = html.index('<script type="application/json" id="dt-data">') + len(
        '<script type="application/json" id="dt-data">'
    )
    data: list[dict[str, Any]] = json.loads(html[start : html.index("</script>", start)])
    return data


def test_one_collapsed_run_per_record_with_its_filter_keys(html: str, demo: DemoStore) -> None:
    page = parse(html)
    items = page.find("details", **{"class": "run"})
    assert len(items) == len(demo.runs) == DEMO_TICKETS
    for index, (item, run) in enumerate(zip(items, demo.runs, strict=True)):
        assert "open" not in item  # collapsed by default
        assert item["id"] == f"run-{index}" and item["data-i"] == str(index)
        assert item["data-status"] == run.status.value
        assert item["data-goal"] == run.goal_id
        assert item["data-nodes"].split("\n") == list(
            dict.fromkeys(d.node_id for d in run.decisions)
        )
        assert item["data-tokens"] == str(run.metrics.total_tokens)
        assert item["data-decisions"] == str(len(run.decisions))
        assert item["data-problems"] == str(len(run.problems))
        assert item["data-start"] == str(int(run.started_at.timestamp() * 1000))
    text = "".join(page.text)
    for run in demo.runs:
        assert run.id in text


def test_every_decision_is_in_the_page_data(html: str, demo: DemoStore) -> None:
    data = page_data(html)
    assert len(data) == len(demo.runs)
    for run, shown in zip(demo.runs, data, strict=True):
        assert [d["id"] for d in shown["d"]] == [d.id for d in run.decisions]
        for decision, entry in zip(run.decisions, shown["d"], strict=True):
            assert entry["node"] == decision.node_id
            assert entry["intent"] == decision.intent
            assert entry["chosen"] == decision.chosen_option_id
            assert entry["why"] == decision.reasoning
            assert entry["type"] == decision.decision_type.value
            assert [o[0] for o in entry["opts"]] == [o.id for o in decision.options]
            assert [o[2] for o in entry["opts"]] == [o.confidence for o in decision.options]
            assert [o[3] for o in entry["opts"]] == [o.pros for o in decision.options]
            assert [o[4] for o in entry["opts"]] == [o.cons for o in decision.options]
            if decision.outcome is None:
                assert "out" not in entry
            else:
                assert entry["out"]["ok"] is decision.outcome.success
                assert entry["out"]["tok"] == decision.outcome.tokens_used
                assert entry["out"]["ms"] == decision.outcome.latency_ms
        assert [p[1] for p in shown["p"]] == [p.description for p in run.problems]
    assert any(not e["out"]["ok"] for run in data for e in run["d"] if "out" in e)


def test_the_toolbar_offers_every_goal_node_and_status(html: str, demo: DemoStore) -> None:
    page = parse(html)
    for select, wanted in (
        ("f-goal", {run.goal_id for run in demo.runs}),
        ("f-node", {d.node_id for run in demo.runs for d in run.decisions}),
        ("f-status", {status.value for status in RunStatus}),
    ):
        values = {
            attrs["value"]
            for name, attrs, parents in page.elements
            if name == "option" and attrs.get("value") and any(p == "select" for p in parents)
        }
        assert wanted <= values, select
    assert page.find("input", id="q", type="search")
    assert page.find("select", id="sort")


def test_the_stats_section_has_its_charts_and_tables(html: str, demo: DemoStore) -> None:
    page = parse(html)
    assert page.find("section", id="stats")
    charts = {svg["data-chart"] for svg in page.find("svg", **{"class": "chart"})}
    assert charts == {"node-success", "type-success", "calibration"}
    stats = compute_stats(demo.runs)
    buckets = [b for b in stats["calibration"]["buckets"] if b["decisions"]]
    assert len(page.find("rect", **{"class": "calibration-bar"})) == len(buckets)
    text = "".join(page.text)
    for group in stats["by_node"]:
        assert group["node_id"] in text
    assert "expected calibration error" in text


def test_the_page_opens_offline(html: str) -> None:
    page = parse(html)
    assert not page.find("link") and not page.find("img")
    assert not page.find("iframe") and not page.find("object")
    scripts = page.find("script")
    assert len(scripts) == 2 and all("src" not in attrs for attrs in scripts)
    for _, attrs, _ in page.elements:
        assert "src" not in attrs
        href = attrs.get("href")
        assert href is None or href.startswith("#")
    lowered = html.lower()
    for needle in ("url(", "@import", "@font-face", "http://", "https://", "//cdn", "innerhtml"):
        assert needle not in lowered, needle


NOW = datetime(2026, 5, 10)
HOSTILE = (
    "</script><script>document.title='PWNED'</script><!-- <img src=x onerror=alert(1)> "
    "& \u2028\u2029 ]]> ' \""
)


def hostile_run(trace_id: str | None = None) -> Run:
    extra: dict[str, Any] = {} if trace_id is None else {"trace_id": trace_id}
    return Run(
        id="run_x",
        goal_id=HOSTILE,
        status=RunStatus.FAILED,
        started_at=datetime(2026, 5, 10, 12, 0, 0),
        completed_at=datetime(2026, 5, 10, 12, 0, 2),
        narrative=HOSTILE,
        input_data={HOSTILE: HOSTILE},
        decisions=[
            Decision(
                id="dec_0",
                node_id=HOSTILE,
                intent=HOSTILE,
                reasoning=HOSTILE,
                chosen_option_id=HOSTILE,
                options=[
                    Option(id=HOSTILE, description=HOSTILE, action_type="x", pros=[HOSTILE],
                           cons=[HOSTILE], confidence=0.7),
                    Option(id="plain", description="no confidence given", action_type="x",
                           confidence_defaulted=True),
                ],
                outcome=Outcome(success=False, error=HOSTILE, result={"text": HOSTILE},
                                timestamp=datetime(2026, 5, 10, 12, 0, 1)),
                timestamp=datetime(2026, 5, 10, 12, 0, 0, 500_000),
                evaluations=[{"evaluator": HOSTILE, "score": 0.25, "label": "bad",
                              "explanation": HOSTILE}],
            )
        ],
        problems=[Problem(id="prob_0", severity="critical", description=HOSTILE,
                          timestamp=datetime(2026, 5, 10, 12, 0, 1))],
        **extra,
    )  # fmt: skip


def test_agent_text_stays_text_in_markup_and_in_the_embedded_data() -> None:
    run = hostile_run()
    html = render_report([run], compute_stats([run]), store_url=HOSTILE,
                         generated_at=datetime(2026, 5, 10))  # fmt: skip
    # Exactly the page's own two scripts; no agent string opened or closed one.
    assert html.count("<script") == 2 and html.count("</script>") == 2
    assert "<!--" not in html and "<img" not in html
    data_start = html.index('id="dt-data">')
    data_text = html[data_start + len('id="dt-data">') : html.index("</script>", data_start)]
    assert not set(data_text) & set("<>&\u2028\u2029")
    data = page_data(html)
    decision = data[0]["d"][0]
    # JSON.parse gives back the agent's exact strings.
    assert decision["why"] == decision["intent"] == decision["node"] == HOSTILE
    assert decision["opts"][0][:2] == [HOSTILE, HOSTILE] and decision["opts"][0][3] == [HOSTILE]
    assert decision["opts"][1][2] is None  # defaulted confidence is not a number to show
    assert decision["ev"] == [[HOSTILE, 0.25, "bad", HOSTILE]]
    assert data[0]["p"][0][1] == HOSTILE
    page = parse(html)
    assert "".join(page.text).count(HOSTILE) >= 2  # goal in the summary, store in the header


def test_embed_json_round_trips_every_string() -> None:
    for value in (HOSTILE, "</SCRIPT >", "<!--<script>", "a\u2028b\u2029c", "&amp;", "\\u003c"):
        text = embed_json({"v": value})
        assert not set(text) & set("<>&\u2028\u2029")
        assert json.loads(text) == {"v": value}


def test_a_run_with_a_trace_id_links_to_its_trace() -> None:
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    run = hostile_run(trace_id)
    decision_extra = run.decisions[0].__pydantic_extra__
    assert decision_extra is not None
    decision_extra["span_id"] = span_id

    def entry_for(template: str | None) -> dict[str, Any]:
        html = render_report([run], compute_stats([run]), store_url="x", generated_at=NOW,
                             trace_url_template=template)  # fmt: skip
        return page_data(html)[0]

    entry = entry_for("http://localhost:16686/trace/{trace_id}")
    assert entry["trace"] == trace_id
    assert entry["url"] == f"http://localhost:16686/trace/{trace_id}"
    assert entry["d"][0]["span"] == span_id and "url" not in entry["d"][0]
    entry = entry_for("https://grafana/explore?trace={trace_id}&span={span_id}")
    assert entry["d"][0]["url"] == f"https://grafana/explore?trace={trace_id}&span={span_id}"
    # A template of another scheme is shown as the id only, never followed.
    entry = entry_for("javascript:alert('{trace_id}{span_id}')")
    assert entry["trace"] == trace_id and "url" not in entry and "url" not in entry["d"][0]
    assert "url" not in entry_for(None)
    # A malformed trace id is not shown at all.
    bad = hostile_run("not-a-trace-id")
    html = render_report([bad], compute_stats([bad]), store_url="x", generated_at=NOW,
                         trace_url_template="http://x/{trace_id}")  # fmt: skip
    assert "trace" not in page_data(html)[0]


def test_the_report_command_reads_the_link_template(
    tmp_path: Path, demo: DemoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "report.html"
    monkeypatch.setenv("DECISIONTRACE_TRACE_URL", "http://localhost:16686/trace/{trace_id}")
    result = CliRunner().invoke(main, ["--store", demo.url, "report", "--html", str(page)])
    assert result.exit_code == 0, result.output
    data = page_data(page.read_text(encoding="utf-8"))
    with_ids = [(run, entry) for run, entry in zip(demo.runs, data, strict=True)
                if (run.model_extra or {}).get("trace_id")]  # fmt: skip
    assert with_ids, "the demo's records keep their trace ids"
    for run, entry in with_ids:
        trace_id = (run.model_extra or {})["trace_id"]
        assert entry["url"] == f"http://localhost:16686/trace/{trace_id}"


def test_the_original_single_evaluation_shows_when_no_evaluator_judged() -> None:
    run = hostile_run()
    decision = run.decisions[0]
    del decision.__pydantic_extra__["evaluations"]  # type: ignore[index]
    decision.evaluation = DecisionEvaluation(
        goal_aligned=False, better_option_existed=True, better_option_id="plain",
        outcome_quality=0.3, explanation="plain was cheaper",
    )  # fmt: skip
    html = render_report([run], compute_stats([run]), store_url="x", generated_at=NOW)
    assert page_data(html)[0]["d"][0]["ev"] == [
        ["evaluation", 0.3, "not goal aligned; better option: plain", "plain was cheaper"]
    ]


def test_judgements_stored_by_evaluators_show_in_the_report(tmp_path: Path) -> None:
    demo = fill_demo_store(tmp_path)
    run = demo.runs[0]
    decision_id = run.decisions[0].id
    judgement = build("llm-judge", None, 0.75, "good", "picked the right category")
    with open_store(demo.url) as store:
        assert store.update_evaluations(run.id, [(decision_id, stored_form(judgement))]) == []
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["--store", demo.url, "report", "--html", str(page)])
    assert result.exit_code == 0, result.output
    entry = page_data(page.read_text(encoding="utf-8"))[0]["d"][0]
    assert entry["ev"] == [["llm-judge", 0.75, "good", "picked the right category"]]


def test_paused_runs_resumes_and_other_services_are_shown() -> None:
    run = hostile_run()
    extra = run.__pydantic_extra__
    assert extra is not None
    extra.update(paused=True, thread_id="thread-7", resumed_from="run_earlier")
    paused = Decision(id="dec_1", node_id="approve", intent="Wait for a person",
                      paused=True, service="approvals")  # fmt: skip
    run.decisions.append(paused)
    html = render_report([run], compute_stats([run]), store_url="x", generated_at=NOW)
    entry = page_data(html)[0]
    assert entry["paused"] is True
    assert (entry["thread"], entry["resumed"]) == ("thread-7", "run_earlier")
    assert entry["d"][1]["paused"] is True and entry["d"][1]["svc"] == "approvals"
    assert "paused" not in entry["d"][0]  # it has an outcome
    summary = html[html.index('<details class="run"') : html.index("</summary>")]
    assert '<span class="badge status-running">paused</span>' in summary


def test_options_given_without_confidence_show_no_number(tmp_path: Path) -> None:
    # The real path: options as plain strings, recorded by the tracker, stored by the
    # processor, read back and rendered.
    from opentelemetry.sdk.trace import TracerProvider

    import decisiontrace as dt

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    provider = TracerProvider()
    provider.add_span_processor(dt.RunRecordProcessor(open_store(url)))
    tracker = dt.DecisionTracker("plain-options", tracer_provider=provider)
    with tracker.run("g", "plain options"):
        tracker.set_node("router")
        decision_id = tracker.decide(
            intent="Route", options=["left", "right"], chosen="left", reasoning="shorter"
        )
        tracker.record_outcome(decision_id=decision_id, success=True)
    provider.shutdown()
    page = tmp_path / "report.html"
    result = CliRunner().invoke(main, ["--store", url, "report", "--html", str(page)])
    assert result.exit_code == 0, result.output
    options = page_data(page.read_text(encoding="utf-8"))[0]["d"][0]["opts"]
    assert [(o[0], o[2]) for o in options] == [("left", None), ("right", None)]
