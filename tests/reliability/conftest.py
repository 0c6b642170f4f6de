"""Fixtures shared by the reliability tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._support import reap_children


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    """No child process outlives its test, whatever the test's outcome."""
    yield
    reap_children()
