"""Tests of the command line; the demo-filled store they share is made here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from decisiontrace.cli.app import main
from decisiontrace.models import Run
from decisiontrace.stores import open_store

#: Small enough to be quick, large enough (with this seed) for failed, escalated and
#: fallback runs.
DEMO_TICKETS = 20
DEMO_SEED = 2


@dataclass
class DemoStore:
    """A SQLite store the demo command filled, and what the command printed."""

    url: str
    output: str
    runs: list[Run]  # newest first, as list_runs returns them

    def run(self, run_id: str) -> Run:
        return next(run for run in self.runs if run.id == run_id)


def fill_demo_store(directory: Path) -> DemoStore:
    """Run ``decisiontrace --store URL demo`` into ``directory`` and read the store back."""
    url = f"sqlite:///{directory / 'demo.db'}"
    result = CliRunner().invoke(
        main, ["--store", url, "demo", "--tickets", str(DEMO_TICKETS), "--seed", str(DEMO_SEED)]
    )
    assert result.exit_code == 0, result.output
    with open_store(url) as store:
        runs = [store.load_run(summary.run_id) for summary in store.list_runs()]
    assert all(run is not None for run in runs)
    return DemoStore(url, result.output, [run for run in runs if run is not None])
