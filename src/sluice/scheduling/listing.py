"""What ``sluice schedules`` and ``GET /schedules`` show: each schedule's next fire times and its last tick and run.

Shape (JSON)::

    {"project": "shop", "now": "2026-01-01T01:30:00+00:00",
     "lease": {"holder": "host:123:ab", "expires_at": 1767231030.0, "active": true} | null,
     "schedules": [{"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris", "targets": [2001] | null,
                    "catch_up": "latest", "max_active_runs": 1, "wait_for": [], "enabled": true,
                    "next": ["2026-01-02T01:00:00+00:00", ...],
                    "last_tick": {"logical_date": ..., "status": "fired" | "missed" | "baseline", "reason": ...,
                                  "run_id": ..., "run_status": ...} | null,
                    "last_run": {"logical_date": ..., "run_id": ..., "status": ...} | null}]}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

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


def schedules_view(project: Project, state: StateStore, now: datetime | None = None, count: int = 3) -> dict[str, Any]:
    """The schedules of ``project`` with their next ``count`` fire times after ``now`` (default: the wall clock)."""
    now = now or datetime.now(UTC)
    last = state.last_ticks(project.name)
    lease = state.lease(project.name)
    found = []
    for spec in project.schedules:
        cron = Cron(spec.cron, spec.timezone)
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
                "next": [t.isoformat() for t in cron.upcoming(now, count)] if spec.enabled else [],
                "last_tick": _tick(last.get(spec.name)),
                "last_run": None
                if fired is None
                else {"logical_date": fired.logical_date, "run_id": fired.run_id, "status": fired.run_status},
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
