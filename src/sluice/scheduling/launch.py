"""Run what :class:`RunRequest` objects ask for to their end, in this process, several at once if need be.

:class:`InProcessRuns` opens the project's bus, state store and lake once and launches each run with a
:class:`~sluice.scheduling.starter.CoordinatorStarter` (the one launcher of requests, the scheduler's too): one set
of in-process stage workers shared by every run it starts (each run has its own coordinator, whose consumer group of
``sluice.events`` is its own, so runs never see each other's events), each run's loop in the starter's pool. A
backfill with ``--parallel 4`` has four dates' threads each waiting for its run's end over the same workers.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType

from sluice.errors import RunNotFound
from sluice.project.model import Project
from sluice.runtime.coordinator import Observer
from sluice.runtime.run import WorkersMode, open_backends
from sluice.runtime.summary import RunOptions
from sluice.scheduling.requests import RunRequest
from sluice.scheduling.starter import CoordinatorStarter
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
        self.starter: CoordinatorStarter | None = None

    def __enter__(self) -> InProcessRuns:
        backends = self._stack.enter_context(open_backends(self.project, self.bus_url, self.state_url))
        self.starter = CoordinatorStarter(
            self.project, backends, workers=self.workers, observer=self.observer, defaults=self.defaults
        )
        self._stack.callback(self.starter.close, 0.0)  # the runs have ended, or are cancelled (an interrupt)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.close()
        self.starter = None

    def __call__(
        self, request: RunRequest, started: Callable[[str], None] = lambda run_id: None, resume: str | None = None
    ) -> str:
        """Run ``request`` to its end; its final status. ``resume``: a run of this request that a process which
        died left behind: its status when it has finished since, else it is continued (objects already loaded are
        not run again); a run the state store does not know is started afresh. Raises what kept the run from
        starting or stopped it (a SluiceError for a user error)."""
        starter = self.starter
        if starter is None:
            raise RuntimeError("InProcessRuns is used outside its 'with' block")
        previous = self._previous(starter, resume)
        if previous is not None and previous.status != "running":
            started(previous.run_id)
            return previous.status
        if previous is not None:
            starter.resume_one(previous.run_id, request)
            run_id = previous.run_id
        else:
            run_id = starter.start_one(request)
        started(run_id)
        return starter.wait(run_id)

    @staticmethod
    def _previous(starter: CoordinatorStarter, run_id: str | None) -> RunRecord | None:
        if run_id is None:
            return None
        try:
            return starter.backends.state.get_run(run_id)
        except RunNotFound:
            return None

    def cancel(self) -> None:
        """Cancel every run in progress (objects not started are skipped)."""
        if self.starter is not None:
            self.starter.cancel()
