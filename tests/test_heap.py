"""hub.runtime.heap: the collector as `smshub run` sets it once started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from hub.runtime.heap import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_start_up_and_makes_young_collections_rarer() -> None:
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLDS
    assert gc.get_freeze_count() > 10_000  # modules, classes, caches: what start-up built
    # Cycles made after start-up are still collected.
    a: list[object] = []
    a.append(a)
    del a
    assert gc.collect() >= 1
