"""The settled heap: start-up's objects frozen out of the collector's passes, cyclic garbage still collected."""

from __future__ import annotations

import gc
import weakref

from hookstream import heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_settle_freezes_what_exists_and_later_cycles_are_still_collected() -> None:
    thresholds = gc.get_threshold()
    try:
        before = gc.get_freeze_count()
        heap.settle()
        assert gc.get_freeze_count() > before and gc.get_threshold() == (heap.YOUNG_THRESHOLD, *heap.OLDER_THRESHOLDS)
        garbage = _Node()
        gone = weakref.ref(garbage)
        del garbage
        gc.collect()
        assert gone() is None, "a cycle made after start-up was not collected"
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
