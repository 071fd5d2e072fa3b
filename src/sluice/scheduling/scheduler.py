"""The scheduler: turns the project's schedules (and other request sources) into runs, once per tick, across restarts.

Each :meth:`Scheduler.step`:

1. takes or renews the project's **lease** in the state store (``holder``, expiry ``lease_s`` ahead): only the holder
   schedules; a second scheduler stands by and takes over when the lease expires (or is released on shutdown);
2. lists each schedule's **due ticks** since its last recorded one, with the injected :class:`Clock` (tests and
   ``bench/schedules.py`` use :class:`FakeClock`: no sleeping through minutes);
3. applies the **catch-up policy** to ticks found late (more than ``grace_s`` after they fell due, i.e. missed while no
   scheduler ran): ``none`` misses them, ``latest`` runs the newest and misses the others, ``all`` runs each in order;
4. admits ticks in order: a tick waits while a ``wait_for`` schedule's run of the same logical date (its latest tick
   at or before this one) has not succeeded; a tick finding ``max_active_runs`` runs of its schedule still going is
   missed (``catch_up: all`` keeps it queued until a run ends instead);
5. **records** the ticks it fires (each with the id its run will have) and misses in one transaction; the state
   store keeps each ``(schedule, logical date)`` once, so a tick another scheduler already recorded is neither
   started nor reported again;
6. starts the fired ticks' runs with those ids (a :class:`RunStarter`, ``scheduling/starter.py``); publishes a
   ``ScheduleMissed`` event for each missed tick. A scheduler that died between 5 and 6 left a tick whose run id is
   in no run record: the next one to take the lease starts it under that id (:data:`RECOVER_S`). Sensors' requests
   are recorded the same way (a tick keyed by the request's key, saved with the sensor's new cursor), so one
   recorded before the scheduler died is started by the next one, once. A scheduler that
   died while its runs were going (``kill -9``) left them ``running``: the next one to take the lease resumes them
   (:meth:`RunStarter.resume`), so they finish and ``max_active_runs`` does not hold the schedule back for ever.

A broken schedule is set apart, never the whole scheduler: one whose next tick cannot be computed (a cron that
never fires) stops being stepped, and one whose run cannot start leaves its tick recorded without a run; either is
logged as an error once and kept in :attr:`Scheduler.problems` (``GET /schedules`` shows it), while the other
schedules go on firing. While a schedule is set apart the scheduler looks at the project's file every
:data:`RECHECK_S` seconds (:mod:`.project_watch`: modification time, size, content); once it changed and loads, each
schedule set apart is taken back with its new definition (logged), from its last recorded tick: the ticks that fell
due meanwhile follow its ``catch_up`` policy like ticks missed while no scheduler ran (each recorded once, fired or
missed, under the lease), so none fires twice and none passes without a record.

A schedule the store has never seen starts from its previous tick (recorded as a ``baseline`` tick): the scheduler
does not run history on first sight. Ideas from Airflow's scheduler (``catchup``, ``max_active_runs``, logical
dates and data intervals) and Dagster's (ticks recorded before their runs start).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from sluice import events as ev
from sluice.project.model import Project
from sluice.runtime.coordinator import new_run_id
from sluice.scheduling.cron import Cron, tick_text
from sluice.scheduling.project_watch import ProjectWatch
from sluice.scheduling.requests import RunRequest
from sluice.scheduling.spec import ScheduleSpec
from sluice.state.base import SensorCursor, StateStore, TickRecord

log = logging.getLogger("sluice.scheduler")
LEASE_S = 30.0
"""Seconds a scheduler's lease lasts; it is renewed when half of it is left."""
RECOVER_S = 600.0
"""A schedule's last tick fired less than this many seconds ago whose run is not in the state store (the scheduler
died between recording the tick and recording the run) is started when a scheduler takes the lease, with the run id
recorded on the tick: if the first scheduler did record the run, that id is taken and nothing starts twice."""
GRACE_S = 60.0
"""A tick found more than this many seconds after it fell due was missed while no scheduler ran (catch-up applies)."""
INTERVAL_S = 1.0
"""Longest wait between two steps of :meth:`Scheduler.run` (seconds)."""
MAX_TICKS_PER_STEP = 1000
"""At most this many due ticks of one schedule are looked at per step. After a longer downtime, ``catch_up: none``
and ``latest`` do not record the older ticks one by one: one ``missed`` record, at the last of them, stands for the
range (its reason says from when to when); ``all`` takes the next thousand at the following step."""
RECHECK_S = 5.0
"""While a schedule is set apart, the project's file is looked at this often (seconds of the scheduler's clock)."""
NOT_RUNNING = "no scheduler ran"
"""Why late ticks passed, in a missed tick's reason: the scheduler was down (or the schedule set apart, :data:`APART`)."""
APART = "the schedule was set apart"


class Clock(Protocol):
    """What time it is (timezone-aware)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only when told (tests, benchmarks). Thread-safe."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class RunStarter(Protocol):
    """Starts runs: the run id of each request, in order (None when it could not start; the reason is logged).

    ``run_ids`` are the ids to give them (the scheduler records each with its tick first); a run id already in
    the state store is not started again."""

    def start(self, requests: Sequence[RunRequest], run_ids: Sequence[str] | None = None) -> list[str | None]: ...

    def resume(self, run_ids: Sequence[str]) -> list[str]:
        """Continue runs left ``running`` by a scheduler that died (``Coordinator.resume``); the ids resumed."""
        ...


class RequestSource(Protocol):
    """Something else that asks for runs (a sensor): polled at each step; each request's ``key`` is recorded like a
    tick, so it starts once whoever polls it. A source may also have ``cursor_for(request) -> SensorCursor | None``:
    what to save with the request's tick, in the same transaction (the sensor's cursor, :mod:`.sensors`)."""

    def poll(self, now: datetime) -> list[RunRequest]: ...


@dataclass(slots=True)
class _Track:
    """One schedule as the scheduler follows it: the next tick to look at and the due ticks not recorded yet."""

    spec: ScheduleSpec
    cron: Cron
    next_tick: datetime
    queue: list[datetime] = field(default_factory=list)
    away: str = NOT_RUNNING
    """Why ticks found late passed (in their missed records' reason), until the track has caught up."""


@dataclass(slots=True)
class StepReport:
    """What a step did: ``leader`` (whether this scheduler holds the lease), ticks fired (with their run ids) and
    missed, ticks still waiting (``wait_for`` or a free slot)."""

    leader: bool
    fired: list[TickRecord] = field(default_factory=list)
    missed: list[TickRecord] = field(default_factory=list)
    waiting: int = 0
    problems: dict[str, str] = field(default_factory=dict)
    """Schedules set apart or whose run could not start, by name: the error (a copy of :attr:`Scheduler.problems`)."""


class Scheduler:
    """Fires the schedules of ``project`` (see the module's description). Not thread-safe: one thread steps it."""

    def __init__(
        self,
        project: Project,
        state: StateStore,
        starter: RunStarter,
        *,
        clock: Clock | None = None,
        holder: str | None = None,
        lease_s: float = LEASE_S,
        grace_s: float = GRACE_S,
        publish: Callable[[list[ev.Event]], None] | None = None,
        sources: Sequence[RequestSource] = (),
        reload: Callable[[], Project] | None = None,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self.project = project
        self.state = state
        self.starter = starter
        self.clock: Clock = clock or SystemClock()
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.lease_s = lease_s
        self.grace_s = grace_s
        self.publish = publish
        self.sources = list(sources)
        self.schedules = [s for s in project.schedules if s.enabled]
        self._sensors = {s.name: s for s in project.sensors if s.settings.enabled} if self.sources else {}
        self._tracks: list[_Track] | None = None  # loaded when the lease is taken
        self._lease_until = 0.0
        self._stamp: float | None = None  # the clock's time at the current step (epoch seconds): fired ticks' run ids
        self.problems: dict[str, str] = {}
        """What is wrong with a schedule, by name: its next tick cannot be computed (it is no longer stepped), or its
        last fired tick's run could not start (cleared when one of its runs starts). Read by ``GET /schedules``."""
        self._apart: set[str] = set()  # schedules no longer stepped
        self.reload: Callable[[], Project] = reload or self._read_project
        """Loads the project again (default: its file), to take back the schedules set apart once it changed."""
        self.recheck_s = recheck_s
        self._watch: ProjectWatch | None = None  # the project's files, looked at while a schedule is set apart
        self._next_recheck = 0.0

    # ----- the lease --------------------------------------------------------------------------------------

    @property
    def leader(self) -> bool:
        return self._tracks is not None

    def _lead(self, now: float) -> bool:
        if self._tracks is not None and now < self._lease_until - self.lease_s / 2:
            return True
        if self.state.acquire_lease(self.project.name, self.holder, now, self.lease_s):
            if self._tracks is None:
                log.info("scheduler %s holds the lease of project %s", self.holder, self.project.name)
            self._lease_until = now + self.lease_s
            return True
        if self._tracks is not None:
            log.warning("scheduler %s lost the lease of project %s; standing by", self.holder, self.project.name)
        self._tracks = None
        return False

    def release(self) -> None:
        """Give the lease up (on shutdown), so that a standby scheduler takes over at once."""
        if self._tracks is not None:
            self.state.release_lease(self.project.name, self.holder)
            self._tracks = None

    def _load(self, now: datetime, baselines: list[TickRecord], orphans: list[TickRecord]) -> list[_Track]:
        """Each schedule from its last recorded tick; one never seen starts at its previous tick (a baseline). A last
        tick fired recently whose run was never recorded goes to ``orphans`` (see :data:`RECOVER_S`). Schedules set
        apart stay so: they come back when the project's file is fixed (:meth:`_take_back`)."""
        last = self.state.last_ticks(self.project.name)
        for name in [*(spec.name for spec in self.schedules), *self._sensors]:
            record = last.get(name)
            orphan = record is not None and record.status == "fired" and record.run_id and record.run_status is None
            if record is not None and orphan and time.time() - record.recorded_at < RECOVER_S:
                orphans.append(record)
        tracks = []
        for spec in self.schedules:
            if spec.name in self._apart:
                continue
            try:
                tracks.append(self._track(spec, now, last, baselines))
            except Exception as exc:  # this schedule only: the others are loaded and fire
                self._set_apart(spec, exc)
        return tracks

    def _track(self, spec: ScheduleSpec, now: datetime, last: dict[str, TickRecord], baselines: list[TickRecord]) -> _Track:
        """``spec`` followed from its last recorded tick in ``last`` (none: from its previous tick, a baseline added to
        ``baselines``). Raises what keeps its ticks from being computed."""
        cron = Cron(spec.cron, spec.timezone)
        record = last.get(spec.name)
        if record is not None:
            return _Track(spec, cron, cron.next_after(datetime.fromisoformat(record.logical_date)))
        start = cron.previous(now)
        track = _Track(spec, cron, cron.next_after(start))
        baselines.append(self._record(spec.name, start, "baseline", "the schedule was first seen after this tick"))
        return track

    def _set_apart(self, spec: ScheduleSpec, exc: BaseException) -> None:
        """Stop stepping ``spec`` (its next tick cannot be computed): logged once, kept in :attr:`problems`; the
        project's files are watched from now on, to take it back when they are fixed."""
        where = f"{spec.file}:{spec.line}: " if spec.file and spec.line else ""
        problem = (
            f"{where}schedule {spec.name} is not scheduled any more: {exc}; fix it in "
            f"{spec.file or self.project.source_file}: the scheduler takes it back once the file changes and loads"
        )
        if self.problems.get(spec.name) != problem:
            log.error("%s", problem)
        self.problems[spec.name] = problem
        self._apart.add(spec.name)
        if self._watch is None:  # the files as they are now: a change from here on may be the fix
            self._watch = ProjectWatch([Path(self.project.source_file)])
        if spec.file:
            self._watch.watch(Path(spec.file))

    def _read_project(self) -> Project:
        from sluice.project.load import load_project  # the project's reader is only needed once a schedule broke

        return load_project(self.project.source_file)

    def _recheck(self, now: datetime, baselines: list[TickRecord]) -> None:
        """While schedules are set apart, every :attr:`recheck_s` seconds: when the project's files changed, load the
        project again and take back the schedules it now defines well (:meth:`_take_back`)."""
        if not self._apart or self._watch is None or now.timestamp() < self._next_recheck:
            return
        self._next_recheck = now.timestamp() + self.recheck_s
        if not self._watch.changed():
            return
        apart = ", ".join(sorted(self._apart))
        try:
            project = self.reload()
        except Exception as exc:  # still broken (or being written): they stay apart; said once per change of the file
            first = (str(exc) or type(exc).__name__).splitlines()[0]
            log.error("the project's file changed but does not load (%s); still set apart: %s", first, apart)
            return
        self._take_back(project, now, baselines)

    def _take_back(self, project: Project, now: datetime, baselines: list[TickRecord]) -> None:
        """Follow again each schedule set apart that ``project`` (just loaded) defines with ticks that can be computed,
        from its last recorded tick: the ticks that fell due meanwhile are found late, so its ``catch_up`` applies to
        them and each is recorded once (fired or missed). One gone or disabled is dropped."""
        specs = {spec.name: spec for spec in project.schedules}
        last = self.state.last_ticks(self.project.name)
        for name in sorted(self._apart):
            spec = specs.get(name)
            if spec is None or not spec.enabled:
                log.warning(
                    "schedule %s, set apart, is %s in the project's file now: dropped",
                    name,
                    "gone" if spec is None else "disabled",
                )
                self.schedules = [s for s in self.schedules if s.name != name]
            else:
                try:
                    track = self._track(spec, now, last, baselines)
                except Exception as exc:  # still broken: the problem as it is now
                    self._set_apart(spec, exc)
                    continue
                track.away = APART
                self.schedules = [spec if s.name == name else s for s in self.schedules]
                if self._tracks is not None:
                    self._tracks.append(track)
                log.warning(
                    "schedule %s is scheduled again (the project's file was fixed): from %s on; the ticks that fell due "
                    "while it was set apart follow catch_up: %s",
                    name,
                    tick_text(track.next_tick),
                    spec.catch_up,
                )
            self._apart.discard(name)
            self.problems.pop(name, None)

    def _resume_unfinished(self) -> None:
        """Runs of this project's ticks still ``running`` when the lease is taken were left by a scheduler that died
        (a live one renews its lease): resume them here (a starter without ``resume`` leaves them as they are)."""
        run_ids = [t.run_id for t in self.state.running_ticks(self.project.name) if t.run_id is not None]
        resume = getattr(self.starter, "resume", None)
        if not run_ids or resume is None:
            return
        log.warning("resuming %d run(s) left running by a previous scheduler: %s", len(run_ids), ", ".join(run_ids[:10]))
        resume(run_ids)

    # ----- one step ---------------------------------------------------------------------------------------

    def step(self) -> StepReport:
        """Look at the clock once and fire or miss what is due (see the module's description)."""
        now = self.clock.now()
        self._stamp = now.timestamp()
        if not self._lead(now.timestamp()):
            return StepReport(leader=False)
        pending: list[TickRecord] = []  # baselines and missed ticks
        orphans: list[TickRecord] = []
        if self._tracks is None:
            self._tracks = self._load(now, pending, orphans)
            self._resume_unfinished()
        self._recheck(now, pending)
        running: dict[str, int] = {}
        if any(track.queue or track.next_tick <= now for track in self._tracks):
            for record in self.state.running_ticks(self.project.name):
                running[record.schedule] = running.get(record.schedule, 0) + 1
        fire: list[TickRecord] = []
        waiting = 0
        for track in list(self._tracks):
            mark = len(fire), len(pending)
            try:
                self._collect(track, now, pending)
                self._admit(track, running, fire, pending)
            except Exception as exc:  # this schedule only: what it added this step is dropped, the others fire
                del fire[mark[0] :], pending[mark[1] :]
                self._tracks.remove(track)
                self._set_apart(track.spec, exc)
                continue
            waiting += len(track.queue)
        requests: dict[tuple[str, str], RunRequest] = {}
        cursors: list[tuple[str, SensorCursor]] = []  # saved with the ticks: the requests are durable before they start
        for source in self.sources:
            cursor_for = getattr(source, "cursor_for", None)
            for request in source.poll(now):
                requests[(request.name, request.key or tick_text(request.logical_date))] = request
                cursor = cursor_for(request) if cursor_for is not None else None
                if cursor is not None:
                    cursors.append((self.project.name, cursor))
        for (name, key), request in requests.items():
            fire.append(self._record(name, request.logical_date, "fired", key=key))
        won = self.state.record_ticks([*fire, *pending], cursors) if fire or pending else []
        report = StepReport(leader=True, waiting=waiting)
        for orphan in orphans:  # one at a time: a run id another scheduler did record fails alone
            log.warning(
                "schedule %s: tick %s was fired but its run %s was never recorded; starting it",
                orphan.schedule,
                orphan.logical_date,
                orphan.run_id,
            )
            self._start([orphan], {})
            if orphan.run_id is not None:
                report.fired.append(orphan)
        started = [t for t in won if t.status == "fired"]
        if started:
            self._start(started, requests)
            report.fired += started
        report.missed = [t for t in won if t.status == "missed"]
        if report.missed:
            self._missed(report.missed)
        report.problems = dict(self.problems)
        return report

    def _record(
        self, schedule: str, tick: datetime, status: str, reason: str | None = None, key: str | None = None
    ) -> TickRecord:
        """A tick record; a fired one carries the id its run will have (recorded with the tick, before the run),
        made at the step's time: never before its tick, so ids sort by start as those of manual runs do."""
        run_id = new_run_id(self._stamp) if status == "fired" else None
        return TickRecord(self.project.name, schedule, key or tick_text(tick), status, time.time(), run_id, reason)

    def _collect(self, track: _Track, now: datetime, missed: list[TickRecord]) -> None:
        """Move the ticks due by ``now`` to the track's queue, applying its catch-up policy to late ones."""
        new: list[datetime] = []
        policy = track.spec.catch_up
        if policy == "all" and len(track.queue) >= MAX_TICKS_PER_STEP:
            return
        while track.next_tick <= now and len(new) < MAX_TICKS_PER_STEP:
            new.append(track.next_tick)
            track.next_tick = track.cron.next_after(track.next_tick)
        away, track.away = track.away, NOT_RUNNING
        if track.next_tick <= now and policy != "all":  # too many to record one by one: one record stands for them
            latest = track.cron.previous(now + timedelta(microseconds=1))
            last = track.cron.previous(latest)
            span = f"the ticks from {tick_text(new[0])} to {tick_text(last)} passed while {away}"
            log.warning("schedule %s: %s; recorded as one missed tick", track.spec.name, span)
            missed.append(
                self._record(track.spec.name, last, "missed", f"catch_up: {policy} ({span}; this record stands for them)")
            )
            new = [latest]
            track.next_tick = track.cron.next_after(latest)
        if not new:
            return
        late = [t for t in new if (now - t).total_seconds() > self.grace_s]
        if policy == "none":
            for tick in late:
                missed.append(self._record(track.spec.name, tick, "missed", f"catch_up: none (the tick passed while {away})"))
            new = [t for t in new if t not in late]
        elif policy == "latest":
            for tick in new[:-1]:
                missed.append(self._record(track.spec.name, tick, "missed", "catch_up: latest (a newer tick runs instead)"))
            new = new[-1:]
        if policy != "all" and new and track.queue:  # a newer tick supersedes ticks still waiting
            for tick in track.queue:
                reason = "superseded by a newer tick while waiting for " + ", ".join(track.spec.wait_for or ("a run slot",))
                missed.append(self._record(track.spec.name, tick, "missed", reason))
            track.queue.clear()
        track.queue.extend(new)

    def _admit(self, track: _Track, running: dict[str, int], fire: list[TickRecord], missed: list[TickRecord]) -> None:
        """Fire the queued ticks that may start, in order; miss those refused by ``max_active_runs``."""
        spec = track.spec
        while track.queue:
            tick = track.queue[0]
            if spec.wait_for and self._blocker(spec, tick) is not None:
                return
            if running.get(spec.name, 0) >= spec.max_active_runs:
                if spec.catch_up == "all":
                    return
                reason = f"max_active_runs: {spec.max_active_runs} run(s) of the schedule still running"
                missed.append(self._record(spec.name, tick, "missed", reason))
            else:
                fire.append(self._record(spec.name, tick, "fired"))
                running[spec.name] = running.get(spec.name, 0) + 1
            track.queue.pop(0)

    def _blocker(self, spec: ScheduleSpec, tick: datetime) -> str | None:
        """The first ``wait_for`` schedule whose run of this logical date (its latest tick at or before ``tick``) has
        not succeeded, or None. That tick of the other schedule must be recorded first: one falling due in the same
        step as ``tick`` (the same cron) is not yet, and its previous run must not stand in for it."""
        text = tick_text(tick)
        crons = {track.spec.name: track.cron for track in self._tracks or ()}
        for other in spec.wait_for:
            ticks = self.state.ticks(self.project.name, other, limit=50)
            cron = crons.get(other)
            if cron is not None:
                due = tick_text(cron.previous(tick + timedelta(microseconds=1)))
                if not any(t.logical_date == due for t in ticks) and (not ticks or ticks[0].logical_date < due):
                    return other  # its tick of this date is due but not recorded yet
            same = next((t for t in ticks if t.logical_date <= text and t.status == "fired"), None)
            if same is None or same.run_status != "succeeded":
                return other
        return None

    def _start(self, ticks: list[TickRecord], requests: dict[tuple[str, str], RunRequest]) -> None:
        by_name = {spec.name: spec for spec in self.schedules}
        asked = []
        for t in ticks:
            request = requests.get((t.schedule, t.logical_date))
            if request is None and t.schedule in self._sensors:  # a sensor's request recorded before a restart
                request = self._sensors[t.schedule].recorded_request(t.logical_date)
            if request is None:
                spec = by_name[t.schedule]
                logical = datetime.fromisoformat(t.logical_date)
                request = RunRequest(t.schedule, "schedule", logical, spec.targets, t.logical_date, spec.timezone)
            asked.append(request)
        wanted = [t.run_id or new_run_id() for t in ticks]
        errors: list[str | None] = [None] * len(ticks)
        try:
            run_ids = self.starter.start(asked, wanted)
        except Exception:  # one request broke the batch: start them one by one, so only that one fails
            run_ids = []
            for index, (request, wanted_id) in enumerate(zip(asked, wanted, strict=True)):
                try:
                    run_ids += self.starter.start([request], [wanted_id])
                except Exception as exc:
                    run_ids.append(None)
                    errors[index] = str(exc) or type(exc).__name__
        for t, run_id, error in zip(ticks, run_ids, errors, strict=True):
            if run_id is not None:
                log.info("schedule %s fired tick %s: run %s", t.schedule, t.logical_date, run_id, extra={"run_id": run_id})
                if t.schedule not in self._apart:
                    self.problems.pop(t.schedule, None)
            else:
                why = error or "see the log above"
                log.error("schedule %s fired tick %s but its run did not start: %s", t.schedule, t.logical_date, why)
                self.problems[t.schedule] = f"the run of tick {t.logical_date} did not start: {why}"
            t.run_id = run_id

    def _missed(self, ticks: list[TickRecord]) -> None:
        events: list[ev.Event] = []
        for t in ticks:
            log.info("schedule %s missed tick %s: %s", t.schedule, t.logical_date, t.reason)
            events.append(ev.ScheduleMissed(run_id="", schedule=t.schedule, logical_date=t.logical_date, reason=t.reason or ""))
        if self.publish is not None:
            self.publish(events)

    # ----- running ----------------------------------------------------------------------------------------

    def next_wake(self, now: datetime) -> float:
        """Seconds until the next step is worth taking: the next tick, at most :data:`INTERVAL_S`."""
        if not self._tracks:
            return INTERVAL_S
        soonest = min(track.next_tick for track in self._tracks)
        return max(0.0, min(INTERVAL_S, (soonest - now).total_seconds()))

    def run(self, stop: threading.Event, on_step: Callable[[StepReport], None] | None = None) -> None:
        """Step until ``stop`` is set (then release the lease). A failing step (state store down) is logged and
        retried at the next one."""
        try:
            while not stop.is_set():
                try:
                    report = self.step()
                except Exception as exc:  # a transient store or bus failure: the next step tries again
                    log.error("scheduler step failed: %s", exc)
                    self._tracks = None  # reload from the store: what was recorded is the truth
                    stop.wait(INTERVAL_S)
                    continue
                if on_step is not None:
                    on_step(report)
                stop.wait(self.next_wake(self.clock.now()) if report.leader else INTERVAL_S)
        finally:
            try:
                self.release()
            except Exception as exc:
                log.warning("could not release the scheduler lease: %s", exc)
