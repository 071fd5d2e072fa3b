"""Run a project end to end: open bus, state and lake, start stage workers, drive the coordinator.

>>> from sluice.project.load import load_project
>>> from sluice.runtime.run import run_project, RunOptions
>>> summary = run_project(load_project("examples/seed-002"), RunOptions(simulate=True))  # doctest: +SKIP
>>> summary.status                                                                      # doctest: +SKIP
'failed'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sluice import events as ev
from sluice.bounded import ByteLru
from sluice.bus.base import Bus
from sluice.bus.registry import open_bus
from sluice.destinations.warm import WarmDestinations, planned_connections
from sluice.lake.base import Lake
from sluice.lake.registry import open_lake
from sluice.project.model import Project
from sluice.runtime.coordinator import Coordinator, Observer
from sluice.runtime.execute import ObjectExecutor
from sluice.runtime.reading import unwritten
from sluice.runtime.run_lease import coordinator_gone, interrupt_if_gone, leased
from sluice.runtime.summary import RunOptions, RunSummary
from sluice.runtime.worker import StageWorker
from sluice.state.base import FINAL_OBJECT_STATUSES, RESUMABLE_RUN_STATUSES, StateStore
from sluice.state.registry import open_state

__all__ = ["Backends", "RunActivity", "RunOptions", "RunSummary", "WorkersMode", "open_backends", "run_project"]

WorkersMode = Literal["in-process", "external"]


@dataclass(slots=True)
class Backends:
    """The bus, state store and lake a project uses."""

    bus: Bus
    state: StateStore
    lake: Lake

    def close(self) -> None:
        self.bus.close()
        self.state.close()


@contextmanager
def open_backends(
    project: Project, bus_url: str | None = None, state_url: str | None = None, *, read_only: bool = False
) -> Iterator[Backends]:
    """Open the project's bus, state store and lake (URLs may be overridden) and close them after.

    ``read_only``: for a command that only reads, a SQLite bus or state store that does not exist yet is an empty
    one in a temporary folder, so nothing is created in the project folder (:mod:`sluice.runtime.reading`).
    """
    with ExitStack() as stack:
        bus_url, state_url = bus_url or project.resolve_bus_url(), state_url or project.resolve_state_url()
        if read_only:
            bus_url, state_url = unwritten(bus_url, project.root, stack), unwritten(state_url, project.root, stack)
        bus = open_bus(bus_url, project.root)
        try:
            state = open_state(state_url, project.root)
        except BaseException:
            bus.close()
            raise
        try:
            backends = Backends(bus, state, open_lake(project))
        except BaseException:
            bus.close()
            state.close()
            raise
        try:
            yield backends
        finally:
            backends.close()


ACTIVITY_ENTRY_BYTES = 250  # a cached answer: the run id, a tuple, a float, the dict slot
ACTIVITY_CACHE_BYTES = 1024 * 1024  # about 4,000 runs: a long-lived worker forgets the oldest


class RunActivity:
    """Answers "is this run still going?" for workers, asking the state store at most once a second per run.

    The answers are kept for the most recent runs, up to ``cache_bytes``; a forgotten run is asked again. A run
    ``interrupted`` (its coordinator died, ``runtime/run_lease.py``) is not going, but is asked again each time:
    ``sluice run --resume`` may make it ``running`` again.
    """

    def __init__(
        self, state: StateStore, ttl_s: float = 1.0, cache_bytes: int = ACTIVITY_CACHE_BYTES, root: Path | None = None
    ) -> None:
        self.state = state
        self.root = root  # the project folder, named in the warning of a run marked interrupted here
        self.ttl_s = ttl_s
        self._cache: ByteLru[str, tuple[str, float]] = ByteLru(cache_bytes, lambda _: ACTIVITY_ENTRY_BYTES)  # status, when

    def __call__(self, run_id: str) -> bool:
        now = time.monotonic()
        cached = self._cache.get(run_id)
        if cached is not None:
            status, at = cached
            if status not in RESUMABLE_RUN_STATUSES:  # final: for good
                return False
            if status == "running" and now - at < self.ttl_s:
                return True
        try:
            status = self.state.get_run(run_id).status
        except Exception:
            status = "running"
        self._cache.put(run_id, (status, now))
        return status == "running"

    @property
    def cached_bytes(self) -> int:
        return self._cache.bytes

    def settled(self, ready: ev.ObjectReady) -> str:
        """Why ``ready`` needs no work any more, or "" when it does: its run is over or interrupted, a later attempt
        of the object was handed out (an interrupted run resumed), or the object's outcome for this attempt is
        already recorded (a message redelivered after a rebalance or a broker restart, whose first worker finished
        it). Asked just before the work starts, so the run's status is read afresh (not from the cache): an object
        of a run cancelled a moment ago (a backfill's, stopped while another process's workers, ``sluice serve``'s,
        share its stage), or of a run just marked interrupted, is not started.

        A run started by hand is driven by a coordinator holding its lease (``runtime/run_lease.py``): when nobody
        holds it (the coordinator was killed, and no new run has marked it yet), the run is marked ``interrupted``
        here; its status is then read again, after the lease, so a run another process marks meanwhile is seen."""
        try:
            record = self.state.get_run(ready.run_id)
            status = record.status
            if status == "running" and leased(record.options):
                if coordinator_gone(self.state, record, time.time()):
                    interrupt_if_gone(self.state, record, self.root)
                status = self.state.get_run(ready.run_id).status
        except Exception:
            status = "running"  # the store will answer the coordinator's question
        self._cache.put(ready.run_id, (status, time.monotonic()))
        if status == "interrupted":
            return f"run {ready.run_id} is interrupted (its coordinator is gone)"
        if status != "running":
            return f"run {ready.run_id} is over"
        try:
            state = self.state.object_state(ready.run_id, ready.object_id)
        except Exception:
            return ""  # the store will answer the coordinator's question; doing the work again is harmless
        if state is not None and state.attempt > ready.attempt:
            return (
                f"attempt {ready.attempt} of object {ready.object_id} in run {ready.run_id} was superseded by attempt "
                f"{state.attempt}"
            )
        if state is not None and state.status in FINAL_OBJECT_STATUSES and state.attempt >= ready.attempt:
            return f"object {ready.object_id} is already {state.status} in run {ready.run_id} (attempt {state.attempt})"
        return ""


def start_workers(
    project: Project, backends: Backends, stages: list[str] | None = None, destinations: WarmDestinations | None = None
) -> tuple[list[StageWorker], list[threading.Thread]]:
    """Start one in-process worker thread per stage (or per named stage); their loads take their destinations from
    ``destinations`` (those the run connected ahead), else open new ones."""
    executor = ObjectExecutor(project, backends.lake, backends.state, destinations)
    activity = RunActivity(backends.state, root=project.root)
    workers = [
        StageWorker(project, backends.bus, stage, executor, run_active=activity)
        for stage in project.stages
        if stages is None or stage.name in stages
    ]
    threads = [threading.Thread(target=w.run, name=f"worker-{w.stage.name}", daemon=True) for w in workers]
    for thread in threads:
        thread.start()
    return workers, threads


def stop_workers(workers: list[StageWorker], threads: list[threading.Thread]) -> None:
    for worker in workers:
        worker.stop()
    for thread in threads:
        thread.join(timeout=30)


def run_project(
    project: Project,
    options: RunOptions | None = None,
    *,
    workers: WorkersMode = "in-process",
    observer: Observer | None = None,
    bus_url: str | None = None,
    state_url: str | None = None,
    on_start: Callable[[Coordinator], None] | None = None,
    on_planned: Callable[[], None] | None = None,
) -> RunSummary:
    """Run (or resume) ``project`` and return its summary. Raises SluiceError for user errors.

    ``on_start`` receives the coordinator once the run has begun, e.g. to cancel it on a signal; ``on_planned`` is
    called once a new run is planned and recorded, before anything is handed out (``Coordinator.start``).
    """
    options = options or RunOptions()
    warm = WarmDestinations(project.root)
    if workers == "in-process":
        # The destinations' connections are made while the backends open and the run is planned, not before the
        # first load (sluice.destinations.warm)
        warm.connect(planned_connections(project, options.targets))
    with ExitStack() as stack:
        stack.callback(warm.close)
        backends = stack.enter_context(open_backends(project, bus_url, state_url))
        # External workers load in their own processes: planning keeps no connection for them
        ahead = warm if workers == "in-process" else None
        coordinator = Coordinator(project, backends.bus, backends.state, backends.lake, options, observer, destinations=ahead)
        stack.callback(coordinator.release_lease)  # its loop gives it up at the end; this, should it never run
        started: tuple[list[StageWorker], list[threading.Thread]] = ([], [])
        if options.resume is None:
            # Before any worker takes a message: a dead run's leftover work is skipped, not loaded beside this run's
            coordinator.interrupt_dead()
        else:
            # Under the run's lease before any worker of this process takes its leftover messages: a worker finding
            # its lease not held would mark it interrupted (RunActivity.settled), its objects out then handed out
            # again as their next attempt or not, depending on which came first
            coordinator.resume(options.resume or None)
        if workers == "in-process":
            # Waiting on their queues before the run begins, as external workers are: the first objects
            # are taken as soon as they are published.
            started = start_workers(project, backends, destinations=warm)
        try:
            if options.resume is None:
                coordinator.start(on_planned)
            if on_start is not None:
                on_start(coordinator)
            return coordinator.loop()
        finally:
            stop_workers(*started)
