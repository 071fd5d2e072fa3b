"""What a schedule, sensor or backfill asks of the service that starts runs.

>>> from datetime import UTC, datetime
>>> request = RunRequest("nightly", "schedule", datetime(2026, 1, 1, 2, tzinfo=UTC), key="nightly@2026-01-01T02:00:00+00:00")
>>> request.options().as_dict()["logical_date"]
'2026-01-01T02:00:00+00:00'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sluice.runtime.summary import RunOptions


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One run to start.

    ``name`` is the schedule, sensor or backfill asking; ``trigger`` one of ``schedule``, ``sensor``,
    ``backfill``; ``logical_date`` the (timezone-aware) date the run processes; ``targets`` the object ids to run
    (None: the whole project); ``key`` identifies the request across processes and restarts (a schedule's
    ``name@tick``), so that whoever records it first in the state store is the only one to start it.
    ``timezone`` is the IANA zone the run's ``{{ ds }}`` counts days in, ``interval_start`` the start of its data
    interval (None: the logical date, or the previous tick of the schedule ``name`` names).
    """

    name: str
    trigger: str
    logical_date: datetime
    targets: tuple[int, ...] | None = None
    key: str = ""
    timezone: str = "UTC"
    interval_start: datetime | None = None
    load_key: str | None = None
    """The run's :attr:`RunOptions.load_key <sluice.runtime.summary.RunOptions.load_key>` (a backfill date run again
    after a cancelled run: that run's load key)."""

    def options(self) -> RunOptions:
        """The :class:`RunOptions` of the run this request starts."""
        return RunOptions(
            targets=list(self.targets) if self.targets is not None else None,
            logical_date=self.logical_date,
            trigger=self.trigger,
            schedule=self.name,
            timezone=self.timezone,
            data_interval_start=self.interval_start,
            load_key=self.load_key,
        )
