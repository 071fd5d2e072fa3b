"""Capture's durable progress, kept on the bus next to the changes it covers.

* The **checkpoint** (where the stream resumes) is the position of the last :class:`~sluice.cdc.events.Heartbeat`
  on the side's heartbeat topic (:func:`~sluice.cdc.events.heartbeat_topic`). Capture publishes one after the
  changes up to that position are on the bus, so resuming there loses nothing and repeats at most what
  followed (apply skips it: positions are stored in the target).
* The **snapshot progress** (:class:`SnapshotProgress`) is the last message of the side's snapshot topic
  (:func:`snapshot_topic`): the position read before the snapshot and, per table, the last key published.

Both topics have one partition (Kafka) and are read back with :meth:`Bus.read` from their last offset.
Keeping them on the bus (not in a local file) lets a capture process move to another machine on Kafka.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from sluice.bus.base import Bus
from sluice.cdc.events import TOPIC_PREFIX, Heartbeat, Position, decode, encode, heartbeat_topic

T = TypeVar("T")

IDLE_HEARTBEAT_MAX_S = 5.0
"""An idle capture publishes a heartbeat at least this often (seconds), whatever ``heartbeat_s`` says."""


def idle_heartbeat_s(heartbeat_s: float) -> float:
    """Seconds an idle capture leaves between two heartbeats: the sync's ``heartbeat_s``, at most
    :data:`IDLE_HEARTBEAT_MAX_S`. While changes flow it checkpoints every second or so."""
    return min(heartbeat_s, IDLE_HEARTBEAT_MAX_S)


def silent_after_s(heartbeat_s: float) -> float:
    """Seconds without a heartbeat after which a capture counts as silent (stopped, dead, or cut off from its
    source): two idle heartbeat periods and a second for the apply side's look once a second
    (:meth:`~sluice.cdc.apply_loop.ApplyDirection.watch_capture`)."""
    return 2 * idle_heartbeat_s(heartbeat_s) + 1.0


class TableProgress(msgspec.Struct, omit_defaults=True):
    """One table of a snapshot: the key of the last row published, and whether every row was."""

    last_key: list[Any] | None = None
    done: bool = False
    rows: int = 0
    position: Position | None = None
    """The position read before this table's snapshot, when it differs from the side's (a resync)."""
    position_text: str = ""


class SnapshotProgress(msgspec.Struct, omit_defaults=True):
    """A snapshot of one side: ``position`` read before its first chunk; ``tables`` by qualified source name."""

    position: Position
    position_text: str = ""
    tables: dict[str, TableProgress] = msgspec.field(default_factory=dict)
    v: int = 1


def snapshot_topic(sync: str, side: str) -> str:
    """``sluice.cdc.<sync>.<side>._snapshot``."""
    return f"{TOPIC_PREFIX}{sync}.{side}._snapshot"


def _last(bus: Bus, topic: str) -> bytes | None:
    end = bus.end_offset(topic)
    if end <= 0:
        return None
    messages = bus.read(topic, max(0, end - 1), 1)
    return messages[-1].value if messages else None


def last_heartbeat(bus: Bus, sync: str, side: str) -> Heartbeat | None:
    """The newest heartbeat of ``side`` (its checkpoint), or None before the first."""
    topic = heartbeat_topic(sync, side)
    end = bus.end_offset(topic)
    # Newest first: the topic also carries SchemaChange events of new tables.
    start = end
    while start > 0:
        start = max(0, start - 64)
        for message in reversed(bus.read(topic, start, 64)):
            event = decode(message.value)
            if isinstance(event, Heartbeat):
                return event
    return None


def read_progress(bus: Bus, sync: str, side: str) -> SnapshotProgress | None:
    """The last recorded snapshot progress of ``side``, or None."""
    value = _last(bus, snapshot_topic(sync, side))
    if value is None:
        return None
    try:
        return msgspec.msgpack.decode(value, type=SnapshotProgress)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def write_progress(bus: Bus, sync: str, side: str, progress: SnapshotProgress) -> None:
    """Publish ``progress`` as the side's newest snapshot progress."""
    bus.publish(snapshot_topic(sync, side), [(side, msgspec.msgpack.encode(progress))])


def write_heartbeat(bus: Bus, sync: str, side: str, heartbeat: Heartbeat) -> None:
    """Publish ``heartbeat`` (the side's checkpoint) on its heartbeat topic."""
    bus.publish(heartbeat_topic(sync, side), [(side, encode(heartbeat))])
