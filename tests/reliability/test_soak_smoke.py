"""The soak script runs, reports, and exits 0 (a few seconds of it: the real soak is manual)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


@pytest.mark.parametrize("workload", ["demo", "local"])
def test_the_soak_script_reports_memory_throughput_and_drops(workload: str) -> None:
    done = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "2", "--every", "0.5", "--workload", workload],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split() == [
        "t", "(s)", "RSS", "MB", "py", "MB", "spans/s", "stored", "dropped", "drop", "sp",
        "queue", "open",
    ]  # fmt: skip
    reports = [line.split() for line in lines[2:-1]]
    assert len(reports) >= 2 and all(len(report) == 9 for report in reports)
    final = reports[-1]
    assert float(final[1]) > 0 and int(final[4]) > 0  # RSS measured, runs stored
    assert final[5:8] == ["0", "0", "0"]  # nothing dropped, nothing left in the queue
    assert "runs stored" in lines[-1]
