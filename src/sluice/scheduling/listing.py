"""What ``sluice schedules`` and ``GET /schedules`` show: each schedule's next fire times and its last tick and run.

Shape (JSON)::

    {"project": "shop", "now": "2026-01-01T01:30:00+00:00",
     "lease": {"holder": "host:123:ab", "expires_at": 1767231030.0, "active": true} | null,
     "schedules": [{"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris", "targets": [2001] | null,
                    "catch_up": "latest", "max_active_runs": 1, "wait_for": [], "enabled": true,
                    "next": ["2026-01-02T01:00:00+00:00", ...],
                    "last_tick": {"logical_date": ..., "status": "fired" | "missed" | "baseline", "reason": ...,
                                  "run_id": ..., "run_status": ...} | null,
                    "last_run": {"logical_date": ..., "run_id": ..., "status": ...} | null,
                    "error": "schedule nightly is not scheduled any more: ..." | null}]}

``error``: why the schedule cannot fire (its next tick cannot be computed), or what the hosting scheduler reports
(:attr:`Scheduler.problems <sluice.scheduling.scheduler.Scheduler.problems>`: a run that did not start).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sluice.errors import SluiceError
from sluice.project.model import Project
from sluice.scheduling.cron import Cron
from sluice.state.base import StateStore, TickRecord


def _tick(record: TickRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "logical_date": record.logical_date,
        "status": record.status,
        "reason": record.reason,
        "run_id": record.run_id,
        "run_status": record.run_status,
    }


def schedules_view(
    project: Project,
    state: StateStore,
    now: datetime | None = None,
    count: int = 3,
    problems: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The schedules of ``project`` with their next ``count`` fire times after ``now`` (default: the wall clock);
    ``problems``: a hosted scheduler's, by schedule name (shown as ``error``)."""
    now = now or datetime.now(UTC)
    last = state.last_ticks(project.name)
    lease = state.lease(project.name)
    found = []
    for spec in project.schedules:
        error = (problems or {}).get(spec.name)
        upcoming: list[str] = []
        if spec.enabled:
            try:
                upcoming = [t.isoformat() for t in Cron(spec.cron, spec.timezone).upcoming(now, count)]
            except SluiceError as exc:  # one schedule's cron: said in its entry, the others listed
                error = error or f"its next tick cannot be computed: {exc}"
        fired = next((t for t in state.ticks(project.name, spec.name, limit=20) if t.run_id), None)
        found.append(
            {
                "name": spec.name,
                "cron": spec.cron,
                "timezone": spec.timezone,
                "targets": list(spec.targets) if spec.targets is not None else None,
                "catch_up": spec.catch_up,
                "max_active_runs": spec.max_active_runs,
                "wait_for": list(spec.wait_for),
                "enabled": spec.enabled,
                "next": upcoming,
                "last_tick": _tick(last.get(spec.name)),
                "last_run": None
                if fired is None
                else {"logical_date": fired.logical_date, "run_id": fired.run_id, "status": fired.run_status},
                "error": error,
            }
        )
    return {
        "project": project.name,
        "now": now.isoformat(),
        "lease": None
        if lease is None
        else {"holder": lease.holder, "expires_at": lease.expires_at, "active": lease.expires_at > now.timestamp()},
        "schedules": found,
    }
