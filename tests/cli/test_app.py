"""The command line end to end, on a store the demo command filled."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from decisiontrace.cli.app import main
from decisiontrace.cli.diff import diff_runs
from decisiontrace.cli.stats import compute_stats
from decisiontrace.models import Run, RunStatus
from decisiontrace.stores import JSONFilesStore, open_store
from tests.cli import DEMO_TICKETS, DemoStore, fill_demo_store


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return fill_demo_store(tmp_path_factory.mktemp("demo"))


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def json_of(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr


# --- the demo command ---------------------------------------------------------------------


def test_the_demo_prints_statuses_success_rates_and_a_failed_run(demo: DemoStore) -> None:
    statuses = {run.status.value for run in demo.runs}
    assert len(demo.runs) == DEMO_TICKETS and "failed" in statuses
    out = demo.output
    assert f"Recorded {DEMO_TICKETS} runs in {demo.url}" in out
    assert "runs by status" in out and "success rate per node and decision type" in out
    for status in statuses:
        count = sum(run.status.value == status for run in demo.runs)
        assert re.search(rf"{status}\s+{count}\s", out), status
    for node in ("classifier", "retriever", "responder"):
        assert node in out
    # The failed run shown as a tree is a failed run of this store.
    shown = re.search(r"One failed run:\n(run_\S+)\s+failed", out)
    assert shown is not None, out
    assert demo.run(shown.group(1)).status == RunStatus.FAILED
    assert f"decisiontrace runs show {shown.group(1)}" in out


# --- runs list ----------------------------------------------------------------------------


def test_runs_list_json_is_the_stores_summaries(demo: DemoStore) -> None:
    listed = json_of(invoke("--store", demo.url, "runs", "list", "--json", "--limit", "1000"))
    with open_store(demo.url) as store:
        expected = [summary.model_dump(mode="json") for summary in store.list_runs()]
    assert len(listed) == DEMO_TICKETS
    runs = {run.id: run for run in demo.runs}
    for got, want in zip(listed, expected, strict=True):
        # The summary, plus when the run started and ended (with the offset) and its trace.
        assert set(got) == set(want) | {"started_at", "completed_at", "trace_id", "trace_url"}
        for field in want:
            assert got[field] == want[field], field
        run = runs[got["run_id"]]
        assert datetime.fromisoformat(got["started_at"]) == run.started_at.astimezone()
        assert datetime.fromisoformat(got["started_at"]).utcoffset() is not None
        assert got["trace_id"] == (run.model_extra or {})["trace_id"]
        assert got["trace_url"] is None  # no DECISIONTRACE_TRACE_URL


@pytest.mark.parametrize(
    ("options", "keep"),
    [
        (["--status", "failed"], lambda run: run.status == RunStatus.FAILED),
        (["--node", "escalation"], lambda run: "escalation" in run.metrics.nodes_executed),
        (["--goal", "resolve-ticket"], lambda run: True),
        (["--goal", "no-such-goal"], lambda run: False),
        (["--since", "1h"], lambda run: True),
        (["--since", (datetime.now() + timedelta(days=1)).date().isoformat()], lambda run: False),
    ],
)
def test_runs_list_filters(demo: DemoStore, options: list[str], keep: Any) -> None:
    listed = json_of(invoke("runs", "list", "--store", demo.url, "--json", *options))
    expected = {run.id for run in demo.runs if keep(run)}
    assert {summary["run_id"] for summary in listed} == expected
    if "--node" in options:
        assert 0 < len(expected) < DEMO_TICKETS  # the filter filtered something


def test_runs_list_limit_and_table(demo: DemoStore) -> None:
    listed = json_of(invoke("--store", demo.url, "runs", "list", "--json", "--limit", "3"))
    assert [s["run_id"] for s in listed] == [run.id for run in demo.runs[:3]]
    result = invoke("--store", demo.url, "runs", "list", "--limit", "3")
    assert result.exit_code == 0
    assert all(run.id in result.stdout for run in demo.runs[:3])
    assert demo.runs[3].id not in result.stdout
    assert "newest 3 shown" in result.stdout


# --- runs show ------------------------------------------------------------------------------


def _naive(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() is not None, value  # printed with its offset
    return moment.astimezone().replace(tzinfo=None).isoformat()


def stored_times(record: dict[str, Any]) -> Run:
    """A run printed with offsets, its times back in the stored form (naive local)."""
    for key in ("started_at", "completed_at"):
        record[key] = _naive(record[key])
    for decision in record["decisions"]:
        decision["timestamp"] = _naive(decision["timestamp"])
        if decision["outcome"]:
            decision["outcome"]["timestamp"] = _naive(decision["outcome"]["timestamp"])
    for problem in record["problems"]:
        problem["timestamp"] = _naive(problem["timestamp"])
    return Run.model_validate(record)


def test_runs_show_json_is_the_run_record(demo: DemoStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DECISIONTRACE_TRACE_URL", "http://localhost:16686/trace/{trace_id}")
    for run in demo.runs[:5]:
        shown = json_of(invoke("--store", demo.url, "runs", "show", run.id, "--json"))
        expected = run.model_dump(mode="json")
        trace_id = expected["trace_id"]
        assert shown.pop("trace_url") == f"http://localhost:16686/trace/{trace_id}"
        assert set(shown) == set(expected)
        # Every time carries its offset, and is the stored time.
        for field in expected:
            if field not in ("started_at", "completed_at", "decisions", "problems"):
                assert shown[field] == expected[field], field
        assert stored_times(shown) == run


def test_runs_show_tree_links_to_the_trace(
    demo: DemoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = demo.runs[0]
    trace_id = (run.model_extra or {})["trace_id"]
    out = invoke("--store", demo.url, "runs", "show", run.id).stdout
    assert f"trace {trace_id}" in out
    assert "http" not in out  # no template, no link
    monkeypatch.setenv("DECISIONTRACE_TRACE_URL", "http://jaeger:16686/trace/{trace_id}")
    out = invoke("--store", demo.url, "runs", "show", run.id).stdout
    assert f"http://jaeger:16686/trace/{trace_id}" in out
    offset = run.started_at.astimezone().isoformat(sep=" ", timespec="seconds")
    assert f"started {offset}" in out


def test_runs_show_tree_has_decisions_options_outcomes_and_problems(demo: DemoStore) -> None:
    run = next(
        r
        for r in demo.runs
        if r.status == RunStatus.FAILED and any(p.decision_id for p in r.problems)
    )
    out = invoke("--store", demo.url, "runs", "show", run.id).stdout
    positions = [out.index(f"{d.id} [{d.node_id}] {d.intent}") for d in run.decisions]
    assert positions == sorted(positions)  # in order
    for decision in run.decisions:
        assert f"▶ {decision.chosen_option_id}" in out if decision.chosen_option_id else True
        for option in decision.options:
            assert option.id in out and f"{option.confidence:.2f}" in out
        if decision.outcome is not None and not decision.outcome.success:
            assert f"outcome: failed: {decision.outcome.error}" in out.replace("\n│       ", " ")
    for problem in run.problems:
        at = out.index(f"{problem.id} [{problem.severity}]")
        if problem.decision_id:
            index = [d.id for d in run.decisions].index(problem.decision_id)
            assert at > positions[index]  # under its decision...
            if index + 1 < len(positions):
                assert at < positions[index + 1]  # ...not under the next one


# --- stats --------------------------------------------------------------------------------


def test_stats_json_matches_the_runs(demo: DemoStore) -> None:
    stats = json_of(invoke("--store", demo.url, "stats", "--json"))
    assert stats == compute_stats(demo.runs)
    decisions = [d for run in demo.runs for d in run.decisions]
    assert stats["runs"] == DEMO_TICKETS and stats["decisions"] == len(decisions)
    for group in stats["by_node"]:
        mine = [d for d in decisions if d.node_id == group["node_id"]]
        done = [d for d in mine if d.outcome is not None]
        assert group["decisions"] == len(mine)
        assert group["successes"] == sum(d.outcome.success for d in done if d.outcome)
        assert group["tokens"]["total"] == sum(d.outcome.tokens_used for d in done if d.outcome)
    responder = next(g for g in stats["by_node"] if g["node_id"] == "responder")
    assert 0 < responder["success_rate"] < 1
    assert sum(b["decisions"] for b in stats["calibration"]["buckets"]) == sum(
        1 for d in decisions if d.outcome is not None and d.chosen_option is not None
    )


def test_stats_table(demo: DemoStore) -> None:
    result = invoke("--store", demo.url, "stats")
    assert result.exit_code == 0
    for heading in ("by node", "by decision type", "options", "calibration"):
        assert heading in result.stdout
    assert "expected calibration error" in result.stdout


# --- diff -----------------------------------------------------------------------------------


def test_diff_finds_the_first_different_choice(demo: DemoStore) -> None:
    a, b = (
        demo.runs[0],
        next(
            r
            for r in demo.runs[1:]
            if r.decisions[0].chosen_option_id != demo.runs[0].decisions[0].chosen_option_id
        ),
    )
    diffed = json_of(invoke("--store", demo.url, "diff", a.id, b.id, "--json"))
    assert diffed == diff_runs(a, b)
    assert diffed["first_difference"]["index"] == 0
    assert diffed["first_difference"]["kind"] == "chosen"
    assert diffed["first_difference"]["a"]["chosen_option_id"] == a.decisions[0].chosen_option_id
    assert diffed["first_difference"]["b"]["chosen_option_id"] == b.decisions[0].chosen_option_id
    assert diffed["run_a"]["status"] == a.status.value
    assert diffed["run_b"]["status"] == b.status.value
    result = invoke("--store", demo.url, "diff", a.id, b.id)
    assert "chose differently at decision dec_0:" in result.stdout
    assert "#0" not in result.stdout
    assert result.stderr == ""


def test_diff_of_a_run_with_itself_finds_nothing(demo: DemoStore) -> None:
    run = demo.runs[0]
    diffed = json_of(invoke("--store", demo.url, "diff", run.id, run.id, "--json"))
    assert diffed["first_difference"] is None
    assert diffed["same_decisions"] == len(run.decisions)
    assert diffed["outcome_differences"] == []


def test_diff_warns_when_goals_differ(demo: DemoStore, tmp_path: Path) -> None:
    other = demo.runs[1].model_copy(update={"id": "run_other", "goal_id": "other-goal"})
    url = f"sqlite:///{tmp_path / 'two.db'}"
    with open_store(url) as store:
        store.save_run(demo.runs[0])
        store.save_run(other)
    result = invoke("--store", url, "diff", demo.runs[0].id, "run_other")
    assert result.exit_code == 0
    assert result.stderr.startswith("warning: the runs pursue different goals")


# --- export and rebuild -----------------------------------------------------------------------


def test_export_json_is_the_record(demo: DemoStore) -> None:
    run = demo.runs[0]
    exported = json_of(invoke("--store", demo.url, "export", run.id))
    assert exported == run.model_dump(mode="json")


def test_export_otlp_json_rebuilds_into_the_same_runs(demo: DemoStore, tmp_path: Path) -> None:
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    files = []
    for index, run in enumerate(demo.runs):
        path = tmp_path / f"run{index}.jsonl"
        result = invoke(
            "--store", demo.url, "export", run.id, "--format", "otlp-json", "-o", str(path)
        )
        assert result.exit_code == 0, result.output
        files.append(path)
    line = json.loads(files[0].read_text())
    assert "resourceSpans" in line  # OTLP JSON
    for path in files:
        rebuilt = invoke("rebuild", str(path), "--store", copy)
        assert rebuilt.exit_code == 0, rebuilt.output
    with open_store(copy) as store:
        for run in demo.runs:
            assert store.load_run(run.id) == run


# --- bad input: one line, exit 2 --------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [["runs", "show", "run_nope"], ["export", "run_nope"], ["diff", "run_nope", "run_nope"]],
)
def test_unknown_run_id(demo: DemoStore, command: list[str]) -> None:
    result = invoke("--store", demo.url, *command)
    assert_one_line_error(result, "no run 'run_nope'", "decisiontrace runs list")


@pytest.mark.parametrize("form", ["sqlite:///{}/missing/runs.db", "{}/missing.db", "{}/nofolder"])
def test_a_missing_store_is_not_created(tmp_path: Path, form: str) -> None:
    url = form.format(tmp_path)
    for command in (
        ["runs", "list"],
        ["stats"],
        ["runs", "show", "x"],
        ["report", "--html", str(tmp_path / "r.html")],
    ):
        result = invoke("--store", url, *command)
        assert_one_line_error(result, "no store at", "decisiontrace demo")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_default_store_missing(tmp_path: Path) -> None:
    env = {"DECISIONTRACE_STORE": "", "XDG_DATA_HOME": str(tmp_path / "xdg")}
    result = invoke("runs", "list", env=env)
    assert_one_line_error(result, f"no store at {tmp_path / 'xdg'}", "DECISIONTRACE_STORE")


def test_a_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"this is not a database" * 200)
    result = invoke("--store", str(path), "runs", "list")
    assert_one_line_error(result, str(path))


def test_a_corrupt_json_run_file(tmp_path: Path, demo: DemoStore) -> None:
    folder = tmp_path / "runs-folder"
    JSONFilesStore(folder).save_run(demo.runs[0])
    (folder / "runs" / f"{demo.runs[0].id}.json").write_text('{"id": "oops", ')
    result = invoke("--store", str(folder), "runs", "show", demo.runs[0].id)
    assert_one_line_error(result, "is not valid JSON", "repair or delete it")


def test_a_record_that_is_not_a_run(tmp_path: Path) -> None:
    folder = tmp_path / "runs-folder"
    (folder / "runs").mkdir(parents=True)
    (folder / "runs" / "run_x.json").write_text('{"id": "run_x"}')
    result = invoke("--store", str(folder), "runs", "show", "run_x")
    assert_one_line_error(result, "does not match the Run schema")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["runs", "list", "--since", "yesterday"], "'yesterday' is neither"),
        (["runs", "list", "--status", "great"], "--status"),
        (["runs", "list", "--limit", "0"], "--limit"),
        (["runs", "show"], "Missing argument 'RUN_ID'"),
        (["nosuchcommand"], "No such command"),
        (["--store", "nosuch://x", "runs", "list"], "unknown store URL scheme"),
        (["export", "x", "--format", "xml"], "--format"),
    ],
)
def test_usage_errors(demo: DemoStore, args: list[str], fragment: str) -> None:
    result = invoke("--store", demo.url, *args) if args[0] != "--store" else invoke(*args)
    assert_one_line_error(result, fragment)


def test_a_bad_rebuild_file_is_a_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    result = invoke("rebuild", str(bad), "--store", f"sqlite:///{tmp_path / 'r.db'}")
    assert result.exit_code == 2
    assert "Traceback" not in result.output and result.stderr.count("\n") == 1


def test_no_command_prints_help_and_exits_2() -> None:
    result = invoke()
    assert result.exit_code == 2
    assert "Commands:" in result.stdout


# --- stores of older versions ---------------------------------------------------------------


def test_a_sqlite_store_with_only_the_first_columns_opens(demo: DemoStore, tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    run = demo.runs[0]
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY NOT NULL, record TEXT)")
        connection.execute(
            "INSERT INTO runs VALUES (?, ?)", (run.id, json.dumps(run.model_dump(mode="json")))
        )
    connection.close()
    listed = json_of(invoke("--store", str(path), "runs", "list", "--json"))
    assert [s["run_id"] for s in listed] == [run.id]
    shown = json_of(invoke("--store", str(path), "runs", "show", run.id, "--json"))
    assert stored_times(shown) == run


# --- help, colour, imports ------------------------------------------------------------------


def _command_at(path: list[str]) -> click.Command:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def _commands(group: click.Group, path: list[str]) -> Iterator[list[str]]:
    for name, command in group.commands.items():
        yield [*path, name]
        if isinstance(command, click.Group):
            yield from _commands(command, [*path, name])


@pytest.mark.parametrize("path", [[], *_commands(main, [])], ids=lambda p: " ".join(p) or "main")
def test_every_command_has_help_with_an_example(path: list[str]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout, result.stdout


#: Commands without --json: a long-running server prints no result to format.
_NO_JSON = {("serve",)}


@pytest.mark.parametrize(
    "path",
    [p for p in _commands(main, []) if not isinstance(_command_at(p), click.Group)],
    ids=" ".join,
)
def test_every_command_has_json(path: list[str]) -> None:
    if tuple(path) in _NO_JSON:
        pytest.skip("a server")
    assert "--json" in invoke(*path, "--help").stdout


def test_colour_follows_the_terminal_and_no_color(demo: DemoStore) -> None:
    colour = re.compile(r"\x1b\[[0-9;]*3[0-7]m")
    args = ["--store", demo.url, "runs", "list"]
    assert not colour.search(invoke(*args).stdout)  # piped: plain
    assert colour.search(invoke(*args, env={"FORCE_COLOR": "1"}).stdout)
    assert not colour.search(invoke(*args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stdout)


@pytest.mark.parametrize("module", ["decisiontrace", "decisiontrace.demo"])
def test_recording_never_imports_the_cli_libraries(module: str) -> None:
    code = f"import sys, {module}; print(sorted(m for m in ('click', 'rich') if m in sys.modules))"
    # logfire (an ecosystem test package) registers a pydantic plugin, which pydantic
    # imports with the first model, and logfire imports rich: not decisiontrace's doing.
    env = {**os.environ, "PYDANTIC_DISABLE_PLUGINS": "__all__"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
        env=env,
    )  # fmt: skip
    assert done.stdout.strip() == "[]"


def test_python_m_decisiontrace_is_the_same_cli(demo: DemoStore) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "decisiontrace", "--store", demo.url, "runs", "list", "--json"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == DEMO_TICKETS
    bad = subprocess.run(
        [sys.executable, "-m", "decisiontrace", "--store", demo.url, "runs", "show", "run_x"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
