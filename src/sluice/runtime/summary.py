"""What a run is asked to do (:class:`RunOptions`) and what it did (:class:`RunSummary`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from sluice.state.base import ObjectState

TRIGGERS = ("manual", "schedule", "backfill", "sensor")
"""What started a run: ``RunOptions.trigger``, ``RunStarted.trigger``."""


@dataclass(slots=True)
class RunOptions:
    """How to run: which targets, forced or not, simulated delays and forced failures, resume.

    ``logical_date`` is the date the run processes (a schedule's tick, a backfill's date; timezone-aware),
    ``trigger`` what started it (one of :data:`TRIGGERS`), ``schedule`` the name of the schedule, sensor or
    backfill behind it. All three are recorded with the run and carried by ``RunStarted`` / ``ObjectReady``.
    ``timezone`` (IANA name) is the zone the run's ``{{ ds }}`` counts days in, and ``data_interval_start`` the
    start of its data interval (a backfilled schedule tick's previous tick); both recorded with the run, None: the
    named schedule's (docs/schedules.md).
    """

    targets: list[int] | None = None
    force: bool = False
    simulate: bool = False
    delay_scale: float = 1.0
    fail: frozenset[int] = frozenset()
    resume: str | None = None
    logical_date: datetime | None = None
    trigger: str = "manual"
    schedule: str | None = None
    timezone: str | None = None
    data_interval_start: datetime | None = None
    load_key: str | None = None
    """What the run's destination loads are recorded under instead of its run id (``<load_key>:<object id>``: a load
    id already recorded adds nothing): a backfill date run again after a cancelled run gets that run's, so an
    ``append`` the cancelled run committed is not loaded twice (docs/backfills.md)."""

    def logical_date_text(self) -> str | None:
        """``logical_date`` as ISO 8601 text, or None."""
        return self.logical_date.isoformat() if self.logical_date is not None else None

    def as_dict(self) -> dict[str, object]:
        found: dict[str, object] = {
            "targets": self.targets,
            "force": self.force,
            "simulate": self.simulate,
            "delay_scale": self.delay_scale,
            "fail": sorted(self.fail),
            "logical_date": self.logical_date_text(),
            "trigger": self.trigger,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "data_interval_start": self.data_interval_start.isoformat() if self.data_interval_start is not None else None,
        }
        if self.load_key:
            found["load_key"] = self.load_key
        return found

    def with_recorded(self, recorded: Mapping[str, object]) -> RunOptions:
        """These options with how the run was started, as :meth:`as_dict` recorded it (``force``, ``simulate``,
        ``delay_scale``, ``fail``; a key missing from ``recorded`` keeps this value): a resumed run keeps the options
        it was started with, whatever the resuming command gives (``sluice run --resume`` after ``--force``)."""
        force, simulate, scale, fail = (recorded.get(k) for k in ("force", "simulate", "delay_scale", "fail"))
        return replace(
            self,
            force=force if isinstance(force, bool) else self.force,
            simulate=simulate if isinstance(simulate, bool) else self.simulate,
            delay_scale=float(scale) if isinstance(scale, int | float) else self.delay_scale,
            fail=frozenset(int(i) for i in fail) if isinstance(fail, list) else self.fail,
        )


@dataclass(slots=True)
class RunSummary:
    """The outcome of a run, as printed by ``sluice run --json``."""

    run_id: str
    status: str
    duration_s: float
    objects: dict[int, ObjectState] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for state in self.objects.values():
            result[state.status] = result.get(state.status, 0) + 1
        return result

    def to_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "duration_s": round(self.duration_s, 6),
            "objects": {
                str(object_id): {
                    "status": s.status,
                    "stage": s.stage,
                    "attempts": s.attempt,
                    "rows": s.rows,
                    "duration_s": s.duration_s,
                    "error": s.error,
                    "reason": s.reason,
                    "location": s.location,
                }
                for object_id, s in sorted(self.objects.items())
            },
        }
