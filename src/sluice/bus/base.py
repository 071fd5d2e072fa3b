"""The event bus interface: topics of keyed messages, consumer groups, offsets, replay.

Shaped after Kafka so that the embedded log and a Kafka backend are interchangeable:

* a *topic* is an append-only log of messages; each message has a *key* (the object id as text for
  object events, so one object's events stay in order on one partition) and an *offset*, increasing
  within its partition;
* a *consumer group* shares the work of a topic among its consumers: each message is delivered to
  one consumer of the group, at least once; a consumer *commits* a message once it is processed, and
  a message not committed before its *lease* expires (the consumer died) is delivered again;
* any topic can be *replayed* from an offset, outside any group.

>>> bus = open_bus("sqlite:///tmp/bus.db")                  # doctest: +SKIP
>>> bus.publish("t", [("k", b"hello")])                      # doctest: +SKIP
>>> consumer = bus.consumer("g", "t"); consumer.poll(10)     # doctest: +SKIP
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import NamedTuple

from sluice.errors import BusError


class Message(NamedTuple):
    """One message as delivered. ``deliveries`` counts how often it was handed out in this group.

    A named tuple: consumers create thousands per second and tuples are the cheapest immutable records.
    """

    topic: str
    partition: int
    offset: int
    key: str | None
    value: bytes
    timestamp: float
    deliveries: int = 1


class Consumer(ABC):
    """A member of a consumer group reading one topic."""

    group: str
    topic: str
    consumer_id: str

    @abstractmethod
    def poll(self, max_messages: int = 500, timeout_s: float = 0.0) -> list[Message]:
        """Up to ``max_messages`` messages not yet handed to this group (or whose lease expired).

        Waits up to ``timeout_s`` for the first message. Returned messages are leased to this consumer.
        """

    @abstractmethod
    def commit(self, messages: Sequence[Message], wait: bool = True) -> None:
        """Mark messages processed: they will not be delivered to this group again.

        ``wait=False``: return before the backend confirms it (Kafka: the broker's answer), for a caller whose
        own records make a message delivered again harmless (change-data capture's apply: its positions are
        in the target); such a commit may be lost if the process dies, never applied out of order."""

    @abstractmethod
    def extend(self, messages: Sequence[Message]) -> None:
        """Renew the lease of messages still being processed (a heartbeat for long work)."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group. Uncommitted messages are delivered again to another consumer."""

    def wakeup(self) -> None:  # noqa: B027 - optional: the poll returns at its timeout
        """Make a :meth:`poll` waiting in another thread return now (with what it has, perhaps nothing), so a
        loop that is told to stop does not wait out its timeout; thread-safe, as Kafka's Java
        ``Consumer.wakeup()`` (which raises instead). The default does nothing: the poll returns at its timeout."""

    def partitions(self) -> list[int]:
        """The partitions of :attr:`topic` this member owns now, in order (a backend without partitions: ``[0]``).

        A group spreads a topic's partitions over its members and may move them (rebalance) at any time."""
        return [0]

    def poll_partition(self, partition: int, max_messages: int = 500, timeout_s: float = 0.0) -> list[Message]:
        """:meth:`poll` of one partition's messages only (in offset order): the others stay buffered for
        their own calls, so the partitions of one member can be worked on by different threads. The default
        (one partition) is :meth:`poll` for partition 0, nothing for any other."""
        return self.poll(max_messages, timeout_s) if partition == 0 else []

    def position(self, partition: int) -> int | None:
        """The first offset of ``partition`` this member has not completed (committed or about to be), or None
        when unknown (the default, or a partition it does not own)."""
        return None

    def seek(self, partition: int, offset: int) -> None:
        """Move this member, and so its group, to ``offset`` of ``partition`` (a partition it owns), dropping
        what it fetched ahead. Raises BusError where the backend cannot (the default)."""
        raise BusError(f"consumers of this bus cannot seek {self.topic!r} (partition {partition}, offset {offset})")


class Bus(ABC):
    """Publish, consume in groups, replay. Thread-safe: one instance may serve a whole process."""

    url: str
    partitioned = False
    """True when a topic can have several partitions and :meth:`publish_partitions` can address each (Kafka);
    a backend without partitions has partition 0 only (the embedded log)."""
    ordered_publish_many = False
    """True when :meth:`publish_many` writes every batch in one transaction, in the order given: no consumer
    sees a message of one batch without the messages before it (the embedded log; not Kafka)."""
    writes_in_background = False
    """True when :meth:`publish_many_nowait` only hands the messages to a client that writes them in the background
    (Kafka): a publisher gains by publishing each message as soon as it has it and waiting for the writes
    elsewhere (``runtime/outbox.py``). False when it writes before returning (the embedded log: one transaction
    per call, so callers batch, and :meth:`publish_and_commit` is one transaction)."""

    @abstractmethod
    def publish(self, topic: str, messages: Sequence[tuple[str | None, bytes]]) -> list[int]:
        """Append ``(key, value)`` messages atomically, in order; return their offsets."""

    def publish_many(
        self, batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]], *, own_group: str | None = None
    ) -> None:
        """Publish to several topics at once (atomically where the backend can).

        ``own_group``: the consumer group of the publisher itself, which need not receive these messages back
        (it knows them already). A backend may leave them out of that group's deliveries (the embedded log
        does for an exclusive consumer in the same process); others deliver them as usual, so the group's
        consumer must still tolerate its own messages.
        """
        for topic, messages in batches:
            if messages:
                self.publish(topic, messages)

    def publish_many_nowait(
        self, batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]], *, own_group: str | None = None
    ) -> Callable[[], None]:
        """Start :meth:`publish_many` and return at once with a function that waits until every message is
        written (raising BusError when one was not), so the caller can go on while the bus acknowledges.

        Batches started one after another are written in that order within each partition. The default
        publishes before returning (a bus whose writes are local has nothing to overlap). ``own_group`` as
        for :meth:`publish_many` (a bus plugin overriding either must accept it).
        """
        self.publish_many(batches, own_group=own_group)
        return _written

    def publish_partitions(self, batches: Sequence[tuple[str, int, Sequence[tuple[str | None, bytes]]]]) -> None:
        """Publish each ``(topic, partition, messages)`` batch to that partition of its topic (the caller picks
        the partition, not the key), in order within each partition, then wait until all are written.

        Not atomic across batches. A backend without partitions (the default) accepts partition 0 only and
        raises BusError for any other."""
        for topic, partition, _ in batches:
            if partition != 0:
                raise BusError(f"this bus has one partition per topic: cannot publish to partition {partition} of {topic!r}")
        self.publish_many([(topic, messages) for topic, _, messages in batches])

    def publish_and_commit(
        self, topic: str, messages: Sequence[tuple[str | None, bytes]], consumer: Consumer, settled: Sequence[Message]
    ) -> None:
        """Publish ``messages`` and commit ``settled`` on ``consumer`` as one step where the backend can.

        This is how a worker answers a work message: if it dies in between, either both happened or
        neither did, so the work message is not delivered again after its outcome is already out.
        """
        if messages:
            self.publish(topic, messages)
        consumer.commit(settled)

    @abstractmethod
    def consumer(
        self, group: str, topic: str, lease_s: float = 30.0, consumer_id: str | None = None, exclusive: bool = False
    ) -> Consumer:
        """Join ``group`` on ``topic``. A lease of ``lease_s`` seconds covers each delivered message.

        ``exclusive``: this consumer is the group's only member and commits in log order, so no
        per-message leases are kept; a commit moves the group's offset (Kafka's model). Messages not
        committed when it stops are delivered again to the next consumer of the group.
        """

    @abstractmethod
    def read(self, topic: str, from_offset: int = 0, max_messages: int = 1000) -> list[Message]:
        """Replay: messages of ``topic`` with offset >= ``from_offset``, outside any group."""

    @abstractmethod
    def seek(self, group: str, topic: str, offset: int) -> None:
        """Make ``group`` read ``topic`` again from ``offset`` (replay for a group)."""

    @abstractmethod
    def end_offset(self, topic: str) -> int:
        """The offset the next message of ``topic`` will have at least (0 for an empty topic)."""

    def end_offsets(self, topic: str) -> dict[int, int]:
        """:meth:`end_offset` of each partition of ``topic`` (``{}`` when a partitioned backend has no such topic
        yet). The default (one partition): ``{0: end_offset(topic)}``."""
        return {0: self.end_offset(topic)}

    @abstractmethod
    def lag(self, group: str, topic: str) -> int:
        """Messages of ``topic`` not yet committed by ``group``."""

    def committed(self, group: str, topic: str) -> int | None:
        """The offset of the first message of ``topic`` (partition 0) that ``group`` has not committed: every
        message before it was processed (Kafka's committed offset). None when the group never committed there,
        or when the backend cannot tell (this default). Used by the data API's subscriptions to know when a
        sync's apply has written a change into its target (``sluice.api.subscriptions``)."""
        return None

    def lag_by_partition(self, group: str, topic: str) -> dict[int, int]:
        """:meth:`lag` per partition (a backend without partitions has only partition 0)."""
        return {0: self.lag(group, topic)}

    def create_topic(self, topic: str, partitions: int = 1) -> int:
        """Create ``topic`` with ``partitions`` partitions unless it exists (topics are otherwise created on
        first use); returns how many partitions it has (an existing topic keeps its own count). A backend
        without partitions creates nothing and returns 1."""
        return 1

    def prepare_topics(self, topics: Sequence[str]) -> None:  # noqa: B027 - optional: nothing to learn ahead
        """Learn ahead, in one request where the backend can, what the first publish to each of ``topics`` would
        otherwise stop to ask (Kafka: their partition counts, from one metadata request). A coordinator calls it
        before a run starts, so the run's first hand-out to each stage does not wait for a round trip to the
        broker. A topic that does not exist is left alone (its first publish creates it). Never raises: a failure
        here comes back, and is reported, at the first publish. The default does nothing."""

    def read_partition(self, topic: str, partition: int, from_offset: int = 0, max_messages: int = 1000) -> list[Message]:
        """:meth:`read` of one partition of a topic with several (offsets count within the partition). The
        default (one partition) is :meth:`read` for partition 0, nothing for any other."""
        return self.read(topic, from_offset, max_messages) if partition == 0 else []

    def ping(self) -> None:  # noqa: B027 - optional check
        """Raise BusError when the bus cannot be reached."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""


def _written() -> None:
    """The waiter of a publication that is already written."""
