"""How long the HTML report of many runs takes to write and to open in Chromium.

    .venv/bin/python benchmarks/report_load.py                 # 2,000 demo runs, 3 loads
    .venv/bin/python benchmarks/report_load.py --runs 500 --loads 5

Fills a fresh SQLite store with ``decisiontrace demo --tickets N``, writes the report of
all N runs, then opens it in headless Chromium (offline, fresh profile) ``--loads``
times. The page stamps ``data-ready`` (its script finished: runs listed, filters set up)
and ``data-ready-ms`` (the first frame after that) with ``performance.now()``, counted
from navigation start; ``--dump-dom`` hands them back. Target: ``data-ready-ms`` under
2,000 ms for 2,000 runs. Prints one JSON object; nothing here is a pass/fail test.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from decisiontrace.cli.app import main as cli

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))
import check_report  # noqa: E402  (docs/check_report.py: the Chromium runner)


def _invoke(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    if result.exit_code != 0:
        raise RuntimeError(f"decisiontrace {' '.join(args)}: {result.output}")


def measure(runs: int, loads: int) -> dict[str, Any]:
    """Write the report of ``runs`` demo runs and open it ``loads`` times."""
    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{Path(folder) / 'runs.db'}"
        html = Path(folder) / "report.html"
        _invoke("--store", store, "demo", "--tickets", str(runs))
        started = time.perf_counter()
        _invoke("--store", store, "report", "--html", str(html), "--limit", str(runs))
        write_s = time.perf_counter() - started
        ready, painted, wall = [], [], []
        for _ in range(loads):
            started = time.perf_counter()
            dom = check_report.chromium(html.resolve().as_uri(), "--dump-dom")
            wall.append(time.perf_counter() - started)
            ready.append(int(re.search(r'data-ready="(\d+)"', dom).group(1)))  # type: ignore[union-attr]
            match = re.search(r'data-ready-ms="(\d+)"', dom)
            if match:
                painted.append(int(match.group(1)))
        size = html.stat().st_size
    return {
        "runs": runs,
        "html_bytes": size,
        "write_report_s": round(write_s, 2),
        "script_ready_ms_median": statistics.median(ready),
        "first_frame_ms_median": statistics.median(painted) if painted else None,
        "chromium_process_s_median": round(statistics.median(wall), 2),
        "loads": loads,
        "target": "first_frame_ms_median < 2000 for 2,000 runs",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--loads", type=int, default=3)
    args = parser.parse_args()
    if check_report.find_chromium() is None:
        print("chromium not found (apt-get install -y chromium)", file=sys.stderr)
        return 2
    print(json.dumps(measure(args.runs, args.loads), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
