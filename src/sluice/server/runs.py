"""The server's runs: at most one active at a time, each a :class:`Coordinator` looping in a thread of its own.

``start`` plans and publishes the first events in the caller's thread (so a bad request fails there),
then the coordinator's loop runs in a dedicated thread until every planned object is final. ``cancel``
asks the coordinator to stop handing out objects. ``resume_unfinished`` picks up a run the previous
server (or a ``sluice run``) left unfinished (it crashed or was killed) and marks the other such runs
``interrupted`` (``runtime/run_lease.py``); a run that another live process drives is left alone.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field

from sluice import events as ev
from sluice.errors import RunNotFound
from sluice.graph.plan import check_targets
from sluice.project.model import Project
from sluice.runtime.coordinator import Coordinator
from sluice.runtime.run import Backends
from sluice.runtime.run_lease import RunBusy, interrupt_dead_runs, leased
from sluice.runtime.summary import RunOptions
from sluice.server.errors import Conflict, NotFound, RunAlreadyActive
from sluice.state.base import RunRecord, StateStore

log = logging.getLogger("sluice.server")
FINISHING_WAIT_S = 5.0


def find_run(state: StateStore, project: str, run_id: str) -> RunRecord:
    """The run ``run_id`` of ``project``; NotFound (404) when the state store has none."""
    try:
        record = state.get_run(run_id)
    except RunNotFound:
        record = None
    if record is None or record.project != project:
        raise NotFound(f"no run with id '{run_id}' in project '{project}'; GET /runs lists the recent runs")
    return record


@dataclass(slots=True)
class ActiveRun:
    """The run in progress: its coordinator and loop thread, and a version bumped on every change."""

    record: RunRecord
    coordinator: Coordinator
    thread: threading.Thread | None = None
    version: int = 0
    finished: threading.Event = field(default_factory=threading.Event)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def observe(self, event: ev.Event) -> None:
        """The coordinator's observer (called in its thread for every change)."""
        self.version += 1
        if isinstance(event, ev.RunFinished):
            self.finished.set()


class RunManager:
    """Starts, cancels and resumes the runs of one project; at most one is active."""

    def __init__(self, project: Project, backends: Backends, defaults: RunOptions) -> None:
        self.project = project
        self.backends = backends
        self.defaults = defaults
        self._lock = threading.Lock()
        self._active: ActiveRun | None = None
        self._closed = False

    @property
    def active(self) -> ActiveRun | None:
        return self._active

    def start(self, targets: list[int] | None = None, force: bool = False) -> str:
        """Begin a run of ``targets`` (default: the final objects); raises RunAlreadyActive or ConfigError."""
        if targets:
            check_targets(self.project, targets)
        options = dataclasses.replace(self.defaults, targets=sorted(set(targets)) if targets else None, force=force, resume=None)
        with self._lock:
            self._check_idle()
            coordinator, active = self._coordinator(options)
            run_id = coordinator.start()
            self._launch(active, self.backends.state.get_run(run_id))
        log.info("run %s started: %d objects planned", run_id, len(coordinator.states), extra={"run_id": run_id})
        return run_id

    def resume_unfinished(self) -> str | None:
        """Resume the project's latest unfinished run started by hand that no live process drives (its coordinator
        died: its run lease is free), if the state store has one, and mark the project's other such runs
        ``interrupted`` (with a warning saying how to resume each); returns the id resumed. A run whose lease a live
        process holds (a ``sluice run`` going on in a terminal) is left to it. Runs a schedule or sensor started are
        the scheduler's to resume (it does when it takes the lease), a backfill's the backfill's (``sluice backfill
        --resume``)."""
        running = self.backends.state.find_runs(self.project.name, status="running", limit=1000)
        resumed: RunRecord | None = None
        with self._lock:
            self._check_idle()
            for record in (r for r in running if leased(r.options)):
                coordinator, active = self._coordinator(dataclasses.replace(self.defaults, resume=record.run_id))
                try:
                    coordinator.resume(record.run_id)
                except (RunBusy, RunNotFound) as exc:  # driven by a live process, or finished meanwhile
                    log.info("not resuming run %s: %s", record.run_id, exc, extra={"run_id": record.run_id})
                    continue
                self._launch(active, record)
                resumed = record
                break
        interrupt_dead_runs(self.backends.state, self.project.name, self.project.root, keep={resumed.run_id} if resumed else ())
        if resumed is None:
            return None
        log.warning("resumed run %s, left unfinished by a previous server", resumed.run_id, extra={"run_id": resumed.run_id})
        return resumed.run_id

    def cancel(self, run_id: str) -> None:
        """Cancel the active run ``run_id``; raises NotFound for an unknown id, Conflict when it is not active."""
        active = self._active
        if active is None or active.run_id != run_id or active.finished.is_set():
            record = find_run(self.backends.state, self.project.name, run_id)  # 404 for an unknown id
            raise Conflict(
                f"run {run_id} is not active (it is {record.status}); only the active run can be cancelled",
                status=record.status,
            )
        log.info("cancelling run %s", run_id, extra={"run_id": run_id})
        active.coordinator.cancel()

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Cancel the active run and wait for its loop to finish."""
        with self._lock:
            self._closed = True
            active = self._active
        if active is None:
            return
        log.warning("cancelling run %s: the server is stopping", active.run_id, extra={"run_id": active.run_id})
        active.coordinator.cancel()
        if active.thread is not None:
            active.thread.join(timeout_s)

    # ----- internals ------------------------------------------------------------------------------

    def _check_idle(self) -> None:
        if self._closed:
            raise Conflict("the server is shutting down; start the run on the next server")
        active = self._active
        if active is None:
            return
        if active.finished.is_set() and active.thread is not None:
            # RunFinished is out; the loop thread is recording the final status: wait for it.
            active.thread.join(FINISHING_WAIT_S)
        if self._active is not None:
            raise RunAlreadyActive(self._active.run_id)

    def _coordinator(self, options: RunOptions) -> tuple[Coordinator, ActiveRun]:
        b = self.backends
        record = RunRecord("", self.project.name, "running", time.time())
        active = ActiveRun(record, Coordinator(self.project, b.bus, b.state, b.lake, options))
        active.coordinator.observer = active.observe
        return active.coordinator, active

    def _launch(self, active: ActiveRun, record: RunRecord) -> None:
        active.record = record
        active.thread = threading.Thread(target=self._loop, args=(active,), name=f"run-{record.run_id}", daemon=True)
        self._active = active
        active.thread.start()

    def _loop(self, active: ActiveRun) -> None:
        try:
            summary = active.coordinator.loop()
            log.info("run %s %s", active.run_id, summary.status, extra={"run_id": active.run_id})
        except Exception:
            log.exception(
                "run %s stopped on an error; it stays unfinished and the next server start resumes it",
                active.run_id,
                extra={"run_id": active.run_id},
            )
        finally:
            # Not under self._lock: _check_idle holds it while it waits for this thread to end.
            if self._active is active:
                self._active = None
