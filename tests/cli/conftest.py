"""Fixtures of the CLI tests borrowed from the Kafka source's (test_state.py): a topic of the test's own, a producer
into it and a SQLite state store."""

from __future__ import annotations

from connectors.kafka_fixtures import produce, store, topic  # noqa: F401
