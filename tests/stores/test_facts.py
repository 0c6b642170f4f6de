"""The analytics columns of a run's decisions (``stores/_facts.py``)."""

from __future__ import annotations

import copy
from typing import Any

from decisiontrace.stores import _sqlite_rows as _rows
from decisiontrace.stores import _stored_form as _form
from decisiontrace.stores._facts import COLUMNS, Offers, _offer, decision_facts, fact_rows

from ._records import make_record


def test_decisions_sharing_one_options_list_get_the_columns_of_their_own_choice() -> None:
    """The writer's records share one options list between decisions offering the same
    options; each decision's columns still follow its own choice."""
    record = make_record("run_shared")
    options: list[dict[str, Any]] = [
        {"id": "a", "description": "First", "confidence": 0.9},
        {"id": "b", "description": "Second", "confidence": 0.5, "confidence_defaulted": True},
    ]
    base = record["decisions"][0]
    record["decisions"] = [
        {**base, "id": f"dec_{n}", "options": options, "chosen_option_id": chosen}
        for n, chosen in enumerate(("a", "b", "elsewhere", "a"))
    ]
    record["decisions"].append({**base, "id": "dec_4", "options": [], "chosen_option_id": "a"})
    rows = decision_facts(record)
    unshared = copy.deepcopy(record)  # a list of its own for each decision
    assert rows == decision_facts(unshared)
    listed = COLUMNS.index("chosen_listed") + 1
    confidence = COLUMNS.index("confidence") + 1
    text = COLUMNS.index("text") + 1
    assert [(row[listed], row[confidence]) for row in rows] == [
        (1, 0.9), (1, None), (0, None), (1, 0.9), (0, None),
    ]  # fmt: skip
    assert "first\nb\nsecond" in rows[0][text] and "first" not in rows[4][text]


def test_the_writers_rows_are_the_checked_rows_and_replace_a_lone_surrogate() -> None:
    """``record_part`` (the writer's rows, checked once through the record's JSON) gives
    the rows ``record_row``/``decision_rows`` give, and U+FFFD for text UTF-8 cannot
    hold wherever it is: in a run field, a decision's text, an option, a key."""
    clean = make_record("run_clean")
    fragment, row, decisions = _rows.record_part(clean)
    assert (fragment, row, decisions) == (
        "",
        _rows.record_row(clean),
        _rows.decision_rows(clean["id"], clean),
    )
    half = "\ud83d"
    for place in ("goal", "intent", "option", "key"):
        record = make_record("run_half")
        decision = record["decisions"][0]
        if place == "goal":
            record["goal_id"] = f"goal {half}"
        elif place == "intent":
            decision["intent"] = f"Intent {half}"
        elif place == "option":
            decision["options"][0]["description"] = half
        else:
            decision["input_context"] = {half: 1}
        fragment, row, decisions = _rows.record_part(record)
        valid = _rows.valid_text(record)
        assert valid != record
        assert (row, decisions) == (
            _rows.record_row(valid),
            _rows.decision_rows(valid["id"], valid),
        )
        assert _form.decode(row[6], row[8]) == valid


def test_offers_kept_across_records_follow_each_list_and_its_choice() -> None:
    """The writer keeps what option lists give across runs (``offers``): each record's
    rows are still those of its own lists, even where an entry was made for another
    list now gone whose id the new list took."""
    offers: Offers = {}
    record = make_record("run_a")
    assert fact_rows("a", record, offers) == fact_rows("a", record)
    other = make_record("run_b")
    options = [{"id": "zed", "description": "Zed", "confidence": 0.3}]
    for decision in other["decisions"]:
        decision["options"] = options
    other["decisions"][1]["chosen_option_id"] = "zed"
    stale = _offer([{"id": "old"}], "zed")
    offers[(id(options), "zed")] = ([{"id": "old"}], stale)  # a list gone, its id reused
    rows = fact_rows("b", other, offers)
    assert rows == fact_rows("b", other)
    assert rows[1][COLUMNS.index("option_ids") + 2] == '["zed"]'
    assert fact_rows("a", record, offers) == fact_rows("a", record)
