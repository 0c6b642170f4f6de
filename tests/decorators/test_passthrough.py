"""Values the agent passes or returns reach their destination untouched.

Recording never iterates, reads, awaits, closes or ``repr``-s an iterator, generator,
stream, file or other non-plain value; it records a short description instead. Each test
hands such a value to a recording path and checks both ends: the caller gets the value
exactly as it was, and the stored record holds the description.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import decisiontrace as dt
from decisiontrace.decorators import decision
from decisiontrace.spanmodel._jsonsafe import describe_without_reading, dumps
from tests.conftest import Pipeline


class Touchy:
    """Raises on every way recording could read it, and remembers being touched."""

    def __init__(self) -> None:
        object.__setattr__(self, "touched", [])

    def _touch(self, how: str) -> Any:
        self.touched.append(how)
        raise RuntimeError(f"touched by {how}")

    def __iter__(self) -> Iterator[Any]:
        return self._touch("iter")  # type: ignore[no-any-return]

    def __next__(self) -> Any:
        return self._touch("next")

    def __len__(self) -> int:
        return self._touch("len")  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return self._touch("repr")  # type: ignore[no-any-return]

    def __str__(self) -> str:
        return self._touch("str")  # type: ignore[no-any-return]

    def __bool__(self) -> bool:
        return self._touch("bool")  # type: ignore[no-any-return]

    def close(self) -> None:
        self._touch("close")

    def model_dump(self, **kwargs: Any) -> Any:
        return self._touch("model_dump")


class LazyDict(dict[str, Any]):
    """A dict subclass whose overridden reads must never run (they would load data)."""

    def items(self) -> Any:
        raise AssertionError("items() override called")

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("__iter__ override called")


class WithIterable(BaseModel):
    """A pydantic model holding a lazy iterable: dumping the model would consume it."""

    name: str
    rows: Iterable[int]


def stored_results(pipeline: Pipeline, run_id: str) -> list[Any]:
    pipeline.flush()
    run = pipeline.store.load_run(run_id)
    assert run is not None
    return [d.outcome.result if d.outcome else None for d in run.decisions]


def test_decision_results_that_are_iterators_reach_the_caller_whole(
    pipeline: Pipeline,
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)

    @decision("list iterator", tracker=tracker)
    def numbers() -> Iterator[int]:
        return iter([1, 2, 3])

    @decision("generator expression", tracker=tracker)
    def squares() -> Iterator[int]:
        return (n * n for n in range(4))

    with tracker.run("g") as run:
        got_numbers = list(numbers())
        got_squares = list(squares())
    assert got_numbers == [1, 2, 3]
    assert got_squares == [0, 1, 4, 9]
    assert stored_results(pipeline, run.run_id) == ["<list_iterator>", "<generator>"]


def test_a_returned_file_is_neither_read_nor_moved_nor_closed(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    path = tmp_path / "data.txt"
    path.write_text("line 1\nline 2\n")

    @decision("open the data", tracker=tracker)
    def open_data() -> io.TextIOWrapper:
        return path.open()

    with tracker.run("g") as run:
        handle = open_data()
    with handle:
        assert handle.tell() == 0
        assert handle.read() == "line 1\nline 2\n"
    assert stored_results(pipeline, run.run_id) == ["<_io.TextIOWrapper>"]


def test_an_object_that_raises_when_touched_is_returned_untouched(
    pipeline: Pipeline,
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    touchy = Touchy()

    @decision("touchy", options=["a"], tracker=tracker)
    def make() -> Touchy:
        return touchy

    with tracker.run("g") as run:
        assert make() is touchy
        nested = {"value": touchy, "in_list": [touchy], "lazy": LazyDict(k=touchy)}
        decision_id = tracker.decide(
            intent="i", options=["a"], chosen="a", reasoning="r", context=nested
        )
        tracker.record_outcome(decision_id=decision_id, success=True, result=nested)
    assert touchy.touched == []
    name = "<tests.decorators.test_passthrough.Touchy>"
    first, second = stored_results(pipeline, run.run_id)
    assert first == name
    assert second == {"value": name, "in_list": [name], "lazy": {"k": name}}


def test_a_pydantic_model_holding_a_lazy_iterable_keeps_its_items(
    pipeline: Pipeline,
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)

    @decision("model", tracker=tracker)
    def make() -> WithIterable:
        return WithIterable(name="rows", rows=iter([1, 2]))

    with tracker.run("g") as run:
        model = make()
    assert list(model.rows) == [1, 2]
    [result] = stored_results(pipeline, run.run_id)
    assert result["name"] == "rows"
    assert result["rows"].startswith("<pydantic")


def test_an_async_decision_returning_an_async_generator_hands_over_every_item(
    pipeline: Pipeline,
) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)

    async def produce() -> AsyncIterator[int]:
        for n in range(3):
            yield n

    @decision("stream", tracker=tracker)
    async def stream() -> AsyncIterator[int]:
        return produce()

    async def main() -> list[int]:
        with tracker.run("g"):
            agen = await stream()
        return [n async for n in agen]

    assert asyncio.run(main()) == [0, 1, 2]


def test_tracker_inputs_and_contexts_are_not_consumed(pipeline: Pipeline) -> None:
    tracker = dt.DecisionTracker("s", tracer_provider=pipeline.provider)
    rows = iter(["r1", "r2"])
    context_rows = (r for r in ["c1"])
    options = (o for o in ["a", "b"])
    with tracker.run("g", input_data={"rows": rows}) as run:
        decision_id = tracker.decide(
            intent="i", options=options, chosen="", reasoning="", context={"rows": context_rows}
        )
        tracker.record_outcome(decision_id=decision_id, success=True)
    assert list(rows) == ["r1", "r2"]
    assert list(context_rows) == ["c1"]
    assert list(options) == ["a", "b"]
    pipeline.flush()
    stored = pipeline.store.load_run(run.run_id)
    assert stored is not None
    assert stored.input_data == {"rows": "<list_iterator>"}
    assert stored.decisions[0].input_context == {"rows": "<generator>"}
    assert stored.decisions[0].options == []


@pytest.mark.parametrize(
    ("value", "described"),
    [
        (iter([1]), '"<list_iterator>"'),
        (range(5), '"<range of length 5>"'),
        ({"k": {1: 2}.keys()}, '{"k":"<dict_keys of length 1>"}'),
        ([Touchy()], '["<tests.decorators.test_passthrough.Touchy>"]'),
    ],
)
def test_dumps_describes_values_it_must_not_read(value: Any, described: str) -> None:
    text, problem = dumps(value)
    assert text == described
    assert problem is not None and "descriptions" in problem


def test_describe_without_reading_survives_a_hostile_type() -> None:
    class Meta(type):
        def __getattribute__(cls, name: str) -> Any:
            raise RuntimeError("no attributes")

    class Odd(metaclass=Meta):
        pass

    assert describe_without_reading(Odd()) == "<object>"
