"""The ``streaming:`` section of an object: what makes it a continuous streaming object, and its limits.

::

    objects:
      - id: 1001
        name: transactions
        source: {type: kafka, connection: events, topic: transactions, format: json}
        streaming:
          trigger: {interval_s: 10}        # a micro-batch every 10 s; or {records: 10000}, or both (first wins)
          max_batch_records: 200000        # a micro-batch never holds more (a backlog drains in such batches)
          max_batch_bytes: 67108864        # ...nor more bytes of record values
          sql: SELECT id, amount * 100 AS cents FROM batch   # optional, DuckDB over each micro-batch

Checked with file and line like the rest of ``sluice.yaml`` (:class:`StreamingSettings`). The words are
Spark Structured Streaming's: a *trigger* starts a *micro-batch*; its *offsets* (per topic and partition,
the next one to read) are committed with its output.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings

BATCH_TABLE = "batch"
"""The name a micro-batch goes by in ``streaming.sql``."""


class TriggerSettings(Settings):
    """When a micro-batch is cut: every ``interval_s`` seconds, once ``records`` records arrived, or whichever first."""

    interval_s: Annotated[
        Annotated[float, Meta(gt=0)] | None, Meta(description="Seconds between micro-batches (a batch is cut when they pass).")
    ] = None
    records: Annotated[
        Annotated[int, Meta(ge=1)] | None, Meta(description="Records that cut a micro-batch as soon as they have arrived.")
    ] = None

    def __post_init__(self) -> None:
        if self.interval_s is None and self.records is None:
            raise ValueError("trigger needs interval_s (seconds) or records (a count), e.g. trigger: {interval_s: 10}")


class StreamingSettings(Settings):
    """An object's ``streaming:``: it consumes its Kafka source continuously, in micro-batches appended to the lake."""

    trigger: Annotated[
        TriggerSettings, Meta(description="When a micro-batch is cut: {interval_s: 10}, {records: 10000} or both.")
    ] = msgspec.field(default_factory=lambda: TriggerSettings(interval_s=1.0))
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
    start: Annotated[
        Literal["earliest", "latest"],
        Meta(description="Where a partition with no committed offset in the lake starts: earliest or latest."),
    ] = "earliest"
    group: Annotated[
        str | None,
        Meta(
            description="Consumer group the offsets are also committed to, for lag tools (default "
            "sluice.stream.<project>.<object>); the lake's commit stays the source of truth."
        ),
    ] = None
    window: Annotated[
        dict[str, Any] | None, Meta(description="Windowed aggregation by event time (docs/streaming.md).")
    ] = None
