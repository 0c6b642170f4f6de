"""``runs show`` names the service that made each decision of a run recorded in several
processes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from decisiontrace.cli.app import main
from decisiontrace.models import Run
from decisiontrace.stores import open_store
from tests.conftest import REFERENCE


def test_runs_show_names_the_service_of_decisions_made_elsewhere(tmp_path: Path) -> None:
    record = json.loads((REFERENCE / "example-run.json").read_text())
    record["decisions"][1]["service"] = "tool-server"
    run = Run.model_validate(record)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with open_store(url) as store:
        store.save_run(run)
    result = CliRunner().invoke(main, ["--store", url, "runs", "show", run.id])
    assert result.exit_code == 0, result.output
    first, second = run.decisions[0], run.decisions[1]
    assert f"{second.id} [{second.node_id}] @tool-server {second.intent}" in result.stdout
    assert f"{first.id} [{first.node_id}] {first.intent}" in result.stdout
    shown = json.loads(
        CliRunner().invoke(main, ["--store", url, "runs", "show", run.id, "--json"]).stdout
    )
    assert shown["decisions"][1]["service"] == "tool-server"
