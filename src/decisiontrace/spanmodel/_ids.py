"""Id formats of the span model: runs, executions, decisions, problems and fragments.

One home for every id the package makes or reads (``docs/span-model.md``, "Ids"):

* run: ``run_{stream_id}_{YYYYmmdd_HHMMSS}_{8 hex}`` (``run_{YYYYmmdd_HHMMSS}_{8 hex}``
  for the compat single-run tracker, which has no stream);
* execution: 32 hex characters when the caller gives none;
* decision ``dec_N`` and problem ``prob_N``, numbered per run from 0; recorded in
  another process than the run's, with the suffix ``@{fragment id}``;
* fragment: ``{service}:{pid}:{8 hex}``.
"""

from __future__ import annotations

import os
import random
import re
from datetime import datetime
from typing import Final

from decisiontrace.spanmodel import _records

RUN_ID_PREFIX: Final = "run_"
DECISION_ID_PREFIX: Final = "dec_"
PROBLEM_ID_PREFIX: Final = "prob_"
#: Between a decision's or problem's number and the fragment that recorded it.
FRAGMENT_SEPARATOR: Final = "@"

_STAMP = r"(?P<stamp>\d{8}_\d{6})"
# The stream is optional in the pattern (compat ids have none) but must not be empty.
_RUN_ID = re.compile(rf"^run_(?:(?P<stream>.+)_)?{_STAMP}_[0-9a-f]{{8}}$")
# The time part alone: any id ending in it tells its start time (the CLI shows it).
_RUN_ID_TAIL = re.compile(rf"_{_STAMP}_[0-9a-f]{{8}}$")

#: Ids come from here: a private generator, fast (no syscall) and unaffected by
#: ``random.seed()`` in the agent, which would make every process produce the same ids
#: and overwrite runs. Seeded from os.urandom, reseeded in a forked child.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def run_id_prefix(stream_id: str | None) -> str:
    """What a tracker's run ids start with: ``run_{stream_id}_``, or ``run_`` without a stream."""
    return f"{RUN_ID_PREFIX}{stream_id}_" if stream_id else RUN_ID_PREFIX


def new_run_id(prefix: str, start_ns: int) -> str:
    """``{prefix}{YYYYmmdd_HHMMSS}_{8 hex}``, the original's run id format, in local time."""
    return f"{prefix}{_records.ns_to_stamp(start_ns)}_{_ids.getrandbits(32):08x}"


def new_execution_id() -> str:
    """An execution id for a run started without one: 32 hex characters."""
    return f"{_ids.getrandbits(128):032x}"


def new_fragment_id(service: str) -> str:
    """A fragment id unique to this process and recording: ``{service}:{pid}:{8 hex}``."""
    return f"{service}:{os.getpid()}:{_ids.getrandbits(32):08x}"


def decision_id(number: int, fragment_id: str | None = None) -> str:
    """``dec_N``, or ``dec_N@{fragment id}`` for a decision recorded into another
    process's run: unique within the run across processes."""
    if fragment_id is None:
        return f"{DECISION_ID_PREFIX}{number}"
    return f"{DECISION_ID_PREFIX}{number}{FRAGMENT_SEPARATOR}{fragment_id}"


def problem_id(number: int, fragment_id: str | None = None) -> str:
    """``prob_N``, or ``prob_N@{fragment id}``, as :func:`decision_id`."""
    if fragment_id is None:
        return f"{PROBLEM_ID_PREFIX}{number}"
    return f"{PROBLEM_ID_PREFIX}{number}{FRAGMENT_SEPARATOR}{fragment_id}"


def decision_number(decision_id: str) -> int | None:
    """N of a ``dec_N`` id the run's own process made; None for any other id."""
    if not decision_id.startswith(DECISION_ID_PREFIX):
        return None
    suffix = decision_id[len(DECISION_ID_PREFIX) :]
    return int(suffix) if suffix.isdigit() else None


def stream_of_run_id(run_id: str) -> str | None:
    """The stream id (``gen_ai.agent.name``) a tracker's run id carries, if any."""
    match = _RUN_ID.match(run_id)
    return None if match is None else match.group("stream")


def run_id_time(run_id: str) -> datetime | None:
    """The start time, to the second, that a run id ending in the tracker's
    ``_{YYYYmmdd_HHMMSS}_{8 hex}`` carries (naive local time), or None."""
    match = _RUN_ID_TAIL.search(run_id)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group("stamp"), "%Y%m%d_%H%M%S")
    except ValueError:
        return None


__all__ = [
    "DECISION_ID_PREFIX",
    "FRAGMENT_SEPARATOR",
    "PROBLEM_ID_PREFIX",
    "RUN_ID_PREFIX",
    "decision_id",
    "decision_number",
    "new_execution_id",
    "new_fragment_id",
    "new_run_id",
    "problem_id",
    "run_id_prefix",
    "run_id_time",
    "stream_of_run_id",
]
