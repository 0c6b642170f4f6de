"""Render the HTML report of the demo's store in headless Chromium and save screenshots.

    .venv/bin/python docs/check_report.py     # writes docs/report.png and docs/report-800.png

Fills a fresh store with ``decisiontrace demo`` (its defaults: 60 tickets, seed 7),
writes the report with ``decisiontrace report --html``, and has Chromium screenshot it
offline at 1400 and 800 px wide with the first failed run opened (``#open=run-N``), so
the pictures show decisions, options and reasoning, not only the list.
``tests/cli/test_report_browser.py`` runs the same steps into a temporary folder.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
#: The trace link template the pictures are made with (Jaeger in collector-config/).
JAEGER_LINK = "http://localhost:16686/trace/{trace_id}"
#: (file name, window width, window height) of each screenshot.
SHOTS = (("report.png", 1400, 1800), ("report-800.png", 800, 1800))


def find_chromium() -> str | None:
    """The Chromium binary on PATH (Debian's package installs /usr/bin/chromium)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, *args: str, binary: str | None = None, timeout: float = 120) -> str:
    """Run headless Chromium on ``url`` with a fresh profile; returns its stdout."""
    executable = binary or find_chromium()
    if executable is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
            check=True, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    return done.stdout


def screenshot(url: str, png: Path, width: int, height: int) -> None:
    """Screenshot ``url`` into ``png`` at a ``width`` x ``height`` window."""
    chromium(url, f"--screenshot={png}", f"--window-size={width},{height}")


def build_report(folder: Path, *, tickets: int = 60, seed: int = 7) -> Path:
    """Run the demo into ``folder/runs.db`` and write ``folder/report.html`` from it."""
    from click.testing import CliRunner

    from decisiontrace.cli.app import main

    url = f"sqlite:///{folder / 'runs.db'}"
    html = folder / "report.html"
    runner = CliRunner()
    for args in (
        ["--store", url, "demo", "--tickets", str(tickets), "--seed", str(seed)],
        ["--store", url, "report", "--html", str(html), "--title", "decisiontrace demo report"],
    ):
        # Links to Jaeger, as a reader with the compose stack would set them up.
        result = runner.invoke(main, args, env={"DECISIONTRACE_TRACE_URL": JAEGER_LINK})
        if result.exit_code != 0:
            raise RuntimeError(f"decisiontrace {' '.join(args)} failed: {result.output}")
    return html


def first_failed_run(html: Path) -> str:
    """The element id of the first failed run in the page (run-0 if none failed)."""
    text = html.read_text(encoding="utf-8")
    match = re.search(r'<details class="run" id="(run-\d+)"[^>]*data-status="failed"', text)
    return match.group(1) if match else "run-0"


def main() -> int:
    docs = Path(__file__).resolve().parent
    if find_chromium() is None:
        print("chromium not found; install it (apt-get install -y chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        html = build_report(Path(folder))
        url = f"{html.resolve().as_uri()}#open={first_failed_run(html)}"
        for name, width, height in SHOTS:
            screenshot(url, docs / name, width, height)
            print(f"wrote {docs / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
