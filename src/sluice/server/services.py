"""What one server process runs for its project: backends, stage workers, the run manager, the event hub,
the lag sampler, the alert service (``alerts:``), and the views the API answers from.

``start`` opens the bus, state store and lake, starts in-process stage workers and resumes a run a
previous server left unfinished; ``start_stream`` starts the event hub on the server's event loop.
``stop`` undoes it all in reverse: streams end, the active run is cancelled, workers stop, backends close.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import TypeVar

from sluice.alerts.service import AlertService
from sluice.errors import SluiceError
from sluice.project.model import Project
from sluice.runtime.retention import Pruner, start_pruner
from sluice.runtime.run import Backends, open_backends, start_workers, stop_workers
from sluice.runtime.summary import RunOptions
from sluice.runtime.worker import StageWorker
from sluice.scheduling.host import SchedulerHost
from sluice.scheduling.sensors import hosted_sensors
from sluice.server.check_results import CheckResults
from sluice.server.lag import LagSampler
from sluice.server.runs import RunManager
from sluice.server.serve_settings import control_token_from_env
from sluice.server.stream import EventHub
from sluice.server.streams import host_streams
from sluice.server.syncs import SyncHost
from sluice.server.views import ObjectViews, RunViews
from sluice.streaming.host import StreamHost

log = logging.getLogger("sluice.server")


@dataclass(slots=True)
class ServerSettings:
    """How ``sluice serve`` runs: run options for every run, backends, and tuning of the event stream."""

    simulate: bool = False
    delay_scale: float = 1.0
    fail: frozenset[int] = frozenset()
    bus_url: str | None = None
    state_url: str | None = None
    workers: bool = True  # in-process stage workers (False: 'sluice worker' processes do the work)
    resume: bool = True  # resume the project's unfinished run on start
    keepalive_s: float = 15.0
    ring_size: int = 50_000  # SSE replay ring: at most this many frames...
    ring_bytes: int = 16 * 1024 * 1024  # ...and this many bytes
    max_backlog: int = 100_000  # a client further behind (frames or bytes) is disconnected
    max_backlog_bytes: int = 64 * 1024 * 1024
    view_cache_bytes: int = 32 * 1024 * 1024  # finished runs' encoded details and statuses (GET /runs...)
    lag_interval_s: float = 2.0
    syncs: tuple[str, ...] = ()  # syncs of the project to run in this process (sluice serve --sync NAME)
    streams: tuple[str, ...] = ()  # streaming objects to run in this process (sluice serve --stream ID|all)
    alerts: bool = True  # run the alert service when the project has an alerts: section (docs/alerts.md)
    scheduler: bool | None = None  # host the scheduler (sluice serve --scheduler); None: when the project has schedules
    control_token: str | None = field(default_factory=control_token_from_env)  # POST /orchestrate, /runs/{id}/cancel

    def run_options(self) -> RunOptions:
        return RunOptions(simulate=self.simulate, delay_scale=self.delay_scale, fail=self.fail)


class Services:
    """Everything the API needs, started once per server."""

    def __init__(self, project: Project, settings: ServerSettings | None = None) -> None:
        self.project = project
        self.settings = settings or ServerSettings()
        self._stack = ExitStack()
        self._workers: tuple[list[StageWorker], list[threading.Thread]] = ([], [])
        self._backends: Backends | None = None
        self._runs: RunManager | None = None
        self._hub: EventHub | None = None
        self._run_views: RunViews | None = None
        self._object_views: ObjectViews | None = None
        self._lag: LagSampler | None = None
        self._syncs: SyncHost | None = None
        self.alerts: AlertService | None = None
        """The alert service (the project's ``alerts:``), None when the project has none."""
        self.streams: StreamHost | None = None
        """The streaming objects this server runs (``--stream``), None when it runs none."""
        self.scheduler: SchedulerHost | None = None
        """The scheduler this server hosts (``schedules:`` or ``sensors:``, ``--scheduler``), None when it hosts none."""
        self.pruner: Pruner | None = None
        """Prunes history every ``history: every`` (None without a ``history:`` section)."""
        self.stream_closers: list[Callable[[], None]] = []
        """Called (on the event loop) by :meth:`close_streams`: other long-lived streams of the app (subscriptions)."""
        self.started = False

    # The parts, available once started.

    @property
    def backends(self) -> Backends:
        return _started(self._backends)

    @property
    def runs(self) -> RunManager:
        return _started(self._runs)

    @property
    def hub(self) -> EventHub:
        return _started(self._hub)

    @property
    def run_views(self) -> RunViews:
        return _started(self._run_views)

    @property
    def object_views(self) -> ObjectViews:
        return _started(self._object_views)

    def start(self) -> None:
        """Open backends, resume an unfinished run, start workers. Raises SluiceError for user errors."""
        if self.started:
            return
        settings = self.settings
        unknown = sorted(i for i in settings.fail if i not in self.project.objects)
        if unknown:
            raise SluiceError(f"--fail names unknown object id(s) {unknown}; see 'sluice plan' for the project's objects")
        try:
            opened = open_backends(self.project, settings.bus_url, settings.state_url)
            backends = self._backends = self._stack.enter_context(opened)
            runs = self._runs = RunManager(self.project, backends, settings.run_options())
            if settings.resume:
                # Before the workers start: a worker given the killed server's leftover work before the run's lease is
                # taken finds no coordinator and marks the run interrupted (runtime/run_lease.py), which then is not
                # resumed (it happened under load). Resumed first, its decisions wait on the bus for the workers.
                runs.resume_unfinished()
            if settings.workers:
                self._workers = start_workers(self.project, backends)
            self._run_views = RunViews(
                self.project, backends.state, runs, cache_bytes=settings.view_cache_bytes, checks=CheckResults(backends.bus)
            )
            self._object_views = ObjectViews(self.project, backends.state, backends.lake, self._run_views)
            self._hub = EventHub(
                backends.bus,
                ring_size=settings.ring_size,
                ring_bytes=settings.ring_bytes,
                max_backlog=settings.max_backlog,
                max_backlog_bytes=settings.max_backlog_bytes,
            )
            self._lag = LagSampler(
                backends.bus,
                list(self.project.stage_names),
                lambda: None if runs.active is None else runs.active.run_id,
                settings.lag_interval_s,
            )
            self._lag.start()
            self._syncs = SyncHost(self.project, settings.syncs)
            self._syncs.start()
            self.streams = host_streams(self.project, backends.lake, settings.streams)
            if settings.alerts and self.project.alerts is not None:
                self.alerts = AlertService(self.project, backends.bus, backends.state)
                self.alerts.start()
            self.pruner = start_pruner(self.project, backends)
            self.scheduler = host_scheduler(self.project, backends, settings.scheduler)
        except BaseException:
            self._shutdown()
            raise
        self.started = True

    def start_stream(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the event hub on the server's event loop."""
        self.hub.start(loop)

    def close_streams(self) -> None:
        """End every SSE stream (on the event loop), so the server can stop without waiting for clients."""
        if self._hub is not None:
            self._hub.close_streams()
        for close in self.stream_closers:
            close()

    def stop(self) -> None:
        """Cancel the active run, stop workers and the hub, close backends."""
        if not self.started:
            return
        self.started = False
        self._shutdown()

    def _shutdown(self) -> None:
        if self.pruner is not None:
            self.pruner.stop()
            self.pruner = None
        if self.scheduler is not None:
            self.scheduler.stop()  # no new runs; its runs get 10 s, then are cancelled
            self.scheduler = None
        if self.streams is not None:
            self.streams.stop()  # each commits what it gathered
            self.streams.join(30.0)
            self.streams = None
        if self._syncs is not None:
            self._syncs.stop()
            self._syncs = None
        if self._hub is not None:
            self._hub.stop()
        if self._runs is not None:
            self._runs.shutdown()
        stop_workers(*self._workers)
        self._workers = ([], [])
        if self._lag is not None:
            self._lag.stop()
        if self.alerts is not None:  # last: it alerts on what the parts above did while stopping
            self.alerts.stop()
            self.alerts = None
        self._stack.close()


def host_scheduler(project: Project, backends: Backends, wanted: bool | None) -> SchedulerHost | None:
    """The started scheduler of ``sluice serve`` (``wanted`` None: when the project has enabled schedules); its runs
    use the server's stage workers (or ``sluice worker`` processes when the server starts none)."""
    sensors = hosted_sensors(project, backends.state, backends.bus)
    enabled = any(s.enabled for s in project.schedules) or bool(sensors)
    if wanted is False or (wanted is None and not enabled):
        return None
    if not enabled:
        raise SluiceError(
            f"--scheduler: project '{project.name}' has no enabled schedule or sensor; add schedules: to sluice.yaml"
        )
    # the server's own workers (if any) do the work; the sensors are polled at each step, recorded as ticks
    host = SchedulerHost(project, backends, workers="external", sources=sensors)
    host.start()
    return host


T = TypeVar("T")


def _started(part: T | None) -> T:
    if part is None:
        raise RuntimeError("the server's services are not started")
    return part
