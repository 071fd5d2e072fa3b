"""Starting the runs a scheduler fires: one :class:`~sluice.runtime.coordinator.Coordinator` per run.

``start`` plans each run and publishes its ``RunStarted`` and first ``ObjectReady`` events in the caller's thread
(so the scheduler knows the run id, and a run that cannot start is reported at once); each coordinator's loop then
runs in a bounded pool of threads (``max_loops``). A loop waiting for a free thread loses nothing: its consumer group
was sought to where the run's events begin, and workers already process what was handed out.

Workers: ``in-process`` (the default, as ``sluice run``) starts one worker thread per stage in this process, shared
by every run; ``external`` starts none, for a project whose workers run elsewhere (``sluice worker`` processes over a
Kafka bus, as ``sluice run --workers external``).

On :meth:`close`, runs still going get ``grace_s`` seconds to finish, then are cancelled (their objects not yet
final are skipped and the run ends as ``cancelled``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sluice import events as ev
from sluice.project.model import Project
from sluice.runtime.coordinator import Coordinator, Observer
from sluice.runtime.run import Backends, WorkersMode, start_workers, stop_workers
from sluice.runtime.summary import RunOptions
from sluice.scheduling.requests import RunRequest
from sluice.state.base import RunRecord

log = logging.getLogger("sluice.scheduler")
MAX_LOOPS = 32
"""Coordinator loops running at once; runs beyond wait for a free thread (their events wait on the bus)."""


class CoordinatorStarter:
    """Starts runs of ``project`` over ``backends`` (a :class:`~sluice.scheduling.scheduler.RunStarter`)."""

    def __init__(
        self,
        project: Project,
        backends: Backends,
        *,
        workers: WorkersMode = "in-process",
        max_loops: int = MAX_LOOPS,
        observer: Observer | None = None,
    ) -> None:
        self.project = project
        self.backends = backends
        self.observer = observer
        self._workers = start_workers(project, backends) if workers == "in-process" else ([], [])
        self._pool = ThreadPoolExecutor(max_loops, thread_name_prefix="scheduled-run")
        self._active: dict[str, Coordinator] = {}
        self._lock = threading.Lock()

    def start(self, requests: Sequence[RunRequest], run_ids: Sequence[str] | None = None) -> list[str | None]:
        """Start each request's run (with the id ``run_ids`` gives it, default a new one); its id, or None when it
        could not start (the reason is logged; a run id already recorded is one).

        The runs of one call are started together: planned one by one (the project's last outputs read once),
        recorded in one transaction, then each publishes its ``RunStarted`` and first decisions; their loops go
        once every run has begun. At a thousand runs per tick this halved the time to the last ``RunStarted``
        (bench/schedules.py).
        """
        state = self.backends.state
        latest = state.latest_outputs(self.project.name) if requests else {}
        prepared: list[tuple[int, Coordinator, RunRecord]] = []
        started_ids: list[str | None] = [None] * len(requests)
        for index, request in enumerate(requests):
            coordinator = Coordinator(
                self.project, self.backends.bus, state, self.backends.lake, request.options(), self.observer
            )
            try:
                wanted = run_ids[index] if run_ids is not None else None
                prepared.append((index, coordinator, coordinator.prepare(latest, wanted)))
            except Exception as exc:  # a user error (SluiceError) or a backend's: this run only
                log.error("%s %s (%s) could not start a run: %s", request.trigger, request.name, request.key, exc)
        if not prepared:
            return started_ids
        started: list[Coordinator] = []
        for index, coordinator, record in self._record(prepared):
            try:
                coordinator.begin()
            except Exception as exc:  # recorded but not begun: it stays "running" until resumed
                log.error("run %s could not begin: %s", record.run_id, exc, extra={"run_id": record.run_id})
                continue
            with self._lock:
                self._active[record.run_id] = coordinator
            started.append(coordinator)
            started_ids[index] = record.run_id
        # The loops go once every run of the batch has begun: started earlier, their threads would take the GIL
        # from the runs still to begin.
        for coordinator in started:
            self._pool.submit(self._loop, coordinator)
        return started_ids

    def resume(self, run_ids: Sequence[str]) -> list[str]:
        """Continue each run (left ``running`` by a scheduler that died) with a coordinator of its own here
        (``Coordinator.resume``: its states reloaded, its events replayed); the ids resumed. One that cannot be
        resumed (finished meanwhile, objects the project no longer defines) is logged and left out."""
        resumed: list[str] = []
        for run_id in run_ids:
            with self._lock:
                if run_id in self._active:
                    continue
            coordinator = Coordinator(
                self.project, self.backends.bus, self.backends.state, self.backends.lake, RunOptions(), self.observer
            )
            try:
                coordinator.resume(run_id)
            except Exception as exc:
                log.error("run %s could not be resumed: %s", run_id, exc, extra={"run_id": run_id})
                continue
            with self._lock:
                self._active[run_id] = coordinator
            self._pool.submit(self._loop, coordinator)
            resumed.append(run_id)
        return resumed

    def _record(self, prepared: list[tuple[int, Coordinator, RunRecord]]) -> list[tuple[int, Coordinator, RunRecord]]:
        """Record the prepared runs in one transaction; when that fails (a run id already recorded), one by one,
        leaving out those that fail. The runs recorded."""
        state = self.backends.state
        try:
            state.create_runs([(record, list(c.states.values())) for _, c, record in prepared])
            return prepared
        except Exception as exc:
            log.warning("recording %d runs at once failed (%s); recording them one by one", len(prepared), exc)
        recorded = []
        for item in prepared:
            _, coordinator, record = item
            try:
                state.create_run(record, list(coordinator.states.values()))
            except Exception as exc:
                log.error("run %s could not be recorded: %s", record.run_id, exc, extra={"run_id": record.run_id})
                continue
            recorded.append(item)
        return recorded

    def _loop(self, coordinator: Coordinator) -> None:
        try:
            summary = coordinator.loop()
            log.info("run %s finished: %s", summary.run_id, summary.status, extra={"run_id": summary.run_id})
        except Exception as exc:  # the run stays "running" in the store: `sluice run --resume` continues it
            log.error("run %s stopped: %s", coordinator.run_id, exc, extra={"run_id": coordinator.run_id})
        finally:
            with self._lock:
                self._active.pop(coordinator.run_id, None)

    @property
    def active(self) -> int:
        """Runs started and not finished."""
        with self._lock:
            return len(self._active)

    def publish(self, events: list[ev.Event]) -> None:
        """Publish events (``ScheduleMissed``) on ``sluice.events``."""
        if events:
            self.backends.bus.publish(ev.EVENTS_TOPIC, [(None, ev.encode(event)) for event in events])

    def close(self, grace_s: float = 30.0) -> None:
        """Let the runs going finish for up to ``grace_s`` seconds, cancel the rest, stop the workers."""
        deadline = time.monotonic() + grace_s
        while self.active and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            for coordinator in self._active.values():
                coordinator.cancel()
        self._pool.shutdown(wait=True)
        stop_workers(*self._workers)
