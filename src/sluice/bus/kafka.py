"""The Kafka bus: Sluice's topics, consumer groups and offsets on an Apache Kafka cluster (confluent-kafka).

>>> bus = KafkaBus("127.0.0.1:29092")                           # doctest: +SKIP
>>> bus.publish("sluice.events", [("1001", b"{...}")])          # doctest: +SKIP

How the :class:`~sluice.bus.base.Bus` contract maps onto Kafka (``docs/bus.md`` has the whole story):

* Topics are created on first use with the admin API: ``sluice.ready.<stage>`` with ``partitions`` partitions
  (6 by default), every other topic with one (``sluice.events`` must have exactly one: its offsets are the
  total order that checkpoints, replays and SSE event ids rely on). ``retention.ms`` is ``retention_days``.
* One idempotent producer (``acks=all``) per bus, shared by all threads; ``publish`` waits for the delivery
  reports of its own messages only, so many small concurrent batches stay fast. Keys pick the partition
  (murmur2, as Java clients do), so one object's messages stay in order.
* A consumer owns a ``confluent_kafka.Consumer`` driven by a background thread that keeps polling the
  broker (buffering messages, pausing partitions while the buffer is full), so a worker busy for longer
  than ``max.poll.interval.ms`` keeps its partitions. Work consumers share a topic through the group
  protocol (cooperative-sticky assignor); messages may be committed out of order and the group's offset
  moves to the end of the completed prefix. Uncommitted messages come back to another member after a
  rebalance: that is the lease. Each commit carries in its metadata how far the member had handed
  messages out, so the next owner can tell redeliveries (``Message.deliveries``, a lower bound).
* An ``exclusive`` consumer (the coordinator) assigns itself every partition, without group membership,
  and commits in log order.
* ``read``, ``seek`` and ``end_offset`` address partition 0: they are meant for single-partition topics
  (``read_partition`` replays one partition of any topic).
* ``publish_partitions`` writes each batch to the partition its caller chose (change-data capture spreads a
  table's keys over partitions itself, :mod:`sluice.cdc.partitions`); other publications let the key pick.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer as _KafkaConsumer
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sluice.bus import names
from sluice.bus.base import Bus, Message
from sluice.bus.kafka_common import HINT, REQUEST_TIMEOUT_S, ClientLog, asking_again, message_of
from sluice.bus.kafka_consumer import KafkaConsumer
from sluice.errors import BusError
from sluice.observability import metrics

log = logging.getLogger("sluice.bus.kafka")

DEFAULT_PARTITIONS = 6
DEFAULT_RETENTION_DAYS = 7.0
FETCH_WAIT_MS = 10  # replays: the broker answers a fetch with no new message after this long, so the next one goes out
CONSUMER_FETCH_WAIT_MS = 100
"""How long the broker holds a consumer's fetch while its partitions have no new message (ms). A message that
arrives meanwhile answers the fetch at once, so this is no wait for messages: it sets how often an idle
consumer asks (10 per second; at 10 ms the six idle workers of ``bench/kafka.py`` cost the broker 5-9% of a
core, docs/bus.md) and how late a partition assigned or resumed while a fetch is held is first fetched (librdkafka has
one fetch in flight per broker)."""
DELIVERY_TIMEOUT_MS = 60_000  # librdkafka retries a write this long (a broker restarting) before failing it


class KafkaBus(Bus):
    """A :class:`Bus` on a Kafka cluster. Thread-safe: one instance may serve a whole process.

    ``config`` is added to the configuration of every librdkafka client, ``consumer_config`` to that of
    consumers (``{"max.poll.interval.ms": 10000}``). With a ``namespace``, the Kafka names of topics and
    consumer groups start with ``<namespace>.``, so several projects (or tests) can share a cluster; the
    bus's callers keep using the plain names.
    """

    partitioned = True
    writes_in_background = True

    def __init__(
        self,
        bootstrap: str,
        partitions: int = DEFAULT_PARTITIONS,
        retention_days: float = DEFAULT_RETENTION_DAYS,
        config: dict[str, Any] | None = None,
        consumer_config: dict[str, Any] | None = None,
        namespace: str = "",
    ) -> None:
        self.bootstrap = bootstrap
        options = {"partitions": partitions, "retention_days": retention_days, "namespace": namespace}
        defaults = {"partitions": DEFAULT_PARTITIONS, "retention_days": DEFAULT_RETENTION_DAYS, "namespace": ""}
        query = "&".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items() if v != defaults[k])
        self.url = f"kafka://{bootstrap}" + (f"?{query}" if query else "")
        self.namespace = namespace
        self._prefix = f"{namespace}." if namespace else ""
        self.partitions = partitions
        self.retention_ms = int(retention_days * 86_400_000) if retention_days > 0 else -1
        self._base_config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": "sluice",
            "logger": ClientLog("sluice.bus.kafka"),  # connection failures at debug; _on_error reports the outage
            "error_cb": self._on_error,
            "reconnect.backoff.max.ms": 1000,
            **(config or {}),
        }
        self._consumer_config = dict(consumer_config or {})
        self._topics: dict[str, int] = {}  # partition counts, by Kafka name
        self._absent: set[str] = set()  # topics prepare_topics found missing: not listed for again
        self._counted: set[str] = set()
        self._topics_lock = threading.Lock()
        self._consumers: weakref.WeakSet[KafkaConsumer] = weakref.WeakSet()
        self._last_error_log = 0.0
        self._closed = False
        self.admin = AdminClient(dict(self._base_config))
        # Metadata, watermarks and replays. A consumer handle never auto-creates the topics it asks about. A replay
        # reassigns the partition while the fetch that followed the previous one may still wait at the broker:
        # with librdkafka's default fetch.wait.max.ms (500) every read after the first took half a second.
        self._util = _KafkaConsumer(
            {
                **self._base_config,
                "group.id": names.READER_GROUP,
                "enable.auto.commit": False,
                "allow.auto.create.topics": False,
                "fetch.wait.max.ms": FETCH_WAIT_MS,
            }
        )
        self._read_lock = threading.Lock()
        self._producer_lock = threading.Lock()
        self._producer_failed = False
        self._producer = self._new_producer()
        self._poller = threading.Thread(target=self._serve_deliveries, name="kafka-deliveries", daemon=True)
        self._poller.start()

    def _new_producer(self) -> Producer:
        return Producer(
            {
                **self._base_config,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "message.timeout.ms": DELIVERY_TIMEOUT_MS,
                "partitioner": "murmur2_random",
            }
        )

    # ----- topics ---------------------------------------------------------------------------------

    def _on_error(self, err: KafkaError) -> None:
        now = time.monotonic()
        if err.fatal():  # only the idempotent producer has fatal errors; the next publish replaces it
            self._producer_failed = True
            log.error("Kafka producer error at %s: %s; starting a new producer", self.bootstrap, err.str())
        elif now - self._last_error_log > 10:
            self._last_error_log = now
            log.warning("Kafka at %s: %s", self.bootstrap, err.str())

    def _fail(self, what: str, exc: BaseException) -> BusError:
        return BusError(f"{what} on Kafka at {self.bootstrap} failed: {exc}. Is Kafka running there? {HINT}")

    def kafka_name(self, name: str) -> str:
        """The name of a topic or group on Kafka: ``name`` in this bus's namespace."""
        return self._prefix + name

    def partition_count(self, topic: str) -> int | None:
        """How many partitions ``topic`` has, or None when it does not exist (yet)."""
        return self._partition_count(self.kafka_name(topic))

    def _partition_count(self, topic: str) -> int | None:
        with self._topics_lock:
            known = self._topics.get(topic)
        if known is not None:
            return known
        try:
            meta = self._util.list_topics(topic=topic, timeout=REQUEST_TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise self._fail(f"reading the metadata of topic {topic!r}", exc) from None
        if meta is None or meta.error is not None or not meta.partitions:
            if meta is not None and meta.error is not None and meta.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise BusError(f"topic {topic!r} on Kafka at {self.bootstrap} is not usable: {meta.error.str()}")
            return None
        with self._topics_lock:
            self._topics[topic] = len(meta.partitions)
        return len(meta.partitions)

    def prepare_topics(self, topics: Sequence[str]) -> None:
        """Cache the partition counts of those of ``topics`` not known yet, from one metadata request for all the
        broker's topics (a lookup per topic costs a round trip each: three on a run's path, one per stage's first
        hand-out, ~100 ms of ``bench/kafka.py``'s coordinator under load). A topic found absent is not listed for
        again here; its first publish creates it. A failed request is left to the first publish to report."""
        with self._topics_lock:
            wanted = {self.kafka_name(t) for t in topics} - self._topics.keys() - self._absent
        if not wanted:
            return
        try:
            listed = self._util.list_topics(timeout=REQUEST_TIMEOUT_S).topics
        except KafkaException as exc:
            log.debug("looking up the partitions of %s failed: %s", sorted(wanted), exc)
            return
        found = {
            name: len(meta.partitions)
            for name in wanted
            if (meta := listed.get(name)) is not None and meta.error is None and meta.partitions
        }
        with self._topics_lock:
            self._topics.update(found)
            self._absent.update(wanted - found.keys())

    def default_partitions(self, topic: str) -> int:
        """Stage work queues are spread over ``partitions`` partitions; every other topic has one."""
        return self.partitions if names.is_ready_topic(topic) else 1

    def create_topic(self, topic: str, partitions: int = 1) -> int:
        return self.ensure_topic(topic, partitions)

    def ensure_topic(self, name: str, partitions: int | None = None) -> int:
        """Create topic ``name`` unless it exists; return its partition count."""
        topic = self.kafka_name(name)
        existing = self._partition_count(topic)
        if existing is not None:
            return existing
        wanted = partitions or self.default_partitions(name)
        new = NewTopic(topic, num_partitions=wanted, replication_factor=-1, config={"retention.ms": str(self.retention_ms)})
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while True:
            try:
                self.admin.create_topics([new], request_timeout=REQUEST_TIMEOUT_S)[topic].result(timeout=REQUEST_TIMEOUT_S)
                break
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    break
                # A broker shutting down or starting up is fenced: it cannot host the topic for a moment.
                if not (err.retriable() or err.code() == KafkaError.INVALID_REPLICATION_FACTOR) or time.monotonic() > deadline:
                    raise self._fail(f"creating topic {topic!r}", exc) from None
            except TimeoutError as exc:
                raise self._fail(f"creating topic {topic!r}", exc) from None
            time.sleep(0.5)
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        while (count := self._partition_count(topic)) is None:
            if time.monotonic() > deadline:
                raise BusError(f"topic {topic!r} was created on Kafka at {self.bootstrap} but does not show up")
            time.sleep(0.05)
        return count

    def _single_partition(self, topic: str, what: str) -> bool:
        """True when ``topic`` exists; a BusError when it has several partitions (``what`` needs one)."""
        count = self.partition_count(topic)
        if count is not None and count > 1:
            raise BusError(f"{what} addresses partition 0 of a single-partition topic, but {topic!r} has {count} partitions")
        return count is not None

    # ----- producing ------------------------------------------------------------------------------

    def _serve_deliveries(self) -> None:
        """Run delivery callbacks as reports arrive, so publishers wait for their own messages only."""
        while not self._closed:
            self._producer.poll(0.1)

    def _produce(
        self, batch: _Delivery, topic: str, messages: Sequence[tuple[str | None, bytes]], partition: int, partitions: int
    ) -> None:
        """Hand ``messages`` to the producer: to ``partition``, or (-1) to the one their key picks (``partitions``:
        how many ``topic`` has), with the callbacks that report them to ``batch``.

        Reports cost CPU in the publishing process (each runs on the delivery thread, holding the GIL). When every
        message goes to one partition (a topic of one, or an explicit partition) and ``batch`` keeps no offsets,
        every message but the last reports to a dict's ``__setitem__`` (C code: it only keeps the errors) and the
        last one to Python, which then reads the errors of those before it: librdkafka reports the messages of a
        partition in the order they were produced, and the idempotent producer writes a message only after every
        earlier one of its partition was written or reported failed. Otherwise each message reports to Python.
        """
        produce = self._producer.produce
        name = self.kafka_name(topic)
        batch.counts[topic] = batch.counts.get(topic, 0) + len(messages)
        offsets = batch.offsets
        if offsets is None and (partition >= 0 or partitions == 1):
            quiet: dict[KafkaError | None, Any] = {}
            early: Callable[[KafkaError | None, Any], None] = quiet.__setitem__
            last_callback = functools.partial(batch.report, topic, quiet)
            batch.reports += 1
            last = len(messages) - 1
            for index, (key, value) in enumerate(messages):
                _produce_one(produce, name, value, key, partition, last_callback if index == last else early)
            return
        batch.reports += len(messages)
        if offsets is None:
            report = functools.partial(batch.report, topic, None)  # one callback object for all: cheaper to produce
            for key, value in messages:
                _produce_one(produce, name, value, key, partition, report)
            return
        for key, value in messages:
            callback = functools.partial(batch.delivered, len(offsets), topic)
            offsets.append(-1)
            _produce_one(produce, name, value, key, partition, callback)

    def _start(
        self,
        batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]],
        partitions: Sequence[int] = (),
        *,
        offsets: bool = False,
    ) -> _Delivery:
        """Hand every batch to the producer; the returned delivery collects their reports (and the offsets of the
        messages when ``offsets``). ``partitions``: the partition of each batch (none: their keys pick)."""
        if self._producer_failed:
            with self._producer_lock:
                if self._producer_failed:
                    self._producer_failed = False
                    self._producer = self._new_producer()
        batch = _Delivery(offsets)
        for index, (topic, messages) in enumerate(batches):
            if messages:
                count = self.ensure_topic(topic)
                if topic not in self._counted:
                    self._counted.add(topic)
                    metrics.child(metrics.BUS_PRODUCE_ERRORS, topic)  # the series exists, at zero, from the first write
                partition = partitions[index] if partitions else -1
                if partition >= count:
                    raise BusError(f"cannot publish to partition {partition} of {topic!r}: it has {count} partitions")
                self._produce(batch, topic, messages, partition, count)
        batch.expect()
        return batch

    def _wait(self, batch: _Delivery) -> list[int]:
        """Wait for the delivery reports of ``batch``; its offsets (when it keeps them), or a BusError."""
        total = sum(batch.counts.values())
        if not total:
            return []
        if not batch.done.wait(DELIVERY_TIMEOUT_MS / 1000 + REQUEST_TIMEOUT_S):
            raise BusError(f"Kafka at {self.bootstrap} did not acknowledge {total} messages in time. {HINT}")
        if batch.errors:
            topic, err = batch.errors[0]
            raise BusError(f"could not publish to {topic!r} on Kafka at {self.bootstrap} (some of {total} messages): {err}")
        return batch.offsets or []

    def publish(self, topic: str, messages: Sequence[tuple[str | None, bytes]]) -> list[int]:
        return self._wait(self._start([(topic, messages)], offsets=True))

    def publish_many(
        self, batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]], *, own_group: str | None = None
    ) -> None:
        """Publish every batch, then wait once. Not atomic: a failure may leave some batches written.

        ``own_group`` is not honoured: Kafka delivers the messages to every group, the publisher's too."""
        self._wait(self._start(batches))

    def publish_partitions(self, batches: Sequence[tuple[str, int, Sequence[tuple[str | None, bytes]]]]) -> None:
        """Publish each batch to its partition (explicit: librdkafka's partitioner is not asked), then wait once.
        The idempotent producer keeps the order within each partition. Not atomic across batches."""
        self._wait(self._start([(topic, messages) for topic, _, messages in batches], [p for _, p, _ in batches]))

    def publish_many_nowait(
        self, batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]], *, own_group: str | None = None
    ) -> Callable[[], None]:
        """Hand every batch to the producer and return; the returned function waits for their delivery reports
        (up to ``message.timeout.ms`` plus a request timeout, 70 s) and raises BusError for a message not written.
        The idempotent producer keeps the order of messages within a partition across calls, retries included.
        ``own_group`` is not honoured (see :meth:`publish_many`)."""
        batch = self._start(batches)

        def wait() -> None:
            self._wait(batch)

        return wait

    # ----- consuming ------------------------------------------------------------------------------

    def consumer(
        self, group: str, topic: str, lease_s: float = 30.0, consumer_id: str | None = None, exclusive: bool = False
    ) -> KafkaConsumer:
        """Join ``group`` on ``topic``; returns once the consumer is part of the group.

        ``lease_s`` has no meaning here: a message stays with its consumer until it is committed or the
        consumer leaves the group (``close``, or no heartbeat for ``session.timeout.ms``).
        """
        partitions = self.ensure_topic(topic)
        consumer_id = consumer_id or f"sluice-{uuid.uuid4().hex[:8]}"
        consumer = KafkaConsumer(
            group,
            topic,
            consumer_id,
            exclusive,
            partitions,
            kafka_topic=self.kafka_name(topic),
            settings=self._consumer_settings(self.kafka_name(group), consumer_id),
            fail=self._fail,
        )
        self._consumers.add(consumer)
        consumer.start()
        return consumer

    def _consumer_settings(self, group: str, client_id: str) -> dict[str, Any]:
        return {
            **self._base_config,
            "group.id": group,
            "client.id": client_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "allow.auto.create.topics": False,
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": CONSUMER_FETCH_WAIT_MS,
            "topic.metadata.refresh.interval.ms": 10_000,
            **self._consumer_config,
        }

    def _local_owner(self, group: str, topic: str, partition: int) -> KafkaConsumer | None:
        for consumer in list(self._consumers):
            if consumer.group == group and consumer.topic == topic and consumer.owns(partition):
                return consumer
        return None

    def read(self, topic: str, from_offset: int = 0, max_messages: int = 1000) -> list[Message]:
        if max_messages <= 0 or not self._single_partition(topic, "read"):
            return []
        return self._read(topic, 0, from_offset, max_messages)

    def read_partition(self, topic: str, partition: int, from_offset: int = 0, max_messages: int = 1000) -> list[Message]:
        count = self.partition_count(topic)
        if max_messages <= 0 or count is None or partition >= count:
            return []
        return self._read(topic, partition, from_offset, max_messages)

    def _read(self, topic: str, partition: int, from_offset: int, max_messages: int) -> list[Message]:
        low, high = self._watermarks(topic, partition)
        name = self.kafka_name(topic)
        start = max(from_offset, low)
        if start >= high:
            return []
        end = min(high, start + max_messages)
        out: list[Message] = []
        deadline = time.monotonic() + REQUEST_TIMEOUT_S
        with self._read_lock:
            self._util.assign([TopicPartition(name, partition, start)])
            try:
                while (not out or out[-1].offset < end - 1) and time.monotonic() < deadline:
                    wanted = end - (out[-1].offset + 1 if out else start)
                    for m in self._util.consume(min(wanted, 10_000), 0.1):
                        offset = m.offset()
                        if m.error() is None and offset is not None and offset < end:
                            out.append(message_of(m, topic, 1))
            finally:
                self._util.unassign()
        if not out or out[-1].offset < end - 1:
            raise BusError(f"replaying {topic!r} from offset {start} on Kafka at {self.bootstrap} timed out. {HINT}")
        return out

    def _watermarks(self, topic: str, partition: int) -> tuple[int, int]:
        """The low and high offsets of a partition. One just created, or moving after a broker restart, answers
        "not leader" for a moment although the topic's metadata is there: that is asked again."""
        tp = TopicPartition(self.kafka_name(topic), partition)
        try:
            low, high = asking_again(lambda: self._util.get_watermark_offsets(tp, timeout=REQUEST_TIMEOUT_S))
        except KafkaException as exc:
            raise self._fail(f"reading the offsets of {topic!r}", exc) from None
        return int(low), int(high)

    def end_offset(self, topic: str) -> int:
        if not self._single_partition(topic, "end_offset"):
            return 0
        return self._watermarks(topic, 0)[1]

    def end_offsets(self, topic: str) -> dict[int, int]:
        count = self.partition_count(topic)
        return {p: self._watermarks(topic, p)[1] for p in range(count or 0)}

    def seek(self, group: str, topic: str, offset: int) -> None:
        """Move ``group`` to ``offset`` of partition 0 of ``topic``.

        A member of the group in this process is moved at once; otherwise the group must have no members
        (the coordinator seeks before it joins), as Kafka only lets an empty group's offsets be altered.
        """
        self.ensure_topic(topic)
        self._single_partition(topic, "seek")
        owner = self._local_owner(group, topic, 0)
        if owner is not None:
            owner.seek(0, offset)
            return
        request = ConsumerGroupTopicPartitions(self.kafka_name(group), [TopicPartition(self.kafka_name(topic), 0, offset)])
        try:
            self._group_request("alter_consumer_group_offsets", request)
        except (KafkaException, TimeoutError) as exc:
            raise BusError(
                f"could not move consumer group {group!r} to offset {offset} of {topic!r} on Kafka at {self.bootstrap}: {exc}"
                " (Kafka only moves a group without active members: stop its consumers first)"
            ) from None

    def lag_by_partition(self, group: str, topic: str) -> dict[int, int]:
        """Per partition: messages of ``topic`` not yet committed by ``group``; also sets the lag gauge."""
        count = self.partition_count(topic)
        if count is None:
            return {}
        committed = self._committed(group, topic, count)
        lags: dict[int, int] = {}
        for p in range(count):
            low, high = self._watermarks(topic, p)
            position = committed.get(p, -1)
            lags[p] = max(0, high - (position if position >= 0 else low))
            metrics.BUS_CONSUMER_LAG.labels(metrics.group_label(group), topic, str(p)).set(lags[p])
        return lags

    def committed(self, group: str, topic: str) -> int | None:
        """The group's committed offset of partition 0 of ``topic`` (None when it has none)."""
        offset = self._committed(group, topic, 1).get(0, -1)
        return offset if offset >= 0 else None

    def _committed(self, group: str, topic: str, count: int) -> dict[int, int]:
        """The committed offset of each partition (-1001 when none); retried while the broker starts up."""
        request = ConsumerGroupTopicPartitions(
            self.kafka_name(group), [TopicPartition(self.kafka_name(topic), p) for p in range(count)]
        )
        try:
            answer = self._group_request("list_consumer_group_offsets", request)
        except (KafkaException, TimeoutError) as exc:
            raise self._fail(f"reading the offsets of group {group!r} on {topic!r}", exc) from None
        return {tp.partition: tp.offset for tp in answer.topic_partitions}

    def _group_request(self, method: str, request: ConsumerGroupTopicPartitions) -> Any:
        """The admin request ``method`` to a group's coordinator, asked again while the coordinator moves, and
        with a new admin client after a timeout: librdkafka's admin client stops hearing from the coordinator
        after a broker restart."""

        def ask() -> Any:
            future = getattr(self.admin, method)([request], request_timeout=REQUEST_TIMEOUT_S / 2)[request.group_id]
            return future.result(timeout=REQUEST_TIMEOUT_S)

        try:
            return asking_again(ask)
        except (KafkaException, TimeoutError) as exc:
            if not (isinstance(exc, TimeoutError) or exc.args[0].code() == KafkaError._TIMED_OUT):
                raise
        self.admin = AdminClient(dict(self._base_config))
        return asking_again(ask)

    def lag(self, group: str, topic: str) -> int:
        return sum(self.lag_by_partition(group, topic).values())

    def ping(self) -> None:
        try:
            self.admin.list_topics(timeout=5)
        except KafkaException as exc:
            raise BusError(
                f"cannot reach Kafka at {self.bootstrap} ({exc.args[0].str()}): is Kafka running there? {HINT}"
            ) from None

    def close(self) -> None:
        """Close this bus's consumers (committing what they completed), then its clients. Bounded in time."""
        for consumer in list(self._consumers):
            consumer.close()
        if self._closed:
            return
        self._closed = True
        self._poller.join(timeout=1)
        self._producer.flush(5)
        self._util.close()


def _produce_one(
    produce: Callable[..., None],
    topic: str,
    value: bytes,
    key: str | None,
    partition: int,
    callback: Callable[[KafkaError | None, Any], None],
) -> None:
    """``produce`` one message, waiting while the producer's local queue is full."""
    while True:
        try:
            produce(topic, value, key, partition, on_delivery=callback)
            return
        except BufferError:  # the local queue is full: let deliveries drain it
            time.sleep(0.01)


class _Delivery:
    """The delivery reports of one publication; callbacks run on the bus's delivery thread.

    ``counts`` holds the messages handed to the producer per topic and ``reports`` how many report to Python
    (:meth:`report` or :meth:`delivered`); the others report to a dict of errors read by the last message of
    their batch (``KafkaBus._produce``). ``offsets`` (when kept) has the offset of each message in the order
    given; ``done`` is set once every report is in, after the messages are counted in the metrics.
    """

    def __init__(self, offsets: bool = False) -> None:
        self.offsets: list[int] | None = [] if offsets else None
        self.counts: dict[str, int] = {}
        self.reports = 0
        self.errors: list[tuple[str, KafkaError]] = []
        self.done = threading.Event()
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        self._reported = 0
        self._expected: int | None = None

    def expect(self) -> None:
        """Every message is handed to the producer: ``done`` is set once the Python reports are in."""
        with self._lock:
            self._expected = self.reports
            if self._reported == self._expected:
                self._finish()

    def delivered(self, index: int, topic: str, err: KafkaError | None, msg: Any) -> None:
        """The report of one message whose offset is kept."""
        if err is None and self.offsets is not None:
            self.offsets[index] = msg.offset()
        self.report(topic, None, err, msg)

    def report(self, topic: str, before: dict[KafkaError | None, Any] | None, err: KafkaError | None, msg: Any) -> None:
        """The report of a message of ``topic``; ``before``: the errors of the messages reported before it."""
        failures = [e for e in before if e is not None] if before else []
        if err is not None:
            failures.append(err)
        with self._lock:
            if failures:
                self.errors.extend((topic, e) for e in failures)
                self._failed.add(topic)
            self._reported += 1
            if self._reported == self._expected:
                self._finish()

    def _finish(self) -> None:
        """Count the messages written, per topic (once per publication, not per message; a topic's messages of a
        publication with a failed one count as errors: the caller publishes them again), then set ``done``."""
        for topic, count in self.counts.items():
            counter = metrics.BUS_PRODUCE_ERRORS if topic in self._failed else metrics.BUS_MESSAGES_PRODUCED
            metrics.child(counter, topic).inc(count)
        self.done.set()
