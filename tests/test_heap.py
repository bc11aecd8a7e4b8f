"""``fleet.heap.settle``: what is loaded leaves the cycle collector's walk, and garbage still goes."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from fleet import heap


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """The rest of the suite runs with the collector as it found it."""
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cycle collector can free it


def tracked(thing: object) -> bool:
    """Whether a full collection walks ``thing`` (frozen objects are in no generation)."""
    return any(o is thing for o in gc.get_objects())


def test_settled_objects_leave_the_collectors_walk() -> None:
    loaded = Node()
    assert tracked(loaded)
    heap.settle()
    assert not tracked(loaded) and gc.get_freeze_count() > 0
    fresh = Node()  # what requests allocate afterwards is walked and collected as before
    assert tracked(fresh)
    gone = weakref.ref(fresh)
    del fresh
    gc.collect()
    assert gone() is None


def test_an_unloaded_version_is_freed_by_a_full_settle_only() -> None:
    version = Node()
    heap.settle()
    gone = weakref.ref(version)
    del version  # unloaded, but frozen with the rest
    heap.settle(full=False)
    assert gone() is not None
    heap.settle(full=True)
    assert gone() is None
