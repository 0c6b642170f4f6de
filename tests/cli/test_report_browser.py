"""The HTML report in headless Chromium: hostile agent text never runs, the page works.

Chromium is Debian's ``chromium`` package; ``make install`` installs it. These tests try
``apt-get install -y chromium`` once more themselves and skip, saying so, only when that
cannot work here. Chromium runs with a fresh profile and no network services; the one
server it could reach is the recorder on 127.0.0.1 these tests start.
"""

from __future__ import annotations

import html as html_lib
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from decisiontrace.cli.report import render_report
from decisiontrace.cli.stats import compute_stats
from decisiontrace.models import Decision, Option, Outcome, Problem, Run, RunStatus
from tests.cli import DemoStore, fill_demo_store

CHECK_SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "check_report.py"
TITLE = "decisiontrace report"


def _load_check_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_report", CHECK_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load_check_script()


@pytest.fixture(scope="module")
def chromium() -> str:
    """The Chromium binary, installed with apt-get if it is missing and that can work."""
    found = check.find_chromium()
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900, check=False
        )
        found = check.find_chromium()
    if found is None:
        pytest.skip(
            "Chromium is not installed and `apt-get install -y chromium` could not install it "
            "(needs root and a reachable Debian archive)"
        )
    return str(found)


def dump_dom(chromium: str, page: Path, fragment: str = "", width: int = 1400) -> str:
    """The DOM after load and after the page's timers ran (virtual time), serialized."""
    url = page.resolve().as_uri() + fragment
    flags = ("--dump-dom", f"--window-size={width},1200", "--virtual-time-budget=3000")
    return str(check.chromium(url, *flags, binary=chromium))


class Elements(HTMLParser):
    """Every element of a serialized DOM as (tag, attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    @classmethod
    def of(cls, dom: str) -> list[tuple[str, dict[str, str]]]:
        parser = cls()
        parser.feed(dom)
        parser.close()
        return parser.found


# --- hostile text ------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Counts every request; the page must never make one."""

    requests: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.requests.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[int]:
    Recorder.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def payloads(port: int) -> list[str]:
    """Strings that would run script, change the page or fetch something if parsed as HTML."""
    mark = "document.title='PWNED';document.documentElement.setAttribute('data-pwned','1')"
    return [
        f"</script><script>{mark}</script>",
        f"<!--<script>{mark}</script>",
        f'<img src="http://127.0.0.1:{port}/img" onerror="{mark}">',
        f'<script src="http://127.0.0.1:{port}/script.js"></script>',
        f'<svg onload="{mark}"></svg><iframe src="http://127.0.0.1:{port}/frame"></iframe>',
        f"\u2028\u2029</SCRIPT ><style>@import url(http://127.0.0.1:{port}/css)</style>",
        f'"><a href="javascript:{mark}">x</a>',
    ]


def hostile_runs(port: int) -> list[Run]:
    texts = payloads(port)
    runs = []
    for index, text in enumerate(texts):
        other = texts[(index + 1) % len(texts)]
        runs.append(
            Run(
                id=f"run_{index}{text}",
                goal_id=text,
                goal_description=other,
                status=RunStatus.FAILED,
                started_at=datetime(2026, 5, 10, 12, 0, index),
                completed_at=datetime(2026, 5, 10, 12, 0, index + 2),
                narrative=text,
                input_data={text: other},
                output_data={"reply": text},
                decisions=[
                    Decision(
                        id="dec_0", node_id=text, intent=other, reasoning=text,
                        chosen_option_id=text, input_context={"q": other},
                        active_constraints=[text],
                        options=[
                            Option(id=text, description=other, action_type="x", pros=[text],
                                   cons=[other], confidence=0.6),
                            Option(id=other, description=text, action_type=text,
                                   confidence_defaulted=True),
                        ],
                        outcome=Outcome(success=False, error=text, summary=other,
                                        result={"text": text},
                                        timestamp=datetime(2026, 5, 10, 12, 0, index + 1)),
                        timestamp=datetime(2026, 5, 10, 12, 0, index),
                        evaluations=[{"evaluator": text, "score": 0.2, "label": other,
                                      "explanation": text}],
                        service=text,
                    )
                ],
                problems=[Problem(id="prob_0", severity=text, description=other,
                                  root_cause=text, suggested_fix=other,
                                  timestamp=datetime(2026, 5, 10, 12, 0, index + 1))],
                trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
                thread_id=text,
                resumed_from=other,
            )
        )  # fmt: skip
    return runs


def test_hostile_agent_text_never_runs_in_chromium(
    chromium: str, recorder: int, tmp_path: Path
) -> None:
    runs = hostile_runs(recorder)
    page = tmp_path / "report.html"
    page.write_text(
        render_report(
            runs, compute_stats(runs), store_url=payloads(recorder)[0], generated_at=datetime.now(),
            trace_url_template=f"javascript:{payloads(recorder)[0]}{{trace_id}}",
        ),
        encoding="utf-8",
    )  # fmt: skip
    # Open every run through the page's own button, as a reader would, so every string
    # is rendered by the script, then read the DOM back.
    harness = tmp_path / "opened.html"
    harness.write_text(
        page.read_text(encoding="utf-8").replace(
            "</body>",
            "<script>document.getElementById('open-shown').click();</script></body>",
        ),
        encoding="utf-8",
    )
    for target, fragment in ((page, "#open=run-0"), (harness, "")):
        dom = dump_dom(chromium, target, fragment)
        assert f"<title>{TITLE}</title>" in dom, "an agent string changed the title"
        assert 'data-pwned="1"' not in dom, "an agent string ran as script"
        assert re.search(r'<html[^>]* data-ready="\d+"', dom), "the page's script did not finish"
        elements = Elements.of(dom)
        tags = [tag for tag, _ in elements]
        assert not {"img", "iframe", "link", "object", "embed"} & set(tags)
        assert tags.count("style") == 1  # the page's stylesheet
        assert all("chart" in a.get("class", "") for tag, a in elements if tag == "svg")
        scripts = [attrs for tag, attrs in elements if tag == "script"]
        assert len(scripts) == (2 if target is page else 3)  # the page's own (+ the harness)
        assert not [a for tag, a in elements if a.get("href", "").lower().startswith("java")]
        assert not [a for _, a in elements if any(k.startswith("on") for k in a)]
        rendered = dom.count('data-rendered="1"')
        assert rendered == (1 if target is page else len(runs))
        # The strings are there, as text: the rendered decisions show them escaped.
        assert dom.count("&lt;/script&gt;&lt;script&gt;document.title=") >= 8
    assert Recorder.requests == [], f"the page fetched {Recorder.requests}"


# --- the demo's report: widths, filters, search, sorting -----------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return fill_demo_store(tmp_path_factory.mktemp("browser-demo"))


# Drives the page as a reader would and writes what it saw into an attribute, which
# --dump-dom hands back. Timers (the search box's debounce) run in virtual time.
HARNESS = """<script>
(function () {
  var r = {};
  function shown() {
    return Array.prototype.filter.call(document.querySelectorAll("details.run"),
      function (d) { return !d.hidden; }).map(function (d) { return d.id; });
  }
  function choose(id, value) {
    var s = document.getElementById(id); s.value = value; s.dispatchEvent(new Event("change"));
  }
  document.getElementById("open-shown").click();
  r.decisions = document.querySelectorAll("details.run[open] .decision").length;
  r.options = document.querySelectorAll("details.run[open] .option").length;
  r.chosen = document.querySelectorAll(".option.chosen").length;
  r.reasons = Array.prototype.map.call(document.querySelectorAll(".why"),
    function (p) { return p.textContent; });
  r.links = document.querySelectorAll('.runbody a[href^="http://127.0.0.1:9/trace/"]').length;
  r.scrollWidth = document.documentElement.scrollWidth;
  r.innerWidth = window.innerWidth;
  choose("f-status", "failed"); r.failed = shown(); choose("f-status", "");
  choose("f-node", "escalation"); r.escalation = shown(); choose("f-node", "");
  choose("sort", "tokens:desc");
  r.tokens = Array.prototype.map.call(document.querySelectorAll("details.run"),
    function (d) { return Number(d.getAttribute("data-tokens")); });
  var q = document.getElementById("q");
  q.value = "QUERY"; q.dispatchEvent(new Event("input"));
  setTimeout(function () {
    r.searched = shown();
    document.documentElement.setAttribute("data-test", JSON.stringify(r));
  }, 400);
})();
</script>"""


def drive(chromium: str, demo_html: str, folder: Path, width: int, query: str) -> dict[str, Any]:
    page = folder / f"driven-{width}.html"
    page.write_text(
        demo_html.replace("</body>", HARNESS.replace("QUERY", query) + "</body>"),
        encoding="utf-8",
    )
    dom = dump_dom(chromium, page, width=width)
    match = re.search(r'data-test="([^"]*)"', dom)
    assert match, "the harness did not finish"
    result: dict[str, Any] = json.loads(html_lib.unescape(match.group(1)))
    return result


@pytest.mark.parametrize("width", [800, 1400])
def test_the_demo_report_works_and_fits_in_chromium(
    chromium: str, demo: DemoStore, tmp_path: Path, width: int
) -> None:
    runs = demo.runs
    demo_html = render_report(
        runs, compute_stats(runs), store_url=demo.url, generated_at=datetime.now(),
        trace_url_template="http://127.0.0.1:9/trace/{trace_id}",
    )  # fmt: skip
    query = runs[3].decisions[0].reasoning
    result = drive(chromium, demo_html, tmp_path, width, query)
    decisions = [d for run in runs for d in run.decisions]
    assert result["decisions"] == len(decisions)
    assert result["options"] == sum(len(d.options) for d in decisions)
    assert result["chosen"] == sum(
        1 for d in decisions if any(o.id == d.chosen_option_id for o in d.options)
    )
    assert result["reasons"] == [f"why{d.reasoning}" for d in decisions if d.reasoning]
    assert result["links"] == sum(1 for run in runs if (run.model_extra or {}).get("trace_id"))
    assert result["links"] > 0
    # Readable at this width: nothing wider than the window.
    assert result["scrollWidth"] <= result["innerWidth"], result
    ids = [f"run-{i}" for i in range(len(runs))]
    failed = [i for i, run in zip(ids, runs, strict=True) if run.status is RunStatus.FAILED]
    assert result["failed"] == failed and failed
    escalated = [
        i for i, run in zip(ids, runs, strict=True)
        if any(d.node_id == "escalation" for d in run.decisions)
    ]  # fmt: skip
    assert result["escalation"] == escalated and escalated
    assert result["tokens"] == sorted((r.metrics.total_tokens for r in runs), reverse=True)
    matching = [
        i for i, run in zip(ids, runs, strict=True)
        if any(query.lower() in (d.reasoning or "").lower() for d in run.decisions)
    ]  # fmt: skip
    assert result["searched"] and set(result["searched"]) == set(matching)


def test_check_report_screenshots_at_both_widths(chromium: str, tmp_path: Path) -> None:
    html = check.build_report(tmp_path, tickets=6, seed=3)
    url = f"{html.resolve().as_uri()}#open={check.first_failed_run(html)}"
    for name, width, height in check.SHOTS:
        png = tmp_path / name
        check.screenshot(url, png, width, height)
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", data[16:24]) == (width, height)
        assert len(data) > 30_000  # a rendered page, not a blank one
