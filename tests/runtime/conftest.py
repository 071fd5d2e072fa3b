"""Fixtures of the runtime tests borrowed from the Kafka source's and the streaming objects' tests
(test_state_reset.py): a topic of the test's own with a producer and a SQLite state store, and the streaming tests'
topic maker."""

from __future__ import annotations

from connectors.kafka_fixtures import produce, store, topic  # noqa: F401
from streaming.streams import topics  # noqa: F401
