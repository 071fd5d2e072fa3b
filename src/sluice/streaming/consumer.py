"""The Kafka side of a streaming object: a consumer assigned at the lake's offsets, lag, dead letters.

The consumer is *assigned* its partitions (``Consumer.assign``, no group rebalance) at the offsets of the
lake's last commit (:meth:`Lake.last_commit`): the lake is the source of truth, the consumer group only
receives a copy of the offsets after each commit, asynchronously, so lag tools (``kafka-consumer-groups``)
see progress. A partition the lake has no offset for starts at the earliest or latest offset
(``streaming.start``).

Memory: librdkafka prefetches at most ``queued.max.messages.kbytes`` per consumer (set to
:data:`PREFETCH_KBYTES`), and refetches a full queue after ``fetch.queue.backoff.ms``
(:data:`~sluice.bus.kafka_common.FETCH_QUEUE_BACKOFF_MS`); the loop gathers at most one micro-batch ahead of the
one being written, so a slow lake slows consumption and nothing else grows.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from sluice.bus.kafka_common import FETCH_QUEUE_BACKOFF_MS, REQUEST_TIMEOUT_S, Reachability
from sluice.errors import TerminalError, TransientError
from sluice.streaming.columns import RECORD, RecordColumns

log = logging.getLogger(__name__)

PROBE_S = 5.0
"""While the broker is unreachable, :meth:`StreamConsumer.unreachable` asks it for metadata at most this often."""

PREFETCH_KBYTES = 32 * 1024
"""librdkafka's prefetch queue per consumer, in KiB (its default is 64 MiB)."""

Offsets = dict[str, dict[int, int]]
"""Per topic and partition, the next offset to read."""


def encode_offsets(offsets: Offsets) -> dict[str, dict[str, int]]:
    """Offsets as JSON (partition numbers as strings), for a lake commit record."""
    return {topic: {str(p): o for p, o in sorted(parts.items())} for topic, parts in sorted(offsets.items())}


def decode_offsets(raw: Mapping[str, Any] | None) -> Offsets:
    """The offsets of a lake commit record (:func:`encode_offsets`'s shape); empty for None."""
    return {str(topic): {int(p): int(o) for p, o in parts.items()} for topic, parts in (raw or {}).items()}


class StreamConsumer:
    """One streaming object's consumer of ``topics``, assigned at ``offsets`` (see the module).

    Raises TerminalError when a topic does not exist, TransientError when the broker cannot be reached.
    """

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        group: str,
        offsets: Offsets,
        *,
        start: str = "earliest",
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.bootstrap, self.group = bootstrap, group
        self.reach = Reachability(bootstrap, log)  # librdkafka's lines and errors: one line per outage every 10 s
        self._probed = 0.0
        self.consumer = Consumer(
            {
                **self.reach.config(),
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "client.id": f"sluice-stream-{group}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest" if start == "earliest" else "latest",
                "allow.auto.create.topics": False,
                "queued.max.messages.kbytes": PREFETCH_KBYTES,
                "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
                "fetch.max.bytes": 16 * 1024 * 1024,
                "max.partition.fetch.bytes": 4 * 1024 * 1024,
                "reconnect.backoff.max.ms": 1000,
            }
        )
        try:
            self.partitions = self._partitions(topics, stopping)
        except BaseException:
            self.consumer.close()
            raise
        begin = OFFSET_BEGINNING if start == "earliest" else OFFSET_END
        self._assignment = [TopicPartition(t, p) for t, parts in self.partitions.items() for p in parts]
        self.consumer.assign(
            [TopicPartition(t, p, offsets.get(t, {}).get(p, begin)) for t, parts in self.partitions.items() for p in parts]
        )

    def _partitions(self, topics: Sequence[str], stopping: Callable[[], bool]) -> dict[str, list[int]]:
        """The partitions of each topic. Asks for up to :data:`REQUEST_TIMEOUT_S` seconds, a second at a time so that
        ``stopping()`` is seen within one; TransientError when the broker did not answer."""
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while True:
            try:
                meta = self.consumer.list_topics(timeout=1.0)
            except KafkaException as exc:
                if time.monotonic() < deadline and not stopping():
                    continue
                raise TransientError(
                    f"Kafka at {self.bootstrap} cannot be reached ({exc}); check that the broker is running and the "
                    "source's kafka:// connection"
                ) from exc
            found: dict[str, list[int]] = {}
            missing = []
            for topic in topics:
                info = meta.topics.get(topic)
                if info is None or info.error is not None or not info.partitions:
                    missing.append(topic)
                else:
                    found[topic] = sorted(info.partitions)
            if not missing:
                return found
            if time.monotonic() > deadline:
                raise TerminalError(
                    f"topic {missing[0]!r} does not exist on Kafka at {self.bootstrap}; create it or fix the source's topic"
                )
            time.sleep(0.2)

    def consume(self, count: int, timeout_s: float) -> list[Any]:
        """Up to ``count`` messages (``confluent_kafka.Message``) within ``timeout_s`` seconds, errors left out.

        A fatal client error raises TerminalError; other errors (a broker restarting, a partition leader moving) are
        logged and left to librdkafka, which fetches again by itself from the same position."""
        messages = self.consumer.consume(count, timeout_s)
        bad = [m for m in messages if m.error() is not None]
        if not bad:
            if messages and self.reach.since is not None:
                self.reach.reached()
            return messages
        for message in bad:
            error = message.error()
            assert error is not None
            if error.fatal():
                raise TerminalError(f"Kafka consumer of {self.group!r} at {self.bootstrap}: {error.str()}")
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("Kafka consumer of %r at %s: %s; fetching again", self.group, self.bootstrap, error.str())
        return [m for m in messages if m.error() is None]

    def consume_columns(self, count: int, timeout_s: float, *, timestamps: bool = False) -> RecordColumns | None:
        """:meth:`consume`, the messages turned into columns at once (:class:`RecordColumns`; ``timestamps``: with
        the ``_timestamp`` column's), or None when none came within ``timeout_s`` seconds.

        Python's cyclic garbage collector is paused while the messages exist (:func:`gc_paused`): every ``Message``
        is an object the collector tracks, and a ``consume()`` of thousands of them set off collections that walked
        them all again (py-spy of ``bench/streaming.py``: the collector took about half of the consuming thread's
        time). They hold no cycles and are released before the collector resumes. The pause covers no waiting: what
        librdkafka has already fetched is taken without waiting; when it has nothing, the wait is for one message
        with the collector on (so idle streams never keep it off, in a server hosting many), then the rest."""
        read = RECORD | {"_timestamp"} if timestamps else RECORD
        topic = next(iter(self.partitions)) if len(self.partitions) == 1 else None
        with gc_paused():
            messages = self.consume(count, 0)
            if messages:
                columns = RecordColumns.of(messages, read=read, topic=topic)
                del messages  # released before the collector resumes, which would walk them otherwise
                return columns
        first = self.consume(1, timeout_s)
        if not first:
            return None
        with gc_paused():
            messages = first + self.consume(count - 1, 0) if count > 1 else first
            del first
            columns = RecordColumns.of(messages, read=read, topic=topic)
            del messages
        return columns

    def positions(self, previous: Offsets) -> Offsets:
        """The next offset to read of each assigned partition after the messages consumed so far (librdkafka's
        position: the last message handed to the application + 1), ``previous`` where none was consumed yet.
        One call for the whole assignment, no work per message."""
        found: Offsets = {t: dict(parts) for t, parts in previous.items()}
        for tp in self.consumer.position(self._assignment):
            if tp.offset >= 0:
                found.setdefault(tp.topic, {})[tp.partition] = tp.offset
        return found

    def partition_names(self) -> list[str]:
        """Every assigned partition as ``topic:partition``, in a fixed order (the window's :class:`Sources.names`)."""
        return [f"{t}:{p}" for t, parts in self.partitions.items() for p in parts]

    def partition_codes(self, messages: RecordColumns) -> np.ndarray[Any, np.dtype[np.int64]]:
        """The index in :meth:`partition_names` of each message's partition (numpy, no Python work per message when
        the messages are of one topic)."""
        codes = np.zeros(len(messages), dtype=np.int64)
        if messages.partitions is None or not len(messages):
            return codes
        topics = messages.topic if isinstance(messages.topic, str) else np.asarray(messages.topic_list())
        first = 0
        for topic, parts in self.partitions.items():
            lookup = np.zeros(max(parts) + 1, dtype=np.int64)
            lookup[parts] = np.arange(first, first + len(parts))
            first += len(parts)
            if isinstance(topics, str):
                if topics == topic:
                    codes = lookup[messages.partitions]
                continue
            mine = topics == topic
            codes[mine] = lookup[messages.partitions[mine]]
        return codes

    def read_to_end(self, positions: Offsets, targets: Offsets | None) -> frozenset[str]:
        """The partitions (``topic:partition``) read to their end at ``positions``: at or past their ``targets``
        offset (``--available-now``; a partition without one held nothing when the stream started), else at or past
        the high watermark of the last fetch (no request), or empty. A partition whose high watermark is not known
        yet is not among them."""
        found: set[str] = set()
        for tp in self._assignment:
            at = positions.get(tp.topic, {}).get(tp.partition)
            if targets is not None:
                end = targets.get(tp.topic, {}).get(tp.partition)
                if end is None or (at is not None and at >= end):
                    found.add(f"{tp.topic}:{tp.partition}")
                continue
            try:
                low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high >= 0 and (high <= low or (at is not None and at >= high)):
                found.add(f"{tp.topic}:{tp.partition}")
        return frozenset(found)

    def end_offsets(self) -> Offsets:
        """Each assigned partition's high watermark now (asked of the broker), for partitions holding records:
        what "everything available now" means (Spark's ``Trigger.AvailableNow``). Raises TransientError when the
        broker does not answer."""
        found: Offsets = {}
        for tp in self._assignment:
            try:
                low, high = self.consumer.get_watermark_offsets(tp, timeout=REQUEST_TIMEOUT_S, cached=False)
            except KafkaException as exc:
                where = f"{tp.topic}[{tp.partition}]"
                raise TransientError(f"Kafka at {self.bootstrap}: no high watermark for {where} ({exc})") from exc
            if high > low:
                found.setdefault(tp.topic, {})[tp.partition] = high
        return found

    def unreachable(self) -> str | None:
        """``Kafka at H:P unreachable since HH:MM:SS`` while the broker cannot be reached, else None. During an outage
        the broker is asked for metadata (1 s at most) every :data:`PROBE_S` seconds: an idle topic brings no message
        to tell that it is back."""
        if self.reach.since is None:
            return None
        now = time.monotonic()
        if now - self._probed >= PROBE_S:
            self._probed = now
            with contextlib.suppress(KafkaException):
                self.consumer.list_topics(timeout=1.0)
                self.reach.reached()
        return self.reach.describe()

    def lag(self, offsets: Offsets) -> dict[tuple[str, int], int]:
        """Records between ``offsets`` and each partition's high watermark (from the last fetch; no request)."""
        found: dict[tuple[str, int], int] = {}
        for topic, parts in self.partitions.items():
            for p in parts:
                try:
                    _low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                except KafkaException:
                    continue
                position = offsets.get(topic, {}).get(p)
                if high >= 0 and position is not None:
                    found[(topic, p)] = max(0, high - position)
        return found

    def commit_group(self, offsets: Offsets) -> None:
        """Copy ``offsets`` to the consumer group, asynchronously (for lag tools; the lake stays the truth)."""
        tps = [TopicPartition(t, p, o) for t, parts in offsets.items() for p, o in parts.items()]
        if tps:
            with contextlib.suppress(KafkaException):  # a copy for monitoring only: the next batch commits again
                self.consumer.commit(offsets=tps, asynchronous=True)

    def close(self) -> None:
        self.consumer.close()


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_resume = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the block runs (``gc.disable``), back on after the last of the
    threads in such a block leaves it, if it was on before the first entered. Reference counting still frees
    everything acyclic at once; only cycles wait."""
    global _gc_pauses, _gc_resume
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_resume = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_resume:
                gc.enable()
