"""SLA deadlines: a run that has not finished by its deadline raises ``sla_missed``.

Two ways to notice, so a miss is seen whether or not the run ever ends: :meth:`SlaWatch.due`, called by the
alert service every ``alerts.sla_interval_s`` seconds (clock injected), looks at the project's running runs in
the state store; :meth:`SlaWatch.finished`, called on each ``RunFinished``, catches a run that ended late
between two looks. Each (deadline, run) alerts once, whatever the processes looking and their restarts: the first
to claim its key in the state store (``StateStore.claim_alert``, once ever) sends it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import replace
from datetime import UTC, datetime

from sluice.alerts.model import Alert, Sla, Subject
from sluice.alerts.triggers import RunInfo, Triggers
from sluice.state.base import StateStore

RECENT_RUNS = 50
"""Runs of the project read from the state store at each look (most recent first)."""


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

    def due(self, now: float) -> list[tuple[Alert, list[Subject]]]:
        """Alerts for running runs past a deadline at ``now`` (epoch seconds)."""
        if not self.slas:
            return []
        out: list[tuple[Alert, list[Subject]]] = []
        for record in self.state.list_runs(self.triggers.project.name, RECENT_RUNS):
            if record.status != "running":
                continue
            info = self.triggers.run(record.run_id)
            if info is not None:
                out += self._check(info, now, finished=False)
        return out

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
            deadline = sla.deadline(info.started_at, info.logical_date)
            key = (sla.name, info.run_id)
            if deadline is None or now <= deadline or key in self._alerted:
                continue
            self._alerted[key] = None  # asked once per process; the store decides who sends
            while len(self._alerted) > 10_000:
                self._alerted.popitem(last=False)
            if not self.state.claim_alert(self.triggers.project.name, f"sla {sla.name}|run {info.run_id}", math.inf, now)[0]:
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
