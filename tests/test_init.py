"""``import decisiontrace`` stays light: heavy parts load only when used."""

from __future__ import annotations

import json
import subprocess
import sys
from types import ModuleType

import pytest

import decisiontrace

# Modules an agent start or a CLI command must not pay for unless it uses them.
HEAVY = (
    "grpc",
    "click",
    "rich",
    "opentelemetry.exporter",
    "opentelemetry.sdk.metrics",
    "opentelemetry.sdk._logs",
    "opentelemetry.proto",
    "google.protobuf",
    "urllib.request",
    # Loaded on first use since 0.3's start-up work (issue 16.5):
    "opentelemetry.sdk",  # the SDK: with the first RunRecordProcessor or configure()
    "wrapt",  # and asyncio, which it imports: on the first decoration
    "asyncio",
    "decisiontrace.pipeline.processor",
    "decisiontrace.stores.sqlite",  # the stores: when one is opened
    "decisiontrace.stores.jsonfiles",
    "decisiontrace.evaluation",  # rebuild's readers: when rebuilding
    "decisiontrace.export._otlp_json",
    "decisiontrace.pipeline._assembly",
    # The record models and pydantic (not pydantic-core, whose encoder recording uses):
    # when a model is first used (issue 16.5, second round).
    "pydantic",
    "decisiontrace.models",
)

_PROBE = """
import json, sys
import decisiontrace
print(json.dumps(sorted(m for m in sys.modules)))
"""


def _modules_after(code: str, *, plugins: bool = False) -> list[str]:
    # Plugins other packages register with pydantic (logfire's) import what they like
    # when a model is first built: off, unless the test is about them.
    env = {"PATH": "/usr/bin:/bin"} if plugins else {"PYDANTIC_DISABLE_PLUGINS": "__all__"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_import_loads_no_exporter_grpc_cli_or_sdk_metrics() -> None:
    loaded = _modules_after(_PROBE)
    assert "decisiontrace" in loaded
    heavy = [m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY)]
    assert heavy == []


def test_lazy_names_load_on_first_use() -> None:
    code = _PROBE.replace("print(", "decisiontrace.configure\ndecisiontrace.evaluate\nprint(", 1)
    loaded = _modules_after(code)
    assert "decisiontrace.setup" in loaded
    assert "decisiontrace.evaluation" in loaded


def test_processor_store_and_wrapt_load_when_used() -> None:
    use = (
        "decisiontrace.RunRecordProcessor\n"
        "decisiontrace.open_store('memory://')\n"
        "decisiontrace.decision()(lambda: None)\n"
        "print("
    )
    loaded = _modules_after(_PROBE.replace("print(", use, 1))
    assert "decisiontrace.pipeline.processor" in loaded
    assert "opentelemetry.sdk.trace" in loaded
    assert "decisiontrace.stores.memory" in loaded
    assert "wrapt" in loaded


def test_recording_and_storing_runs_loads_no_pydantic() -> None:
    # The whole recording path (tracker, decorator, processor, SQLite store) writes the
    # enums' values and JSON text: the models and pydantic wait for a reader.
    use = (
        "import tempfile\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "store = decisiontrace.open_store(tempfile.mkdtemp() + '/runs.db')\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(decisiontrace.RunRecordProcessor(store))\n"
        "tracker = decisiontrace.DecisionTracker('s', tracer_provider=provider)\n"
        "decisiontrace.set_default_tracker(tracker)\n"
        "pick = decisiontrace.decision('pick')(lambda x: x)\n"
        "kind = decisiontrace.DecisionType.DELEGATION\n"
        "with tracker.run('goal'):\n"
        "    d = tracker.decide(node_id='n', intent='i', options=[{'id': 'a'}], chosen='a',\n"
        "                       reasoning='r', decision_type=kind)\n"
        "    tracker.record_outcome(decision_id=d, success=True, result={'x': 1})\n"
        "    pick(3)\n"
        "provider.force_flush()\n"
        "assert [s['decision_count'] for s in store.list_summaries()] == [2], 'not stored'\n"
        "print("
    )
    loaded = _modules_after(_PROBE.replace("print(", use, 1))
    assert "decisiontrace.stores.sqlite" in loaded
    assert [m for m in loaded if m == "pydantic" or m.startswith("pydantic.")] == []
    assert "decisiontrace.models" not in loaded


def test_reading_a_model_loads_pydantic() -> None:
    code = _PROBE.replace("print(", "decisiontrace.open_store('memory://').list_runs()\nprint(", 1)
    loaded = _modules_after(code)
    assert "decisiontrace.models" in loaded
    assert "pydantic.main" in loaded


def test_import_builds_no_model_so_pydantic_plugins_wait() -> None:
    # The models are built on first use (defer_build): importing builds no validator, so
    # plugins other packages register with pydantic (logfire's imports logfire, requests
    # and an OTLP exporter) are not loaded by `import decisiontrace` either.
    code = _PROBE.replace(
        "print(",
        "from decisiontrace import models\n"
        "built = [n for n in dir(models) if getattr(getattr(models, n), "
        "'__pydantic_complete__', False)]\n"
        "assert built == [], built\n"
        "print(",
        1,
    )
    loaded = _modules_after(code, plugins=True)
    assert [m for m in loaded if m == "logfire" or m.startswith("logfire.")] == []


def test_models_build_on_first_use() -> None:
    code = _PROBE.replace(
        "print(",
        "run = decisiontrace.Run(id='r', goal_id='g')\n"
        "assert decisiontrace.Run.__pydantic_complete__\n"
        "print(",
        1,
    )
    assert "decisiontrace.models" in _modules_after(code)


def test_every_public_name_resolves() -> None:
    import decisiontrace.evaluation
    import decisiontrace.export.rebuild
    import decisiontrace.setup  # submodules of these names must not shadow them

    for name in decisiontrace.__all__:
        value = getattr(decisiontrace, name)
        assert value is not None, name
        assert name == "integrations" or not isinstance(value, ModuleType), name
    assert set(decisiontrace.__all__) <= set(dir(decisiontrace))


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        decisiontrace.no_such_name  # type: ignore[attr-defined]  # noqa: B018
