"""Arbitrary agent values always become valid, bounded JSON."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from decisiontrace.spanmodel._jsonsafe import TRUNCATED_KEY, dumps


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_plain_json_passes_unchanged() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": "é"}}
    text, problem = dumps(value)
    assert problem is None
    assert json.loads(text) == value


def test_non_json_values_are_converted_with_a_problem_reported() -> None:
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    value = {
        "nan": math.nan,
        "inf": math.inf,
        "bytes": b"\xff\x00",
        "text_bytes": b"hello",
        "when": datetime(2026, 1, 2, 3, 4, 5),
        "cyclic": cyclic,
        "set": {1},
        "odd": Unprintable(),
        1: "int key",
    }
    text, problem = dumps(value)
    assert problem is not None
    decoded = json.loads(text)
    assert decoded["nan"] == "nan" and decoded["inf"] == "inf"
    assert decoded["bytes"].startswith("base64:")
    assert decoded["text_bytes"] == "hello"
    assert decoded["when"] == "2026-01-02T03:04:05"
    assert decoded["cyclic"] == {"name": "loop", "self": "<cycle>"}
    assert decoded["set"] == [1]
    assert decoded["odd"] == "<tests.spanmodel.test_jsonsafe.Unprintable>"
    assert decoded["1"] == "int key"


def test_oversized_values_become_a_truncation_marker() -> None:
    text, problem = dumps({"big": "x" * 100_000}, max_chars=1000)
    assert problem is not None and "truncated" in problem
    decoded = json.loads(text)
    assert decoded[TRUNCATED_KEY] is True
    assert decoded["original_chars"] > 100_000


def test_deep_nesting_is_cut() -> None:
    value: Any = "leaf"
    for _ in range(5000):
        value = [value]
    text, problem = dumps(value)
    assert problem is not None
    assert "max depth" in text
    json.loads(text)
