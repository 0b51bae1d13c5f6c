"""Sorted keys for the memory engine's indexes: retry times, all ids and locks.

The keys live in short sorted blocks, found by bisecting the last key of
each block, so adding and removing cost O(log n) plus a move of at most
:data:`MAX_BLOCK` entries, and a range starts in O(log n) however many
keys come before it. A plain sorted list would move up to n entries on
every change.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["MAX_BLOCK", "Pair", "SortedKeys", "SortedPairs"]

# A retry time and a message id, ordered by time, then by id.
Pair = tuple[float, str]
Key = TypeVar("Key", str, Pair)

# Blocks split in two above this size. Larger blocks mean fewer of them to
# bisect but longer moves inside one; 512 keeps both short.
MAX_BLOCK = 512


class SortedKeys(Generic[Key]):
    """Keys in ascending order, each added at most once by the caller."""

    def __init__(self) -> None:
        self._blocks: list[list[Key]] = []
        self._lasts: list[Key] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, key: Key) -> None:
        """Insert ``key``, which must not be present."""
        if not self._blocks:
            self._blocks.append([key])
            self._lasts.append(key)
            self._size = 1
            return

        index = min(bisect.bisect_left(self._lasts, key), len(self._blocks) - 1)
        block = self._blocks[index]
        bisect.insort(block, key)
        self._lasts[index] = block[-1]
        self._size += 1
        if len(block) > MAX_BLOCK:
            self._split(index)

    def remove(self, key: Key) -> None:
        """Remove ``key``, which must be present."""
        index = bisect.bisect_left(self._lasts, key)
        block = self._blocks[index]
        del block[bisect.bisect_left(block, key)]
        self._size -= 1
        if block:
            self._lasts[index] = block[-1]
        else:
            del self._blocks[index]
            del self._lasts[index]

    def iter_after(self, start: Key | None) -> Iterator[Key]:
        """Yield the keys greater than ``start`` in order, or all keys when it is None.

        The keys must not change while the iterator is in use.
        """
        if start is None:
            index, position = 0, 0
        else:
            index = bisect.bisect_right(self._lasts, start)
            if index == len(self._blocks):
                return
            position = bisect.bisect_right(self._blocks[index], start)

        # Indexes rather than a slice of the block list, so that starting a
        # page late in a large index copies nothing.
        for block_index in range(index, len(self._blocks)):
            yield from self._blocks[block_index][position:]
            position = 0

    def _split(self, index: int) -> None:
        block = self._blocks[index]
        half = len(block) // 2
        self._blocks[index : index + 1] = [block[:half], block[half:]]
        self._lasts[index : index + 1] = [block[half - 1], block[-1]]


# The retry index: (retry time, message id) pairs.
SortedPairs = SortedKeys[Pair]
