"""Streaming ingestion: Kafka records into the lake in micro-batches, and event-time windows over them."""
