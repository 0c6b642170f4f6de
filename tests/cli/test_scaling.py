"""The command line at scale: short ids and prefixes, every number whole at 80 and 120
columns, plurals, --json everywhere, filters on stats."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from decisiontrace.cli.app import main
from decisiontrace.models import Decision, Option, Outcome, Run, RunMetrics, RunStatus
from decisiontrace.stores import open_store

T0 = datetime(2026, 5, 10, 14, 3, 7)


def make_run(
    number: int,
    *,
    suffix: str,
    tokens: int,
    goal: str = "resolve-ticket",
    status: str = "completed",
    chosen: str = "billing",
) -> Run:
    success = status == "completed"
    return Run(
        id=f"run_support-agent_20260510_14030{number}_{suffix}",
        goal_id=goal,
        status=RunStatus(status),
        started_at=T0 + timedelta(seconds=number),
        completed_at=T0 + timedelta(seconds=number, milliseconds=1500),
        decisions=[
            Decision(
                id="dec_0",
                node_id="classifier-with-a-long-name",
                intent="Classify the ticket",
                options=[
                    Option(
                        id="billing", description="Billing", action_type="route", confidence=0.7
                    ),
                    Option(id="bug", description="Bug", action_type="route", confidence=0.3),
                ],
                chosen_option_id=chosen,
                outcome=Outcome(success=success, tokens_used=tokens, latency_ms=1234),
            )
        ],
        metrics=RunMetrics(
            total_decisions=1,
            successful_decisions=int(success),
            failed_decisions=int(not success),
            total_tokens=tokens,
            nodes_executed=["classifier-with-a-long-name"],
        ),
    )


@pytest.fixture
def store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    with open_store(url) as opened:
        opened.save_run(make_run(1, suffix="7eb34ba9", tokens=89_085, chosen="bug"))
        opened.save_run(make_run(2, suffix="7eb3aa00", tokens=1_000_000, status="failed"))
        opened.save_run(make_run(3, suffix="0c1d2e3f", tokens=5, goal="a-goal-" + "x" * 40))
    return url


def invoke(store: str, *args: str, columns: int = 120) -> Result:
    return CliRunner().invoke(main, ["--store", store, *args], env={"COLUMNS": str(columns)})


@pytest.mark.parametrize("columns", [80, 120])
def test_tables_keep_ids_and_numbers_whole(store: str, columns: int) -> None:
    listed = invoke(store, "runs", "list", columns=columns)
    assert listed.exit_code == 0, listed.output
    assert max(len(line) for line in listed.stdout.splitlines()) <= columns
    for suffix in ("7eb34ba9", "7eb3aa00", "0c1d2e3f"):
        assert suffix in listed.stdout  # a short id column: never a cut id
    assert "…" not in listed.stdout
    assert "3 runs" in listed.stdout
    stats = invoke(store, "stats", columns=columns)
    assert stats.exit_code == 0, stats.output
    assert max(len(line) for line in stats.stdout.splitlines()) <= columns
    assert "…" not in stats.stdout
    for number in ("89,085", "1,000,005", "1,089,090", "100.0%"):
        assert number in stats.stdout, number


def test_a_wide_terminal_shows_full_ids_and_times_with_offsets(store: str) -> None:
    listed = invoke(store, "runs", "list", columns=160)
    assert "run_support-agent_20260510_140301_7eb34ba9" in listed.stdout
    offset = datetime(2026, 5, 10, 14, 3, 1).astimezone().strftime("%z")
    assert f"2026-05-10 14:03:01{offset[:3]}:{offset[3:]}" in listed.stdout


def test_unique_prefixes_and_short_ids_name_runs(store: str) -> None:
    full = "run_support-agent_20260510_140301_7eb34ba9"
    for given in (full, "7eb34", "7eb34ba9", "0c1d", "run_support-agent_20260510_140303"):
        shown = invoke(store, "runs", "show", given, "--json")
        assert shown.exit_code == 0, (given, shown.output)
    assert json.loads(invoke(store, "runs", "show", "7eb34", "--json").stdout)["id"] == full
    exported = invoke(store, "export", "7eb34")
    assert json.loads(exported.stdout)["id"] == full
    assert invoke(store, "diff", "7eb34", "7eb3a").exit_code == 0


def test_an_ambiguous_prefix_lists_the_candidates(store: str) -> None:
    result = invoke(store, "runs", "show", "7eb3")
    assert result.exit_code == 2
    assert "ambiguous" in result.stderr
    assert "_7eb34ba9" in result.stderr and "_7eb3aa00" in result.stderr
    unknown = invoke(store, "runs", "show", "ffff")
    assert unknown.exit_code == 2 and "no run 'ffff'" in unknown.stderr


def test_empty_listings_suggest_fewer_filters_only_when_filtered(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    plain = invoke(str(path), "runs", "list")
    assert "fewer" not in plain.stdout and "demo" in plain.stdout
    filtered = invoke(str(path), "runs", "list", "--status", "failed")
    assert "fewer" in filtered.stdout


def test_plurals(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    with open_store(url) as opened:
        opened.save_run(make_run(1, suffix="7eb34ba9", tokens=1))
    listed = invoke(url, "runs", "list")
    assert "1 run\n" in listed.stdout or re.search(r"\b1 run\b", listed.stdout)
    assert "1 runs" not in listed.stdout
    stats = invoke(url, "stats")
    assert "1 run, 1 decision," in stats.stdout
    shown = invoke(url, "runs", "show", "7eb3")
    assert "1 decision ·" in shown.stdout and "1 token" in shown.stdout


def test_stats_filters(store: str) -> None:
    def runs(*options: str) -> int:
        result = invoke(store, "stats", "--json", *options)
        assert result.exit_code == 0, result.output
        return int(json.loads(result.stdout)["runs"])

    assert runs() == 3
    assert runs("--status", "failed") == 1
    assert runs("--goal", "resolve-ticket") == 2
    assert runs("--node", "classifier-with-a-long-name") == 3
    assert runs("--node", "nobody") == 0
    assert runs("--since", "2026-05-10T14:03:09") == 2


def test_every_command_has_json(store: str, tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    exported = invoke(store, "export", "7eb34", "--format", "otlp-json", "-o", str(out), "--json")
    assert json.loads(exported.stdout)["run_id"].endswith("_7eb34ba9")
    copy = f"sqlite:///{tmp_path / 'copy.db'}"
    rebuilt = CliRunner().invoke(main, ["rebuild", str(out), "--store", copy, "--json"])
    assert json.loads(rebuilt.stdout)["runs_written"] == 1
    page = tmp_path / "report.html"
    reported = invoke(store, "report", "--html", str(page), "--json")
    assert json.loads(reported.stdout)["runs"] == 3
    for command in (["runs", "list"], ["runs", "show", "7eb34"], ["stats"],
                    ["diff", "7eb34", "7eb3a"]):  # fmt: skip
        result = invoke(store, *command, "--json")
        assert result.exit_code == 0, (command, result.output)
        json.loads(result.stdout)


def test_demo_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    result = CliRunner().invoke(main, ["--store", url, "demo", "--tickets", "3", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["runs"] == 3 and len(summary["run_ids"]) == 3
    assert sum(summary["runs_by_status"].values()) == 3
