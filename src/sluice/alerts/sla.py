"""SLA deadlines: a run that has not finished by its deadline raises ``sla_missed``.

Two ways to notice, so a miss is seen whether or not the run ever ends: :meth:`SlaWatch.due`, called by the
alert service every ``alerts.sla_interval_s`` seconds (clock injected), looks at the project's running runs in
the state store; :meth:`SlaWatch.finished`, called on each ``RunFinished``, catches a run that ended late
between two looks. A ``by`` deadline of a schedule also covers the schedule's ticks that have no run at all by then
(the tick missed, or its run never started), and the ticks no scheduler recorded (it was down, or had set the schedule
apart: the ticks the cron gives after the schedule's newest record, due for more than the scheduler's grace): only the
tick's own run meets it, never a backfill's or a manual run of the same logical date; and a ``by`` deadline does not
judge backfill runs (their logical dates are past by design) unless its ``schedule`` names that backfill
(``backfill:<id>``). Each (deadline, run) and (deadline, tick) alerts once, whatever the processes looking and their
restarts: the first to claim its key in the state store (``StateStore.claim_alert``, once ever) sends it. A run of a
schedule's tick is judged under its tick's key by that schedule's ``by`` deadline, so a tick alerted while it had no
record is not alerted again when it is recorded, missed, or run late.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime

from sluice.alerts.model import Alert, Sla, Subject
from sluice.alerts.triggers import RunInfo, Triggers
from sluice.errors import SluiceError
from sluice.scheduling.cron import Cron, tick_text
from sluice.scheduling.scheduler import GRACE_S
from sluice.scheduling.spec import ScheduleSpec
from sluice.state.base import StateStore, TickRecord

RECENT_RUNS = 50
"""Runs of the project read from the state store at each look (most recent first)."""
RECENT_TICKS = 50
"""Ticks of each schedule with a ``by`` deadline read at each look (most recent first)."""
TICK_HORIZON_S = 7 * 86400.0
"""A tick whose deadline passed longer ago than this is not alerted any more (a service started after a long pause)."""
UNRECORDED = "no scheduler recorded the tick (the scheduler was down, or had set the schedule apart)"


def describe(sla: Sla) -> str:
    """``within 2h of its start`` or ``by 06:00 Europe/Paris``."""
    if sla.within_s is not None:
        return f"within {_span(sla.within_s)} of its start"
    return f"by {sla.by.strftime('%H:%M') if sla.by else '?'} {sla.timezone}"


def _span(seconds: float) -> str:
    """``seconds`` as ``2h``, ``1h10m``, ``45m`` or ``30s``."""
    minutes = round(seconds / 60)
    if not minutes:
        return f"{round(seconds)}s"
    hours, rest = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{rest}m" if rest else "")


class SlaWatch:
    """Checks ``slas`` against the project's runs; ``triggers`` lends run details and builds alerts."""

    def __init__(self, slas: tuple[Sla, ...], triggers: Triggers, state: StateStore) -> None:
        self.slas = slas
        self.triggers = triggers
        self.state = state
        self._alerted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._claimed: OrderedDict[str, None] = OrderedDict()

    def due(self, now: float) -> list[tuple[Alert, list[Subject]]]:
        """Alerts for running runs past a deadline at ``now`` (epoch seconds), and for ticks of a schedule with a
        ``by`` deadline that passed with no run of the tick (:meth:`_without_run`)."""
        if not self.slas:
            return []
        out: list[tuple[Alert, list[Subject]]] = []
        for record in self.state.list_runs(self.triggers.project.name, RECENT_RUNS):
            if record.status != "running":
                continue
            info = self.triggers.run(record.run_id)
            if info is not None:
                out += self._check(info, now, finished=False)
        return out + self._without_run(now)

    def _without_run(self, now: float) -> list[tuple[Alert, list[Subject]]]:
        """``by`` deadlines of a project schedule: its ticks whose deadline passed at ``now`` while the tick has no
        run: recorded (missed, or its run never started) or not recorded at all (:meth:`_unrecorded`). Only the tick's
        own run counts: a backfill or manual run of the same logical date does not meet the schedule's deadline. A
        tick with a run is judged by :meth:`_check`."""
        project = self.triggers.project
        schedules = {spec.name: spec for spec in project.schedules}
        out: list[tuple[Alert, list[Subject]]] = []
        for sla in self.slas:
            spec = schedules.get(sla.schedule or "")
            if sla.by is None or spec is None:
                continue
            ticks = self.state.ticks(project.name, spec.name, limit=RECENT_TICKS)
            found: list[tuple[str, TickRecord | None]] = [
                (t.logical_date, t) for t in ticks if t.status == "missed" or (t.status == "fired" and t.run_status is None)
            ]
            found += [(logical_date, None) for logical_date in self._unrecorded(spec, ticks, now)]
            for logical_date, tick in found:
                try:
                    deadline = sla.deadline(now, logical_date)
                except (ValueError, SluiceError):
                    continue
                if deadline is None or now <= deadline or now - deadline > TICK_HORIZON_S:
                    continue
                key = f"sla {sla.name}|tick {spec.name}@{logical_date}"
                if not self._once(key, now):
                    continue
                why = UNRECORDED if tick is None else tick.reason if tick.status == "missed" else "its run did not start"
                late = _span(now - deadline)
                title = f"schedule {spec.name} has no run of {logical_date} ({sla.name}: finish {describe(sla)})"
                details = {"sla": sla.name, "deadline": datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds")}
                alert = self.triggers.base(
                    "sla_missed", title, None, "warning", now, error=f"no run {late} after its deadline: {why}", details=details
                )
                alert = replace(alert, logical_date=logical_date, schedule=spec.name)
                targets = spec.targets if spec.targets is not None else tuple(sorted(project.objects))
                out.append((alert, [self.triggers.subject(oid) for oid in targets]))
        return out

    def _unrecorded(self, spec: ScheduleSpec, ticks: list[TickRecord], now: float) -> list[str]:
        """The ticks of ``spec`` after its newest record (``ticks``, newest first) due for more than the scheduler's
        grace (:data:`~sluice.scheduling.scheduler.GRACE_S`) at ``now``, newest first, at most :data:`RECENT_TICKS`:
        no scheduler recorded them. None for a schedule no scheduler has seen (no record, not even its baseline), a
        disabled one, or one whose ticks cannot be computed."""
        if not ticks or not spec.enabled:
            return []
        try:
            cron = Cron(spec.cron, spec.timezone)
            newest = datetime.fromisoformat(ticks[0].logical_date)
            tick = cron.previous(datetime.fromtimestamp(now - GRACE_S, UTC))
            found: list[str] = []
            while tick > newest and len(found) < RECENT_TICKS:
                found.append(tick_text(tick))
                tick = cron.previous(tick)
        except (ValueError, SluiceError):
            return []
        return found

    def _once(self, key: str, now: float) -> bool:
        """True for the one process and the one look that alerts ``key`` (asked once per process; the store decides)."""
        if key in self._claimed:
            return False
        self._claimed[key] = None
        while len(self._claimed) > 10_000:
            self._claimed.popitem(last=False)
        return self.state.claim_alert(self.triggers.project.name, key, math.inf, now)[0]

    def finished(self, run_id: str, finished_at: float) -> list[tuple[Alert, list[Subject]]]:
        """Alerts for a run that finished at ``finished_at`` after one of its deadlines."""
        info = self.triggers.run(run_id) if self.slas else None
        if info is None:
            return []
        return self._check(replace(info, finished_at=finished_at), finished_at, finished=True)

    def _check(self, info: RunInfo, now: float, finished: bool) -> list[tuple[Alert, list[Subject]]]:
        out: list[tuple[Alert, list[Subject]]] = []
        for sla in self.slas:
            if not sla.applies(info.schedule, info.planned):
                continue
            if sla.by is not None and info.trigger == "backfill" and sla.schedule != info.schedule:
                continue  # a backfill's dates are past by design: a by deadline judges the schedule's own runs
            deadline = sla.deadline(info.started_at, info.logical_date)
            key = (sla.name, info.run_id)
            if deadline is None or now <= deadline or key in self._alerted:
                continue
            self._alerted[key] = None  # asked once per process; the store decides who sends
            while len(self._alerted) > 10_000:
                self._alerted.popitem(last=False)
            if not self.state.claim_alert(self.triggers.project.name, _run_key(sla, info), math.inf, now)[0]:
                continue
            late = _span(now - deadline)
            state = f"finished {late} late" if finished else f"still running {late} after its deadline"
            title = f"run {info.run_id} missed its deadline ({sla.name}: finish {describe(sla)})"
            details = {
                "sla": sla.name,
                "deadline": datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds"),
                "started": datetime.fromtimestamp(info.started_at, UTC).isoformat(timespec="seconds"),
            }
            alert = self.triggers.base("sla_missed", title, info.run_id, "warning", now, error=state, details=details)
            subjects = [self.triggers.subject(oid) for oid in info.planned]
            out.append((alert, subjects))
        return out


def _run_key(sla: Sla, info: RunInfo) -> str:
    """The key a run's miss of ``sla`` is claimed under: its tick's (as :meth:`SlaWatch._without_run` claims it) for
    the run of a tick of the schedule whose ``by`` deadline it is, so that tick alerts once whether it had no record,
    no run, or a late one; else the run's."""
    if sla.by is not None and info.trigger == "schedule" and info.schedule == sla.schedule and info.logical_date:
        try:
            return f"sla {sla.name}|tick {info.schedule}@{tick_text(datetime.fromisoformat(info.logical_date))}"
        except ValueError:
            pass
    return f"sla {sla.name}|run {info.run_id}"
