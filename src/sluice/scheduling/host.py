"""The scheduler as a service another process hosts (``sluice serve``): ``start()`` / ``stop()`` around a thread.

>>> host = SchedulerHost(project, backends, workers="external")   # doctest: +SKIP
>>> host.start(); ...; host.stop()                                 # doctest: +SKIP

Other request sources (sensors) join with ``SchedulerHost(..., sources=[sensor])``: each is polled at every step
(``poll(now) -> list[RunRequest]``). Services that live as long as the scheduler (alert rules reading
``sluice.events``) join with ``services=[...]``: anything with ``start()`` and ``stop()``, started after the
scheduler's thread and stopped before it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from sluice.project.model import Project
from sluice.runtime.run import Backends, WorkersMode
from sluice.scheduling.scheduler import LEASE_S, RequestSource, Scheduler, StepReport
from sluice.scheduling.starter import CoordinatorStarter

log = logging.getLogger("sluice.scheduler")


class Service(Protocol):
    """Something the scheduler's process hosts beside it."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class SchedulerHost:
    """Runs a :class:`Scheduler` of ``project`` in a daemon thread, starting runs over ``backends``."""

    def __init__(
        self,
        project: Project,
        backends: Backends,
        *,
        workers: WorkersMode = "in-process",
        lease_s: float = LEASE_S,
        holder: str | None = None,
        sources: Sequence[RequestSource] = (),
        services: Sequence[Service] = (),
        on_step: Callable[[StepReport], None] | None = None,
    ) -> None:
        self.starter = CoordinatorStarter(project, backends, workers=workers)
        self.scheduler = Scheduler(
            project,
            backends.state,
            self.starter,
            holder=holder,
            lease_s=lease_s,
            publish=self.starter.publish,
            sources=sources,
        )
        self.sources = list(sources)
        self.services = list(services)
        self.on_step = on_step
        self.last: StepReport | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def _run(self) -> None:
        self.scheduler.run(self._stop, self._seen)

    def _seen(self, report: StepReport) -> None:
        self.last = report
        if self.on_step is not None:
            self.on_step(report)

    def start(self) -> None:
        self._thread.start()
        for service in self.services:
            service.start()
        log.info("scheduler started for %s", ", ".join(s.name for s in self.scheduler.schedules))

    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the services and stepping, release the lease, give runs going ``grace_s`` seconds, then cancel them."""
        for service in reversed(self.services):
            service.stop()
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30.0)
        for source in self.sources:  # sensors save the cursors of the requests the scheduler recorded
            close = getattr(source, "close", None)
            if close is not None:
                close()
        self.starter.close(grace_s)
