"""cli/tuning.py: the collector's settings of the long-running commands, and the heap frozen once a run is planned."""

from __future__ import annotations

import gc

from sluice.cli.tuning import freeze_heap, tune_gc


def test_tune_gc_freezes_the_start_up_heap_and_collects_the_young_less_often() -> None:
    thresholds = gc.get_threshold()
    gc.unfreeze()  # a CLI test of this process may have frozen already
    gc.set_threshold(700, 10, 10)
    try:
        tune_gc()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (50_000, 20, 100)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_freeze_heap_takes_what_is_alive_now_out_of_collections() -> None:
    gc.unfreeze()
    planned = [{"state": i} for i in range(1000)]  # a run's states, made after start-up
    try:
        freeze_heap()
        assert gc.get_freeze_count() >= len(planned)
        young = {id(o) for o in gc.get_objects(0)}
        assert not young & {id(p) for p in planned}  # none is young any more: a young collection does not walk them
    finally:
        gc.unfreeze()
