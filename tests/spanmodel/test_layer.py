"""The span model sits under every other component: ``spanmodel/`` imports nothing of
the package but itself and ``_internal/`` (docs/architecture.md), so the tracker, the
pipeline, the export and the stores can all use it without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import decisiontrace.spanmodel

ALLOWED = ("decisiontrace.spanmodel", "decisiontrace._internal", "decisiontrace._version")


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, at any depth (functions, TYPE_CHECKING blocks)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the package it is written in
                names.append("decisiontrace.spanmodel")
            elif node.module is not None:
                names.append(node.module)
    return names


def test_the_span_model_imports_no_other_component() -> None:
    folder = Path(decisiontrace.spanmodel.__file__).parent
    files = sorted(folder.glob("*.py"))
    assert len(files) >= 8
    outside = {
        f"{path.name}: {name}"
        for path in files
        for name in imported_modules(path)
        if (name == "decisiontrace" or name.startswith("decisiontrace."))
        and not name.startswith(ALLOWED)
    }
    assert outside == set()
