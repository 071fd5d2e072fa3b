"""Dead letters: messages that could not be used where they were consumed, kept with the reason.

A consumer that meets a message it cannot parse (or that is not what its topic carries) must not
crash or block on it: it publishes a *dead letter* to ``sluice.dead-letters`` and then commits the
original, so the rest of the topic flows on. A dead letter is a JSON object::

    {"topic": "sluice.ready.ingest", "partition": 0, "offset": 42, "key": "1001",
     "reason": "not an event: ...", "group": "workers.ingest",
     "value": "...", "value_encoding": "utf-8", "ts": "2025-01-01T00:00:00+00:00"}

``value`` is the original message as text, or base64 (``value_encoding: base64``) when it is not
UTF-8. Each dead letter counts in ``sluice_bus_dead_letters_total{topic}`` (the source topic).

>>> from sluice.bus.base import Message
>>> key, data = dead_letter_record(Message("t", 0, 7, "k", b"\\xff", 0.0), "not JSON", "g")
>>> json.loads(data)["value_encoding"]
'base64'
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sluice.bus import names
from sluice.bus.base import Bus, Message
from sluice.observability import metrics

log = logging.getLogger("sluice.dead_letter")
MAX_REASON_CHARS = 2000


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter read back from ``sluice.dead-letters``."""

    topic: str
    partition: int
    offset: int
    key: str | None
    reason: str
    group: str
    value: bytes
    ts: str


def dead_letter_record(message: Message, reason: str, group: str) -> tuple[str | None, bytes]:
    """The ``(key, value)`` to publish on the dead-letter topic for ``message`` (same key as the original)."""
    try:
        value, encoding = message.value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        value, encoding = base64.b64encode(message.value).decode("ascii"), "base64"
    record = {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "key": message.key,
        "reason": reason[:MAX_REASON_CHARS],
        "group": group,
        "value": value,
        "value_encoding": encoding,
        "ts": datetime.now(UTC).isoformat(),
    }
    return message.key, json.dumps(record).encode("utf-8")


def counted(source_topics: list[str]) -> None:
    """Count dead letters once they are on the bus, per source topic."""
    for topic in source_topics:
        metrics.child(metrics.DEAD_LETTERS, topic).inc()


def dead_letter(bus: Bus, message: Message, reason: str, group: str) -> bool:
    """Publish a dead letter for ``message`` now; True when it is on the bus.

    Never raises: a bus that cannot take it is logged, and the caller decides whether to commit the
    original anyway. Consumers that commit through an outbox queue :func:`dead_letter_record` there
    instead, so the dead letter is published before the original is committed.
    """
    log.error(
        "dead-lettering the message at partition %s offset %s of %s (group %s): %s",
        message.partition,
        message.offset,
        message.topic,
        group,
        reason,
    )
    try:
        bus.publish(names.DEAD_LETTER_TOPIC, [dead_letter_record(message, reason, group)])
    except Exception:
        log.exception("could not publish the dead letter for offset %s of %s", message.offset, message.topic)
        return False
    counted([message.topic])
    return True


def parse_dead_letter(data: bytes) -> DeadLetter:
    """Read back one dead letter (for tools and tests); raises ValueError when it is not one."""
    record: Any = json.loads(data)
    if not isinstance(record, dict):
        raise ValueError("a dead letter is a JSON object")
    raw = str(record["value"])
    value = base64.b64decode(raw) if record.get("value_encoding") == "base64" else raw.encode("utf-8")
    return DeadLetter(
        topic=str(record["topic"]),
        partition=int(record["partition"]),
        offset=int(record["offset"]),
        key=None if record["key"] is None else str(record["key"]),
        reason=str(record["reason"]),
        group=str(record["group"]),
        value=value,
        ts=str(record["ts"]),
    )


def describe_malformed(exc: Exception) -> str:
    """A one-line reason for a message that did not decode as an event."""
    return f"not a Sluice event: {exc}"
