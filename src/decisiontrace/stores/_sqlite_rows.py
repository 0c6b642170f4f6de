"""Rows of SQLiteStore's ``runs`` and ``decisions`` tables: a record as columns.

The ``record`` column holds the run record in the stored form of
:mod:`decisiontrace.stores._stored_form` (its ``schema_version`` column names the form);
the other columns are what listing and the analytics filter and count on.
"""

from __future__ import annotations

from typing import Any

from decisiontrace.spanmodel import _records
from decisiontrace.stores import _stored_form as _form
from decisiontrace.stores._facts import Offers, fact_rows
from decisiontrace.stores._filters import record_node_ids
from decisiontrace.stores._fragments import fragment_key
from decisiontrace.stores._stored_form import checked_text, dumps, json_bytes, valid_text
from decisiontrace.stores.base import AssembledRun, Record

#: The ``runs`` row of one record and the ``decisions`` rows of its decisions.
RunRows = tuple[tuple[Any, ...], list[tuple[Any, ...]]]


def record_row(record: Record) -> tuple[Any, ...]:
    """The ``runs`` row of one record (ValueError for text UTF-8 cannot hold)."""
    checked_text(record["id"])
    checked_text(record["goal_id"])
    checked_text(record.get("status", "running"))
    return _row(record, _form.encode(record))


def _row(record: Record, stored: bytes) -> tuple[Any, ...]:
    """The ``runs`` row of a record whose text UTF-8 can hold, ``stored`` its stored form."""
    return (
        record["id"],
        record["goal_id"],
        record.get("status", "running"),
        record.get("started_at"),
        record.get("completed_at"),
        dumps(record_node_ids(record)),
        stored,
        dumps(_records.summary_from_record(record)),
        _form.CURRENT,
    )


def decision_rows(run_id: Any, record: Record) -> list[tuple[Any, ...]]:
    """The ``decisions`` rows of a (merged) run record (ValueError: see record_row)."""
    rows = fact_rows(run_id, record)
    for row in rows:
        # Every text column at once: ids, names, option ids and the search text.
        checked_text("".join((row[2], row[3], row[4], row[5], row[8], row[13])))
    return rows


def record_part(
    record: Record, offers: Offers | None = None
) -> tuple[str, tuple[Any, ...], list[tuple[Any, ...]]]:
    """``(fragment_id, runs row, decisions rows)`` of one record (``""``: the root);
    ``offers``: see :func:`~decisiontrace.stores._facts.fact_rows`.

    Text UTF-8 cannot hold (a lone surrogate) is stored as U+FFFD. Both JSON encoders
    refuse such text anywhere in the record, keys included, and every column's text
    comes from the record's, so once the record's JSON is made no column needs the
    check :func:`record_row` and :func:`decision_rows` make.

    Raises:
        TypeError: the record holds a value JSON cannot represent.
    """
    fragment = fragment_key(record)
    try:
        payload = json_bytes(record)
    except (TypeError, ValueError):  # a lone surrogate: store U+FFFD in its place
        record = valid_text(record)
        payload = json_bytes(record)
    row = _row(record, _form.encoded(payload))
    return fragment, row, [] if fragment else fact_rows(row[0], record, offers)


def assembled_part(run: AssembledRun) -> tuple[str, tuple[Any, ...], list[tuple[Any, ...]]]:
    """``(fragment_id, runs row, decisions rows)`` of a run the processor assembled
    (text UTF-8 cannot hold is stored as U+FFFD: see :func:`record_part`).

    Its records are read-only (see :class:`~decisiontrace.stores.base.AssembledRun`),
    so what their option lists give is kept across runs.
    """
    return record_part(run.record(), _ASSEMBLED_OFFERS)


#: ``fact_rows``'s offers of the processor's records, shared by every store and writer
#: thread of the process (entries are set and read whole; a lost one is made again).
_ASSEMBLED_OFFERS: Offers = {}


__all__ = [
    "assembled_part",
    "checked_text",
    "decision_rows",
    "dumps",
    "json_bytes",
    "record_part",
    "record_row",
    "valid_text",
]
