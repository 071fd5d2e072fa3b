"""A member of a Kafka consumer group for :class:`~sluice.bus.kafka.KafkaBus` (see that module and docs/bus.md).

confluent-kafka lets one thread at a time use a consumer, so a background thread owns it: it polls the
broker all the time (which keeps the member in its group however long a worker holds a message),
buffers what it fetches (one queue per partition, each paused while it holds 2,000 messages or its share of
64 MB), and sends the commits and seeks that the worker's threads ask for. Flow control is per partition so
that a partition nobody takes messages from for a while (change-data capture's apply holds one at a barrier)
stops only itself: the member's other partitions keep flowing (:meth:`KafkaConsumer.poll_partition`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition
from confluent_kafka import Consumer as _KafkaConsumer

from sluice.bus.base import Consumer, Message
from sluice.bus.kafka_common import REQUEST_TIMEOUT_S, asking_again
from sluice.errors import BusError
from sluice.observability import metrics

log = logging.getLogger("sluice.bus.kafka")

JOIN_TIMEOUT_S = 20.0  # consumer() waits this long at most to be part of its group
SETTLE_S = 1.0  # ... or this long after an empty assignment, for a partition another member is handing over
COMMIT_WAIT_S = 5.0  # commit() waits this long at most for the broker to confirm
BUFFER_MAX = 2000  # messages fetched ahead per partition before it is paused ...
BUFFER_BYTES = 64 << 20  # ... or bytes of its values, shared by the consumer's partitions ...
PARTITION_BYTES_MIN = 8 << 20  # ... each pausing at BUFFER_BYTES / (its partitions), never below this
POLL_S = 0.01  # the background thread's poll while idle: it also serves commits and seeks between polls
BUSY_POLL_S = 0.005  # ... while messages or commits flow: a commit waits up to this long for the thread's next turn
# (at 0.001 each busy consumer's loop cost ~1.6% of a core; bench/kafka.py keeps seven of them busy on 2 cores)
BUSY_S = 0.5  # messages or commit requests this recently make the thread busy
RETRY_COMMIT_S = 1.0
LAG_SAMPLE_S = 5.0


@dataclass
class _Partition:
    """What one consumer tracks about a partition it owns.

    ``delivered`` are the offsets handed out and not yet part of the committed prefix, in order (an exclusive
    consumer, which commits in log order, keeps none);
    ``position`` is the offset to commit (the first not completed), None until known; ``seen_end`` and
    ``seen_count``: the previous owners had handed out messages up to ``seen_end``, ``seen_count`` times.
    """

    position: int | None = None
    confirmed: int = -1
    sent: int | None = None
    delivered: deque[int] = field(default_factory=deque)
    completed: set[int] = field(default_factory=set)
    handed_end: int = 0
    seen_end: int = 0
    seen_count: int = 0

    def metadata(self) -> str:
        """Commit metadata for the next owner: handed out up to ``h``, the oldest pending ``d`` times."""
        end = max(self.handed_end, self.seen_end)
        position = self.position or 0
        count = self.seen_count if position < self.seen_end else 0
        if self.handed_end > position:
            count += 1
        return f"sluice:h={end};d={count}"

    @classmethod
    def from_committed(cls, offset: int, metadata: str | None) -> _Partition:
        part = cls(position=offset if offset >= 0 else None, confirmed=offset)
        fields = dict(item.split("=", 1) for item in (metadata or "").removeprefix("sluice:").split(";") if "=" in item)
        with contextlib.suppress(ValueError):  # not ours: no redelivery count
            part.seen_end, part.seen_count = int(fields.get("h", 0)), int(fields.get("d", 0))
        return part


class KafkaConsumer(Consumer):
    """One member of a consumer group; a background thread owns the librdkafka consumer.

    ``group`` and ``topic`` are the bus's names (in metrics, logs and ``Message.topic``); ``kafka_topic`` is
    the topic's name on Kafka and ``settings`` the librdkafka configuration of the consumer (its
    ``group.id`` the group's name on Kafka). ``partitions`` is the topic's partition count. ``fail(what, exc)``
    makes the BusError raised when the broker cannot be asked something.
    """

    def __init__(
        self,
        group: str,
        topic: str,
        consumer_id: str,
        exclusive: bool,
        partitions: int,
        *,
        kafka_topic: str,
        settings: dict[str, Any],
        fail: Callable[[str, BaseException], BusError],
    ) -> None:
        self.group = group
        self.topic = topic
        self.consumer_id = consumer_id
        self.exclusive = exclusive
        self._partition_count = partitions
        self._ktopic = kafka_topic
        self._fail = fail
        self._consumer = _KafkaConsumer({**settings, "on_commit": self._on_commit})
        self._parts: dict[int, _Partition] = {}
        self._buffer: dict[int, deque[Message]] = {}
        self._size = 0  # messages in all the queues of _buffer
        self._bytes: dict[int, int] = {}  # bytes of the values in each queue
        self._turn = 0  # where the next poll() of every partition starts, so none waits behind the others
        self._cond = threading.Condition()
        self._paused: set[int] = set()  # partitions paused by flow control (background thread only)
        self._assigned_at: float | None = None
        self._requests: deque[tuple[int, int, threading.Event, list[BaseException]]] = deque()
        self._closing = threading.Event()
        self._closed = False
        self._commit_due = False
        self._commit_sent = 0.0  # time.monotonic() when the commit request the broker has not answered was sent, or 0
        self._busy_until = 0.0  # time.monotonic() until which the background thread polls every BUSY_POLL_S
        self._thread = threading.Thread(target=self._run, name=f"kafka-{group}", daemon=True)
        self._consumed = metrics.child(metrics.BUS_MESSAGES_CONSUMED, metrics.group_label(group), topic)
        self._errors = metrics.child(metrics.BUS_CONSUME_ERRORS, metrics.group_label(group))
        for kind in ("assign", "revoke", "lost"):  # every series exists from the start, at zero
            metrics.child(metrics.BUS_REBALANCES, metrics.group_label(group), kind)

    def start(self) -> None:
        if self.exclusive:
            self._assign_all()
        else:
            self._consumer.subscribe([self._ktopic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        self._thread.start()
        if not self.exclusive:
            self._wait_for_assignment()

    def _wait_for_assignment(self) -> None:
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        with self._cond:
            while not self._parts and time.monotonic() < deadline:
                if self._assigned_at is not None and time.monotonic() - self._assigned_at >= SETTLE_S:
                    return
                self._cond.wait(0.05)
        if not self._parts and self._assigned_at is None:
            log.warning(
                "consumer %s has not joined group %r on %s yet; it goes on trying", self.consumer_id, self.group, self.topic
            )

    def _assign_all(self) -> None:
        tps = [TopicPartition(self._ktopic, p) for p in range(self._partition_count)]
        try:
            committed = asking_again(lambda: self._consumer.committed(tps, timeout=REQUEST_TIMEOUT_S))
        except KafkaException as exc:
            raise self._fail(f"reading the offsets of group {self.group!r}", exc) from None
        with self._cond:
            for tp in committed:
                self._parts[tp.partition] = _Partition.from_committed(tp.offset, tp.metadata)
        # librdkafka starts fetching an assigned partition once its handle knows the topic's leader. A handle
        # that never asked learns it at its next topic scan, up to a second later (the coordinator's first
        # events waited ~1 s for it); asking now fills its metadata cache, so fetching starts at once.
        try:
            asking_again(lambda: self._consumer.list_topics(topic=self._ktopic, timeout=REQUEST_TIMEOUT_S))
        except KafkaException as exc:
            raise self._fail(f"reading the metadata of topic {self.topic!r}", exc) from None
        self._consumer.assign(
            [TopicPartition(self._ktopic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_BEGINNING) for tp in committed]
        )

    def owns(self, partition: int) -> bool:
        with self._cond:
            return partition in self._parts and not self._closed

    # ----- rebalance callbacks (on the background thread) ----------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        metrics.child(metrics.BUS_REBALANCES, metrics.group_label(self.group), "assign").inc()
        self._log_rebalance("assigned", partitions)
        committed = partitions
        if partitions:
            try:
                committed = consumer.committed(partitions, timeout=REQUEST_TIMEOUT_S)
            except KafkaException as exc:
                self._errors.inc()
                log.warning("could not read the committed offsets of %s: %s", self.group, exc)
        with self._cond:
            for tp in committed:
                self._parts[tp.partition] = _Partition.from_committed(tp.offset, tp.metadata)
            self._assigned_at = time.monotonic()
            self._cond.notify_all()
        consumer.incremental_assign(partitions)

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        metrics.child(metrics.BUS_REBALANCES, metrics.group_label(self.group), "revoke").inc()
        self._log_rebalance("revoked", partitions)
        if not self._closing.is_set():
            self._commit_now([tp.partition for tp in partitions])
        self._drop([tp.partition for tp in partitions])

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        metrics.child(metrics.BUS_REBALANCES, metrics.group_label(self.group), "lost").inc()
        self._log_rebalance("lost", partitions)
        self._drop([tp.partition for tp in partitions])

    def _log_rebalance(self, what: str, partitions: list[TopicPartition]) -> None:
        if partitions:
            numbers = ",".join(str(tp.partition) for tp in partitions)
            log.info("consumer %s of group %r: partitions %s of %s %s", self.consumer_id, self.group, numbers, self.topic, what)

    def _drop(self, partitions: list[int]) -> None:
        gone = set(partitions)
        with self._cond:
            for p in gone:
                self._parts.pop(p, None)
                self._size -= len(self._buffer.pop(p, ()))
                self._bytes.pop(p, None)
                self._paused.discard(p)
                metrics.BUS_CONSUMER_LAG.labels(metrics.group_label(self.group), self.topic, str(p)).set(0)
            self._cond.notify_all()

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        self._commit_sent = 0.0
        with self._cond:
            for tp in partitions:
                part = self._parts.get(tp.partition)
                if part is None:
                    continue
                if err is None and tp.error is None:
                    part.confirmed = max(part.confirmed, tp.offset)
                elif part.sent == tp.offset:
                    part.sent = None  # failed: sent again at the next retry
            self._cond.notify_all()
        if err is not None:
            self._errors.inc()
            log.debug("commit of %s failed: %s", self.group, err)

    # ----- the background thread ----------------------------------------------------------------

    def _run(self) -> None:
        next_retry = next_lag = time.monotonic()
        while not self._closing.is_set():
            try:
                self._serve_requests()
                self._flow_control()
                # One commit request in flight at a time: commits asked for meanwhile go out together after its
                # answer (each costs the broker more CPU than a produce request).
                if self._commit_due and (not self._commit_sent or time.monotonic() - self._commit_sent > RETRY_COMMIT_S):
                    self._commit_due = False
                    self._commit_async()
                first = self._consumer.poll(BUSY_POLL_S if time.monotonic() < self._busy_until else POLL_S)
                if first is not None:
                    self._buffer_messages([first, *self._consumer.consume(499, 0)])
                now = time.monotonic()
                if now >= next_retry:
                    next_retry = now + RETRY_COMMIT_S
                    self._commit_async(retry=True)
                if now >= next_lag:
                    next_lag = now + LAG_SAMPLE_S
                    self._sample_lag()
            except Exception as exc:  # the thread must live on: it keeps this member in its group
                self._errors.inc()
                log.warning("consuming %s for group %r failed: %s", self.topic, self.group, exc)
                self._closing.wait(0.5)
        self._shutdown()

    def _buffer_messages(self, batch: list[Any]) -> None:
        """Queue a poll's messages by partition, each made as ``kafka_common.message_of`` does (inlined: every message
        a consumer takes passes here)."""
        self._busy_until = time.monotonic() + BUSY_S
        topic = self.topic
        with self._cond:
            parts, buffer, sizes = self._parts, self._buffer, self._bytes
            added = 0
            for m in batch:
                err = m.error()
                if err is not None:
                    self._errors.inc()
                    log.warning("consuming %s: %s", self.topic, err.str())
                    continue
                partition = m.partition()
                part = parts.get(partition)
                if part is None:
                    continue
                offset = m.offset()
                queue = buffer.get(partition)
                if queue is None:
                    queue = buffer[partition] = deque()
                key = m.key()
                value = m.value() or b""
                queue.append(
                    Message(
                        topic,
                        partition,
                        offset,
                        key.decode("utf-8", "replace") if key is not None else None,
                        value,
                        m.timestamp()[1] / 1000.0,
                        part.seen_count + 1 if offset < part.seen_end else 1,
                    )
                )
                sizes[partition] = sizes.get(partition, 0) + len(value)
                added += 1
            self._size += added
            self._cond.notify_all()

    def _flow_control(self) -> None:
        """Pause a partition whose queue holds :data:`BUFFER_MAX` messages or its share of :data:`BUFFER_BYTES`,
        resume it at half of that."""
        with self._cond:
            sizes = {p: (len(self._buffer.get(p, ())), self._bytes.get(p, 0)) for p in self._parts}
        self._paused &= sizes.keys()
        cap = max(PARTITION_BYTES_MIN, BUFFER_BYTES // max(1, len(sizes)))
        full = [p for p, (count, size) in sizes.items() if (count >= BUFFER_MAX or size >= cap) and p not in self._paused]
        if full:
            self._paused.update(full)
            self._consumer.pause([TopicPartition(self._ktopic, p) for p in full])
        drained = [p for p in self._paused if sizes[p][0] <= BUFFER_MAX // 2 and sizes[p][1] <= cap // 2]
        if drained:
            self._paused.difference_update(drained)
            tps = [TopicPartition(self._ktopic, p) for p in drained]
            self._consumer.resume(tps)
            # librdkafka only notices a resume at its fetcher's next wake-up, up to a second later; a seek
            # to where consumption stands wakes it now.
            for tp in self._consumer.position(tps):
                if tp.offset >= 0:
                    self._consumer.seek(tp)

    def _serve_requests(self) -> None:
        while self._requests:
            partition, offset, done, failure = self._requests.popleft()
            try:
                self._seek_now(partition, offset)
            except (KafkaException, BusError) as exc:
                failure.append(exc)
            done.set()

    def _seek_now(self, partition: int, offset: int) -> None:
        with self._cond:
            if partition not in self._parts:
                raise BusError(f"partition {partition} of {self.topic!r} moved to another member of {self.group!r}")
            self._size -= len(self._buffer.pop(partition, ()))
            self._bytes.pop(partition, None)
            self._parts[partition] = part = _Partition(position=offset, handed_end=offset)
        self._consumer.seek(TopicPartition(self._ktopic, partition, offset))
        self._consumer.commit(offsets=[TopicPartition(self._ktopic, partition, offset, part.metadata())], asynchronous=False)
        with self._cond:
            part.confirmed = offset
            self._cond.notify_all()

    def _positions(self, partitions: list[int] | None, retry: bool = False) -> list[TopicPartition]:
        """The positions of ``partitions`` (None: all) the broker has not confirmed (with ``retry``: nor
        been sent, unless a second has passed)."""
        with self._cond:
            chosen = self._parts if partitions is None else {p: self._parts[p] for p in partitions if p in self._parts}
            offsets = []
            for p, part in chosen.items():
                if part.position is None or part.position == part.confirmed:
                    continue
                if not retry and part.sent == part.position:
                    continue
                part.sent = part.position
                offsets.append(TopicPartition(self._ktopic, p, part.position, part.metadata()))
            return offsets

    def _commit_async(self, retry: bool = False) -> None:
        """Send the positions to commit; ``_on_commit`` records the broker's answer."""
        offsets = self._positions(None, retry)
        if offsets:
            self._commit_sent = time.monotonic()
            try:
                self._consumer.commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:
                self._errors.inc()
                log.debug("commit of %s failed: %s", self.group, exc)

    def _commit_now(self, partitions: list[int] | None) -> None:
        """Commit synchronously the positions of ``partitions`` (None: all): before they go away."""
        offsets = self._positions(partitions, retry=True)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self._errors.inc()
            log.warning("could not commit the offsets of group %r on %s: %s", self.group, self.topic, exc)
            return
        with self._cond:
            for tp in offsets:
                part = self._parts.get(tp.partition)
                if part is not None:
                    part.confirmed = max(part.confirmed, tp.offset)
            self._cond.notify_all()

    def _sample_lag(self) -> None:
        with self._cond:
            positions = {p: part.confirmed for p, part in self._parts.items()}
        for p, committed in positions.items():
            try:
                low, high = self._consumer.get_watermark_offsets(TopicPartition(self._ktopic, p), cached=True)
            except KafkaException:
                continue
            if high >= 0:
                lag = high - (committed if committed >= 0 else max(low, 0))
                metrics.BUS_CONSUMER_LAG.labels(metrics.group_label(self.group), self.topic, str(p)).set(max(0, lag))

    def _shutdown(self) -> None:
        """Commit what is completed, leave the group, close the client."""
        self._commit_now(None)
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.debug("closing the consumer of %s: %s", self.group, exc)
        with self._cond:
            self._parts.clear()
            self._buffer.clear()
            self._bytes.clear()
            self._size = 0
            self._cond.notify_all()

    # ----- the Consumer interface ---------------------------------------------------------------

    def poll(self, max_messages: int = 500, timeout_s: float = 0.0) -> list[Message]:
        with self._cond:
            if not self._size and timeout_s > 0:
                self._cond.wait_for(lambda: self._size or self._closed, timeout_s)
            out: list[Message] = []
            partitions = list(self._buffer)
            if partitions:
                self._turn = start = (self._turn + 1) % len(partitions)
                for p in partitions[start:] + partitions[:start]:
                    if len(out) >= max_messages:
                        break
                    self._take(p, max_messages - len(out), out)
        if out:
            self._consumed.inc(len(out))
        return out

    def poll_partition(self, partition: int, max_messages: int = 500, timeout_s: float = 0.0) -> list[Message]:
        """Up to ``max_messages`` of ``partition``'s messages, in offset order (nothing when this member does
        not own it); the other partitions' stay buffered. Waits up to ``timeout_s`` for the first."""
        with self._cond:
            if not self._buffer.get(partition) and timeout_s > 0:
                self._cond.wait_for(
                    lambda: self._buffer.get(partition) or self._closed or partition not in self._parts, timeout_s
                )
            out: list[Message] = []
            self._take(partition, max_messages, out)
        if out:
            self._consumed.inc(len(out))
        return out

    def _take(self, partition: int, count: int, out: list[Message]) -> None:
        """Move up to ``count`` buffered messages of ``partition`` to ``out``, as handed out (under the lock)."""
        queue = self._buffer.get(partition)
        part = self._parts.get(partition)
        if not queue or part is None:
            return
        taken = min(count, len(queue))
        size = 0
        delivered = None if self.exclusive else part.delivered  # an exclusive consumer commits in log order
        for _ in range(taken):
            m = queue.popleft()
            if delivered is not None:
                delivered.append(m.offset)
            size += len(m.value)
            out.append(m)
        self._bytes[partition] -= size
        part.handed_end = out[-1].offset + 1
        if part.position is None:
            part.position = out[-taken].offset
        self._size -= taken

    def partitions(self) -> list[int]:
        with self._cond:
            return [] if self._closed else sorted(self._parts)

    def position(self, partition: int) -> int | None:
        with self._cond:
            part = self._parts.get(partition)
            if part is None:
                return None
            if part.position is not None:
                return part.position
            return part.confirmed if part.confirmed >= 0 else None

    def commit(self, messages: Sequence[Message], wait: bool = True) -> None:
        """Mark messages processed; the group's offset moves to the end of the completed prefix.

        The background thread sends the commit (confluent-kafka lets one thread at a time use a consumer,
        and it holds this one) and this call waits until the broker confirms it, a few seconds at most
        (``wait=False``: it returns at once); a commit that fails (a rebalance in progress, the broker away)
        is sent again a second later.
        """
        if not messages:
            return
        with self._cond:
            touched: dict[int, _Partition] = {}
            for m in messages:
                part = self._parts.get(m.partition)
                if part is None or m.topic != self.topic:
                    continue  # revoked meanwhile: the new owner gets the message again
                if self.exclusive:
                    part.position = max(part.position or 0, m.offset + 1)
                elif part.delivered and part.delivered[0] <= m.offset < part.handed_end:
                    part.completed.add(m.offset)
                touched[m.partition] = part
            offsets = []
            for p, part in touched.items():
                while part.delivered and part.delivered[0] in part.completed:
                    part.completed.discard(part.delivered[0])
                    part.position = part.delivered.popleft() + 1
                if part.position is not None and part.position > part.confirmed:
                    offsets.append(TopicPartition(self._ktopic, p, part.position, part.metadata()))
            if not offsets or self._closed:
                return
            self._commit_due = True
            self._busy_until = time.monotonic() + BUSY_S
            if not wait:
                return

            def confirmed() -> bool:
                return self._closed or all(
                    self._parts.get(tp.partition) is not touched[tp.partition] or touched[tp.partition].confirmed >= tp.offset
                    for tp in offsets
                )

            self._cond.wait_for(confirmed, COMMIT_WAIT_S)

    def extend(self, messages: Sequence[Message]) -> None:
        """Nothing to renew: the background thread's polling keeps this member's partitions."""

    def seek(self, partition: int, offset: int) -> None:
        """Move this member (and so its group) to ``offset`` of ``partition``, dropping what it fetched ahead."""
        done, failure = threading.Event(), list[BaseException]()
        self._requests.append((partition, offset, done, failure))
        if not done.wait(REQUEST_TIMEOUT_S):
            raise BusError(f"seeking {self.topic!r} for group {self.group!r} timed out")
        if failure:
            raise BusError(f"seeking {self.topic!r} for group {self.group!r} failed: {failure[0]}")

    def close(self) -> None:
        """Commit what is completed and leave the group; uncommitted messages go to another member.

        Returns within about 15 s even when the broker is gone.
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._closing.set()
        if self._thread.ident is None:  # never started
            self._consumer.close()
        elif self._thread.is_alive():
            self._thread.join(timeout=15)
            if self._thread.is_alive():
                log.warning("consumer %s of group %r did not close in time; leaving it behind", self.consumer_id, self.group)
