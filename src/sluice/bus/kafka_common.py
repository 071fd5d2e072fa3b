"""What :mod:`sluice.bus.kafka` and :mod:`sluice.bus.kafka_consumer` share: request timeouts, asking the broker
again while a leader is being elected, and turning a librdkafka message into a :class:`~sluice.bus.base.Message`.

Both modules import this one and it imports neither, so the dependency between them goes one way
(``kafka`` → ``kafka_consumer`` → ``kafka_common``).
"""

from __future__ import annotations

import logging
import threading
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

OUTAGE_LOG_S = 10.0
"""A broker outage is reported at most once per this many seconds (:class:`Reachability`)."""

# librdkafka errors that mean the broker cannot be reached (each connection attempt gives one)
_UNREACHABLE = frozenset({KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE})


_PYTHON_LEVEL = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR, 4: logging.WARNING,
                 5: logging.INFO, 6: logging.INFO, 7: logging.DEBUG}  # fmt: skip
"""Python's logging level of each syslog level librdkafka logs at."""


class ClientLog:
    """Where librdkafka's log lines go instead of stderr (its ``logger`` setting): to the ``sluice.kafka`` logger,
    connection failures (one per client and retry while a broker is away) at debug level; :class:`Reachability`
    reports the outage once every :data:`OUTAGE_LOG_S` seconds."""

    def __init__(self, name: str = "sluice.kafka") -> None:
        self._log = logging.getLogger(name)

    def log(self, level: int, fmt: str, facility: str = "", *args: Any) -> None:
        """``level``: librdkafka's syslog level (3 error, 4 warning, 6 info, 7 debug), logged at Python's."""
        self._log.log(logging.DEBUG if facility == "FAIL" else _PYTHON_LEVEL.get(level, logging.DEBUG), fmt, facility, *args)


class Reachability:
    """A librdkafka client's ``error_cb``: remembers since when the broker at ``bootstrap`` cannot be reached and logs
    one warning line per :data:`OUTAGE_LOG_S` seconds of outage (``Kafka at H:P unreachable since 06:12:29 (...);
    retrying``) instead of librdkafka's line per connection attempt. :meth:`reached` ends the outage (one info line).
    Thread-safe (librdkafka calls it from ``poll``/``consume``)."""

    def __init__(self, bootstrap: str, logger: logging.Logger | None = None) -> None:
        self.bootstrap = bootstrap
        self.since: float | None = None
        """Epoch seconds of the first failure of the outage under way, None when the broker is reachable."""
        self._log = logger or logging.getLogger("sluice.kafka")
        self._logged = 0.0
        self._lock = threading.Lock()

    def on_error(self, err: KafkaError) -> None:
        now = time.time()
        with self._lock:
            if err.code() in _UNREACHABLE and self.since is None:
                self.since = now
            if now - self._logged < OUTAGE_LOG_S:
                return
            self._logged = now
        self._log.warning("%s (%s); retrying", self.describe() or f"Kafka at {self.bootstrap}", err.str())

    def describe(self) -> str | None:
        """``Kafka at H:P unreachable since HH:MM:SS`` during an outage, else None."""
        since = self.since
        if since is None:
            return None
        return f"Kafka at {self.bootstrap} unreachable since {time.strftime('%H:%M:%S', time.localtime(since))}"

    def reached(self) -> None:
        """The broker answered: the outage, if any, is over."""
        with self._lock:
            since, self.since, self._logged = self.since, None, 0.0
        if since is not None:
            self._log.warning("Kafka at %s reachable again after %.0f s", self.bootstrap, time.time() - since)

    def config(self) -> dict[str, Any]:
        """The librdkafka settings that route a client's log lines and errors here."""
        return {"logger": ClientLog(), "error_cb": self.on_error}


def quiet(bootstrap: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with librdkafka's log lines and errors routed into Sluice's logging, one line per outage every
    :data:`OUTAGE_LOG_S` seconds (:class:`Reachability`), for a short-lived client (a producer, an admin client)."""
    return {**Reachability(bootstrap).config(), **config}


HINT = "start the broker, or point 'bus:' / --bus at a running one"
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
