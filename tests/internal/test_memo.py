"""The bounded memo rule (``_internal.memo``)."""

from __future__ import annotations

from decisiontrace._internal.memo import remember


def test_a_full_memo_is_emptied_before_it_takes_the_new_value() -> None:
    memo: dict[str, int] = {}
    assert remember(memo, 2, "a", 1) == 1
    assert remember(memo, 2, "b", 2) == 2
    assert memo == {"a": 1, "b": 2}
    assert remember(memo, 2, "c", 3) == 3
    assert memo == {"c": 3}  # never more than the limit, the newest kept
