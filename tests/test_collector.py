"""``runtime.collector.settle``: what exists is frozen, the youngest generation waits for
``YOUNG_THRESHOLD``, and garbage made later is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from runtime import collector


@pytest.fixture
def collector_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def tracked(thing: object) -> bool:
    """Whether a collection would scan ``thing`` (frozen objects are in no generation)."""
    return any(found is thing for found in gc.get_objects())


def test_what_exists_is_frozen_and_young_objects_wait_longer(collector_restored: None) -> None:
    built_at_start_up = [Node() for _ in range(3)]
    assert tracked(built_at_start_up)
    frozen_before = gc.get_freeze_count()
    collector.settle()
    assert not tracked(built_at_start_up)
    assert gc.get_freeze_count() > frozen_before
    assert gc.get_threshold()[0] == collector.YOUNG_THRESHOLD


def garbage_cycle() -> weakref.ref[Node]:
    """A node that refers to itself, referred to by nothing else: only the collector frees
    it. Returns a weak reference, which dies with it."""
    node = Node()
    node.other = node
    return weakref.ref(node)


def test_garbage_made_at_start_up_is_collected_not_frozen(collector_restored: None) -> None:
    garbage = garbage_cycle()
    assert garbage() is not None
    collector.settle()
    assert garbage() is None


def test_cycles_made_later_are_still_collected(collector_restored: None) -> None:
    collector.settle()
    garbage = garbage_cycle()
    assert garbage() is not None
    assert tracked(garbage())
    gc.collect()
    assert garbage() is None
