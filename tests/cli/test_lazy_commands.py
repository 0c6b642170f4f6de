"""Each command loads what it uses: ``runs list`` starts without pydantic, the
evaluation package or the other commands' modules (issue 16.3 and 16.5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest

from decisiontrace.cli.app import main, runs
from tests.cli import DEMO_TICKETS, DemoStore, fill_demo_store

# Not loaded by `runs list`: what the other commands and `runs show` use.
NOT_FOR_A_LISTING = (
    "pydantic",
    "decisiontrace.models",
    "decisiontrace.evaluation",
    "decisiontrace.cli.decisions",
    "decisiontrace.cli.evaluate",
    "decisiontrace.cli.evaluations",
    "decisiontrace.cli.serve",
    "decisiontrace.cli.stats",
    "decisiontrace.cli.tail",
    "decisiontrace.cli.views",
    "rich.progress",
    "rich.tree",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return fill_demo_store(tmp_path_factory.mktemp("demo"))


def _run_cli(*args: str) -> tuple[str, list[str]]:
    """What the command printed, and the modules loaded, in a fresh interpreter."""
    code = (
        "import json, sys\n"
        "from decisiontrace.cli.app import main\n"
        f"code = main({list(args)!r}, standalone_mode=False)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    # Plugins other packages register with pydantic would load with a first model.
    env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__", "COLUMNS": "160"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    printed, _, modules = done.stdout.rstrip("\n").rpartition("\n")
    loaded: list[str] = json.loads(modules)
    return printed, loaded


def _heavy(loaded: list[str]) -> list[str]:
    return [m for m in loaded if any(m == h or m.startswith(h + ".") for h in NOT_FOR_A_LISTING)]


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_runs_list_loads_no_model_and_no_other_command(demo: DemoStore, as_json: bool) -> None:
    printed, loaded = _run_cli(
        "--store", demo.url, "runs", "list", *(["--json"] if as_json else [])
    )
    if as_json:
        assert len(json.loads(printed)) == DEMO_TICKETS
    else:
        assert all(run.id in printed for run in demo.runs)
    assert "decisiontrace.cli.render" in loaded
    assert _heavy(loaded) == []


def test_runs_show_loads_the_models(demo: DemoStore) -> None:
    printed, loaded = _run_cli("--store", demo.url, "runs", "show", demo.runs[0].id)
    assert demo.runs[0].id in printed
    assert "decisiontrace.models" in loaded
    assert "rich.tree" in loaded


@pytest.mark.parametrize(
    ("group", "name"),
    [(main, "decisions"), (main, "evaluate"), (main, "serve"), (runs, "tail")],
)
def test_a_command_of_its_own_module_resolves(group: click.Group, name: str) -> None:
    context = click.Context(group)
    assert name in group.list_commands(context)
    command = group.get_command(context, name)
    assert isinstance(command, click.Command)
    assert command.name == name
