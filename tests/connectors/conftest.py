"""Fixtures of the connector tests: the Kafka source's topic, producer and state store (kafka_fixtures.py)."""

from __future__ import annotations

from connectors.kafka_fixtures import produce, store, topic  # noqa: F401
