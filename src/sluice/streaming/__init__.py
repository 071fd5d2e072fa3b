"""Streaming ingestion: Kafka records to Arrow (:mod:`~sluice.streaming.records`), dead letters
(:mod:`~sluice.streaming.dead_letters`), seeded fake events for demos and load tests
(:mod:`~sluice.streaming.faker_events`, :mod:`~sluice.streaming.produce`), continuous streaming objects appended
to the lake in micro-batches (:mod:`~sluice.streaming.loop`, :mod:`~sluice.streaming.host`) and event-time windows
over them (:mod:`~sluice.streaming.windows`).

This module imports nothing heavy: the CLI reads the names below without loading Faker or pyarrow.
"""

from __future__ import annotations

from datetime import UTC, datetime

EVENT_SCHEMAS = ("transactions", "users", "products")
"""The kinds of fake events ``sluice produce faker --schema`` writes."""
DEFAULT_EVENT_START = datetime(2024, 1, 1, tzinfo=UTC)
"""The event time of the first fake event unless told otherwise."""
