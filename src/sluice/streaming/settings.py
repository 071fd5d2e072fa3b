"""The ``streaming:`` section of an object: what makes it a continuous streaming object, and its limits.

::

    objects:
      - id: 1001
        name: transactions
        source: {type: kafka, connection: events, topic: transactions, format: json}
        streaming:
          trigger: 10s                     # a micro-batch every 10 s; or 10000 (records), or {interval: 10s, records: 10000}
          max_batch_records: 200000        # a micro-batch never holds more (a backlog drains in such batches)
          max_batch_bytes: 67108864        # ...nor more bytes of record values
          sql: SELECT id, amount * 100 AS cents FROM batch   # optional, DuckDB over each micro-batch
          window: {type: tumbling, size: 1m, time_column: ts, watermark: 10s, aggregates: {n: count(*)}}  # optional
          compact: {min_files: 64, target_bytes: 134217728}   # optional: small batch files rewritten into big ones

Checked with file and line like the rest of ``sluice.yaml`` (:class:`StreamingSettings`). The words are
Spark Structured Streaming's: a *trigger* starts a *micro-batch*; its *offsets* (per topic and partition,
the next one to read) are committed with its output.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings
from sluice.streaming.durations import EXAMPLES, parse_duration
from sluice.streaming.window_options import WindowOptions

BATCH_TABLE = "batch"
"""The name a micro-batch goes by in ``streaming.sql``."""


class TriggerSettings(Settings):
    """When a micro-batch is cut: every ``interval`` (a duration), once ``records`` records arrived, or whichever first."""

    interval: Annotated[
        str | int | float | None,
        Meta(description=f"Time between micro-batches: {EXAMPLES} (a bare number is seconds)."),
    ] = None
    records: Annotated[
        Annotated[int, Meta(ge=1)] | None, Meta(description="Records that cut a micro-batch as soon as they have arrived.")
    ] = None

    def __post_init__(self) -> None:
        if self.interval is None and self.records is None:
            raise ValueError(f"give interval (a duration), records (a count) or both, e.g. {{interval: 10s}}; {SHORTHAND}")
        if self.interval is not None:
            try:
                micros = parse_duration(self.interval)
            except ValueError as exc:
                raise ValueError(f"interval: {exc}") from None
            if micros <= 0:
                raise ValueError(f"interval: {self.interval!r} must be above 0, e.g. 10s")

    @property
    def interval_s(self) -> float | None:
        """The interval in seconds, None without one."""
        return None if self.interval is None else parse_duration(self.interval) / 1e6


SHORTHAND = "or write trigger: 10s (an interval) or trigger: 10000 (a record count)"


def trigger_of(value: TriggerSettings | str | int) -> TriggerSettings:
    """``streaming.trigger`` as written: the object form, or its shorthand, a duration (``10s``: ``{interval: 10s}``)
    or a whole number (``10000``: ``{records: 10000}``). Raises ValueError naming ``trigger`` and its value."""
    if isinstance(value, TriggerSettings):
        return value
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"trigger: {value} is a record count below 1; write a count above 0, or a duration such as 10s")
        return TriggerSettings(records=value)
    try:
        micros = parse_duration(value)
    except ValueError:
        raise ValueError(
            f"trigger: {value!r} is neither a duration ({EXAMPLES}) nor a record count (10000); "
            "or write trigger: {interval: 10s, records: 10000}"
        ) from None
    if micros <= 0:
        raise ValueError(f"trigger: {value!r} must be above 0, e.g. 10s")
    return TriggerSettings(interval=value)


class CompactSettings(Settings):
    """When a streaming object's writer rewrites its small micro-batch files into bigger ones (``streaming.compact``).

    Every ``min_files`` micro-batches the writer looks at the dataset's files (one listing) and, when at least
    ``min_files`` of them are smaller than ``target_bytes``, rewrites consecutive small ones into files of about
    ``target_bytes`` in one atomic commit (:meth:`Lake.compact <sluice.lake.base.Lake.compact>`).
    """

    min_files: Annotated[
        int, Meta(ge=2, description="Small files that make a compaction worth it (also: micro-batches between checks).")
    ] = 64
    target_bytes: Annotated[
        int, Meta(ge=1024, description="Files smaller than this are merged, into files of about this many bytes.")
    ] = 128 * 1024 * 1024


class StreamingSettings(Settings):
    """An object's ``streaming:``: it consumes its Kafka source continuously, in micro-batches appended to the lake."""

    trigger: Annotated[
        TriggerSettings | str | int,
        Meta(
            description="When a micro-batch is cut: a duration (10s: {interval: 10s}), a record count (10000: "
            "{records: 10000}), or {interval: 10s, records: 10000}, whichever comes first."
        ),
    ] = msgspec.field(default_factory=lambda: TriggerSettings(interval="1s"))
    max_batch_records: Annotated[
        int, Meta(ge=1, description="Most records in one micro-batch (bounds memory while a backlog drains).")
    ] = 250_000
    max_batch_bytes: Annotated[
        int, Meta(ge=1024, description="Most bytes of record values in one micro-batch (bounds memory).")
    ] = 128 * 1024 * 1024
    sql: Annotated[
        str | None,
        Meta(description=f"A DuckDB SELECT run on each micro-batch, which it reads as the table {BATCH_TABLE!r}."),
    ] = None
    window: Annotated[
        WindowOptions | None,
        Meta(
            description="Event-time windows aggregated over the micro-batches (after sql), with a watermark; the object "
            "then writes one row per closed window (docs/streaming.md)."
        ),
    ] = None
    compact: Annotated[
        CompactSettings | None,
        Meta(
            description="Rewrite small micro-batch files into bigger ones as the stream goes: {min_files: 64, "
            "target_bytes: 134217728}; none: every micro-batch keeps its own files (docs/streaming.md)."
        ),
    ] = None

    def __post_init__(self) -> None:
        self.trigger = trigger_of(self.trigger)  # the shorthand as the object form: encoded, it reads back the same

    @property
    def trigger_settings(self) -> TriggerSettings:
        """:attr:`trigger` in its object form (the shorthand was turned into it when the settings were read)."""
        return trigger_of(self.trigger)
