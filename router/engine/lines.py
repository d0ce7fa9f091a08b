"""Waiting lines: the conversations waiting on one line, kept sorted so that a
conversation's place is a rank (``router.engine.waiting``); ``DomainState`` holds them."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from itertools import chain

WaitEntry = tuple[int, float, str]
"""(-priority, waiting since, conversation id) in a ``waiting``/``held`` line."""


WAIT_LINE_LOAD = 1024
"""A ``WaitLine``'s bucket splits in two past twice this many entries, and joins a
neighbour under half of it: adding or removing moves at most a few thousand pointers (one
memmove), and a line of ``n`` has about ``2 n / WAIT_LINE_LOAD`` buckets or fewer to count
for a position."""


class WaitLine:
    """The entries of one waiting line, sorted: ``WaitEntry`` order is the line's order.

    The entries sit in sorted buckets (lists of ``load / 2`` to ``2 * load`` entries; a
    short line has one) with the last entry of each bucket beside them. Adding or
    removing an entry bisects the bucket ends, then the bucket; ``rank`` adds the lengths
    of the buckets before the entry's (or subtracts those after it, whichever side is
    shorter): ``O(log n + n / load)``, at most a hundred lengths summed in a line of
    100,000. Iterating yields the entries in order, first in line first."""

    __slots__ = ("_buckets", "_lasts", "_load", "_size")

    def __init__(self, load: int | None = None):
        """An empty line; ``load``: ``WAIT_LINE_LOAD`` unless given."""
        self._buckets: list[list[WaitEntry]] = []
        self._lasts: list[WaitEntry] = []
        """The last entry of each bucket."""
        self._load = WAIT_LINE_LOAD if load is None else load
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[WaitEntry]:
        return chain.from_iterable(self._buckets)

    def add(self, entry: WaitEntry) -> None:
        buckets = self._buckets
        lasts = self._lasts
        self._size += 1
        index = bisect_left(lasts, entry)
        if index == len(lasts):  # after every entry: the usual arrival at equal priority
            if not buckets:
                buckets.append([entry])
                lasts.append(entry)
                return
            index -= 1
            bucket = buckets[index]
            bucket.append(entry)
            lasts[index] = entry
        else:
            bucket = buckets[index]
            insort(bucket, entry)
        if len(bucket) > 2 * self._load:
            self._split(index)

    def remove(self, entry: WaitEntry) -> None:
        """Remove ``entry``, which is in the line."""
        buckets = self._buckets
        lasts = self._lasts
        if buckets and buckets[0][0] is entry:  # the usual leaver: first in line, served
            index = position = 0
        else:
            index = bisect_left(lasts, entry)
            assert index < len(buckets), entry
            position = bisect_left(buckets[index], entry)
        bucket = buckets[index]
        assert bucket[position] == entry, entry
        del bucket[position]
        self._size -= 1
        if not bucket:
            del buckets[index]
            del lasts[index]
            return
        if position == len(bucket):
            lasts[index] = bucket[-1]
        if 2 * len(bucket) < self._load and len(buckets) > 1:
            self._merge(index if index + 1 < len(buckets) else index - 1)

    def rank(self, entry: WaitEntry) -> int:
        """How many entries of the line are ordered before ``entry``."""
        buckets = self._buckets
        index = bisect_left(self._lasts, entry)
        if index == len(buckets):
            return self._size
        within = bisect_left(buckets[index], entry)
        if 2 * index <= len(buckets):
            return sum(map(len, buckets[:index])) + within
        return self._size - sum(map(len, buckets[index:])) + within

    def _split(self, index: int) -> None:
        bucket = self._buckets[index]
        half = len(bucket) // 2
        self._buckets.insert(index + 1, bucket[half:])
        del bucket[half:]
        self._lasts.insert(index, bucket[-1])

    def _merge(self, index: int) -> None:
        """Join the bucket after ``index`` to it (then split if too long)."""
        buckets = self._buckets
        bucket = buckets[index]
        bucket.extend(buckets[index + 1])
        del buckets[index + 1]
        del self._lasts[index]
        if len(bucket) > 2 * self._load:
            self._split(index)
