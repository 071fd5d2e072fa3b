"""Events into alerts: what each trigger says, where, the error, and the link to the run.

* ``object_failed``: an ``ObjectFailed`` after which no retry follows: a terminal error (``retryable`` False) or
  the last attempt (``attempt`` >= the project's ``retry.attempts``), the rule the run state machine applies
  (``runtime/run_state.py``). ``retries_exhausted``: the same event when the error was retryable and every
  attempt was used.
* ``run_failed``: a ``RunFinished`` with status ``failed``; its subjects are the run's failed objects, named by the
  event itself (``RunFinished.failed``: it is published before the run's states are saved).
* ``check_failed``: a ``CheckFinished`` whose status is ``failed`` or ``error``.
* ``schedule_missed``: a ``ScheduleMissed``.
* ``sla_missed``: made by :mod:`sluice.alerts.sla`, not from one event.

Default severities: ``error``, ``critical`` for an object of criticality ``high``, ``warning`` for a check of
severity ``warn``, a missed schedule and a missed deadline; a rule's ``severity`` overrides them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from sluice.alerts.model import Alert, Subject
from sluice.events import AnyEvent, CheckFinished, ObjectFailed, RunFinished, RunStarted, ScheduleMissed
from sluice.project.model import Project
from sluice.state.base import RunRecord, StateStore

RUN_CACHE = 1000
"""Runs whose details (logical date, schedule, planned objects) are kept in memory."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What an alert needs to know about its run."""

    run_id: str
    started_at: float
    logical_date: str | None = None
    schedule: str | None = None
    trigger: str = "manual"
    planned: tuple[int, ...] = ()
    status: str = "running"
    finished_at: float | None = None


def run_info(record: RunRecord, planned: tuple[int, ...]) -> RunInfo:
    """A state store's run record as :class:`RunInfo`."""
    options: Mapping[str, Any] = record.options or {}
    return RunInfo(
        record.run_id,
        record.started_at,
        options.get("logical_date"),
        options.get("schedule"),
        str(options.get("trigger") or "manual"),
        planned,
        record.status,
        record.finished_at,
    )


class Triggers:
    """Turns events of ``project`` into ``(alert, subjects)``; run details from ``RunStarted`` or ``state``."""

    def __init__(self, project: Project, state: StateStore, ui_url: str | None) -> None:
        self.project = project
        self.state = state
        self.ui_url = ui_url
        self.runs: OrderedDict[str, RunInfo] = OrderedDict()
        self.foreign: OrderedDict[str, None] = OrderedDict()
        """Runs of other projects sharing the bus (their ``RunStarted`` names another project): never alerted."""
        self.seen: OrderedDict[tuple[object, ...], None] = OrderedDict()
        """Outcomes already alerted on: a worker's event published twice (at least once) alerts once."""

    def forget(self, event: AnyEvent) -> None:
        """Take ``event``'s outcome out of :attr:`seen` (its alerts could not be sent: it will be handled again)."""
        key = _outcome_key(event)
        if key is not None:
            self.seen.pop(key, None)

    def subject(self, object_id: int) -> Subject:
        obj = self.project.objects.get(object_id)
        if obj is None:
            return Subject(object_id, "")
        return Subject(object_id, obj.name, tuple(obj.tags), obj.criticality)

    def run(self, run_id: str) -> RunInfo | None:
        """The run's details (cached), or None when the state store does not know it."""
        info = self.runs.get(run_id)
        if info is None:
            try:
                record = self.state.get_run(run_id)
            except Exception:  # a run of another state store, or the store is down: alert without its details
                return None
            info = self.remember(run_info(record, tuple(self.state.object_states(run_id))))
        return info

    def remember(self, info: RunInfo) -> RunInfo:
        self.runs[info.run_id] = info
        self.runs.move_to_end(info.run_id)
        while len(self.runs) > RUN_CACHE:
            self.runs.popitem(last=False)
        return info

    def url(self, run_id: str | None) -> str | None:
        """The run in the web UI: ``<ui_url>/?run=<run_id>`` (the page opens that run)."""
        if not self.ui_url or not run_id:
            return None
        return f"{self.ui_url}/?run={quote(run_id, safe='')}"

    def base(self, trigger: str, title: str, run_id: str | None, severity: str, at: float, **fields: Any) -> Alert:
        info = self.run(run_id) if run_id else None
        return Alert(
            trigger=trigger,
            title=title,
            project=self.project.name,
            severity=severity,
            run_id=run_id or None,
            logical_date=info.logical_date if info else None,
            schedule=info.schedule if info else None,
            url=self.url(run_id),
            at=at,
            **fields,
        )

    def on_object(self, alert: Alert, object_id: int) -> tuple[Alert, Subject]:
        s = self.subject(object_id)
        obj = self.project.objects.get(object_id)
        severity = "critical" if s.criticality == "high" and alert.severity == "error" else alert.severity
        stage = obj.stage if obj else None
        routed = replace(
            alert, object_id=object_id, severity=severity, object_name=s.name or None, stage=stage, criticality=s.criticality
        )
        return routed, s

    def alerts(self, event: AnyEvent) -> list[tuple[Alert, list[Subject]]]:
        """The alerts ``event`` raises (most events raise none), each with the objects it is about."""
        at = event.ts.timestamp()
        if event.run_id in self.foreign:
            return []
        if isinstance(event, RunStarted) and event.project != self.project.name:
            self.foreign[event.run_id] = None
            while len(self.foreign) > RUN_CACHE:
                self.foreign.popitem(last=False)
            return []
        if _once(self.seen, event):
            return []
        if isinstance(event, RunStarted):
            planned = tuple(event.planned)
            self.remember(RunInfo(event.run_id, at, event.logical_date, event.schedule, event.trigger, planned))
            return []
        if isinstance(event, ObjectFailed):
            return self.object_failed(event, at)
        if isinstance(event, RunFinished):
            return self.run_failed(event, at)
        if isinstance(event, CheckFinished) and event.status in ("failed", "error"):
            severity = "error" if event.severity == "error" else "warning"
            rows = f"{event.failing_rows} failing row{'s' if event.failing_rows != 1 else ''}"
            what = f"check {event.check} ({event.kind}) {'failed' if event.status == 'failed' else 'could not run'}"
            details: dict[str, Any] = {"check": event.check, "check_kind": event.kind, "check_severity": event.severity}
            details["covered"] = event.covered  # load: only this load's rows; table: the whole output
            if event.rows_checked is not None:
                details["rows_checked"] = event.rows_checked
            if event.status == "failed":
                details["failing_rows"] = event.failing_rows
            if event.sample:
                details["sample"] = ", ".join(event.sample[:10])
            base = self.base("check_failed", what, event.run_id, severity, at, error=event.message or rows, details=details)
            alert, s = self.on_object(base, event.object_id)
            return [(replace(alert, title=f"{what} on object {event.object_id} {s.name}".rstrip()), [s])]
        if isinstance(event, ScheduleMissed):
            alert = Alert(
                trigger="schedule_missed",
                title=f"schedule {event.schedule} missed its tick of {event.logical_date}",
                project=self.project.name,
                severity="warning",
                error=event.reason,
                logical_date=event.logical_date,
                schedule=event.schedule,
                at=at,
            )
            return [(alert, [])]
        return []

    def object_failed(self, event: ObjectFailed, at: float) -> list[tuple[Alert, list[Subject]]]:
        attempts = self.project.retry.attempts
        if event.retryable and event.attempt < attempts:
            return []  # a retry follows
        after = f" after {event.attempt} attempt{'s' if event.attempt != 1 else ''}"
        typed = event.error_type and not event.error.startswith(f"{event.error_type}:")  # the worker may have put it there
        error = f"{event.error_type}: {event.error}" if typed else event.error
        details = {"attempt": f"{event.attempt} of {attempts}", "retryable": "yes" if event.retryable else "no"}
        base = self.base("object_failed", "", event.run_id, "error", at, error=error, details=details)
        alert, s = self.on_object(base, event.object_id)
        title = f"object {event.object_id} {s.name} failed{after}".replace("  ", " ")
        out = [(replace(alert, title=title), [s])]
        if event.retryable:
            out.append((replace(alert, trigger="retries_exhausted", title=f"{title}: retries exhausted"), [s]))
        return out

    def run_failed(self, event: RunFinished, at: float) -> list[tuple[Alert, list[Subject]]]:
        info = self.run(event.run_id)
        if info is not None:
            self.remember(replace(info, status=event.status, finished_at=at))
        if event.status != "failed":
            return []
        # The event names its failed objects: it is published before the run's final states are saved, so the state
        # store may not know yet which objects failed (it is read only for an event of an older coordinator).
        reasons: dict[int, str] = dict(event.failed)
        if not reasons:
            try:
                states = self.state.object_states(event.run_id)
            except Exception:
                states = {}
            reasons = {oid: s.error or "failed" for oid, s in states.items() if s.status == "failed"}
        failed = sorted(reasons)
        subjects = [self.subject(oid) for oid in failed]
        errors = [f"object {oid} {self.subject(oid).name}: {reasons[oid] or 'failed'}" for oid in failed[:5]]
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        counts = ", ".join(f"{n} {status}" for status, n in sorted(event.counts.items()))
        severity = "critical" if any(s.criticality == "high" for s in subjects) else "error"
        details: dict[str, Any] = {"duration_s": round(event.duration_s, 3)}
        if counts:
            details["objects"] = counts
        alert = self.base(
            "run_failed",
            f"run {event.run_id} failed",
            event.run_id,
            severity,
            at,
            error="; ".join(errors) + more,
            details=details,
        )
        return [(alert, subjects)]


def _once(seen: OrderedDict[tuple[object, ...], None], event: AnyEvent) -> bool:
    """True when ``event`` is an outcome already in ``seen`` (then it raises nothing again); records it otherwise."""
    key = _outcome_key(event)
    if key is None:
        return False
    if key in seen:
        return True
    seen[key] = None
    while len(seen) > 10 * RUN_CACHE:
        seen.popitem(last=False)
    return False


def _outcome_key(event: AnyEvent) -> tuple[object, ...] | None:
    """What makes ``event`` one outcome (the same attempt's ObjectFailed published twice is one), or None."""
    if isinstance(event, ObjectFailed):
        key: tuple[object, ...] = ("failed", event.run_id, event.object_id, event.attempt)
    elif isinstance(event, CheckFinished):
        key = ("check", event.run_id, event.object_id, event.check, event.attempt)
    elif isinstance(event, RunFinished):
        key = ("run", event.run_id)
    elif isinstance(event, ScheduleMissed):
        key = ("missed", event.schedule, event.logical_date)
    else:
        return None
    return key
