"""Hostile input to the recording API and the decorators: nothing raises, the run is stored.

Hypothesis draws ids, options, results and contexts from a strategy of everything an
agent might hand over by mistake: None, NaN, bytes, lone surrogates, datetimes, cycles,
deeply nested values, 10 MB strings, objects whose ``__repr__``/``__str__`` raise,
unhashable ids. Every call goes to a real SDK pipeline with a SQLite store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import decisiontrace as dt
from decisiontrace.spanmodel._jsonsafe import TRUNCATED_KEY
from decisiontrace.stores import SQLiteStore

from ._support import Pipeline, make_pipeline

BIG = "x" * (10 * 1024 * 1024)
#: Longest JSON text a structured attribute may carry (64 KiB, plus the marker's own size).
MAX_JSON_CHARS = 64 * 1024 + 2048

FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Hostile:
    """An object that cannot even be described: ``repr`` and ``str`` raise."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    def __str__(self) -> str:
        raise RuntimeError("str exploded")


class HostileEq(Hostile):
    """Hashable, but comparing it raises."""

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq exploded")


def cyclic_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["self"] = value
    return value


def big_text() -> str:
    """The 10 MB string (drawn through a function, so a failure report names it)."""
    return BIG


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for index in range(depth):
        value = {"level": value} if index % 2 else [value]
    return value


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.sampled_from(["\ud800", "\x00", "é∑😀", "'; DROP TABLE runs;--", "../../x"]),
    st.builds(big_text),
    st.builds(Hostile),
    st.builds(HostileEq),
    st.builds(datetime.now),
    st.builds(cyclic_list),
    st.builds(cyclic_dict),
    st.builds(nested, st.integers(min_value=30, max_value=3000)),
)
# Hostile keys hash by identity: hypothesis compares keys to keep them unique.
keys = st.one_of(st.text(max_size=8), st.integers(), st.none(), st.builds(Hostile))
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=8,
)
ids = st.one_of(st.none(), st.text(max_size=20), values, st.lists(st.integers(), max_size=2))
options = st.one_of(
    values,
    st.lists(
        st.one_of(
            values,
            st.fixed_dictionaries(
                {"id": ids},
                optional={
                    "description": values,
                    "action_type": values,
                    "action_params": values,
                    "pros": values,
                    "cons": values,
                    "confidence": values,
                },
            ),
        ),
        max_size=4,
    ),
)


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    built = make_pipeline(SQLiteStore(tmp_path / "fuzz.db"))
    yield built
    built.provider.shutdown()


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    # Every example logs warnings about its bad input; keeping them all costs memory.
    caplog.set_level(logging.CRITICAL, logger="decisiontrace")


def json_attributes(pipeline: Pipeline) -> list[str]:
    """Every JSON-valued attribute of every span exported so far."""
    texts = []
    for span in pipeline.exporter.get_finished_spans():
        for key, value in (span.attributes or {}).items():
            if key.endswith((".input", ".output", ".options", ".input_context", ".result")) or (
                key.endswith(".state_changes")
            ):
                texts.append(value)
    return [text for text in texts if isinstance(text, str)]


def check_bounded_json(pipeline: Pipeline) -> None:
    """Structured values on spans are valid JSON, bounded, and say when they were cut."""
    for text in json_attributes(pipeline):
        decoded = json.loads(text)
        assert len(text) <= MAX_JSON_CHARS
        if isinstance(decoded, dict) and decoded.get(TRUNCATED_KEY) is True:
            assert decoded["original_chars"] > 64 * 1024 or "reason" in decoded


def stored(pipeline: Pipeline, run_id: str) -> dt.Run:
    pipeline.flush()
    run = pipeline.store.load_run(run_id)
    assert run is not None, f"run {run_id!r} was not stored"
    return run


@FUZZ
@given(data=st.data())
def test_the_recording_api_never_raises_and_the_run_is_stored(
    pipeline: Pipeline, data: st.DataObject
) -> None:
    tracker = pipeline.tracker
    pipeline.exporter.clear()
    with tracker.run(
        data.draw(values), data.draw(values), data.draw(values), data.draw(ids)
    ) as scope:
        tracker.set_node(data.draw(values))
        made = []
        for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
            decision_id = tracker.decide(
                intent=data.draw(values),
                options=data.draw(options),
                chosen=data.draw(ids),
                reasoning=data.draw(values),
                node_id=data.draw(st.one_of(st.none(), values)),
                decision_type=data.draw(st.one_of(st.sampled_from(list(dt.DecisionType)), values)),
                constraints=data.draw(values),
                context=data.draw(values),
            )
            made.append(decision_id)
            tracker.record_outcome(
                decision_id=data.draw(st.one_of(st.just(decision_id), ids)),
                success=data.draw(values),
                result=data.draw(values),
                error=data.draw(values),
                summary=data.draw(values),
                state_changes=data.draw(values),
                tokens_used=data.draw(values),
                latency_ms=data.draw(values),
                error_type=data.draw(values),
                input_tokens=data.draw(values),
                output_tokens=data.draw(values),
                chosen=data.draw(st.one_of(st.none(), ids)),
                reasoning=data.draw(st.one_of(st.none(), values)),
            )
        tracker.report_problem(
            severity=data.draw(values),
            description=data.draw(values),
            decision_id=data.draw(ids),
            root_cause=data.draw(values),
            suggested_fix=data.draw(values),
        )
        # Calls naming an execution that may not be there, or cannot even be looked up
        # (or is this run's: then the decision is recorded in it).
        stranger = data.draw(ids.filter(lambda value: value is not None))
        made.append(
            tracker.decide(intent="x", options=[], chosen="", reasoning="", execution_id=stranger)
        )
        tracker.record_outcome(decision_id="dec_0", success=True, execution_id=stranger)
        tracker.report_problem(severity="x", description="y", execution_id=stranger)
        tracker.set_node("n", execution_id=stranger)
        tracker.end_run(success=True, execution_id=stranger)
        tracker.get_run(stranger)
        scope.output_data = data.draw(values)
        scope.narrative = data.draw(values)
    run = stored(pipeline, scope.run_id)
    assert [d.id for d in run.decisions] == [d for d in made if d]
    check_bounded_json(pipeline)


@FUZZ
@given(data=st.data())
def test_start_and_end_run_by_execution_id_never_raise(
    pipeline: Pipeline, data: st.DataObject
) -> None:
    tracker = pipeline.tracker
    execution_id = data.draw(ids)
    run_id = tracker.start_run(
        goal_id=data.draw(values),
        goal_description=data.draw(values),
        input_data=data.draw(values),
        execution_id=execution_id,
    )
    assert run_id
    tracker.quick_decision(
        intent=data.draw(values), action=data.draw(values), reasoning=data.draw(values)
    )
    tracker.end_run(
        success=data.draw(values),
        narrative=data.draw(values),
        output_data=data.draw(values),
        status=data.draw(st.one_of(st.none(), st.sampled_from(list(dt.RunStatus)), values)),
    )
    tracker.get_active_executions()
    tracker.get_stats()
    stored(pipeline, run_id)
    check_bounded_json(pipeline)


class AppError(Exception):
    """The decorated function's own failure, which must reach its caller unchanged."""

    def __str__(self) -> str:  # printable whatever it carries
        return "the action failed"


@FUZZ
@given(data=st.data())
def test_decorated_functions_return_and_raise_exactly_what_they_would(
    pipeline: Pipeline, data: st.DataObject
) -> None:
    result = data.draw(values)
    fails = data.draw(st.booleans())
    spec_result = data.draw(values)
    spec_raises = data.draw(st.booleans())

    def spec(*args: Any) -> Any:
        if spec_raises:
            raise RuntimeError("spec exploded")
        return spec_result

    @dt.decision(
        "fuzzed",
        options=data.draw(st.one_of(options.filter(lambda o: isinstance(o, list)), st.just(spec))),
        chosen=spec,
        reasoning=data.draw(st.one_of(st.text(max_size=10), st.just(spec))),
        tokens=spec,
        node_id=data.draw(st.one_of(st.none(), st.text(max_size=10))),
    )
    def act(*args: Any, **kwargs: Any) -> Any:
        if fails:
            raise AppError("the action failed", result)
        return result

    run_ids = []

    @dt.agent("fuzz-agent", tracker=pipeline.tracker)
    def agent(argument: Any) -> Any:
        live = pipeline.tracker.get_run()
        run_ids.append(live.id if live is not None else "")
        return act(argument, key=argument)

    argument = data.draw(values)
    if fails:
        with pytest.raises(AppError) as raised:
            agent(argument)
        assert raised.value.args[1] is result
    else:
        assert agent(argument) is result
    run = stored(pipeline, run_ids[0])
    assert len(run.decisions) == 1
    assert run.decisions[0].outcome is not None
    assert run.decisions[0].outcome.success is not fails
    check_bounded_json(pipeline)


@pytest.mark.parametrize("field", ["input_data", "context", "result", "state_changes", "output"])
@pytest.mark.parametrize("plain", [True, False], ids=["plain", "unencodable"])
def test_a_10_mb_value_is_cut_with_a_marker_in_spans_and_store(
    pipeline: Pipeline, field: str, plain: bool
) -> None:
    # Plain JSON is encoded whole and then replaced by a marker object; a value that
    # needs sanitizing has its long strings cut, each with a "[truncated N chars]" suffix.
    value: dict[str, Any] = {"blob": BIG}
    if not plain:
        value.update(cycle=cyclic_list(), bad=Hostile())
    tracker = pipeline.tracker
    with tracker.run("g", input_data=value if field == "input_data" else None) as scope:
        decision_id = tracker.decide(
            intent="i",
            options=[{"id": "a"}],
            chosen="a",
            reasoning="r",
            context=value if field == "context" else None,
        )
        tracker.record_outcome(
            decision_id=decision_id,
            success=True,
            result=value if field == "result" else None,
            state_changes=value if field == "state_changes" else None,
        )
        if field == "output":
            scope.output_data = value
    check_bounded_json(pipeline)
    run = stored(pipeline, scope.run_id)
    record = run.model_dump(mode="json")
    where = {
        "input_data": record["input_data"],
        "context": record["decisions"][0]["input_context"],
        "result": record["decisions"][0]["outcome"]["result"],
        "state_changes": record["decisions"][0]["outcome"]["state_changes"],
        "output": record["output_data"],
    }[field]
    if plain:
        assert where[TRUNCATED_KEY] is True
        assert where["original_chars"] > len(BIG)
    else:
        assert where["blob"].endswith(f"…[truncated {len(BIG) - 16 * 1024} chars]")
        assert where["cycle"] == [1, "<cycle>"]
    assert len(json.dumps(record)) < 100_000


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str exploded")


def test_an_exception_that_cannot_be_printed_still_ends_the_run_as_failed(
    pipeline: Pipeline,
) -> None:
    tracker = pipeline.tracker
    with pytest.raises(Unprintable), tracker.run("g") as scope:
        raise Unprintable()
    run = stored(pipeline, scope.run_id)
    assert run.status == dt.RunStatus.FAILED


def test_lone_surrogates_do_not_cost_the_run(pipeline: Pipeline) -> None:
    # Half an emoji from a cut-off stream, or a file name read with surrogateescape.
    half = "\ud83d"
    tracker = pipeline.tracker
    with tracker.run(f"goal {half}", half, {"text": half}) as scope:
        decision_id = tracker.decide(
            intent=f"intent {half}",
            options=[{"id": half, "description": half}],
            chosen=half,
            reasoning=half,
            context={half: half},
        )
        tracker.record_outcome(decision_id=decision_id, success=True, result=[half])
    run = stored(pipeline, scope.run_id)
    assert run.goal_id == "goal \ufffd"
    assert run.input_data == {"text": "\ufffd"}
    assert run.decisions[0].outcome is not None
    assert run.decisions[0].outcome.result == ["\ufffd"]


def test_an_unprintable_exception_still_fails_a_run_started_by_a_decorator(
    pipeline: Pipeline,
) -> None:
    tracker = pipeline.tracker

    @dt.agent(goal_id="g", tracker=tracker)
    def handle() -> None:
        raise Unprintable()

    with pytest.raises(Unprintable):
        handle()
    pipeline.processor.force_flush(10_000)
    [summary] = pipeline.store.list_runs()
    assert summary.status == dt.RunStatus.FAILED
    # str() raised, so the problem names the exception by its repr
    assert summary.critical_problems == ["Unprintable: Unprintable()"]
