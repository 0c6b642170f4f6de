"""The Python examples of docs/ that run here run as written, in a fresh process with no
``OTEL_*`` variable (the README's are in test_readme.py; the LangGraph guide's in
tests/ecosystem/test_langgraph.py). Examples that need a queue, an MCP server or an LLM
(docs/propagation.md, the LLM judge of docs/evaluations.md) are left out.

An example that uses names it does not define (``run_id``, ``tracker``) gets them from
a prelude that records such a run, as the page around it describes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from decisiontrace import open_store
from decisiontrace.models import Run

DOCS = Path(__file__).resolve().parents[2] / "docs"


def example(page: str, marker: str) -> str:
    """The one Python block of ``page`` that contains ``marker``."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    (block,) = [block for block in blocks if marker in block]
    return block


def run_python(code: str, cwd: Path) -> str:
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env["DECISIONTRACE_STORE"] = f"sqlite:///{cwd / 'default.db'}"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{code}\n{done.stderr}"
    assert done.stderr == "", done.stderr  # local first: nothing to warn about
    return done.stdout


def runs_in(path: Path) -> list[Run]:
    with open_store(f"sqlite:///{path}") as store:
        runs = [store.load_run(summary.run_id) for summary in store.list_runs()]
    return [run for run in runs if run is not None]


#: A run with decisions dec_0 and dec_1 in runs.db, by configure() and a tracker.
PRELUDE = """\
import decisiontrace as dt
telemetry = dt.configure(store="sqlite:///runs.db")
tracker = dt.DecisionTracker("support-agent")
with tracker.run("support-goal", "Handle support tickets") as run:
    for _ in range(2):
        tracker.quick_decision(intent="Find an answer", action="kb", reasoning="cheapest")
run_id = run.run_id
telemetry.force_flush()
"""


def test_export_configure_example(tmp_path: Path) -> None:
    code = example("export.md", "telemetry = configure(")
    code = code.replace(
        "...",
        'with tracker.run("support-goal", "Handle support tickets"):\n'
        '    tracker.quick_decision(intent="Route ticket", action="answer", reasoning="a how-to")',
    )
    run_python(code, tmp_path)
    [run] = runs_in(tmp_path / "runs.db")
    assert [d.intent for d in run.decisions] == ["Route ticket"]


def test_export_rebuild_example(tmp_path: Path) -> None:
    run_python(PRELUDE + "telemetry.shutdown()\n", tmp_path)
    [stored] = runs_in(tmp_path / "runs.db")
    exported = subprocess.run(
        [sys.executable, "-m", "decisiontrace", "--store", "sqlite:///runs.db", "export",
         stored.id, "--format", "otlp-json", "-o", "traces.jsonl"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    code = example("export.md", "rebuild(") + "print(result.run_ids, result.errors)\n"
    assert run_python(code, tmp_path) == f"[{stored.id!r}] []\n"
    [rebuilt] = runs_in(tmp_path / "rebuilt.db")
    assert rebuilt.id == stored.id and len(rebuilt.decisions) == 2


def test_evaluations_example(tmp_path: Path) -> None:
    code = example("evaluations.md", "dt.evaluate(run_id")
    code = code.replace("import decisiontrace as dt\n", "")
    run_python(PRELUDE + code + "telemetry.shutdown()\n", tmp_path)
    [run] = runs_in(tmp_path / "runs.db")
    judged = (run.decisions[1].model_extra or {}).get("evaluations")
    assert judged is not None
    assert {judgement["evaluator"] for judgement in judged} == {"reviewer", "judge"}
