"""Start the runs that :class:`RunRequest` objects ask for, in this process, several at once if need be.

:class:`InProcessRuns` opens the project's bus, state store and lake once and starts one set of in-process stage
workers shared by every run it starts (each run has its own coordinator, whose consumer group of ``sluice.events``
is its own, so runs never see each other's events). A backfill with ``--parallel 4`` has four coordinators looping
in four threads over the same workers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType

from sluice.errors import RunNotFound
from sluice.project.model import Project
from sluice.runtime.coordinator import Coordinator, Observer
from sluice.runtime.run import Backends, WorkersMode, open_backends, start_workers, stop_workers
from sluice.runtime.summary import RunOptions
from sluice.scheduling.requests import RunRequest
from sluice.state.base import RunRecord


class InProcessRuns:
    """A context manager: ``runs(request, started)`` runs the request to its end and returns its status.

    ``defaults`` supplies the options a request does not set (``simulate``, ``delay_scale``, ``fail``, ``force``);
    ``workers="external"`` leaves the objects to ``sluice worker`` processes. ``observer`` sees every run's events.
    """

    def __init__(
        self,
        project: Project,
        defaults: RunOptions | None = None,
        *,
        workers: WorkersMode = "in-process",
        observer: Observer | None = None,
        bus_url: str | None = None,
        state_url: str | None = None,
    ) -> None:
        self.project = project
        self.defaults = defaults or RunOptions()
        self.workers = workers
        self.observer = observer
        self.bus_url, self.state_url = bus_url, state_url
        self._stack = ExitStack()
        self.backends: Backends | None = None
        self._coordinators: set[Coordinator] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> InProcessRuns:
        self.backends = self._stack.enter_context(open_backends(self.project, self.bus_url, self.state_url))
        if self.workers == "in-process":
            started = start_workers(self.project, self.backends)
            self._stack.callback(stop_workers, *started)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.close()

    def options(self, request: RunRequest) -> RunOptions:
        """The request's options over the defaults."""
        options = request.options()
        d = self.defaults
        options.force, options.simulate, options.delay_scale, options.fail = d.force, d.simulate, d.delay_scale, d.fail
        return options

    def __call__(
        self, request: RunRequest, started: Callable[[str], None] = lambda run_id: None, resume: str | None = None
    ) -> str:
        """Run ``request`` to its end; its final status. ``resume``: a run of this request that a process which
        died left behind: its status when it has finished since, else it is continued (objects already loaded are
        not run again); a run the state store does not know is started afresh."""
        backends = self.backends
        if backends is None:
            raise RuntimeError("InProcessRuns is used outside its 'with' block")
        coordinator = Coordinator(self.project, backends.bus, backends.state, backends.lake, self.options(request), self.observer)
        previous = self._previous(resume)
        if previous is not None and previous.status != "running":
            started(previous.run_id)
            return previous.status
        started(coordinator.resume(previous.run_id) if previous is not None else coordinator.start())
        with self._lock:
            self._coordinators.add(coordinator)
        try:
            return coordinator.loop().status
        finally:
            with self._lock:
                self._coordinators.discard(coordinator)

    def _previous(self, run_id: str | None) -> RunRecord | None:
        if run_id is None or self.backends is None:
            return None
        try:
            return self.backends.state.get_run(run_id)
        except RunNotFound:
            return None

    def cancel(self) -> None:
        """Cancel every run in progress (objects not started are skipped)."""
        with self._lock:
            for coordinator in self._coordinators:
                coordinator.cancel()
