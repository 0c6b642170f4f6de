"""DecisionInstrumentor: patching code by path, and restoring it exactly."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import decisiontrace as dt
from decisiontrace.models import Run
from decisiontrace.spanmodel import semconv as sc
from decisiontrace.stores import MemoryStore
from decisiontrace.tracking.instrumentor import DecisionInstrumentor

MODULE = "dt_instrumentor_targets"
SOURCE = """
import asyncio


def classify(ticket):
    return "bug" if "crash" in ticket else "howto"


async def answer(ticket):
    await asyncio.sleep(0)
    return f"answer to {ticket}"


def stream(n):
    yield from range(n)


NOT_CALLABLE = 42


class Base:
    def inherited(self, x):
        return f"inherited {x}"


class Router(Base):
    def route(self, x):
        return x

    @classmethod
    def make(cls, x):
        return f"{cls.__name__} {x}"

    @staticmethod
    def check(x):
        return x


router = Router()
"""


@dataclass
class Pipe:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    processor: dt.RunRecordProcessor
    store: MemoryStore
    tracker: dt.DecisionTracker

    def decision_spans(self) -> list[dict[str, Any]]:
        return [
            dict(s.attributes or {})
            for s in self.exporter.get_finished_spans()
            if (s.attributes or {}).get(sc.SPAN_KIND) == sc.KIND_DECISION
        ]

    def runs(self) -> list[Run]:
        assert self.processor.force_flush(10_000)
        runs = [self.store.load_run(s.run_id) for s in self.store.list_runs()]
        return [r for r in runs if r is not None]


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    store = MemoryStore()
    processor = dt.RunRecordProcessor(store, flush_interval=0.05)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Pipe(
        provider, exporter, processor, store, dt.DecisionTracker("test", tracer_provider=provider)
    )
    provider.shutdown()


@pytest.fixture
def targets() -> Iterator[types.ModuleType]:
    module = types.ModuleType(MODULE)
    exec(compile(SOURCE, f"<{MODULE}>", "exec"), module.__dict__)
    sys.modules[MODULE] = module
    yield module
    del sys.modules[MODULE]


@pytest.fixture
def instrumentor() -> Iterator[DecisionInstrumentor]:
    instance = DecisionInstrumentor()
    assert not instance.is_instrumented_by_opentelemetry
    yield instance
    if instance.is_instrumented_by_opentelemetry:
        instance.uninstrument()


def snapshot(module: types.ModuleType) -> dict[str, Any]:
    """Every patchable object exactly as stored (raw descriptors for the class)."""
    router_class = module.Router
    return {
        "classify": module.__dict__["classify"],
        "answer": module.__dict__["answer"],
        "stream": module.__dict__["stream"],
        "route": router_class.__dict__["route"],
        "make": router_class.__dict__["make"],
        "check": router_class.__dict__["check"],
        "inherited": module.Base.__dict__["inherited"],
        "router attributes": dict(vars(module.router)),
        "Router attributes": set(vars(router_class)),
    }


def assert_identical(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, dict | set):
            assert after[key] == value, key
        else:
            assert after[key] is value, key


SPECS: dict[str, Any] = {
    f"{MODULE}:classify": {"intent": "Classify", "options": ["bug", "howto"]},
    f"{MODULE}:answer": {"intent": "Answer", "options": ["a"], "chosen": lambda result: "a"},
    f"{MODULE}:stream": "streamer",
    f"{MODULE}:Router.route": {"intent": "Route", "options": lambda self, x: [x]},
    f"{MODULE}:Router.make": {"intent": "Make", "decision_type": "delegation"},
    f"{MODULE}:Router.check": {"intent": "Check", "options": lambda x: [x]},
    f"{MODULE}:Router.inherited": "inheritor",
}


def exercise(module: types.ModuleType) -> list[Any]:
    router = module.Router()
    return [
        module.classify("app crash"),
        asyncio.run(module.answer("T-1")),
        list(module.stream(2)),
        router.route("r"),
        module.Router.make("m"),
        router.check("c"),
        router.inherited("i"),
    ]


EXPECTED_RESULTS = [
    "bug",
    "answer to T-1",
    [0, 1],
    "r",
    "Router m",
    "c",
    "inherited i",
]


def test_instrument_records_decisions_and_uninstrument_restores_exactly(
    pipe: Pipe, targets: types.ModuleType, instrumentor: DecisionInstrumentor
) -> None:
    before = snapshot(targets)

    instrumentor.instrument(targets=SPECS)
    assert instrumentor.is_instrumented_by_opentelemetry
    patched = snapshot(targets)
    for key in ("classify", "answer", "stream", "route", "make", "check"):
        assert patched[key] is not before[key], key
    assert "inherited" in patched["Router attributes"]  # a slot shadowing the base class
    assert patched["inherited"] is before["inherited"]  # the base class is untouched

    with pipe.tracker.run("g"):
        assert exercise(targets) == EXPECTED_RESULTS

    (run,) = pipe.runs()
    assert [(d.intent, d.chosen_option_id, d.node_id) for d in run.decisions] == [
        ("Classify", "bug", "unknown"),
        ("Answer", "a", "unknown"),
        ("Route", "r", "unknown"),
        ("Make", "", "unknown"),
        ("Check", "c", "unknown"),
    ]
    assert run.decisions[3].decision_type.value == "delegation"
    assert run.metrics.nodes_executed == ["unknown", "streamer", "inheritor"]

    instrumentor.uninstrument()
    assert not instrumentor.is_instrumented_by_opentelemetry
    assert_identical(before, snapshot(targets))
    count = len(pipe.decision_spans())
    with pipe.tracker.run("g"):
        assert exercise(targets) == EXPECTED_RESULTS
    assert len(pipe.decision_spans()) == count


def test_instance_attribute_target_is_removed_again(
    pipe: Pipe, targets: types.ModuleType, instrumentor: DecisionInstrumentor
) -> None:
    before = snapshot(targets)
    instrumentor.instrument(targets={f"{MODULE}:router.route": {"intent": "Route one"}})
    assert "route" in vars(targets.router)
    with pipe.tracker.run("g"):
        assert targets.router.route("x") == "x"
        assert targets.Router().route("y") == "y"  # other instances are not patched
    assert [a[sc.DECISION_INTENT] for a in pipe.decision_spans()] == ["Route one"]
    instrumentor.uninstrument()
    assert_identical(before, snapshot(targets))


def test_instrumenting_twice_warns_and_does_nothing(
    targets: types.ModuleType,
    instrumentor: DecisionInstrumentor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    original_route = vars(targets.Router)["route"]
    instrumentor.instrument(targets={f"{MODULE}:classify": {"intent": "Classify"}})
    wrapped = targets.classify
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        instrumentor.instrument(targets={f"{MODULE}:Router.route": {"intent": "Route"}})
    assert [r.getMessage() for r in caplog.records] == [
        "decisiontrace: attempting to instrument while already instrumented"
    ]
    assert targets.classify is wrapped
    assert vars(targets.Router)["route"] is original_route


def test_uninstrumenting_when_not_instrumented_warns(
    instrumentor: DecisionInstrumentor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        instrumentor.uninstrument()
    assert [r.getMessage() for r in caplog.records] == [
        "decisiontrace: attempting to uninstrument while already uninstrumented"
    ]
    assert not instrumentor.is_instrumented_by_opentelemetry


def test_instrumentor_conventions(instrumentor: DecisionInstrumentor) -> None:
    assert DecisionInstrumentor() is instrumentor
    assert list(instrumentor.instrumentation_dependencies()) == []
    (entry_point,) = [
        ep
        for ep in importlib.metadata.entry_points(group="opentelemetry_instrumentor")
        if ep.name == "decisiontrace"
    ]
    assert entry_point.load() is DecisionInstrumentor


def test_without_targets_it_does_nothing_and_stays_available(
    targets: types.ModuleType, instrumentor: DecisionInstrumentor
) -> None:
    # what opentelemetry-instrument does: no targets, extra keyword arguments
    instrumentor.instrument(skip_dep_check=True, raise_exception_on_conflict=True)
    assert not instrumentor.is_instrumented_by_opentelemetry
    original = targets.classify
    instrumentor.instrument(targets={f"{MODULE}:classify": "n"}, tracer_provider=None)
    assert instrumentor.is_instrumented_by_opentelemetry
    assert targets.classify is not original


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ({f"{MODULE}:missing": {}}, ValueError),
        ({"no_such_module_for_decisiontrace:f": {}}, ValueError),
        ({"no-colon": {}}, ValueError),
        ({f"{MODULE}:": {}}, ValueError),
        ({f"{MODULE}:a:b": {}}, ValueError),
        ({f"{MODULE}:Router.route": 5}, TypeError),
        ({f"{MODULE}:Router.route": {"bogus": 1}}, TypeError),
        ({f"{MODULE}:Router.route": {"chosen": "not callable"}}, TypeError),
        ({f"{MODULE}:NOT_CALLABLE": {}}, TypeError),
    ],
)
def test_bad_targets_raise_and_leave_nothing_patched(
    targets: types.ModuleType,
    instrumentor: DecisionInstrumentor,
    bad: dict[str, Any],
    error: type[Exception],
) -> None:
    before = snapshot(targets)
    with pytest.raises(error):
        instrumentor.instrument(targets={f"{MODULE}:classify": {}, f"{MODULE}:stream": "n", **bad})
    assert not instrumentor.is_instrumented_by_opentelemetry
    assert_identical(before, snapshot(targets))


def test_targets_must_be_a_dict_and_tracker_a_tracker(instrumentor: DecisionInstrumentor) -> None:
    with pytest.raises(TypeError):
        instrumentor.instrument(targets=[f"{MODULE}:classify"])
    with pytest.raises(TypeError):
        instrumentor.instrument(targets={f"{MODULE}:classify": {}}, tracker="t")
    assert not instrumentor.is_instrumented_by_opentelemetry


def test_tracker_is_used_for_auto_run_specs(
    pipe: Pipe, targets: types.ModuleType, instrumentor: DecisionInstrumentor
) -> None:
    instrumentor.instrument(
        targets={f"{MODULE}:classify": {"intent": "Classify", "auto_run": True}},
        tracker=pipe.tracker,
    )
    assert targets.classify("crash") == "bug"
    (run,) = pipe.runs()
    assert run.goal_id == "classify"
    assert [d.intent for d in run.decisions] == ["Classify"]


def test_target_replaced_after_instrumenting_is_left_alone(
    targets: types.ModuleType,
    instrumentor: DecisionInstrumentor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    original_stream = targets.stream
    instrumentor.instrument(targets={f"{MODULE}:classify": {}, f"{MODULE}:stream": "n"})

    def replacement(ticket: str) -> str:
        return "replaced"

    targets.classify = replacement
    with caplog.at_level(logging.WARNING, logger="decisiontrace"):
        instrumentor.uninstrument()
    assert targets.classify is replacement
    assert targets.stream is original_stream
    assert [r.getMessage() for r in caplog.records] == [
        f"decisiontrace: {MODULE}:classify was replaced after it was instrumented; left as it is"
    ]
