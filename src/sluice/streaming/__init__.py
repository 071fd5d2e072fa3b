"""Streaming ingestion: Kafka records to Arrow (:mod:`~sluice.streaming.records`), dead letters
(:mod:`~sluice.streaming.dead_letters`), seeded fake events for demos and load tests
(:mod:`~sluice.streaming.faker_events`), continuous streaming objects appended to the lake in micro-batches
(:mod:`~sluice.streaming.loop`, :mod:`~sluice.streaming.host`) and event-time windows over them
(:mod:`~sluice.streaming.windows`)."""
