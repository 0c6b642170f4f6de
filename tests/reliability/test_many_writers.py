"""Several processes, each with several threads, writing one SQLite store at once.

The processes start together on a new database (so they also race to create it), all
seed ``random`` the same way (as agents do for reproducible runs), and a reader lists
runs the whole time. Nobody may see "database is locked", and every run must be in the
store exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from decisiontrace.stores import SQLiteStore

from ._support import child_script, finish, integrity, rows, spawn

PROCESSES = 4
THREADS = 3
RUNS_PER_THREAD = 15

WRITER = f"""
import random
random.seed(1234)  # every process the same: ids must still be unique
store, processor, provider, tracker = pipeline(sys.argv[1], flush_interval=0.01)
run_ids = []
lock = threading.Lock()

def work(worker):
    for index in range({RUNS_PER_THREAD}):
        run_id = finished_run(tracker, f"p{{os.getpid()}}-t{{worker}}", decisions=2)
        with lock:
            run_ids.append(run_id)

threads = [threading.Thread(target=work, args=(n,)) for n in range({THREADS})]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
provider.shutdown()
say(json.dumps(run_ids))
"""


def test_processes_and_threads_share_one_store_without_lock_errors(tmp_path: Path) -> None:
    db = tmp_path / "shared" / "runs.db"
    script = child_script(tmp_path, WRITER)
    children = [spawn(script, str(db)) for _ in range(PROCESSES)]

    stop = threading.Event()
    reader_errors: list[BaseException] = []

    def read_all_the_time() -> None:
        while not db.exists() and not stop.is_set():
            time.sleep(0.005)
        try:
            store = SQLiteStore(db)
            while not stop.is_set():
                store.list_runs(limit=20)
            store.close()
        except BaseException as error:
            reader_errors.append(error)

    reader = threading.Thread(target=read_all_the_time, daemon=True)
    reader.start()
    reported: list[str] = []
    try:
        for child in children:
            returncode, stdout, stderr = finish(child, timeout=60)
            assert returncode == 0, stderr
            assert "locked" not in stderr.lower() and "Traceback" not in stderr, stderr
            assert stderr == "", stderr  # not one error or warning logged
            reported += json.loads(stdout.splitlines()[-1])
    finally:
        stop.set()
        reader.join(10)
    assert reader_errors == []

    expected = PROCESSES * THREADS * RUNS_PER_THREAD
    assert len(reported) == len(set(reported)) == expected
    stored = [run_id for (run_id,) in rows(db, "SELECT run_id FROM runs")]
    assert sorted(stored) == sorted(reported)
    assert integrity(db) == "ok"
