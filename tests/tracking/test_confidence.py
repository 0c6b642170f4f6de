"""Honest confidence: a confidence the agent did not give is marked in the record, left
out of every statistic, and shown as "—"."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console

import decisiontrace as dt
from decisiontrace.cli import render, views
from decisiontrace.cli.diff import diff_runs
from decisiontrace.cli.stats import compute_stats
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore


def recorded() -> tuple[list[dt.Run], InMemorySpanExporter]:
    store = MemoryStore()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(dt.RunRecordProcessor(store))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracker = dt.DecisionTracker("honest", tracer_provider=provider)
    for success in (True, False, True):
        with tracker.run("goal"):
            given = tracker.decide(
                intent="with confidence",
                options=[
                    {"id": "a", "description": "A", "action_type": "t", "confidence": 0.9},
                    {"id": "b", "description": "B", "action_type": "t", "confidence": 0.1},
                ],
                chosen="a",
                reasoning="r",
            )
            tracker.record_outcome(decision_id=given, success=success)
            plain = tracker.decide(
                intent="plain ids", options=["x", "y"], chosen="x", reasoning="r"
            )
            tracker.record_outcome(decision_id=plain, success=False)
    provider.shutdown()
    runs = [store.load_run(s.run_id) for s in store.list_runs()]
    return [r for r in runs if r is not None], exporter


def test_a_confidence_not_given_is_marked_and_not_on_the_span() -> None:
    runs, exporter = recorded()
    plain = runs[0].decisions[1]
    assert [o.confidence for o in plain.options] == [0.5, 0.5]  # the schema's default
    assert [(o.model_extra or {}).get("confidence_defaulted") for o in plain.options] == [
        True,
        True,
    ]
    given = runs[0].decisions[0]
    assert all("confidence_defaulted" not in (o.model_extra or {}) for o in given.options)
    spans = {s.attributes[sc.DECISION_INTENT]: s for s in exporter.get_finished_spans()
             if s.attributes and sc.DECISION_INTENT in s.attributes}  # fmt: skip
    assert spans["with confidence"].attributes[sc.DECISION_CHOSEN_CONFIDENCE] == 0.9
    assert sc.DECISION_CHOSEN_CONFIDENCE not in (spans["plain ids"].attributes or {})


def test_statistics_use_only_given_confidences() -> None:
    runs, _ = recorded()
    stats = compute_stats(runs)
    calibration = stats["calibration"]
    # Three decisions stated 0.9; the six with defaulted options are not counted.
    assert calibration["decisions"] == 3
    [bucket] = [b for b in calibration["buckets"] if b["decisions"]]
    assert (bucket["low"], bucket["mean_confidence"]) == (0.9, 0.9)
    assert bucket["success_rate"] == round(2 / 3, 4)
    options = {o["option_id"]: o for o in stats["by_option"]}
    assert options["a"]["mean_confidence"] == 0.9
    assert options["x"]["mean_confidence"] is None
    assert options["x"]["chosen"] == 3
    assert diff_runs(runs[0], runs[1])["run_a"]  # diff still works
    first = diff_runs(runs[0], runs[0])
    assert first["first_difference"] is None


def test_defaulted_confidence_is_shown_as_a_dash() -> None:
    runs, _ = recorded()
    console = Console(width=120, record=True, color_system=None)
    console.print(render.run_tree(runs[0]))
    text = console.export_text()
    plain_part = text[text.index("plain ids") :]
    assert "0.50" not in plain_part
    assert "—" in plain_part
    assert "0.90" in text
    console = Console(width=120, record=True, color_system=None)
    console.print(views.stats_view(compute_stats(runs)))
    options_rows = [line for line in console.export_text().splitlines() if " x " in line]
    assert options_rows and all("0.50" not in row and "—" in row for row in options_rows)
