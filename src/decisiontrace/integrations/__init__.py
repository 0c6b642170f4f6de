"""Integrations with agent frameworks, one module per framework.

Each module imports its framework only when used: ``import decisiontrace`` never
imports LangGraph. ``decisiontrace.integrations.langgraph`` (also reachable as
``dt.integrations.langgraph``) makes every graph invocation a run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["langgraph"]


def __getattr__(name: str) -> ModuleType:
    # Submodules load on first use, so that importing the package stays light.
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
