"""Spreading one table's changes over the partitions of its topic (``partitions: N``, Kafka), keeping each key's order.

Capture, not the bus client, picks the partition of every message, so that snapshot rows, stream changes and
table-wide events agree on it whatever the producer's partitioner:

* a row change goes to :func:`partition_of` its key's bus text (:func:`~sluice.cdc.events.key_text`): CRC-32 of
  the UTF-8 text modulo ``N``, stable across processes and Python versions (``hash()`` is salted per process);
* an update that changes the key, when old and new key fall in different partitions, is split by
  :func:`route` into a delete of the old key (on the old key's partition, after that key's earlier changes)
  and an insert of the new row (on the new key's partition, before that key's later changes): each half keeps
  the order of its own key, which one update in one partition could not do for both;
* snapshot rows are split by key (:func:`split_rows`) so a key's snapshot row precedes its stream changes in
  the same partition;
* a table-wide event (a :class:`~sluice.cdc.events.SchemaChange`, DDL or resync marker, and ``TRUNCATE``) is
  published to every partition (:func:`is_table_wide`). Apply stops each partition at it until every partition
  of the table has reached it, then one applies it (:mod:`sluice.cdc.apply_partitioned`); the event's identity
  across partitions is :func:`barrier_id`.

With ``N = 1`` nothing here is used: messages are published as before, keyed, to the topic's one partition.
The routing is the classic "partition by key" of Kafka producers and Debezium; the barrier for table-wide
events is the "epoch" barrier of parallel replication appliers (MySQL's multi-threaded replica waits for every
worker before a DDL in the same way).
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Any

import msgspec

from sluice.bus.base import Bus
from sluice.cdc.base import SyncError
from sluice.cdc.events import TOPIC_PREFIX, ChangeEvent, Event, SchemaChange, apply_group, key_text


def partition_of(key: str, partitions: int) -> int:
    """The partition (``0 .. partitions-1``) of a message whose bus key is ``key``: CRC-32 of its UTF-8 bytes
    modulo ``partitions``; always 0 for one partition."""
    return zlib.crc32(key.encode()) % partitions if partitions > 1 else 0


def is_table_wide(event: Event) -> bool:
    """Whether ``event`` concerns the whole table (every partition must reach it before it applies): schema
    changes and resync markers, and ``TRUNCATE``."""
    return isinstance(event, SchemaChange) or (isinstance(event, ChangeEvent) and event.op == "t")


def old_key(event: ChangeEvent, key_columns: list[str]) -> list[Any] | None:
    """The key an update had before it (its ``before`` image's), or None when the event is no update, the
    table has no key, or ``before`` lacks a key column."""
    before = event.before
    if event.op != "u" or before is None or not key_columns or any(column not in before for column in key_columns):
        return None
    return [before[column] for column in key_columns]


def route(event: ChangeEvent, key: str, key_columns: list[str], partitions: int) -> list[tuple[int, str, ChangeEvent]]:
    """``(partition, bus key, event)`` for one row change whose bus key is ``key``: itself on its key's
    partition, or, for an update moving the row to a key of another partition, a delete of the old key there
    and an insert of the new row on the new key's partition (same source, so the same position)."""
    partition = partition_of(key, partitions)
    before_key = old_key(event, key_columns)
    if before_key is None or before_key == event.key:
        return [(partition, key, event)]
    old_text = key_text(before_key)
    old_partition = partition_of(old_text, partitions)
    if old_partition == partition:
        return [(partition, key, event)]
    delete = msgspec.structs.replace(event, op="d", key=before_key, after=None, unchanged=[])
    insert = msgspec.structs.replace(event, op="c", before=None)
    return [(old_partition, old_text, delete), (partition, key, insert)]


def split_rows(rows: list[list[Any]], key_at: list[int], partitions: int) -> dict[int, list[list[Any]]]:
    """Snapshot ``rows`` (value lists, key columns at ``key_at``) by the partition of their key, each part in
    the order given (key order)."""
    out: dict[int, list[list[Any]]] = {}
    for row in rows:
        out.setdefault(partition_of(key_text([row[i] for i in key_at]), partitions), []).append(row)
    return out


def barrier_id(value: bytes, position_text: str) -> str:
    """The identity of a table-wide event in every partition it was published to: its source position as the
    database shows it and the first 16 hex digits of the SHA-256 of its bus value (identical in each partition;
    a resync marker carries the wall time it was made, so two markers at one source position differ)."""
    return f"{position_text}#{hashlib.sha256(value).hexdigest()[:16]}"


def ensure_partitions(bus: Bus, topic: str, partitions: int, sync: str) -> None:
    """Create ``topic`` with ``partitions`` partitions unless it exists; a :class:`SyncError` when it exists with
    another count (a key's changes would then land on two partitions with no order between them)."""
    count = bus.create_topic(topic, partitions)
    if count != partitions:
        named = getattr(bus, "kafka_name", lambda name: name)  # the broker's name: the bus's namespace first
        raise SyncError(
            f"sync '{sync}': topic {named(topic)} has {count} partition(s) but the sync sets partitions: {partitions}; "
            f"set it back, or stop the sync, delete on the broker its topics (every topic whose name starts with "
            f"{named(TOPIC_PREFIX + sync + '.')}, the _heartbeat and _snapshot ones included) and its consumer groups "
            f"({named(apply_group(sync, ''))}*), then start it with --resnapshot"
        )
