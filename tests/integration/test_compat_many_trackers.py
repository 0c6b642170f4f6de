"""Many short-lived compat trackers, as the original's colony runtime makes them.

The colony runtime builds a ``StreamDecisionTracker`` per spawned worker, on one shared
storage, and never closes it. In a child process (so that nothing else in the test
session counts), 2,000 trackers are created, used for one run each and dropped; the
child reports memory (tracemalloc and RSS) before and after, the decisiontrace threads
alive, and how many trackers are still reachable.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from decisiontrace.models import RunStatus
from decisiontrace.stores import open_store

CHILD = r"""
import asyncio, gc, json, sys, threading, tracemalloc, weakref
from decisiontrace.compat.hive import StreamDecisionTracker

kind, folder = sys.argv[1], sys.argv[2]

class Storage:  # the original ConcurrentStorage's interface: async save_run(run, immediate)
    def __init__(self):
        self.saved = 0
    async def save_run(self, run, immediate=False):
        self.saved += 1

storage = Storage() if kind == "save_run" else folder  # a SQLite file: one shared writer
alive = weakref.WeakSet()

def worker(i):
    # Values repeat from worker to worker: the redaction cache of clean JSON texts
    # (bounded, 256 K characters) would otherwise fill up with them and count here.
    tracker = StreamDecisionTracker(f"worker-{i}", storage)
    alive.add(tracker)
    tracker.start_run("exec", "goal", "", {"task": "t"})
    tracker.start_run("exec", "goal", "", {"task": "t"})  # the orchestrator's start_run
    decision = tracker.decide("exec", "pick", [{"id": "a"}, {"id": "b"}], "a", "why")
    tracker.record_outcome("exec", decision, True, {"ok": True}, tokens_used=3)
    tracker.end_run("exec", True)
    tracker.end_run("exec", True, "done", {"out": 1})

async def colony(start, count):
    for i in range(start, start + count):
        worker(i)
        await asyncio.sleep(0)  # the hand-over tasks run, as in the colony's loop

def flush():
    # One tracker per storage is enough: the writer is shared.
    probe = StreamDecisionTracker("probe", storage)
    probe.start_run("p", "goal")
    probe.end_run("p", True)
    assert probe.flush(30.0)

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

asyncio.run(colony(0, 200))  # warm-up: imports, caches, the writer or loop thread
flush()
gc.collect()
tracemalloc.start()
before_traced = tracemalloc.get_traced_memory()[0]
before_rss = rss()
asyncio.run(colony(200, 2000))
flush()
gc.collect()
after_traced = tracemalloc.get_traced_memory()[0]
after_rss = rss()
print(json.dumps({
    "traced_growth": after_traced - before_traced,
    "rss_growth": after_rss - before_rss,
    "threads": sorted(t.name for t in threading.enumerate() if t.name.startswith("decisiontrace")),
    "alive": len(alive),
    "saved": getattr(storage, "saved", None),
}))
"""


@pytest.mark.parametrize("kind", ["save_run", "sqlite"])
def test_two_thousand_dropped_trackers_leave_memory_and_threads_as_they_were(
    kind: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(tmp_path / "runs.db")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["alive"] == 0
    assert report["traced_growth"] < 2 * 1024 * 1024, report
    if kind == "save_run":
        # With SQLite, RSS also counts SQLite's page cache filling as the file grows (C
        # memory, bounded by its cache_size); tracemalloc above counts Python objects.
        assert report["rss_growth"] < 2 * 1024 * 1024, report
    assert len(report["threads"]) <= 3, report
    runs = 200 + 2000 + 2  # every worker's run, and the probes'
    if kind == "save_run":
        # Two saves per worker's run, as in the original: the second end_run saves again.
        assert report["saved"] == 2 * 2200 + 2
    else:
        store = open_store(str(tmp_path / "runs.db"))
        stored = store.list_runs()
        assert len(stored) == runs
        assert {s.status for s in stored} == {RunStatus.COMPLETED}
        workers = [store.load_run(s.run_id) for s in stored if s.run_id.startswith("run_worker")]
        assert len(workers) == 2200
        for run in workers:  # the second end_run's values: one stored run per worker
            assert run is not None
            assert (run.narrative, run.output_data, len(run.decisions)) == ("done", {"out": 1}, 1)
