"""Bounded memos: a dict of values worked out before, emptied when it is full.

The writer, the ingest reader and the caller's path remember what repeats (ids,
option lists, times to the second, attributes by their bytes) in plain dicts: a hit is
one ``dict.get`` at the call site, no function call. A miss comes here. Emptying the
whole dict when full, rather than evicting one entry, keeps a miss cheap too, and the
values that repeat come back at once.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(memo: dict[K, V], limit: int, key: K, value: V) -> V:
    """Keep ``value`` under ``key`` in ``memo`` (emptied first when it holds ``limit``
    entries); returns ``value``."""
    if len(memo) >= limit:
        memo.clear()
    memo[key] = value
    return value


__all__ = ["remember"]
