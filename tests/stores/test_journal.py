"""The journal's writers: a reused pid is not its old process, and orphans are taken once.

Real processes throughout: a writer killed with SIGKILL, a pid "used again" by
rewriting the dead writer's rows to the pid of a live process (this one, or a sleeping
child), takers racing in processes of their own, a forked child. SQLite and PostgreSQL
(each test in a schema of its own).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import decisiontrace as dt
from decisiontrace import RunStatus
from decisiontrace.pipeline._journal import RECOVERED_REASON
from decisiontrace.stores._journal_writers import Writers

from .conftest import StoreUnderTest
from .test_contract import IN_FLIGHT, PRELUDE, spawn

ENTRY_TRACE = "ab" * 16


class JournalTable:
    """The tables of a SQLite or PostgreSQL store (its URL), read and changed behind it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.subject = StoreUnderTest(
            "sqlite" if url.startswith("sqlite:") else "postgres", url, shared=True
        )

    def execute(self, statement: str) -> list[tuple[Any, ...]]:
        """Run ``statement`` (``{t}`` before a table's name) in a transaction of its own."""
        if self.subject.kind == "sqlite":
            with sqlite3.connect(self.url.removeprefix("sqlite:///")) as connection:
                return connection.execute(statement.format(t="")).fetchall()
        import psycopg

        from tests.conftest import postgres_base_url

        schema = parse_qs(urlsplit(self.url).query)["schema"][0]
        with psycopg.connect(postgres_base_url()) as connection:
            cursor = connection.execute(statement.format(t=f'"{schema}".'))
            return cursor.fetchall() if cursor.description else []

    def writers(self) -> list[tuple[int, str | None]]:
        return sorted(self.execute("SELECT DISTINCT pid, pid_start FROM {t}journal"))


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JournalTable]:
    if request.param == "sqlite":
        table = JournalTable(f"sqlite:///{tmp_path / 'runs.db'}")
    else:
        table = JournalTable(request.getfixturevalue("postgres_url"))
    table.subject.open()  # creates the tables
    yield table
    for store in table.subject.opened:
        store.close()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process of this host that is not this one."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield child
    child.kill()
    child.wait()


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def entry(run_id: str) -> tuple[str, str, dict[str, Any]]:
    return (run_id, ENTRY_TRACE, {"kind": "decision", "note": run_id})


# -- a pid used again ---------------------------------------------------------------------


@pytest.mark.parametrize("used_by", ["this process", "another live process"])
def test_a_killed_writers_run_is_recovered_when_its_pid_is_used_again(
    journal: JournalTable, tmp_path: Path, used_by: str
) -> None:
    # A container's main process is pid 1 after every restart: the new one must not
    # take its SIGKILLed predecessor's entries for its own (or for a live process's).
    store = journal.subject.open()
    child = spawn(tmp_path, IN_FLIGHT, journal.subject.url)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line, child.communicate(timeout=10)[1]
        in_flight = json.loads(line)["in_flight"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    ((pid, start),) = journal.writers()
    assert pid == child.pid and start is not None
    # Started after the writer (a start is in clock ticks: not within the same one).
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    reused = os.getpid() if used_by == "this process" else sleeper.pid
    assert Writers().start_of(reused) not in (None, start)
    journal.execute(f"UPDATE {{t}}journal SET pid = {reused}")

    processor = dt.RunRecordProcessor(
        store, journal=True, flush_interval=0.02, handle_sigterm=False
    )
    try:
        assert processor.force_flush(10_000)
        recovered = store.load_run(in_flight)
        assert recovered is not None and recovered.status == RunStatus.STUCK
        assert recovered.model_dump()["end_reason"] == RECOVERED_REASON
        assert [(d.intent, d.chosen_option_id) for d in recovered.decisions] == [
            ("classify", "bug")
        ]
        assert journal.writers() == []  # cleared with the save
    finally:
        processor.shutdown()
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize(
    ("whose", "taken"),
    [("this process's pid", True), ("a live process's pid", False), ("a dead pid", True)],
)
def test_entries_without_a_start_are_judged_by_their_pid(
    journal: JournalTable, whose: str, taken: bool, sleeper: subprocess.Popen[bytes]
) -> None:
    # Entries written before starts were kept. This process always writes its start,
    # so one at its pid without a start is an earlier process's.
    store = journal.subject.open()
    store.journal_append([entry("run_old")])
    if whose == "this process's pid":
        pid = os.getpid()
    else:
        pid = sleeper.pid if whose == "a live process's pid" else dead_pid()
    journal.execute(f"UPDATE {{t}}journal SET pid = {pid}, pid_start = NULL")
    assert store.journal_take_orphans() == ([entry("run_old")] if taken else [])


def test_entries_of_a_dead_writer_from_before_the_start_column_are_recovered(
    journal: JournalTable,
) -> None:
    # A store of the previous schema: no pid_start column, its version recorded as such.
    store = journal.subject.open()
    store.journal_append([entry("run_before")])
    store.close()
    journal.execute(f"UPDATE {{t}}journal SET pid = {dead_pid()}")
    journal.execute("ALTER TABLE {t}journal DROP COLUMN pid_start")
    if journal.subject.kind == "sqlite":
        journal.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
        version = "SELECT value FROM meta WHERE key = 'schema_version'"
    else:
        journal.execute("DELETE FROM {t}schema_version WHERE version = 5")
        version = "SELECT max(version) FROM {t}schema_version"

    again = journal.subject.open()  # upgrades the schema
    assert [str(v) for (v,) in journal.execute(version)] == [
        "8" if journal.subject.kind == "sqlite" else "5"
    ]
    assert journal.writers()[0][1] is None  # the old entry keeps no start
    assert again.journal_take_orphans() == [entry("run_before")]
    assert again.journal_take_orphans() == []  # now this process's


# -- taking orphans -----------------------------------------------------------------------

FILLER = """
store = open_store(sys.argv[1])
store.journal_append([
    (f"run_{sys.argv[2]}_{n}", "ab" * 16, {"kind": "decision", "n": n}) for n in range(20)
])
"""

TAKER = """
store = open_store(sys.argv[1])
say("ready")
sys.stdin.readline()
say(json.dumps([run_id for run_id, _, _ in store.journal_take_orphans()]))
sys.stdin.readline()  # alive until told: what it took is its own until then
"""


def test_takers_in_several_processes_take_each_orphan_once(
    journal: JournalTable, tmp_path: Path
) -> None:
    writers = 4
    for writer in range(writers):
        filler = spawn(tmp_path, FILLER, journal.subject.url, str(writer))
        _, stderr = filler.communicate(timeout=60)
        assert filler.returncode == 0, stderr
    assert len(journal.writers()) == writers
    taker_script = tmp_path / "taker.py"
    taker_script.write_text(PRELUDE + TAKER, encoding="utf-8")
    takers = [
        subprocess.Popen(
            [sys.executable, str(taker_script), journal.subject.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        for taker in takers:
            assert taker.stdout is not None
            assert taker.stdout.readline() == "ready\n", taker.communicate(timeout=10)[1]
        for taker in takers:  # all at once
            assert taker.stdin is not None
            taker.stdin.write("go\n")
            taker.stdin.flush()
        took = []
        for taker in takers:
            assert taker.stdout is not None
            line = taker.stdout.readline()
            assert line, taker.communicate(timeout=10)[1]
            took.append(json.loads(line))
        everything = Counter(run_id for runs in took for run_id in runs)
        assert sorted(everything) == sorted(
            f"run_{w}_{n}" for w in range(writers) for n in range(20)
        )
        assert set(everything.values()) == {1}  # none taken twice
        # A dead writer's entries go to one taker, all of them.
        for writer in range(writers):
            holders = [i for i, runs in enumerate(took) if f"run_{writer}_0" in runs]
            assert sum(run.startswith(f"run_{writer}_") for run in took[holders[0]]) == 20
        # A taker killed before saving: what it took is an orphan again, for one taker.
        killed = max(range(len(takers)), key=lambda i: len(took[i]))
        takers[killed].kill()
        takers[killed].communicate(timeout=30)
        store = journal.subject.open()
        assert sorted(run for run, _, _ in store.journal_take_orphans()) == sorted(took[killed])
        assert store.journal_take_orphans() == []
    finally:
        for taker in takers:
            if taker.returncode is None:
                taker.communicate("exit\n", timeout=30)


# -- fork ---------------------------------------------------------------------------------


def test_a_forked_childs_entries_are_its_own(journal: JournalTable) -> None:
    store = journal.subject.open()
    store.journal_append([entry("run_parent")])
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            store.journal_append([entry("run_child")])
            code = 0 if store.journal_take_orphans() == [] else 2  # its parent lives
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    writers = dict(journal.writers())
    assert set(writers) == {os.getpid(), pid}
    assert writers[pid] != writers[os.getpid()]
    # The child is gone: its entry is an orphan; this process's is not.
    assert store.journal_take_orphans() == [entry("run_child")]


# -- identities ---------------------------------------------------------------------------


def test_a_process_is_told_apart_from_a_later_one_with_its_pid(
    sleeper: subprocess.Popen[bytes],
) -> None:
    writers = Writers()
    pid, start = writers.me()
    assert pid == os.getpid() and start == writers.start_of(pid) and "/" in start
    boot, _, ticks = start.partition("/")
    assert writers.alive(pid, start)
    assert not writers.alive(pid, f"{boot}/{int(ticks) + 1}")  # my pid, not my start
    assert not writers.alive(pid, None)
    assert not writers.alive(0, None)
    other = writers.start_of(sleeper.pid)
    assert other is not None and other != start
    assert writers.alive(sleeper.pid, other)
    assert not writers.alive(sleeper.pid, f"{boot}/{int(other.partition('/')[2]) + 1}")
    assert not writers.alive(sleeper.pid, f"another-boot/{other.partition('/')[2]}")
    assert writers.alive(sleeper.pid, None)  # no start: judged by the pid alone
    sleeper.kill()
    sleeper.wait()
    assert not writers.alive(sleeper.pid, other)
    assert not writers.alive(sleeper.pid, None)


def test_a_killed_process_not_yet_reaped_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    writers = Writers()
    start = writers.start_of(child.pid)
    assert start is not None and writers.alive(child.pid, start)
    child.kill()
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # a zombie now
        assert writers.alive(child.pid, None)  # kill(0) still sees it
        assert not writers.alive(child.pid, start)
    finally:
        child.wait()


def test_without_proc_a_process_token_tells_this_process_apart(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    writers = Writers(proc=str(tmp_path))  # no procfs there
    pid, start = writers.me()
    assert pid == os.getpid() and start.startswith("~")
    assert Writers(proc=str(tmp_path)).me()[1] != start  # drawn per process (here: per
    assert writers.alive(pid, start)  # instance, as a new process would)
    assert not writers.alive(pid, "~another")
    assert writers.alive(sleeper.pid, "~whatever")  # other pids: kill(0), as before
    assert writers.alive(sleeper.pid, Writers().start_of(sleeper.pid))
    assert not writers.alive(dead_pid(), "~whatever")


def test_a_forked_child_reads_its_own_start() -> None:
    writers = Writers()
    parent = writers.me()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.write(write, json.dumps(writers.me()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = tuple(json.loads(pipe.read()))
    os.waitpid(pid, 0)
    assert child[0] == pid and child != parent
    assert writers.me() == parent
