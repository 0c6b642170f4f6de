"""Render the HTML report of a demo store in headless Chromium and save a screenshot.

    .venv/bin/python docs/check_report.py            # writes docs/report.png

Fills a fresh store with the demo (seed 3, 4 tickets: a failure, fallbacks, escalations),
writes the report with ``decisiontrace report --html``, and has Chromium screenshot it
offline at 1400x2000.
``docs/report.png`` is committed; the test ``tests/cli/test_report.py`` runs the same
steps into a temporary folder when ``/usr/bin/chromium`` exists.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1400, 2000)


def screenshot(html: Path, png: Path, *, chromium: Path = CHROMIUM) -> None:
    """Screenshot ``html`` into ``png`` with headless Chromium, with no network access used."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
                f"--screenshot={png}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                html.resolve().as_uri(),
            ],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def build_report(folder: Path, *, tickets: int = 4, seed: int = 3) -> Path:
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
        result = runner.invoke(main, args)
        if result.exit_code != 0:
            raise RuntimeError(f"decisiontrace {' '.join(args)} failed: {result.output}")
    return html


def main() -> int:
    docs = Path(__file__).resolve().parent
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} not found; install it (apt-get install chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as folder:
        screenshot(build_report(Path(folder)), docs / "report.png")
    print(f"wrote {docs / 'report.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
