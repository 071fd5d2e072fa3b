"""What :mod:`sluice.bus.kafka` and :mod:`sluice.bus.kafka_consumer` share: request timeouts, asking the broker
again while a leader is being elected, and turning a librdkafka message into a :class:`~sluice.bus.base.Message`.

Both modules import this one and it imports neither, so the dependency between them goes one way
(``kafka`` → ``kafka_consumer`` → ``kafka_common``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from sluice.bus.base import Message

REQUEST_TIMEOUT_S = 10.0
"""How long one request to the broker (metadata, offsets, admin) may take, in seconds."""

FETCH_QUEUE_BACKOFF_MS = 10
"""librdkafka's ``fetch.queue.backoff.ms`` for consumers that drain backlogs (the Kafka source, streaming objects).

Since librdkafka 2.1 a partition whose prefetch queue is full (``queued.min.messages`` or
``queued.max.messages.kbytes``) is not fetched again for ``fetch.queue.backoff.ms``, 1,000 ms by default: on a
backlog that is a one-second stall each time the application falls behind the fetcher. Measured here, raw
``consume()`` of a 2-partition topic of 200-byte records: 150,000-350,000 records/s with the default, 1.6-1.7
million with 10 ms. Memory stays bounded by the same queue limits.
"""

HINT = "start one with scripts/servers/kafka.sh start, or point 'bus:' / --bus at a running broker"
"""Appended to the errors that say Kafka cannot be reached."""

T = TypeVar("T")

# Answers of a partition or group whose leader is not settled yet (a topic just created, a broker restarting).
TRANSIENT = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)


def asking_again(call: Callable[[], T], timeout: float = REQUEST_TIMEOUT_S) -> T:
    """``call()``, asked again for up to ``timeout`` seconds while the broker answers with a TRANSIENT error.

    Raises the last ``KafkaException`` when the error is not TRANSIENT or the time is up.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except KafkaException as exc:
            if exc.args[0].code() not in TRANSIENT or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def message_of(m: Any, topic: str, deliveries: int) -> Message:
    """The :class:`Message` for a ``confluent_kafka.Message`` ``m`` read from ``topic`` (the bus's name, not
    the namespaced Kafka name); ``deliveries`` is how many times it has been handed out, this time included."""
    key = m.key()
    return Message(
        topic,
        m.partition(),
        m.offset(),
        key.decode("utf-8", "replace") if key is not None else None,
        m.value() or b"",
        m.timestamp()[1] / 1000.0,
        deliveries,
    )
