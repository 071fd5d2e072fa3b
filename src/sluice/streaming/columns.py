"""Consumed Kafka records in columns: what the micro-batch loop keeps of each ``consume()`` call instead of its
``confluent_kafka.Message`` objects.

A ``Message`` is a Python object holding a bytes value, a new topic string, and more; keeping a micro-batch of
250,000 of them alive until it is decoded doubled the consuming thread's CPU time (measured on the 2-core bench
machine: 2.6 CPU s against 1.4 for 2,000,000 records of 200 bytes, the difference being the allocation and
release of the objects, not the reading). :meth:`RecordColumns.of` takes the values of one ``consume()`` call
and joins them at once into one newline-separated buffer (what ``pyarrow.json`` parses), with numpy arrays of
lengths, partitions and offsets, and lists of keys and headers (a list of ``None`` when the records have none:
8 bytes a record); the messages are then released. Timestamps are read only when asked (``_timestamp``):
``Message.timestamp()`` makes a tuple per record, and is the costliest of the reading methods. A decoder given
messages (the batch Kafka source, which keeps its messages for the dead letters) reads only the values and the
metadata columns asked for.

A ``RecordColumns`` is a sequence of :class:`Record` (``columns[i]`` rebuilds record ``i``), so the dead-letter
functions take it where they take messages.

>>> columns = RecordColumns.of([Record(b'{"a": 1}', offset_=5), Record(None, b"k", offset_=6)])
>>> len(columns), columns.data, columns.lengths.tolist(), columns[1].key(), columns[1].value()
(2, b'{"a": 1}\\n', [8, -1], b'k', None)
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from operator import methodcaller
from typing import Any, overload

import numpy as np
from confluent_kafka import Message

__all__ = ["RECORD", "Record", "RecordColumns"]

Headers = list[tuple[str, bytes | None]] | None
_METHODS = ("value", "key", "topic", "partition", "offset", "timestamp", "headers")
RECORD = frozenset({"_key", "_headers", "_partition", "_offset", "_topic"})
"""The metadata :meth:`RecordColumns.of` reads by default: what rebuilds a record for its dead letter."""


@dataclass(frozen=True, slots=True)
class Record:
    """A stand-in for ``confluent_kafka.Message`` (tests, docs, replays, dead letters): the same reading methods."""

    value_: bytes | None
    key_: bytes | None = None
    topic_: str = "topic"
    partition_: int = 0
    offset_: int = 0
    timestamp_ms: int | None = None
    headers_: Headers = None

    def value(self) -> bytes | None:
        return self.value_

    def offset(self) -> int:
        return self.offset_

    def key(self) -> bytes | None:
        return self.key_

    def partition(self) -> int:
        return self.partition_

    def topic(self) -> str:
        return self.topic_

    def timestamp(self) -> tuple[int, int]:
        return (0, 0) if self.timestamp_ms is None else (1, self.timestamp_ms)

    def headers(self) -> Headers:
        return self.headers_

    def error(self) -> None:
        return None


@dataclass(frozen=True, slots=True, eq=False)
class RecordColumns(Sequence[Record]):
    """Records in columns, in the order consumed.

    ``data``: the values joined with ``\\n`` (a missing value, a tombstone, as nothing); ``lengths``: int64 bytes
    of each value, -1 for a missing one; ``partitions`` int32 and ``offsets`` int64; ``topic``: the topic of every
    record, or one per record when they differ; ``keys`` and ``headers`` one per record; ``timestamps``: ms since
    the epoch per record (None where the broker has none). A field not read (:meth:`of`'s ``read``) is None, and
    the records rebuilt from the columns have None, 0 or ``""`` there.
    """

    data: bytes
    lengths: np.ndarray[Any, np.dtype[np.int64]]
    partitions: np.ndarray[Any, np.dtype[np.int32]] | None = None
    offsets: np.ndarray[Any, np.dtype[np.int64]] | None = None
    topic: str | list[str] | None = None
    keys: list[bytes | None] | None = None
    headers: list[Headers] | None = None
    timestamps: list[int | None] | None = None
    starts: np.ndarray[Any, np.dtype[np.int64]] = field(init=False)
    """Where each value starts in ``data``."""

    def __post_init__(self) -> None:
        spans = np.maximum(self.lengths, 0) + 1
        object.__setattr__(self, "starts", np.cumsum(spans) - spans)

    @classmethod
    def of(cls, messages: Sequence[Any], *, read: Collection[str] = RECORD, topic: str | None = None) -> RecordColumns:
        """The columns of ``messages`` (``confluent_kafka.Message`` objects or :class:`Record`): their values, and the
        metadata named in ``read`` (``_key``, ``_headers``, ``_partition``, ``_offset``, ``_topic``, ``_timestamp``;
        by default :data:`RECORD`, what a dead letter needs), one pass of method calls per column. ``topic``: the
        topic of every message when the caller knows it (one subscribed topic); else, when ``_topic`` is read, each
        message's ``topic()`` is."""
        count = len(messages)
        if count and type(messages[0]) is Message:  # the C methods themselves, mapped: no Python frame per record
            method = {name: getattr(Message, name) for name in _METHODS}
        else:
            method = {name: methodcaller(name) for name in _METHODS}
        values = list(map(method["value"], messages))
        try:
            lengths = np.fromiter(map(len, values), np.int64, count)
            data = b"\n".join(values)
        except TypeError:  # a missing value (a tombstone)
            lengths = np.fromiter((-1 if v is None else len(v) for v in values), np.int64, count)
            data = b"\n".join(b"" if v is None else v for v in values)
        topics: str | list[str] | None = topic
        if topic is None and "_topic" in read:
            topics = [str(t) for t in map(method["topic"], messages)]
            topics = topics[0] if topics and topics.count(topics[0]) == count else topics

        def column(name: str) -> list[Any] | None:
            return list(map(method[name[1:]], messages)) if name in read else None

        stamps = column("_timestamp")
        return cls(
            data=data,
            lengths=lengths,
            partitions=None if "_partition" not in read else np.fromiter(map(method["partition"], messages), np.int32, count),
            offsets=None if "_offset" not in read else np.fromiter(map(method["offset"], messages), np.int64, count),
            topic=topics,
            keys=column("_key"),
            headers=column("_headers"),
            timestamps=None if stamps is None else [ms if kind else None for kind, ms in stamps],
        )

    @classmethod
    def join(cls, parts: Sequence[RecordColumns]) -> RecordColumns:
        """One ``RecordColumns`` of ``parts`` in order (the micro-batch of several ``consume()`` calls); a field
        not read in every part is not in the result."""
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return RecordColumns.of([])
        topic: str | list[str] | None = None
        if all(p.topic is not None for p in parts):
            names = {p.topic for p in parts if isinstance(p.topic, str)}
            if len(names) == 1 and all(isinstance(p.topic, str) for p in parts):
                topic = names.pop()
            else:
                topic = [t for p in parts for t in p.topic_list()]

        def arrays(name: str) -> Any:
            found = [getattr(p, name) for p in parts]
            return None if any(a is None for a in found) else np.concatenate(found)

        def lists(name: str) -> Any:
            found = [getattr(p, name) for p in parts]
            return None if any(a is None for a in found) else [item for one in found for item in one]

        return cls(
            data=b"\n".join(p.data for p in parts),
            lengths=np.concatenate([p.lengths for p in parts]),
            partitions=arrays("partitions"),
            offsets=arrays("offsets"),
            topic=topic,
            keys=lists("keys"),
            headers=lists("headers"),
            timestamps=lists("timestamps"),
        )

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def size(self) -> int:
        """Bytes of the values."""
        return int(self.lengths.sum() + (self.lengths < 0).sum())

    def topic_list(self) -> list[str]:
        """The topic of each record (``""`` when not read)."""
        if isinstance(self.topic, list):
            return self.topic
        return [self.topic or ""] * len(self)

    def values(self) -> list[bytes | None]:
        """Each record's value (bytes, or None for a missing one): one Python object per record (the slow path)."""
        data = self.data
        return [None if n < 0 else data[s : s + n] for s, n in zip(self.starts.tolist(), self.lengths.tolist(), strict=True)]

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        length, start = int(self.lengths[index]), int(self.starts[index])
        return Record(
            value_=None if length < 0 else self.data[start : start + length],
            key_=None if self.keys is None else self.keys[index],
            topic_=self.topic[index] if isinstance(self.topic, list) else self.topic or "",
            partition_=0 if self.partitions is None else int(self.partitions[index]),
            offset_=0 if self.offsets is None else int(self.offsets[index]),
            timestamp_ms=None if self.timestamps is None else self.timestamps[index],
            headers_=None if self.headers is None else self.headers[index],
        )

    def __iter__(self) -> Iterator[Record]:
        return (self[i] for i in range(len(self)))
