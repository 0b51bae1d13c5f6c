"""The memory engine's sorted indexes agree with a sorted list."""

from __future__ import annotations

import bisect

from hypothesis import given, settings
from hypothesis import strategies as st

from slimta.storage._sorted import MAX_BLOCK, SortedKeys, SortedPairs

pairs = st.tuples(st.integers(0, 50).map(float), st.text("abcdef", min_size=1, max_size=3))
# Enough distinct ids that a list of 2000 splits blocks.
ids = st.text("abcdef", min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), pairs), max_size=300), st.one_of(st.none(), pairs))
def test_pairs_match_sorted_list(
    operations: list[tuple[bool, tuple[float, str]]], start: tuple[float, str] | None
) -> None:
    index = SortedPairs()
    expected: list[tuple[float, str]] = []
    for adding, pair in operations:
        present = pair in expected
        if adding and not present:
            index.add(pair)
            bisect.insort(expected, pair)
        elif not adding and present:
            index.remove(pair)
            expected.remove(pair)

    assert len(index) == len(expected)
    assert list(index.iter_after(None)) == expected
    after = expected if start is None else [pair for pair in expected if pair > start]
    assert list(index.iter_after(start)) == after


def test_pairs_split_large_blocks() -> None:
    index = SortedPairs()
    count = MAX_BLOCK * 5 + 3
    for number in reversed(range(count)):
        index.add((float(number % 7), f"{number:06d}"))

    ordered = list(index.iter_after(None))
    assert ordered == sorted(ordered)
    assert len(ordered) == count
    assert list(index.iter_after(ordered[1000])) == ordered[1001:]

    for pair in ordered[::2]:
        index.remove(pair)
    assert list(index.iter_after(None)) == ordered[1::2]


@settings(max_examples=100, deadline=None)
@given(st.lists(ids, max_size=2000), st.one_of(st.none(), ids))
def test_ids_match_sorted_list(added: list[str], start: str | None) -> None:
    # The memory engine also keeps every id, and the locked ids, as str keys.
    index: SortedKeys[str] = SortedKeys()
    expected = sorted(set(added))
    for message_id in dict.fromkeys(added):
        index.add(message_id)

    assert list(index.iter_after(None)) == expected
    after = expected if start is None else [message_id for message_id in expected if message_id > start]
    assert list(index.iter_after(start)) == after
