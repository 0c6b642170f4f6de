"""What the memory scenario's RSS growth is: spans queued for the writer, then kept by
the allocators after they are freed.

    .venv/bin/python benchmarks/rss.py            # writes benchmarks/results/rss.json

The memory scenario (``throughput.memory``) records 100,000 decisions in runs of 10 as
fast as one thread can, and sees RSS grow by anything from +16 to +345 MiB while the
memory Python holds (tracemalloc) grows by under 1 MiB. Here the same workload runs
two ways, each in a fresh interpreter, two rounds each, sampling the queues every 20 ms:

- ``free``: as the scenario, the agent never waits; the writer (persisting ~half as
  fast as the agent records, see end to end) falls behind and spans queue up.
- ``paced``: ``force_flush`` every 100 runs, so at most ~1,100 spans wait.

For each round: RSS growth, the peak of spans waiting (the processor's queue and the
batch exporter's), RSS by mapping (``/proc/self/smaps``: the main thread's malloc heap,
anonymous mappings, where pymalloc's arenas and the threads' malloc arenas live), and
RSS after glibc's ``malloc_trim(0)``, which returns free heap pages to the system:
what it gives back was free memory the allocator kept, not memory in use. Also: the
bytes one ended span holds while it waits (tracemalloc).
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from throughput import rss_bytes
from workload import DECISIONS_PER_RUN, RESULTS, batch_processor, manual_run

import decisiontrace as dt
from decisiontrace.stores import SQLiteStore

MiB = 1 << 20
RUNS = 10_000  # 100,000 decisions, as the memory scenario


def rss_by_mapping() -> dict[str, int]:
    """Resident bytes by kind of mapping."""
    kinds: dict[str, int] = {}
    kind = ""
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            first = line.split(maxsplit=6)
            if "-" in first[0] and not first[0].endswith(":"):
                path = first[5].strip() if len(first) > 5 else ""
                if path == "[heap]":
                    kind = "malloc heap (main thread)"
                elif not path:
                    kind = "anonymous (pymalloc arenas, threads' malloc arenas)"
                else:
                    kind = "files and other"
            elif line.startswith("Rss:"):
                kinds[kind] = kinds.get(kind, 0) + int(line.split()[1]) * 1024
    return kinds


def pymalloc_arenas() -> tuple[int, int]:
    """pymalloc's arenas now (1 MiB each on 3.10+) and the bytes in use in them, from
    ``sys._debugmallocstats`` (which writes to the C stderr)."""
    with tempfile.TemporaryFile("w+") as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        stats = {}
        for line in out:
            name, _, value = line.rpartition("=")
            stats[name.strip()] = value.strip().replace(",", "")
    return (
        int(stats["# arenas allocated current"]),
        int(stats["# bytes in allocated blocks"]),
    )


def bytes_per_waiting_span() -> float:
    """What an ended span of the workload holds while it waits in a queue."""

    class Hold(SpanProcessor):
        def __init__(self) -> None:
            self.spans: list[ReadableSpan] = []

        def on_end(self, span: ReadableSpan) -> None:
            self.spans.append(span)

    hold = Hold()
    provider = TracerProvider()
    provider.add_span_processor(hold)
    tracker = dt.DecisionTracker("rss", tracer_provider=provider)
    for _ in range(50):
        manual_run(tracker)
    hold.spans.clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(1000):
        manual_run(tracker)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / len(hold.spans)


def rounds(mode: str, workdir: Path) -> list[dict[str, Any]]:
    """Two rounds of RUNS runs in one process: growth, peak queues, where RSS went."""
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    processor = dt.RunRecordProcessor(SQLiteStore(workdir / f"{mode}.db"))
    batch = batch_processor()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(batch)
    tracker = dt.DecisionTracker("rss", tracer_provider=provider)
    for _ in range(200):
        manual_run(tracker)
    provider.force_flush()
    gc.collect()
    trim(0)
    peak = {"processor": 0, "batch": 0}
    stop = threading.Event()

    def sample() -> None:
        queue = batch._batch_processor._queue  # the SDK's deque (private; read only)
        while not stop.wait(0.02):
            peak["processor"] = max(peak["processor"], processor.queue_length)
            peak["batch"] = max(peak["batch"], len(queue))

    results = []
    for _ in range(2):
        peak.update(processor=0, batch=0)
        stop.clear()
        sampler = threading.Thread(target=sample)
        sampler.start()
        rss_before, kinds_before = rss_bytes(), rss_by_mapping()
        arenas_before, _ = pymalloc_arenas()
        for index in range(RUNS):
            manual_run(tracker)
            if mode == "paced" and index % 100 == 99:
                processor.force_flush()
        provider.force_flush()
        stop.set()
        sampler.join()
        gc.collect()
        rss_after, kinds_after = rss_bytes(), rss_by_mapping()
        arenas_after, in_use = pymalloc_arenas()
        trim(0)
        rss_trimmed, kinds_trimmed = rss_bytes(), rss_by_mapping()
        results.append(
            {
                "decisions": RUNS * DECISIONS_PER_RUN,
                "rss_growth_mib": (rss_after - rss_before) / MiB,
                "rss_growth_after_malloc_trim_mib": (rss_trimmed - rss_before) / MiB,
                "peak_spans_waiting": dict(peak),
                "pymalloc_arenas_before_after": [arenas_before, arenas_after],
                "pymalloc_in_use_mib": in_use / MiB,
                "growth_by_mapping_mib": {
                    kind: {
                        "after": (kinds_after.get(kind, 0) - kinds_before.get(kind, 0)) / MiB,
                        "after_malloc_trim": (kinds_trimmed.get(kind, 0) - kinds_before[kind])
                        / MiB,
                    }
                    for kind in kinds_before
                },
            }
        )
    provider.shutdown()
    return results


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--mode":  # one mode, in a process of its own
        mode = sys.argv[2]
        print(json.dumps(rounds(mode, Path(tempfile.mkdtemp(prefix="decisiontrace-rss-")))))
        return 0
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average": os.getloadavg(),
        "bytes_per_waiting_span": bytes_per_waiting_span(),
    }
    for mode in ("free", "paced"):  # each in a fresh interpreter: no memory carried over
        child = subprocess.run(
            [sys.executable, __file__, "--mode", mode], capture_output=True, text=True, check=True
        )
        result[mode] = json.loads(child.stdout.splitlines()[-1])
        for number, round_ in enumerate(result[mode], 1):
            print(
                f"{mode} round {number}: RSS +{round_['rss_growth_mib']:.1f} MiB, "
                f"+{round_['rss_growth_after_malloc_trim_mib']:.1f} after malloc_trim; "
                f"peak spans waiting {round_['peak_spans_waiting']}; pymalloc arenas "
                f"{round_['pymalloc_arenas_before_after']} (1 MiB each), "
                f"{round_['pymalloc_in_use_mib']:.1f} MiB in use"
            )
            for kind, growth in round_["growth_by_mapping_mib"].items():
                print(
                    f"    {kind:52s} {growth['after']:+7.1f} MiB, "
                    f"after malloc_trim {growth['after_malloc_trim']:+7.1f}"
                )
    result["load_average_after"] = os.getloadavg()
    print(f"an ended span waiting holds {result['bytes_per_waiting_span']:.0f} bytes")
    out = RESULTS / "rss.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
