"""The HTML report: its sections, parsed; offline by construction; and seen by Chromium."""

from __future__ import annotations

import importlib.util
import struct
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from decisiontrace.cli.app import main
from decisiontrace.cli.report import render_report
from decisiontrace.cli.stats import compute_stats
from decisiontrace.models import Decision, Outcome, Problem, Run, RunStatus
from tests.cli import DEMO_TICKETS, DemoStore, fill_demo_store

CHECK_SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "check_report.py"
CHROMIUM = Path("/usr/bin/chromium")


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


def test_the_runs_table_has_one_row_per_run(html: str, demo: DemoStore) -> None:
    start = html.index('<section id="runs">')
    section = parse(html[start : html.index("</section>", start)])
    rows = [
        attrs for name, attrs, parents in section.elements if name == "tr" and "tbody" in parents
    ]
    assert len(rows) == len(demo.runs) == DEMO_TICKETS
    links = [a["href"] for a in section.find("a")]
    assert links == [f"#run-{index}" for index in range(len(demo.runs))]
    assert [t for t in section.text if t.startswith("run_")] == [run.id for run in demo.runs]


def test_one_timeline_per_run_with_a_bar_per_decision(html: str, demo: DemoStore) -> None:
    page = parse(html)
    timelines = page.find("svg", **{"class": "timeline-chart"})
    assert len(timelines) == len(demo.runs)
    for index, run in enumerate(demo.runs):  # newest first, as the runs table links them
        assert f'<div class="timeline" id="run-{index}"><h3>{run.id} <span' in html
    bars = page.find("rect", **{"class": "decision-bar"})
    decisions = [d for run in demo.runs for d in run.decisions]
    assert len(bars) == len(decisions)
    expected = [
        "no outcome" if d.outcome is None else ("success" if d.outcome.success else "failed")
        for d in decisions
    ]
    assert [bar["data-outcome"] for bar in bars] == expected
    assert "failed" in expected  # colour by outcome is exercised
    markers = page.find("path", **{"class": "problem-marker"})
    assert len(markers) == sum(len(run.problems) for run in demo.runs) > 0


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
    assert not page.find("script") and not page.find("link") and not page.find("img")
    assert not page.find("iframe") and not page.find("object")
    for _, attrs, _ in page.elements:
        assert "src" not in attrs
        href = attrs.get("href")
        assert href is None or href.startswith("#")
    lowered = html.lower()
    for needle in ("url(", "@import", "@font-face", "http://", "https://", "//cdn"):
        assert needle not in lowered, needle


def test_text_from_runs_is_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    run = Run(
        id="run_x",
        goal_id=hostile,
        status=RunStatus.FAILED,
        started_at=datetime(2026, 5, 10, 12, 0, 0),
        completed_at=datetime(2026, 5, 10, 12, 0, 2),
        decisions=[
            Decision(
                id="dec_0",
                node_id=hostile,
                intent='a "quoted" <intent>',
                outcome=Outcome(success=False, error=hostile,
                                timestamp=datetime(2026, 5, 10, 12, 0, 1)),
                timestamp=datetime(2026, 5, 10, 12, 0, 0, 500_000),
            )
        ],
        problems=[Problem(id="prob_0", severity="critical", description=hostile,
                          timestamp=datetime(2026, 5, 10, 12, 0, 1))],
    )  # fmt: skip
    html = render_report(
        [run], compute_stats([run]), store_url=hostile, generated_at=datetime(2026, 5, 10)
    )
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    page = parse(html)
    bar = page.find("rect", **{"class": "decision-bar"})[0]
    # 0.5 s into a 2 s run, ending at 1 s: a quarter of the way, a quarter wide.
    assert float(bar["width"]) == pytest.approx(640 / 4, abs=0.2)
    assert float(bar["x"]) == pytest.approx(330 + 640 / 4, abs=0.2)


def _load_check_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_report", CHECK_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")
def test_chromium_renders_the_report(tmp_path: Path) -> None:
    check = _load_check_script()
    png = tmp_path / "report.png"
    check.screenshot(check.build_report(tmp_path), png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 2000)
    assert len(data) > 50_000  # a rendered page, not a blank one
