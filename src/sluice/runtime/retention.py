"""History retention: prune runs, their object states and events, and backfills older than ``history: keep``.

:func:`prune_history` removes, for one project, the runs and backfills *finished* before ``now - keep`` (running
ones stay, however old) and, on the embedded bus, the ``sluice.events`` messages below the first offset still
needed: the first event published after the cutoff, or the first event of an older run still running, whichever
is lower. On Kafka the event topic is pruned by the broker's own retention (``retention.ms``, set from the bus
URL's ``retention_days``): nothing is deleted here, and the report says so. :class:`Pruner` does it every
``history: every`` in a thread of its own, for ``sluice serve`` and the scheduler.

Per-date lake outputs (``<layer>/<name>.ld-<stamp>``: :mod:`sluice.lake.dated`) are pruned by ``dated_outputs``:
those last written more than ``history: dated_outputs`` (default ``keep``) ago, except the one each plain output
holds and those of a logical date whose run is still running (:func:`dated_outputs_pruner`).

Other tables with a history (schedule ticks) join by adding their rows to
:meth:`sluice.state.base.HistoryStore.prune_history`. Check results, which live in the warehouse's
``metrics.check_results`` when the project has one, are pruned by ``check_results`` (a real prune only: a dry run
does not count them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sluice.bus.base import Bus
from sluice.bus.embedded import EmbeddedBus
from sluice.bus.names import EVENTS_TOPIC
from sluice.state.base import StateStore

if TYPE_CHECKING:
    from sluice.lake.base import Lake
    from sluice.project.model import Project
    from sluice.runtime.run import Backends

log = logging.getLogger("sluice.retention")


@dataclass(slots=True)
class PruneReport:
    """What a prune removed (or would, ``dry_run``): rows per state-store table, events on the bus (None: the bus
    prunes itself, ``bus_note`` says how), the cutoff in epoch seconds."""

    cutoff: float
    dry_run: bool
    tables: dict[str, int] = field(default_factory=dict)
    events: int | None = None
    bus_note: str = ""
    dated_outputs: int | None = None
    """Per-date lake outputs removed (None: not asked to prune them)."""

    def lines(self) -> list[str]:
        """Human-readable lines, one per table and one for the events."""
        verb = "would remove" if self.dry_run else "removed"
        out = [f"{verb} {count} row(s) of {table}" for table, count in self.tables.items()]
        out.append(f"{verb} {self.events} event(s) of {EVENTS_TOPIC}" if self.events is not None else self.bus_note)
        if self.dated_outputs is not None:
            out.append(f"{verb} {self.dated_outputs} per-date lake output(s)")
        return out

    def as_json(self) -> dict[str, object]:
        return {
            "cutoff": self.cutoff,
            "dry_run": self.dry_run,
            "tables": self.tables,
            "events": self.events,
            "bus": self.bus_note,
            "dated_outputs": self.dated_outputs,
        }


def prune_history(
    state: StateStore,
    bus: Bus,
    project: str,
    keep_s: float,
    now: float | None = None,
    dry_run: bool = False,
    check_results: Callable[[float], int] | None = None,
    dated_outputs: Callable[[float, bool], int] | None = None,
) -> PruneReport:
    """Prune ``project``'s history older than ``keep_s`` seconds before ``now`` (default: the clock).

    ``check_results(cutoff)`` removes the data-quality check results checked before the cutoff wherever they are kept
    and returns how many (:func:`sluice.checks.store.prune_results`); skipped on a dry run. ``dated_outputs(now,
    dry_run)`` removes (or counts) per-date lake outputs and returns how many (:func:`dated_outputs_pruner`).
    """
    now = time.time() if now is None else now
    cutoff = now - keep_s
    report = PruneReport(cutoff, dry_run, state.prune_history(project, cutoff, dry_run))
    if check_results is not None and not dry_run:
        report.tables["check_results"] = check_results(cutoff)
    if dated_outputs is not None:
        report.dated_outputs = dated_outputs(now, dry_run)
    if isinstance(bus, EmbeddedBus):
        keep_from = bus.first_offset_since(EVENTS_TOPIC, cutoff)
        old_running = state.find_runs(project, status="running", until=cutoff, limit=1000)
        # an interrupted run kept in the history may be resumed: it replays its events (docs/operations.md)
        interrupted = state.find_runs(project, status="interrupted", until=cutoff, limit=1000)
        old_running += [run for run in interrupted if run.finished_at is None or run.finished_at >= cutoff]
        keep_from = min([keep_from, *(run.first_offset for run in old_running)])
        report.events = bus.prune_topic(EVENTS_TOPIC, keep_from, dry_run)
    else:
        report.bus_note = f"events of {EVENTS_TOPIC} are pruned by the topic's retention.ms (the bus URL's retention_days)"
    return report


class Pruner:
    """Prunes a project's history every ``every_s`` seconds in a daemon thread, between :meth:`start` and :meth:`stop`.

    ``clock`` gives epoch seconds; errors are logged and the next round tries again.
    """

    def __init__(
        self,
        state: StateStore,
        bus: Bus,
        project: str,
        keep_s: float,
        every_s: float,
        clock: Callable[[], float] = time.time,
        check_results: Callable[[float], int] | None = None,
        dated_outputs: Callable[[float, bool], int] | None = None,
    ) -> None:
        self.state, self.bus, self.project = state, bus, project
        self.check_results = check_results
        self.dated_outputs = dated_outputs
        self.keep_s, self.every_s, self.clock = keep_s, every_s, clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: PruneReport | None = None

    def prune_once(self) -> PruneReport:
        """One prune now; the report is also kept in :attr:`last`."""
        self.last = prune_history(
            self.state,
            self.bus,
            self.project,
            self.keep_s,
            self.clock(),
            check_results=self.check_results,
            dated_outputs=self.dated_outputs,
        )
        removed = sum(self.last.tables.values()) + (self.last.events or 0) + (self.last.dated_outputs or 0)
        if removed:
            log.info("history pruned: %s", "; ".join(self.last.lines()))
        return self.last

    def start(self) -> None:
        """Prune at once, then every ``every_s`` seconds until :meth:`stop`."""
        self._thread = threading.Thread(target=self._loop, name=f"prune-{self.project}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.prune_once()
            except Exception:  # a store that is briefly away: try again next round
                log.exception("history prune failed; retrying in %.0f s", self.every_s)
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def history_pruner(project: Project, backends: Backends) -> Pruner | None:
    """A :class:`Pruner` (not started) for ``project``'s ``history:`` section, or None without one: a service for
    ``SchedulerHost(..., services=[...])``."""
    if project.history is None:
        return None
    history = project.history
    return Pruner(
        backends.state,
        backends.bus,
        project.name,
        history.keep_s,
        history.every_s,
        check_results=check_results_pruner(project, backends.state),
        dated_outputs=dated_outputs_pruner(project, backends.lake, backends.state, history.dated_outputs_s),
    )


def dated_outputs_pruner(project: Project, lake: Lake, state: StateStore, keep_s: float) -> Callable[[float, bool], int]:
    """``(now, dry_run) -> outputs removed``: the per-date outputs of ``project``'s objects last written more than
    ``keep_s`` seconds before ``now``, but not the one each plain output holds nor those of the logical dates of
    runs still running (they may be resumed and read them) (:func:`sluice.lake.dated.prune_dated`)."""
    from sluice.lake.dated import prune_dated
    from sluice.project.model import layer_of

    def prune(now: float, dry_run: bool) -> int:
        running = state.find_runs(project.name, status="running", limit=100_000)
        dates = [date for run in running if isinstance(date := run.options.get("logical_date"), str)]
        outputs = [(layer_of(project, obj), obj.name) for obj in project.objects.values() if obj.lake]
        return prune_dated(lake, outputs, now - keep_s, dates, dry_run)

    return prune


def check_results_pruner(project: Project, state: StateStore) -> Callable[[float], int]:
    """``cutoff -> rows removed``: ``project``'s check results pruned wherever they are kept (warehouse or state)."""
    from sluice.checks.store import prune_results

    return lambda cutoff: prune_results(project, state, cutoff)


def start_pruner(project: Project, backends: Backends) -> Pruner | None:
    """A started :func:`history_pruner`, or None (what ``sluice serve`` calls once its backends are open; ``stop()``
    it on shutdown)."""
    pruner = history_pruner(project, backends)
    if pruner is not None:
        pruner.start()
    return pruner
