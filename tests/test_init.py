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
)

_PROBE = """
import json, sys
import decisiontrace
print(json.dumps(sorted(m for m in sys.modules)))
"""


def _modules_after(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
        # Plugins other packages register with pydantic (logfire's) import what they like.
        env={"PYDANTIC_DISABLE_PLUGINS": "__all__", "PATH": "/usr/bin:/bin"},
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
