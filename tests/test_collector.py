"""``runtime.collector.settle``: what exists is frozen, the youngest generation waits for
``YOUNG_THRESHOLD``, and garbage made later is still collected; the values a batch makes by
the thousand are never tracked."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import msgspec
import pytest

from router.engine import effects, records
from router.shell.intake import Decoded
from runtime import collector
from schemas import MessageReceived
from schemas.common import Event
from tools.bench.e2e_bench import message_from


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


def subclasses(base: type) -> list[type]:
    found = []
    for subclass in base.__subclasses__():
        found += [subclass, *subclasses(subclass)]
    return found


def structs_of(module: object) -> list[type[msgspec.Struct]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, msgspec.Struct)
        and value.__module__ == getattr(module, "__name__", None)
    ]


def test_events_records_and_effects_are_never_tracked() -> None:
    classes = [Event, *subclasses(Event), *structs_of(records), *structs_of(effects), Decoded]
    assert MessageReceived in classes
    assert records.ConversationRecord in classes
    assert [c.__name__ for c in classes if c.__struct_config__.gc] == []
    # Holding a dict would make a tracked struct tracked.
    message = msgspec.structs.replace(
        message_from("acme", "+15550000001", 1), attributes={"brand": "acme"}
    )
    assert not gc.is_tracked(message)
    assert not gc.is_tracked(effects.SaveMessage(message, "c-1"))
