"""docs/architecture.md stays true to the tree: every file it names exists, and every
folder of the package is in its component table."""

from __future__ import annotations

import re
from pathlib import Path

import decisiontrace

PACKAGE = Path(decisiontrace.__file__).parent
ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def test_every_file_the_architecture_names_exists() -> None:
    named = set(re.findall(r"[\w/]*\w+\.py\b", DOC))
    assert len(named) >= 40
    modules = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    missing = set()
    for name in named:
        if name.startswith(("tests/", "benchmarks/")):
            found = (ROOT / name).is_file()
        else:  # a module: by its path in the package, or by its name alone
            found = any(module == name or module.endswith("/" + name) for module in modules)
        if not found:
            missing.add(name)
    assert missing == set()


def test_every_package_folder_is_in_the_component_table() -> None:
    table = {row.split("|")[1].strip() for row in DOC.splitlines() if row.startswith("| `")}
    folders = {path.relative_to(PACKAGE).parts[0] + "/" for path in PACKAGE.glob("*/__init__.py")}
    assert len(folders) >= 10
    assert {folder for folder in folders if f"`{folder}`" not in table} == set()
