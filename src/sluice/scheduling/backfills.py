"""Backfills: one run per logical date over a past range, in order or a bounded number at once, resumable.

A backfill's dates are each day from ``from`` to ``to`` inclusive (midnight in its time zone), or the ticks of a
cron expression in that range (a schedule's, with croniter). Each date becomes a :class:`RunRequest` with
``trigger="backfill"`` and ``name="backfill:<id>"``; the backfill and each date's status (``pending``,
``running``, ``succeeded``, ``failed``) and run id are kept in the state store, so an interrupted backfill
resumes where it stopped: :meth:`Backfills.run` runs only the dates not yet succeeded (pending ones, failed
ones, and ones left running by a process that died, whose run is continued rather than started again; a date
whose run was cancelled runs under that run's load key, so what it loaded is not loaded twice). A
failed date does not stop the others; the backfill ends ``failed`` when any date failed, ``succeeded`` when all
did. The idea follows Airflow's ``dags backfill`` and Dagster's partition backfills.

>>> from datetime import date
>>> [d.isoformat() for d in logical_dates(date(2026, 1, 30), date(2026, 2, 1))]
['2026-01-30T00:00:00+00:00', '2026-01-31T00:00:00+00:00', '2026-02-01T00:00:00+00:00']
>>> [d.isoformat() for d in logical_dates(date(2026, 1, 1), date(2026, 1, 1), cron="0 2,14 * * *")]
['2026-01-01T02:00:00+00:00', '2026-01-01T14:00:00+00:00']
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sluice.errors import ConfigError, RunNotFound
from sluice.project.model import ObjectSpec, Project
from sluice.scheduling.backfill_lease import LEASE_S, BackfillBusy, BackfillLease, live_holder
from sluice.scheduling.cron import Cron, check_cron
from sluice.scheduling.requests import RunRequest
from sluice.state.base import BackfillDate, BackfillRecord, StateStore

MAX_DATES = 10_000
"""A backfill of more dates than this is refused (a typo in a year, or a minutely cron over months)."""


LAKE_ENGINES = frozenset({"duckdb", "spark"})
"""Model engines reading their parents from the lake locations of the run (``ObjectReady.inputs``) and writing a
lake output: a date-dependent model on them keeps each date apart (:mod:`sluice.lake.dated`)."""


class RunDate(Protocol):
    """Runs one date: called with the request, a callback taking the run id once the run has begun, and the run
    to continue instead of starting one (``resume``: the run a process that died left running for this date);
    returns the run's final status (``succeeded``, ``failed``, ``cancelled``). An exception fails the date."""

    def __call__(self, request: RunRequest, started: Callable[[str], None], resume: str | None = None) -> str: ...


OnDate = Callable[[BackfillDate, int, int], None]
"""Told each date as it settles, with how many are settled and the total."""


def logical_dates(start: date, end: date, cron: str | None = None, tz: tzinfo = UTC) -> list[datetime]:
    """The logical dates from ``start`` to ``end`` inclusive: each day at midnight in ``tz``, or every tick of
    ``cron`` in ``tz`` from ``start`` 00:00 to before ``end`` + 1 day 00:00, placed as a scheduler places them
    across daylight-saving changes (:class:`~sluice.scheduling.cron.Cron`: a tick in a skipped hour moves forward,
    one in a repeated hour fires once). ``tz`` is UTC or a ``ZoneInfo``; dates are in it. Raises ConfigError for a
    reversed range, a bad cron expression, or more than :data:`MAX_DATES` dates."""
    if end < start:
        raise ConfigError(f"backfill: --to {end} is before --from {start}; give the earlier date first")
    first = datetime(start.year, start.month, start.day, tzinfo=tz)
    stop = datetime(end.year, end.month, end.day, tzinfo=tz) + timedelta(days=1)
    if cron is None:
        days = (end - start).days + 1
        if days > MAX_DATES:
            raise ConfigError(f"backfill: {days} days from {start} to {end} is more than {MAX_DATES}; split the range")
        return [datetime(d.year, d.month, d.day, tzinfo=tz) for d in (start + timedelta(days=i) for i in range(days))]
    problem = check_cron(cron)
    if problem is not None:
        raise ConfigError(f"backfill: {problem}")
    # the scheduler's ticks, across daylight-saving changes too (scheduling/cron.py)
    schedule = Cron(cron, tz.key if isinstance(tz, ZoneInfo) else "UTC")
    ticks: list[datetime] = []
    tick = schedule.next_after(first - timedelta(microseconds=1))
    while tick < stop:
        ticks.append(tick.astimezone(tz))
        if len(ticks) > MAX_DATES:
            raise ConfigError(f"backfill: {cron!r} ticks more than {MAX_DATES} times from {start} to {end}; split the range")
        tick = schedule.next_after(tick)
    return ticks


@dataclass(frozen=True, slots=True)
class BackfillSpec:
    """What to backfill: the range (``start``, ``end`` inclusive), the object ids (None: the project's final
    objects), the schedule whose ticks are the dates (None: days) and its cron, the runs at once, the time zone."""

    start: date
    end: date
    targets: tuple[int, ...] | None = None
    schedule: str | None = None
    cron: str | None = None
    parallel: int = 1
    timezone: str = "UTC"

    def as_json(self) -> dict[str, Any]:
        """The spec as kept with the backfill (and compared to find an unfinished backfill of the same spec)."""
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "targets": list(self.targets) if self.targets is not None else None,
            "schedule": self.schedule,
            "cron": self.cron,
            "parallel": self.parallel,
            "timezone": self.timezone,
        }


def _instant(logical_date: str) -> datetime:
    """A recorded logical date (ISO text with its offset) as an aware instant, comparable whatever the offset."""
    found = datetime.fromisoformat(logical_date)
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)


def _same_work(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two specs that run the same dates and targets (``parallel`` and the recorded run ``options`` may differ)."""
    kept = ("parallel", "options")
    return {k: v for k, v in a.items() if k not in kept} == {k: v for k, v in b.items() if k not in kept}


def check_parallel(project: Project, targets: tuple[int, ...] | None, parallel: int) -> None:
    """Refuse ``--parallel`` above 1 for a planned object whose dates cannot run at once.

    An object depends on the logical date when its ``sql:`` or a source option holds a template (``{{ ds }}``...)
    or one of its ancestors does (:func:`~sluice.scheduling.templating.dated_objects`). Each date's run writes
    such an object's own lake output and its children read that one (:mod:`sluice.lake.dated`), so dates at once
    keep apart in the lake. What stays unsafe, refused naming the object:

    - a destination with ``mode: replace``: each date empties the whole table and loads its slice, so the table
      ends with whichever date committed last (``--parallel 1``: the last date's);
    - a model run in its warehouse (``engine: warehouse``, ``dbt``): it reads its parents' tables (every date's
      rows) and rebuilds one table;
    - an ``incremental`` model: each date merges into the model's previous output (``{{ this }}``), which a date
      running at once has not written yet.

    ``append`` (each date's rows, once per run) and ``merge`` (the PostgreSQL destination takes turns per table;
    DuckDB and SQLite write one load at a time) are allowed. Raises ConfigError, one line.
    """
    if parallel <= 1:
        return
    from sluice.scheduling.templating import dated_objects

    for oid in sorted(dated_objects(project) & _planned(project, targets)):
        obj = project.objects[oid]
        problem = _parallel_problem(obj)
        if problem is not None:
            raise ConfigError(
                f"--parallel {parallel}: object {oid} ({obj.name}) depends on the logical date and {problem}",
                obj.origin.file,
                obj.origin.line,
            )


def shared_objects(project: Project, targets: tuple[int, ...] | None) -> set[int]:
    """The planned objects (``targets`` and their ancestors; None: the project's default targets) that do not depend
    on the logical date: every date's run would do the same work and write the same output. Run in order, the first
    date runs them and the others find them fresh; :meth:`Backfills.run` (``first_alone``) keeps that with
    ``--parallel`` (dates at once would each run them: an ``append`` destination got their rows once per date)."""
    from sluice.scheduling.templating import dated_objects

    return _planned(project, targets) - dated_objects(project)


def _planned(project: Project, targets: tuple[int, ...] | None) -> set[int]:
    """``targets`` (None: the project's default targets) and their ancestors: what each date's run plans."""
    from sluice.graph.plan import default_targets, project_graph

    chosen = list(targets) if targets else default_targets(project)
    return project_graph(project).ancestors(chosen) | set(chosen)


def _parallel_problem(obj: ObjectSpec) -> str | None:
    """Why dates of the date-dependent ``obj`` cannot run at once, and what to do; None when they can."""
    if obj.destination is not None and obj.destination.mode == "replace":
        return (
            f"writes table '{obj.destination.table}' with mode replace, which each date empties: "
            "run it with --parallel 1, or give it mode append or merge (with a key holding the date)"
        )
    if obj.model is not None and obj.model.engine not in LAKE_ENGINES:
        return (
            f"runs in its warehouse (engine {obj.model.engine}) over its parents' tables, which hold every date's "
            "rows, into one table: run it with --parallel 1"
        )
    if obj.model is not None and obj.model.materialized == "incremental":
        return (
            "is an incremental model, which merges into its previous date's output: "
            "run it with --parallel 1, or make it materialized: table"
        )
    return None


class Backfills:
    """Creates, finds and runs the backfills of one project in a state store.

    ``clock`` gives epoch seconds (tests pass a fake one); ``lease_s`` how long a backfill's lease lasts unrenewed.
    """

    def __init__(
        self, state: StateStore, project: str, clock: Callable[[], float] = time.time, *, lease_s: float = LEASE_S
    ) -> None:
        self.state = state
        self.project = project
        self.clock = clock
        self.lease_s = lease_s
        self._stopping = threading.Event()
        self.lost = threading.Event()
        """Set when this process lost the backfill's lease to another while running it (no more dates started)."""

    def create(self, spec: BackfillSpec, dates: list[datetime], options: dict[str, Any] | None = None) -> BackfillRecord:
        """Record a new backfill of ``dates`` (all pending); ``options``: how its runs run (``RunOptions.as_dict``:
        ``force``, ``simulate``...), kept in its spec as ``options`` so that resuming it runs them the same way."""
        kept = spec.as_json() | ({"options": options} if options is not None else {})
        record = BackfillRecord(f"bf-{uuid.uuid4().hex[:12]}", self.project, "running", self.clock(), None, kept)
        self.state.create_backfill(record, [d.isoformat() for d in dates])
        return record

    def unfinished(self, spec: BackfillSpec) -> BackfillRecord | None:
        """The most recent backfill of the same dates and targets that has dates left to run (running, or failed),
        which running the same command again resumes."""
        for record in self.state.list_backfills(self.project, limit=200):
            if record.status not in ("succeeded", "refused") and _same_work(record.spec, spec.as_json()):
                return record
        return None

    def stop(self) -> None:
        """Start no more dates (those running finish); the backfill stays resumable."""
        self._stopping.set()

    def _lose(self) -> None:
        self.lost.set()
        self.stop()

    def run(
        self,
        backfill_id: str,
        run_date: RunDate,
        parallel: int = 1,
        on_date: OnDate | None = None,
        *,
        first_alone: bool = False,
    ) -> BackfillRecord:
        """Run the dates of ``backfill_id`` not yet succeeded, in date order, at most ``parallel`` at once; returns
        the backfill as it ends (``running`` still when :meth:`stop` was called or the caller was interrupted).

        ``first_alone``: until one date of the backfill has succeeded, dates run one at a time (the plan holds objects
        that do not depend on the date, :func:`shared_objects`: the first date runs them, the next find them fresh).

        One process at a time runs a backfill: its lease is held meanwhile (:class:`BackfillLease`); raises
        BackfillBusy, before any date starts, when another live process holds it, or runs another backfill of the
        project with a date this one has left to run (:meth:`refuse_overlap`); a backfill refused so before any of
        its dates ran is marked ``refused`` (:meth:`unfinished` does not resume it; ``--resume ID`` still does).
        A lease lost meanwhile sets :attr:`lost`."""
        with BackfillLease(self.state, self.project, backfill_id, self.clock, ttl_s=self.lease_s, on_lost=self._lose):
            left = [d for d in self.state.backfill_dates(backfill_id) if d.status != "succeeded"]
            try:
                self.refuse_overlap([d.logical_date for d in left], backfill_id)
            except BackfillBusy:
                if all(d.status == "pending" and d.run_id is None for d in left):
                    self.state.finish_backfill(backfill_id, "refused", self.clock())
                raise
            return self._run(backfill_id, run_date, parallel, on_date, first_alone)

    def refuse_overlap(self, logical_dates: list[str], backfill_id: str | None = None) -> None:
        """Raise BackfillBusy when another backfill of the project being run now (its lease held) has one of
        ``logical_dates`` (ISO text) left to run: both would run that date's objects, and an ``append`` destination
        would get its rows twice (a ``--new`` backfill of the same range, or an overlapping range). Whatever their
        targets: objects they share (ancestors) would run twice too. ``backfill_id``: the backfill of those dates
        (None: one not recorded yet, which ``sluice backfill`` checks before recording it, so a refused backfill
        leaves nothing behind). :meth:`run` checks again once its own lease is held, so of two started at the same
        moment at least one sees the other."""
        mine = {_instant(d) for d in logical_dates}
        if not mine:
            return
        now = self.clock()
        holders: dict[str, str] = {}  # the other running backfills being run now: id -> who runs it
        for other in self.state.list_backfills(self.project, limit=200):
            if other.backfill_id != backfill_id and other.status == "running":
                holder = live_holder(self.state, self.project, other.backfill_id, now)
                if holder is not None:
                    holders[other.backfill_id] = holder
        for other_id, dates in self.state.backfills_dates(list(holders)).items() if holders else ():
            shared = sorted(mine & {_instant(d.logical_date) for d in dates if d.status != "succeeded"})
            if shared:
                which = f"backfill {backfill_id}" if backfill_id is not None else "this backfill"
                raise BackfillBusy(
                    f"{which} shares {len(shared)} logical date(s) (from {shared[0].isoformat()}) with "
                    f"backfill {other_id}, being run by {holders[other_id]}: both would run those dates (an append "
                    f"destination would get their rows twice); wait for it to finish (sluice backfill PATH --list), "
                    f"or stop it, then run this again"
                )

    def _run(
        self, backfill_id: str, run_date: RunDate, parallel: int, on_date: OnDate | None, first_alone: bool
    ) -> BackfillRecord:
        record = self.state.get_backfill(backfill_id)
        dates = self.state.backfill_dates(backfill_id)
        todo = [d for d in dates if d.status != "succeeded"]
        settled = len(dates) - len(todo)
        alone = first_alone and settled == 0
        if record.status != "running":
            self.state.finish_backfill(backfill_id, "running", None)
        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix=f"backfill-{backfill_id}") as pool:
            running: set[Future[BackfillDate]] = set()
            queue = list(reversed(todo))
            try:
                while queue or running:
                    bound = 1 if alone else parallel
                    while queue and len(running) < bound and not self._stopping.is_set():
                        running.add(pool.submit(self._run_one, backfill_id, queue.pop(), run_date))
                    if not running:
                        break
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        settled += 1
                        item = future.result()
                        alone = alone and item.status != "succeeded"
                        if on_date is not None:
                            on_date(item, settled, len(dates))
            except BaseException:
                self._stopping.set()
                raise
        return self._close(backfill_id)

    def _run_one(self, backfill_id: str, item: BackfillDate, run_date: RunDate) -> BackfillDate:
        name = f"backfill:{backfill_id}"
        logical = datetime.fromisoformat(item.logical_date)
        spec = self.state.get_backfill(backfill_id).spec
        targets = tuple(spec["targets"]) if spec.get("targets") else None
        zone = spec.get("timezone") or "UTC"
        cron = spec.get("cron")
        # a schedule's tick covers the time since its previous tick ({{ data_interval_start }}), as Airflow's runs
        interval_start = Cron(cron, zone).previous(logical) if cron else None
        left = None
        if item.status == "running":  # its process died: continue the run it left, if it got that far
            left = item.run_id or self._orphan(name, item.logical_date)
        load_key = self._cancelled_load_key(item) if item.status == "failed" else None
        request = RunRequest(
            name,
            "backfill",
            logical,
            targets,
            key=f"{name}@{item.logical_date}",
            timezone=zone,
            interval_start=interval_start,
            load_key=load_key,
        )
        item = BackfillDate(item.logical_date, "running", left, self.clock())
        self.state.save_backfill_date(backfill_id, item)

        def started(run_id: str) -> None:
            item.run_id = run_id
            self.state.save_backfill_date(backfill_id, item)

        try:
            status = run_date(request, started, left)
            item.status = "succeeded" if status == "succeeded" else "failed"
            item.error = None if status == "succeeded" else f"run {item.run_id or '?'} {status}"
        except Exception as exc:  # one date failing never stops the others
            item.status, item.error = "failed", (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        item.finished_at = self.clock()
        self.state.save_backfill_date(backfill_id, item)
        return item

    def _cancelled_load_key(self, item: BackfillDate) -> str | None:
        """The load key of the date's last run when it was cancelled (its own, or the one it was given in turn): a
        cancelled object may have committed its load (the worker finishes the write it is in) without its success
        being recorded, and the new run loading under the same key adds nothing for it. None otherwise: a failed
        object's load rolled back, and one whose check failed after its load is loaded again (docs/backfills.md)."""
        if not item.run_id:
            return None
        try:
            run = self.state.get_run(item.run_id)
        except RunNotFound:
            return None
        if run.status != "cancelled":
            return None
        given = run.options.get("load_key")
        return given if isinstance(given, str) and given else run.run_id

    def _orphan(self, name: str, logical_date: str) -> str | None:
        """The run of this date still marked running whose id was not recorded with the date (the process died
        between starting the run and recording its id)."""
        for run in self.state.find_runs(self.project, schedule=name, status="running", limit=1000):
            if run.options.get("logical_date") == logical_date:
                return run.run_id
        return None

    def _close(self, backfill_id: str) -> BackfillRecord:
        statuses = {d.status for d in self.state.backfill_dates(backfill_id)}
        if statuses & {"pending", "running"}:
            return self.state.get_backfill(backfill_id)  # stopped part-way: resumable
        self.state.finish_backfill(backfill_id, "failed" if "failed" in statuses else "succeeded", self.clock())
        return self.state.get_backfill(backfill_id)


def backfill_json(record: BackfillRecord, dates: list[BackfillDate]) -> dict[str, Any]:
    """A backfill and its dates as ``sluice backfill --json`` and ``GET /backfills/{id}`` give them."""
    counts: dict[str, int] = {}
    for item in dates:
        counts[item.status] = counts.get(item.status, 0) + 1
    return {
        "backfill_id": record.backfill_id,
        "status": record.status,
        "created_at": record.created_at,
        "finished_at": record.finished_at,
        "spec": record.spec,
        "counts": counts,
        "dates": [
            {
                "logical_date": d.logical_date,
                "status": d.status,
                "run_id": d.run_id,
                "started_at": d.started_at,
                "finished_at": d.finished_at,
                "error": d.error,
            }
            for d in dates
        ],
    }
