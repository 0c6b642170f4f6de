"""Every Python example in the README runs as written, in a fresh process with no
``OTEL_*`` variable, and stores what it says it stores."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from decisiontrace import RunStatus, open_store
from decisiontrace.models import Run

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def only_run(url: str) -> Run:
    with open_store(url) as store:
        [summary] = store.list_runs()
        run = store.load_run(summary.run_id)
    assert run is not None
    return run


def check_tracker(tmp_path: Path, stdout: str) -> None:
    run = only_run(f"sqlite:///{tmp_path / 'default.db'}")
    assert run.goal_id == "support-goal"
    assert run.input_data == {"ticket_id": "T-1"}
    [decision] = run.decisions
    assert (decision.node_id, decision.chosen_option_id) == ("classifier", "howto")
    assert decision.outcome is not None and decision.outcome.tokens_used == 412
    assert [p.description for p in run.problems] == ["Knowledge base slow"]


def check_decorators(tmp_path: Path, stdout: str) -> None:
    assert stdout == "howto\n"
    run = only_run(f"sqlite:///{tmp_path / 'default.db'}")
    assert run.status == RunStatus.COMPLETED
    assert run.goal_id == "support-goal"
    assert run.goal_description == "Answer a support ticket."
    assert run.id.startswith("run_handle_")  # the stream is named after the function
    assert run.input_data == {"ticket": "How do I reset my password?"}
    assert run.output_data == {"result": "howto"}
    [decision] = run.decisions
    assert (decision.node_id, decision.chosen_option_id) == ("classifier", "howto")
    assert [o.id for o in decision.options] == ["howto", "bug", "billing"]


def check_configure(tmp_path: Path, stdout: str) -> None:
    run = only_run(f"sqlite:///{tmp_path / 'runs.db'}")
    assert run.status == RunStatus.COMPLETED
    [decision] = run.decisions
    assert decision.intent == "Route ticket"


def check_evaluate(tmp_path: Path, stdout: str) -> None:
    run = only_run(f"sqlite:///{tmp_path / 'default.db'}")
    [decision] = run.decisions
    judgements = (decision.model_extra or {}).get("evaluations")
    assert judgements, "the judgement is stored with the decision"


def check_imports_only(tmp_path: Path, stdout: str) -> None:
    assert not (tmp_path / "default.db").exists()  # set-up alone records nothing


CHECKS: list[tuple[str, Callable[[Path, str], None]]] = [
    ("tracker.report_problem(", check_tracker),
    ("dt.evaluate(", check_evaluate),
    ("@dt.agent", check_decorators),
    ('dt.configure(store="sqlite:///runs.db")', check_configure),
    ("from decisiontrace.compat.hive import", check_imports_only),
    ("dt.integrations.langgraph.instrument()", check_imports_only),
]


def test_every_readme_example_is_checked() -> None:
    assert len(BLOCKS) >= 4
    for block in BLOCKS:
        # A new README example needs an entry in CHECKS saying what it must store.
        assert [marker for marker, _ in CHECKS if marker in block], block


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_stores_what_it_says(index: int, tmp_path: Path) -> None:
    block = BLOCKS[index]
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env["DECISIONTRACE_STORE"] = f"sqlite:///{tmp_path / 'default.db'}"
    done = subprocess.run(
        # The examples share the README's convention: `import decisiontrace as dt`.
        [sys.executable, "-c", "import decisiontrace as dt\n" + block],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"README example {index} failed:\n{block}\n{done.stderr}"
    # Local first: nothing tried to export, nothing to warn about.
    assert done.stderr == "", done.stderr
    [check] = [check for marker, check in CHECKS if marker in block]
    check(tmp_path, done.stdout)
