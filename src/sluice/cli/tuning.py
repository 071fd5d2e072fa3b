"""Process-wide settings of the long-running commands (``sluice sync``, ``sluice run``, ``sluice worker``)."""

from __future__ import annotations

import gc


def tune_gc() -> None:
    """Make Python's cyclic garbage collector run less often, and never over the objects alive at start-up.

    Call once, after the project is loaded. These processes allocate many short-lived, acyclic objects
    (decoded events, messages, row values) while holding a large, long-lived heap (the project's objects, a
    run's states). With the default thresholds (a young collection every 700 allocations) the collector walked
    the live batches again and again, and every full collection walked the whole heap: in ``bench/cdc.py`` it
    took a large share of a sync's CPU (py-spy), and in ``bench/kafka.py`` (5,000 objects) the coordinator and
    workers collected while every object in flight waited. So objects alive at start-up are frozen out of
    collections (``gc.freeze``) and the youngest generation is collected every 50,000 allocations instead.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def freeze_heap() -> None:
    """Exclude every object alive now from cyclic collections (``gc.freeze``), in a process that runs one run
    (``sluice run``), once the run is planned and before anything is handed out.

    Planning allocates the run's states, plan and fingerprints after :func:`tune_gc`: young objects, which the
    first young collection of the run walked all at once, while the first objects' outcomes waited (33 ms in the
    middle of ``bench/kafka.py``'s burst of 5,000 objects). They live as long as the run, so they are frozen
    instead. A long-running process (``sluice serve``, ``sluice scheduler``, ``sluice worker``) must not call it
    for each run: frozen objects are never collected, and a run's cyclic garbage would then stay.
    """
    gc.freeze()
