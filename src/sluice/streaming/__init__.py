"""Streaming ingestion: Kafka records to Arrow (:mod:`~sluice.streaming.records`), dead letters
(:mod:`~sluice.streaming.dead_letters`) and seeded fake events for demos and load tests
(:mod:`~sluice.streaming.faker_events`)."""
