"""Cron ticks in a time zone, right across daylight-saving changes (croniter on wall-clock time, zoneinfo to place it).

A cron expression describes wall-clock times (``0 2 * * *``: 02:00 local). Twice a year a time zone's wall clock
jumps; Sluice places each wall-clock tick as follows:

- **a skipped hour** (spring forward, 02:00-03:00 does not exist in Europe/Paris on the last Sunday of March):
  a tick inside it fires once, moved forward by the length of the gap (02:30 fires at 03:30 CEST). Two wall-clock
  ticks landing on the same instant that way (an hourly 02:00 and 03:00) fire once.
- **a repeated hour** (fall back, 02:00-03:00 happens twice on the last Sunday of October): a tick inside it fires
  once, at its first occurrence (CEST, ``fold=0``); the second pass of that hour fires nothing.

So a daily schedule fires exactly once every day, whatever the changes. Ticks are returned as UTC datetimes: they
are the runs' logical dates, and their ISO text is the key recorded in the state store.

>>> from datetime import UTC, datetime
>>> cron = Cron("30 2 * * *", "Europe/Paris")
>>> [t.isoformat() for t in cron.between(datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC))]
['2026-03-28T01:30:00+00:00', '2026-03-29T01:30:00+00:00']
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

from sluice.errors import ConfigError

MAX_TICKS = 100_000
"""At most this many ticks are listed by one call (a guard against ``* * * * *`` over years of downtime)."""


def tick_text(tick: datetime) -> str:
    """A tick as recorded: ISO 8601 in UTC (``2026-01-01T02:00:00+00:00``), sortable as text."""
    return tick.astimezone(UTC).isoformat()


def check_cron(expression: str) -> str | None:
    """Why ``expression`` is not a cron expression croniter accepts, or None when it is."""
    if not isinstance(expression, str) or not expression.strip():
        return "a cron expression such as '0 2 * * *' is required"
    fields = len(expression.split())
    if fields == 6:  # croniter reads a sixth field as seconds: '0 0 * * * *' (Quartz's hourly) fires every second
        return (
            f"'{expression}' has six fields: cron here has five (minute hour day month weekday), no seconds "
            "(a Quartz/Spring expression starts with seconds: drop that first field), e.g. '0 * * * *'"
        )
    if fields != 5:
        return f"'{expression}' is not a cron expression: give five fields (minute hour day month weekday), e.g. '0 2 * * *'"
    try:
        it = croniter(expression, datetime(2000, 1, 1))
    except (CroniterBadCronError, CroniterNotAlphaError, ValueError) as exc:
        return f"'{expression}' is not a cron expression ({exc}); e.g. '0 2 * * *'"
    try:  # a day that no month of its field has (0 0 30 2 *: February 30th) parses but never fires
        it.get_next(datetime)
    except CroniterBadDateError:
        return (
            f"'{expression}' never fires: no date has that day of the month in those months "
            "(e.g. 30 2 is February 30th); give a day every chosen month has, e.g. '0 0 28 2 *'"
        )
    return None


def check_timezone(name: str) -> str | None:
    """Why ``name`` is not an IANA time zone, or None when it is."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone '{name}'; give an IANA name such as 'UTC' or 'Europe/Paris'"
    return None


class Cron:
    """The ticks of one cron expression in one time zone. Raises ConfigError for a bad expression or zone.

    Not thread-safe (it keeps its last iterator): one instance per thread.
    """

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        problem = check_cron(expression) or check_timezone(timezone)
        if problem is not None:
            raise ConfigError(problem)
        self.expression = expression
        self.zone = ZoneInfo(timezone)
        # The iterator of the last next_after call and the tick it returned: asking for the tick after that one
        # (what a scheduler does) goes on with it instead of parsing the expression again (~1 ms).
        self._it: croniter | None = None
        self._last: datetime | None = None

    def _place(self, wall: datetime) -> datetime:
        """The UTC instant of a naive wall-clock time (first occurrence in a repeated hour, shifted past a gap)."""
        return wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)

    def next_after(self, after: datetime) -> datetime:
        """The first tick strictly after ``after`` (aware), in UTC."""
        it = self._it
        if it is None or self._last != after:
            wall = after.astimezone(self.zone).replace(tzinfo=None)
            # One hour back: the wall clock of an instant in a repeated hour's second pass runs behind ticks
            # already placed after it; the filter below keeps only what is really later.
            it = croniter(self.expression, wall - timedelta(hours=1))
        while True:
            try:
                tick = self._place(it.get_next(datetime))
            except CroniterBadDateError as exc:  # e.g. 30 2 31 2 *: no such date
                raise ConfigError(f"cron '{self.expression}' never fires ({exc})") from exc
            if tick > after:
                self._it, self._last = it, tick
                return tick

    def between(self, after: datetime, until: datetime, limit: int = MAX_TICKS) -> list[datetime]:
        """The ticks in ``(after, until]`` (aware datetimes), in order, UTC, at most ``limit`` (the latest kept)."""
        ticks: list[datetime] = []
        tick = self.next_after(after)
        while tick <= until:
            ticks.append(tick)
            if len(ticks) > limit:
                del ticks[0]
            tick = self.next_after(tick)
        return ticks

    def previous(self, before: datetime) -> datetime:
        """The last tick strictly before ``before`` (aware), in UTC: the start of a tick's data interval."""
        wall = before.astimezone(self.zone).replace(tzinfo=None)
        it = croniter(self.expression, wall + timedelta(hours=1))  # see next_after: wall clocks may run behind
        while True:
            try:
                tick = self._place(it.get_prev(datetime))
            except CroniterBadDateError as exc:
                raise ConfigError(f"cron '{self.expression}' never fires ({exc})") from exc
            if tick < before:
                return tick

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` ticks after ``after``."""
        ticks: list[datetime] = []
        tick = after
        for _ in range(count):
            tick = self.next_after(tick)
            ticks.append(tick)
        return ticks
