"""Starting the runs a scheduler, a sensor or a backfill asks for: one :class:`~sluice.runtime.coordinator.Coordinator`
per run. The one place runs of :class:`RunRequest` objects are launched: the scheduler's host uses
:class:`CoordinatorStarter` directly, ``sluice backfill`` and ``sluice sensors --poll`` through
:class:`~sluice.scheduling.launch.InProcessRuns` (which opens the backends and waits for each run's end).

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
from concurrent.futures import Future, ThreadPoolExecutor

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
        defaults: RunOptions | None = None,
    ) -> None:
        self.project = project
        self.backends = backends
        self.observer = observer
        self.defaults = defaults
        self._workers = start_workers(project, backends) if workers == "in-process" else ([], [])
        self._pool = ThreadPoolExecutor(max_loops, thread_name_prefix="scheduled-run")
        self._active: dict[str, Coordinator] = {}
        self._ends: dict[str, Future[str]] = {}  # run id -> its loop (its final status), for wait(), until waited for
        self._lock = threading.Lock()

    def options(self, request: RunRequest) -> RunOptions:
        """The request's run options, with ``force``, ``simulate``, ``delay_scale`` and ``fail`` from ``defaults``
        (``sluice backfill --force --simulate ...``) when given."""
        options = request.options()
        d = self.defaults
        if d is not None:
            options.force, options.simulate, options.delay_scale, options.fail = d.force, d.simulate, d.delay_scale, d.fail
        return options

    def start_one(self, request: RunRequest, run_id: str | None = None) -> str:
        """Start one request's run (:meth:`start`); its run id, whose end :meth:`wait` gives. Raises what kept it
        from starting (a SluiceError for a user error)."""
        errors: list[Exception | None] = [None]
        started = self._start([request], [run_id] if run_id is not None else None, errors, keep=True)[0]
        if started is None:
            raise errors[0] or RuntimeError(f"run {run_id or '?'} of {request.name} could not start")
        return started

    def start(self, requests: Sequence[RunRequest], run_ids: Sequence[str] | None = None) -> list[str | None]:
        """Start each request's run (with the id ``run_ids`` gives it, default a new one); its id, or None when it
        could not start (the reason is logged; a run id already recorded is one).

        The runs of one call are started together: planned one by one (the project's last outputs read once),
        recorded in one transaction, then each publishes its ``RunStarted`` and first decisions; their loops go
        once every run has begun. At a thousand runs per tick this halved the time to the last ``RunStarted``
        (bench/schedules.py).
        """
        return self._start(requests, run_ids, [None] * len(requests))

    def _start(
        self, requests: Sequence[RunRequest], run_ids: Sequence[str] | None, errors: list[Exception | None], keep: bool = False
    ) -> list[str | None]:
        """:meth:`start`, keeping in ``errors`` (one slot per request) what kept each request's run from starting;
        ``keep``: for :meth:`wait`."""
        state = self.backends.state
        latest = state.latest_outputs(self.project.name) if requests else {}
        prepared: list[tuple[int, Coordinator, RunRecord]] = []
        started_ids: list[str | None] = [None] * len(requests)
        for index, request in enumerate(requests):
            coordinator = Coordinator(
                self.project, self.backends.bus, state, self.backends.lake, self.options(request), self.observer
            )
            try:
                wanted = run_ids[index] if run_ids is not None else None
                prepared.append((index, coordinator, coordinator.prepare(latest, wanted)))
            except Exception as exc:  # a user error (SluiceError) or a backend's: this run only
                errors[index] = exc
                log.error("%s %s (%s) could not start a run: %s", request.trigger, request.name, request.key, exc)
        if not prepared:
            return started_ids
        started: list[Coordinator] = []
        for index, coordinator, record in self._record(prepared, errors):
            try:
                coordinator.begin()
            except Exception as exc:  # recorded but not begun: it stays "running" until resumed
                errors[index] = exc
                log.error("run %s could not begin: %s", record.run_id, exc, extra={"run_id": record.run_id})
                continue
            with self._lock:
                self._active[record.run_id] = coordinator
            started.append(coordinator)
            started_ids[index] = record.run_id
        # The loops go once every run of the batch has begun: started earlier, their threads would take the GIL
        # from the runs still to begin.
        for coordinator in started:
            self._submit(coordinator, keep)
        return started_ids

    def _submit(self, coordinator: Coordinator, keep: bool) -> None:
        """Run the coordinator's loop in the pool; ``keep``: its end for :meth:`wait`."""
        future = self._pool.submit(self._loop, coordinator)
        if keep:
            with self._lock:
                self._ends[coordinator.run_id] = future

    def wait(self, run_id: str) -> str:
        """Wait for the end of run ``run_id`` (started by :meth:`start_one`, or by :meth:`resume_one` with its request); its final
        status (``succeeded``, ``failed``, ``cancelled``). Raises what stopped its loop (the run then stays
        ``running`` in the store)."""
        with self._lock:
            future = self._ends[run_id]
        try:
            return future.result()
        finally:
            with self._lock:
                if self._ends.get(run_id) is future:
                    del self._ends[run_id]

    def resume(self, run_ids: Sequence[str]) -> list[str]:
        """Continue each run (left ``running`` by a scheduler that died) with a coordinator of its own here
        (:meth:`resume_one`); the ids resumed. One that cannot be resumed (finished meanwhile, objects the project
        no longer defines) is logged and left out."""
        resumed: list[str] = []
        for run_id in run_ids:
            with self._lock:
                if run_id in self._active:
                    continue
            try:
                self.resume_one(run_id)
            except Exception as exc:
                log.error("run %s could not be resumed: %s", run_id, exc, extra={"run_id": run_id})
                continue
            resumed.append(run_id)
        return resumed

    def resume_one(self, run_id: str, request: RunRequest | None = None) -> None:
        """Continue run ``run_id`` here (``Coordinator.resume``: its states reloaded, its events replayed), with the
        options of ``request`` (:meth:`options`; None: the defaults'); its end is kept for :meth:`wait` when
        ``request`` is given. Raises RunNotFound (no such run, or finished), SluiceError (objects the project no
        longer defines)."""
        options = self.options(request) if request is not None else RunOptions()
        coordinator = Coordinator(
            self.project, self.backends.bus, self.backends.state, self.backends.lake, options, self.observer
        )
        coordinator.resume(run_id)
        with self._lock:
            self._active[run_id] = coordinator
        self._submit(coordinator, keep=request is not None)

    def _record(
        self, prepared: list[tuple[int, Coordinator, RunRecord]], errors: list[Exception | None]
    ) -> list[tuple[int, Coordinator, RunRecord]]:
        """Record the prepared runs in one transaction; when that fails (a run id already recorded), one by one,
        leaving out those that fail (their error in ``errors``). The runs recorded."""
        state = self.backends.state
        try:
            state.create_runs([(record, list(c.states.values())) for _, c, record in prepared])
            return prepared
        except Exception as exc:
            log.warning("recording %d runs at once failed (%s); recording them one by one", len(prepared), exc)
        recorded = []
        for item in prepared:
            index, coordinator, record = item
            try:
                state.create_run(record, list(coordinator.states.values()))
            except Exception as exc:
                errors[index] = exc
                log.error("run %s could not be recorded: %s", record.run_id, exc, extra={"run_id": record.run_id})
                continue
            recorded.append(item)
        return recorded

    def _loop(self, coordinator: Coordinator) -> str:
        try:
            summary = coordinator.loop()
            log.info("run %s finished: %s", summary.run_id, summary.status, extra={"run_id": summary.run_id})
            return summary.status
        except Exception as exc:  # the run stays "running" in the store: `sluice run --resume` continues it
            log.error("run %s stopped: %s", coordinator.run_id, exc, extra={"run_id": coordinator.run_id})
            raise
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

    def cancel(self) -> None:
        """Cancel every run going (objects not started are skipped; each ends ``cancelled``)."""
        with self._lock:
            for coordinator in self._active.values():
                coordinator.cancel()

    def close(self, grace_s: float = 30.0) -> None:
        """Let the runs going finish for up to ``grace_s`` seconds, cancel the rest, stop the workers."""
        deadline = time.monotonic() + grace_s
        while self.active and time.monotonic() < deadline:
            time.sleep(0.05)
        self.cancel()
        self._pool.shutdown(wait=True)
        stop_workers(*self._workers)
