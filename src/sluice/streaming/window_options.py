"""The ``window:`` block of a streaming object: event-time windows, their watermark and their aggregates.

>>> import msgspec
>>> options = msgspec.convert(
...     {"type": "sliding", "size": "1m", "slide": "30s", "time_column": "ts", "watermark": "10s",
...      "group_by": ["user_id"], "aggregates": {"n": "count(*)", "total": "sum(amount)"}},
...     WindowOptions,
... )
>>> options.size_us, options.slide_us, options.watermark_us
(60000000, 30000000, 10000000)

Checked before anything runs (through ``sluice.plugins.options.convert_options``): a wrong value raises a
ValueError naming the option, its value and what to write instead; the caller adds the file and line.
The vocabulary is Spark Structured Streaming's (``window(ts, "1 minute", "30 seconds")``,
``withWatermark("ts", "10 seconds")``) and Flink's (tumbling and sliding event-time windows, allowed lateness).
"""

from __future__ import annotations

from typing import Annotated, Literal

import sqlglot
from msgspec import Meta, field
from sqlglot import exp
from sqlglot.errors import ParseError

from sluice.plugins.base import Settings
from sluice.streaming.durations import EXAMPLES, parse_duration

Duration = Annotated[str | int | float, Meta(description=f"A duration: {EXAMPLES} (a bare number is seconds).")]
WINDOW_COLUMNS = ("window_start", "window_end")
EVENT_US = "__sluice_event_us"  # the event time in microseconds, kept beside the records of open windows
SOURCE_COLUMN = "_sluice_partition"
"""The column a streaming object with a window adds to its decoded micro-batch (before ``sql``) with each row's
partition code (:attr:`sluice.streaming.windows.Sources.codes`), taken off again before the window: a ``sql`` must
keep it (``SELECT *`` does) for the watermark per partition."""


class WindowOptions(Settings):
    """Event-time windows over a streaming object's records, aggregated with SQL when the watermark passes their end.

    - ``type``: ``tumbling`` (fixed, non-overlapping windows of ``size``) or ``sliding`` (windows of ``size``
      starting every ``slide``; a record belongs to about size/slide of them). Windows are aligned to
      1970-01-01T00:00:00Z, as in Spark and Flink.
    - ``size``, ``slide``: durations (``1m``, ``30s``); ``slide`` only for sliding windows, at most ``size``.
    - ``time_column``: the event time: a timestamp column (without a time zone it is read as UTC), a date, or
      ISO-8601 strings (``2024-05-01T12:00:00Z``; an offset is honoured, none means UTC).
    - ``watermark``: the allowed lateness: each partition's watermark = the largest event time read from it - this,
      the stream's = the smallest of the partitions' (those read to their end left out); a window is emitted once
      the watermark reaches its end, and a record arriving for windows already emitted is late.
    - ``group_by``: columns grouping each window's records (none: one row per window).
    - ``aggregates``: output column -> SQL aggregate expression run by DuckDB (``count(*)``, ``sum(amount)``,
      ``avg(amount)``, ``count(DISTINCT user_id)``, ``max(amount) - min(amount)``, ``quantile_cont(amount, 0.9)``...).
    - ``state``: what the open windows keep: ``auto`` (partial aggregates per window and group when every
      aggregate is decomposable, else the records) or ``records`` (always; faster when a window holds only a
      few records per group, but the state then grows with the record rate).
    - ``late``: what happens to late records: ``drop`` (counted) or ``side_output`` (counted and returned).
    """

    type: Annotated[Literal["tumbling", "sliding"], Meta(description="tumbling or sliding event-time windows.")]
    size: Annotated[Duration, Meta(description="Window length, e.g. 1m.")]
    time_column: Annotated[str, Meta(min_length=1, description="Event-time column: timestamp, date or ISO-8601 strings.")]
    aggregates: Annotated[
        dict[str, str],
        Meta(
            min_length=1,
            description="Output column -> SQL aggregate expression (DuckDB), e.g. {n: count(*), total: sum(amount)}.",
        ),
    ]
    slide: Annotated[
        Duration | None, Meta(description="sliding only: a new window starts every slide (at most size), e.g. 30s.")
    ] = None
    watermark: Annotated[
        Duration,
        Meta(
            description="Allowed lateness, e.g. 10s: watermark = the smallest over the partitions (those read to their "
            "end left out) of the largest event time read from each - this."
        ),
    ] = "0s"
    group_by: Annotated[list[str], Meta(description="Columns grouping each window's records.")] = field(default_factory=list)
    state: Annotated[
        Literal["auto", "records"],
        Meta(
            description="What open windows keep: auto: partial aggregates per window and group when every aggregate is "
            "count/sum/min/max/avg (or an expression over them), else the records; records: always the records."
        ),
    ] = "auto"
    late: Annotated[
        Literal["drop", "side_output"],
        Meta(description="Late records (for windows already emitted): drop (counted) or side_output (counted and returned)."),
    ] = "drop"

    def __post_init__(self) -> None:
        size = _duration("size", self.size)
        if size == 0:
            raise ValueError(f"size: {self.size!r} is empty: give a window length above 0, {EXAMPLES}")
        _duration("watermark", self.watermark)
        if self.type == "tumbling" and self.slide is not None:
            raise ValueError(f"slide: {self.slide!r} is for sliding windows only: remove it, or write type: sliding")
        if self.type == "sliding":
            if self.slide is None:
                raise ValueError("slide: sliding windows need a slide (how often a window starts), e.g. slide: 30s")
            slide = _duration("slide", self.slide)
            if not 0 < slide <= size:
                raise ValueError(f"slide: {self.slide!r} must be above 0 and at most size ({self.size!r}); for gaps use a filter")
        _check_columns(self.time_column, self.group_by, self.aggregates)

    @property
    def size_us(self) -> int:
        """The window length in microseconds."""
        return parse_duration(self.size)

    @property
    def slide_us(self) -> int:
        """How often a window starts, in microseconds (the size for tumbling windows)."""
        return parse_duration(self.slide) if self.slide is not None else self.size_us

    @property
    def watermark_us(self) -> int:
        """The allowed lateness in microseconds."""
        return parse_duration(self.watermark)

    def needed_columns(self) -> set[str] | None:
        """Lower-cased names of the columns the windows read (time, groups, aggregates), or None for all of them."""
        names = {self.time_column.lower(), *(column.lower() for column in self.group_by)}
        for sql in self.aggregates.values():
            tree = sqlglot.parse_one(sql, dialect="duckdb")
            for star in tree.find_all(exp.Star):
                if not isinstance(star.parent, exp.Count):
                    return None
            names.update(column.name.lower() for column in tree.find_all(exp.Column))
        return names


def _duration(option: str, value: str | int | float) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def _check_columns(time_column: str, group_by: list[str], aggregates: dict[str, str]) -> None:
    seen: dict[str, str] = {name: "a window column" for name in WINDOW_COLUMNS}
    seen[EVENT_US] = "reserved by Sluice"
    for column in group_by:
        if column.lower() in {name.lower() for name in seen}:
            raise ValueError(
                f"group_by: {column!r} is listed twice or clashes with window_start/window_end: list each column once"
            )
        seen[column] = "a group_by column"
    if time_column == EVENT_US:
        raise ValueError(f"time_column: {EVENT_US!r} is reserved by Sluice: rename the column")
    for name, sql in aggregates.items():
        clash = next((what for other, what in seen.items() if other.lower() == name.lower()), None)
        if clash:
            raise ValueError(f"aggregates: output column {name!r} is already {clash}: rename the aggregate")
        seen[name] = "an aggregate"
        try:
            trees = sqlglot.parse(sql, dialect="duckdb")
        except ParseError as exc:
            first = str(exc).splitlines()[0]
            raise ValueError(f"aggregates: {name}: {sql!r} is not a SQL expression ({first}): write e.g. sum(amount)") from None
        tree = trees[0] if len(trees) == 1 else None
        if tree is None or isinstance(tree, exp.Query | exp.Command | exp.DDL | exp.DML) or tree.find(exp.Subquery, exp.Select):
            raise ValueError(f"aggregates: {name}: {sql!r} is a statement: write one aggregate expression, e.g. sum(amount)")
