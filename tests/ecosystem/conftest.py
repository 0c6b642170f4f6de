"""The ecosystem tests: the real packages from PyPI (the ``ecosystem`` extra), each
combination of instrumentations in a process of its own, against a fake OpenAI server
on 127.0.0.1 that reports known token usage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ecosystem._openai_server import FakeOpenAI

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().parent == HERE:
            item.add_marker(pytest.mark.ecosystem)


@pytest.fixture(scope="module")
def openai_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


def run_agent(scenario: str, server: FakeOpenAI, *instrumentations: str) -> dict[str, Any]:
    """Run ``_agent.py`` in a fresh interpreter and return what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_SDK_DISABLED"] = "false"
    env["LANGSMITH_TRACING"] = "false"
    env["TRACELOOP_TRACE_CONTENT"] = "false"  # OpenLLMetry: no prompts on spans
    completed = subprocess.run(
        [sys.executable, str(HERE / "_agent.py"), scenario, server.base_url, *instrumentations],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def needs(*modules: str) -> None:
    """Skip (saying which) when a package of the ecosystem extra cannot be imported."""
    for module in modules:
        pytest.importorskip(module, reason=f"{module} is not installed (the ecosystem extra)")
