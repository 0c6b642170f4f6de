"""Stores under test: every kind, each in a place of its own.

PostgreSQL comes from ``DECISIONTRACE_TEST_POSTGRES_URL`` (``.ci/run`` sets it); each
test gets a schema of its own (the ``postgres_url`` fixture of tests/conftest.py),
dropped after it, so tests never see each other's runs or another test run's. Without
the variable, PostgreSQL tests are skipped, saying why.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from decisiontrace.stores import RunStore, open_store

KINDS = ["memory", "sqlite", "jsonfiles", "postgres"]


@dataclass
class StoreUnderTest:
    """One store of one kind: its URL, and new handles on it."""

    kind: str
    url: str
    #: True when other processes can open the same store from ``url``.
    shared: bool
    #: The PostgreSQL ``application_name`` of its connections (to find them).
    application_name: str = ""
    opened: list[RunStore] = field(default_factory=list)

    def open(self) -> RunStore:
        """A new handle on the store (the same object for the memory store)."""
        if self.kind == "memory" and self.opened:
            return self.opened[0]
        store = open_store(self.url)
        self.opened.append(store)
        return store


@pytest.fixture(params=KINDS)
def store_under_test(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    kind: str = request.param
    if kind == "memory":
        subject = StoreUnderTest(kind, "memory://", shared=False)
    elif kind == "sqlite":
        subject = StoreUnderTest(kind, f"sqlite:///{tmp_path / 'runs.db'}", shared=True)
    elif kind == "jsonfiles":
        subject = StoreUnderTest(kind, (tmp_path / "runs").as_uri(), shared=True)
    else:
        url = request.getfixturevalue("postgres_url")
        name = dict(p.split("=", 1) for p in urlsplit(url).query.split("&"))["application_name"]
        subject = StoreUnderTest(kind, url, shared=True, application_name=name)
    yield subject
    for store in subject.opened:
        store.close()


@pytest.fixture
def store(store_under_test: StoreUnderTest) -> RunStore:
    return store_under_test.open()
