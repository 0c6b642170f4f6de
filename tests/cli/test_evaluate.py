"""``decisiontrace evaluate`` on a store the demo filled: the built-in evaluators, a user
evaluator that raises or hangs, idempotence, and bad input."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from decisiontrace import Run, judgements_of
from decisiontrace.cli.app import main
from decisiontrace.stores import open_store
from tests.cli import DemoStore, fill_demo_store


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    return fill_demo_store(tmp_path_factory.mktemp("evaluate-demo"))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def _stored(url: str) -> dict[str, Run]:
    with open_store(url) as store:
        return {s.run_id: store.load_run(s.run_id) for s in store.list_runs()}  # type: ignore[misc]


def _expected_better_options(runs: list[Run]) -> set[tuple[str, str, str]]:
    """Computed here, independently: failed, then another of its options succeeded later at
    the same node of the same run."""
    found = set()
    for run in runs:
        for index, decision in enumerate(run.decisions):
            if decision.outcome is None or decision.outcome.success:
                continue
            options = {o.id for o in decision.options}
            for later in run.decisions[index + 1 :]:
                if (later.node_id == decision.node_id and later.outcome is not None
                        and later.outcome.success and later.chosen_option_id in options
                        and later.chosen_option_id != decision.chosen_option_id):  # fmt: skip
                    found.add((run.id, decision.id, later.chosen_option_id))
                    break
    return found


def test_better_option_finds_the_decisions_where_a_better_option_existed(demo: DemoStore) -> None:
    result = invoke("--store", demo.url, "evaluate", "--evaluator", "better-option", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    found = {
        (j["run_id"], j["decision_id"], j["evaluation"]["better_option_id"])
        for j in report["judged"]
        if j["evaluation"]["better_option_existed"]
    }
    expected = _expected_better_options(demo.runs)
    assert expected, "the demo should make decisions a later fallback did better than"
    assert found == expected
    assert report["skipped"] == []
    # Stored with the decisions, and judging again changes nothing but the time.
    stored = _stored(demo.url)
    again = invoke("--store", demo.url, "evaluate", "--evaluator", "better-option")
    assert again.exit_code == 0, again.output
    assert "better_option_existed" in again.stdout
    for run_id, decision_id, option_id in expected:
        decision = next(d for d in stored[run_id].decisions if d.id == decision_id)
        assert decision.evaluation is not None
        assert decision.evaluation.better_option_id == option_id
    for run in _stored(demo.url).values():
        for decision in run.decisions:
            names = [j.evaluator for j in judgements_of(decision)]
            assert names.count("better-option") == (decision.outcome is not None)


def test_outcome_and_better_option_judgements_sit_side_by_side(demo: DemoStore) -> None:
    run = demo.runs[0]
    for evaluator in ("better-option", "outcome"):
        result = invoke("--store", demo.url, "evaluate", "--evaluator", evaluator, "--run", run.id)
        assert result.exit_code == 0, result.output
    stored = _stored(demo.url)[run.id]
    for decision in stored.decisions:
        if decision.outcome is not None:
            assert sorted(j.evaluator for j in judgements_of(decision)) == [
                "better-option",
                "outcome",
            ]


EVALUATORS = """
import threading

def flaky(run, decision):
    if decision.id == "dec_0":
        raise RuntimeError("judge is down")
    if decision.id == "dec_1":
        threading.Event().wait(30)  # hangs (the test ends long before)
    return {"score": 0.5, "label": "meh"}

flaky.evaluator_name = "flaky-judge"

def junk(run, decision):
    return 42
"""


def test_an_evaluator_that_raises_or_hangs_is_reported_and_the_rest_go_on(
    demo: DemoStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_judges.py").write_text(textwrap.dedent(EVALUATORS))
    monkeypatch.syspath_prepend(str(tmp_path))
    run = max(demo.runs, key=lambda r: len(r.decisions))
    assert len(run.decisions) >= 3
    result = invoke("--store", demo.url, "evaluate", "--evaluator", "my_judges:flaky",
                    "--run", run.id, "--timeout", "0.5", "--json")  # fmt: skip
    assert result.exit_code == 1, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    assert {(s["decision_id"], s["reason"]) for s in report["skipped"]} == {
        ("dec_0", "the evaluator raised RuntimeError: judge is down"),
        ("dec_1", "no answer within 0.5 seconds"),
    }
    assert "skipped " + run.id + " dec_0: the evaluator raised RuntimeError" in result.stderr
    judged = {j["decision_id"] for j in report["judged"]}
    assert judged == {d.id for d in run.decisions} - {"dec_0", "dec_1"}
    stored = _stored(demo.url)[run.id]
    for decision in stored.decisions:
        names = [j.evaluator for j in judgements_of(decision)]
        assert ("flaky-judge" in names) == (decision.id in judged)

    junk = invoke("--store", demo.url, "evaluate", "--evaluator", "my_judges:junk",
                  "--run", run.id)  # fmt: skip
    assert junk.exit_code == 1
    assert "not int" in junk.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--evaluator", "better-option", "--run", "run_nope"], "no run 'run_nope'"),
        (["--evaluator", "nope"], "--evaluator: unknown evaluator 'nope'"),
        (["--evaluator", "no_module_here:f"], "cannot import 'no_module_here'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(demo: DemoStore, args: list[str], fragment: str) -> None:
    result = invoke("--store", demo.url, "evaluate", *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert fragment in result.stderr


def test_stats_the_report_and_runs_show_use_the_judgements(demo: DemoStore, tmp_path: Path) -> None:
    assert invoke("--store", demo.url, "evaluate", "--evaluator", "better-option").exit_code == 0
    expected = _expected_better_options(demo.runs)

    stats = invoke("--store", demo.url, "stats", "--json")
    assert stats.exit_code == 0, stats.output
    evaluations = json.loads(stats.stdout)["evaluations"]
    assert evaluations["overall"]["better_option_existed"] == len(expected)
    by_option: dict[tuple[str, str], dict[str, int]] = {}
    for run_id, decision_id, better in expected:
        decision = next(d for d in demo.run(run_id).decisions if d.id == decision_id)
        named = by_option.setdefault((decision.node_id, decision.chosen_option_id), {})
        named[better] = named.get(better, 0) + 1
    assert {
        (g["node_id"], g["option_id"]): g["better_options"]
        for g in evaluations["by_option"]
        if g["better_options"]
    } == by_option
    table = " ".join(invoke("--store", demo.url, "stats").stdout.split())
    assert "judgements by chosen option" in table
    assert "calibration (chosen option's confidence vs evaluated quality and success)" in table

    page = tmp_path / "report.html"
    assert invoke("--store", demo.url, "report", "--html", str(page)).exit_code == 0
    html = page.read_text()
    assert '<div id="evaluations"><h3>Judgements</h3>' in html
    assert f"a better option existed for {len(expected)} (" in html

    run_id, decision_id, better = sorted(expected)[0]
    shown = invoke("--store", demo.url, "runs", "show", run_id)
    assert shown.exit_code == 0
    assert (
        f"judged by better-option  score 0.00  better_option_existed  better option: {better}"
        in (shown.stdout.replace("\n", " "))
    )


COUNTING = """
calls = []

def counting(run, decision):
    calls.append(decision.id)
    return {"score": 1.0}
"""


def test_only_new_asks_the_evaluator_about_unjudged_decisions_only(
    demo: DemoStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counting_judge.py").write_text(COUNTING)
    monkeypatch.syspath_prepend(str(tmp_path))
    import counting_judge  # type: ignore[import-not-found]

    run = demo.runs[1]
    first = invoke("--store", demo.url, "evaluate", "--evaluator", "counting_judge:counting",
                   "--run", run.id, "--json")  # fmt: skip
    assert first.exit_code == 0, first.output
    assert len(counting_judge.calls) == len(run.decisions)
    again = invoke("--store", demo.url, "evaluate", "--evaluator", "counting_judge:counting",
                   "--run", run.id, "--only-new", "--json")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert len(counting_judge.calls) == len(run.decisions)  # not asked again
    assert json.loads(again.stdout)["already_judged"] == len(run.decisions)


def test_decisions_finds_the_judged_ones_and_shows_the_better_option(demo: DemoStore) -> None:
    assert invoke("--store", demo.url, "evaluate", "--evaluator", "better-option").exit_code == 0
    expected = _expected_better_options(demo.runs)
    found = invoke("--store", demo.url, "decisions", "--better-option", "--limit", "1000",
                   "--json")  # fmt: skip
    assert found.exit_code == 0, found.output
    rows = json.loads(found.stdout)
    assert {(r["run_id"], r["decision_id"], r["judged"]["better_option_id"]) for r in rows} == (
        expected
    )
    assert all(r["judged"]["quality"] == 0.0 for r in rows)
    judged = invoke("--store", demo.url, "decisions", "--judged-by", "better-option",
                    "--limit", "1000", "--json")  # fmt: skip
    with_outcome = sum(1 for run in demo.runs for d in run.decisions if d.outcome is not None)
    assert len(json.loads(judged.stdout)) == with_outcome
    assert invoke("--store", demo.url, "decisions", "--judged-by", "nobody", "--json").stdout == (
        "[]\n"
    )
    table = invoke("--store", demo.url, "decisions", "--better-option")
    run_id, decision_id, option = sorted(expected)[0]
    assert f"better: {option}" in table.stdout
    text = invoke("--store", demo.url, "decisions", "--text", "succeeded when", "--json",
                  "--limit", "1000")  # fmt: skip
    assert {(r["run_id"], r["decision_id"]) for r in json.loads(text.stdout)} >= {
        (run_id, decision_id)
    }
