"""What only the Kafka bus promises: partitions spread among a group, redelivery when a member leaves or dies,
no rebalance while a worker holds a message for long, idempotent writes, lag per partition, URL checks.

Each test works in a Kafka namespace of its own (its topics and groups are prefixed), deleted afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from servers_fixtures import delete_kafka_namespace
from sluice.bus.base import Consumer, Message
from sluice.bus.kafka import KafkaBus
from sluice.bus.registry import open_bus
from sluice.errors import BusError, ConfigError
from sluice.observability import metrics

pytestmark = pytest.mark.kafka

WAIT_S = 30.0  # upper bound for waits that end much sooner when the bus works
MakeBus = Callable[..., KafkaBus]


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_bus(kafka_url: str, namespace: str) -> Iterator[MakeBus]:
    """Opens KafkaBus clients in this test's namespace; closes them and deletes its topics and groups afterwards."""
    bootstrap = kafka_url.removeprefix("kafka://")
    opened: list[KafkaBus] = []

    def make(**options: Any) -> KafkaBus:
        bus = KafkaBus(bootstrap, namespace=namespace, **options)
        opened.append(bus)
        return bus

    yield make
    for bus in opened:
        bus.close()
    delete_kafka_namespace(f"{kafka_url}?namespace={namespace}")  # its topics and groups, those of '.other' too


def poll_until(consumer: Consumer, count: int) -> list[Message]:
    received: list[Message] = []
    deadline = time.monotonic() + WAIT_S
    while len(received) < count and time.monotonic() < deadline:
        received += consumer.poll(max_messages=count - len(received), timeout_s=0.1)
    return received


def keyed(count: int) -> list[tuple[str | None, bytes]]:
    return [(str(i), f"m{i}".encode()) for i in range(count)]


def counter(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def test_work_topics_have_the_configured_partitions_and_other_topics_one(make_bus: MakeBus) -> None:
    bus = make_bus(partitions=4)
    bus.publish("sluice.ready.ingest", keyed(1))
    bus.publish("sluice.events", keyed(1))
    bus.publish("anything", keyed(1))
    assert bus.partition_count("sluice.ready.ingest") == 4
    assert bus.partition_count("sluice.events") == 1
    assert bus.partition_count("anything") == 1
    assert bus.partition_count("never.used") is None


def test_prepare_topics_learns_partition_counts_in_one_request_so_the_first_publish_asks_nothing(make_bus: MakeBus) -> None:
    writer = make_bus(partitions=3)
    writer.publish("sluice.ready.ingest", keyed(1))
    writer.publish("sluice.events", keyed(1))
    bus = make_bus()  # another process's client: it knows no topic yet
    asked: list[str | None] = []

    class Counting:  # the client's metadata requests, counted (a C object's methods cannot be replaced)
        def __init__(self, client: Any) -> None:
            self.client = client

        def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
            asked.append(topic)
            return self.client.list_topics(topic=topic, timeout=timeout)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.client, name)

    bus._util = Counting(bus._util)  # type: ignore[assignment]
    bus.prepare_topics(["sluice.ready.ingest", "sluice.events", "sluice.later"])
    assert asked == [None]  # one request, for every topic
    bus.publish("sluice.ready.ingest", keyed(2))
    bus.publish("sluice.events", keyed(2))
    assert asked == [None]  # the counts were known: no lookup on the way of a publish
    assert bus.partition_count("sluice.ready.ingest") == 3
    bus.prepare_topics(["sluice.ready.ingest", "sluice.later"])
    assert asked == [None]  # known, or found absent: not listed for again
    bus.publish("sluice.later", keyed(1))  # absent: its first publish creates it, as without prepare_topics
    assert bus.partition_count("sluice.later") == 1
    assert [m.value for m in bus.read("sluice.later")] == [b"m0"]


def test_a_multi_partition_work_topic_is_spread_among_the_consumers_of_a_group(make_bus: MakeBus) -> None:
    bus = make_bus(partitions=4)
    topic = "sluice.ready.ingest"
    bus.publish(topic, keyed(40))
    first = bus.consumer("workers.ingest", topic)
    second = make_bus(partitions=4).consumer("workers.ingest", topic)
    got: list[list[Message]] = [[], []]
    deadline = time.monotonic() + WAIT_S
    while len(got[0]) + len(got[1]) < 40 and time.monotonic() < deadline:
        for consumer, received in zip((first, second), got, strict=True):
            batch = consumer.poll(10, timeout_s=0.05)
            consumer.commit(batch)
            received += batch

    partitions = [{m.partition for m in received} for received in got]
    assert partitions[0] and partitions[1], "both members got partitions"
    assert not partitions[0] & partitions[1], "a partition is read by one member of the group"
    assert partitions[0] | partitions[1] == {0, 1, 2, 3}
    assert sorted(m.value for m in got[0] + got[1]) == sorted(v for _, v in keyed(40))
    assert bus.lag("workers.ingest", topic) == 0


def test_messages_of_a_member_that_closes_without_committing_go_to_another(make_bus: MakeBus) -> None:
    bus = make_bus()
    offsets = bus.publish("work", keyed(4))
    leaving = bus.consumer("g", "work")
    staying = make_bus().consumer("g", "work")
    held = poll_until(leaving, 4)
    leaving.commit(held[:1])
    assert staying.poll(timeout_s=0.2) == []

    leaving.close()
    again = poll_until(staying, 3)
    assert [(m.offset, m.deliveries) for m in again] == [(o, 2) for o in offsets[1:]]
    staying.commit(again)
    assert bus.lag("g", "work") == 0


DIES_HOLDING = textwrap.dedent(
    """
    import sys
    from sluice.bus.kafka import KafkaBus

    bus = KafkaBus(sys.argv[1], namespace=sys.argv[2], consumer_config={"session.timeout.ms": 6000})
    consumer = bus.consumer("g", "work")
    received = []
    while len(received) < 3:
        received += consumer.poll(3, timeout_s=1.0)
    print("holding", len(received), flush=True)
    sys.stdin.read()  # until the test kills this process
    """
)


def test_messages_of_a_member_that_dies_go_to_another_after_its_session_times_out(
    make_bus: MakeBus, kafka_url: str, namespace: str
) -> None:
    bus = make_bus()
    offsets = bus.publish("work", keyed(3))
    with subprocess.Popen(
        [sys.executable, "-c", DIES_HOLDING, kafka_url.removeprefix("kafka://"), namespace],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as dying:
        try:
            assert dying.stdout is not None
            assert dying.stdout.readline().split() == ["holding", "3"]
            survivor = make_bus(consumer_config={"session.timeout.ms": 6000}).consumer("g", "work")
            assert survivor.poll(timeout_s=0.5) == [], "the partition stays with its live member"
            dying.kill()
            again = poll_until(survivor, 3)
        finally:
            dying.kill()
    assert [m.offset for m in again] == offsets
    survivor.commit(again)
    assert bus.lag("g", "work") == 0


def test_holding_a_message_past_max_poll_interval_keeps_the_partition(make_bus: MakeBus) -> None:
    """The background thread keeps polling while the worker is busy, so the group does not rebalance."""
    settings = {"session.timeout.ms": 6000, "max.poll.interval.ms": 6000}
    bus = make_bus(consumer_config=settings)
    offsets = bus.publish("work", keyed(2))
    busy = bus.consumer("g", "work")
    other = make_bus(consumer_config=settings).consumer("g", "work")
    held = poll_until(busy, 1)
    revoked = counter(metrics.BUS_REBALANCES, "g", "revoke") + counter(metrics.BUS_REBALANCES, "g", "lost")

    time.sleep(7.5)  # longer than max.poll.interval.ms without calling poll()

    assert other.poll(timeout_s=0.5) == [], "the held message went to another member"
    busy.commit(held)
    rest = poll_until(busy, 1)
    assert [m.offset for m in held + rest] == offsets
    assert all(m.deliveries == 1 for m in held + rest)
    busy.commit(rest)
    assert bus.lag("g", "work") == 0
    after = counter(metrics.BUS_REBALANCES, "g", "revoke") + counter(metrics.BUS_REBALANCES, "g", "lost")
    assert after == revoked, "no partition was taken away"


def test_commits_out_of_order_move_the_group_to_the_end_of_the_completed_prefix(make_bus: MakeBus) -> None:
    bus = make_bus()
    bus.publish("work", keyed(5))
    consumer = bus.consumer("g", "work")
    received = poll_until(consumer, 5)
    consumer.commit([received[1], received[3]])
    assert bus.lag("g", "work") == 5, "offset 0 is not done: nothing can be committed"
    consumer.commit([received[0]])
    assert bus.lag("g", "work") == 3
    consumer.commit([received[4], received[2]])
    assert bus.lag("g", "work") == 0


def test_the_producer_is_idempotent_on_the_broker(make_bus: MakeBus) -> None:
    """The broker assigned the bus's producer an id: its retries cannot write a message twice."""
    stats: list[dict[str, Any]] = []
    bus = make_bus(config={"statistics.interval.ms": 100, "stats_cb": lambda text: stats.append(json.loads(text))})
    bus.publish("work", keyed(3))
    deadline = time.monotonic() + WAIT_S
    while not any(s.get("type") == "producer" and s["eos"]["producer_id"] >= 0 for s in stats):
        assert time.monotonic() < deadline, "no producer statistics with a producer id"
        time.sleep(0.1)
    eos = next(s["eos"] for s in reversed(stats) if s.get("type") == "producer")
    assert eos["idemp_state"] == "Assigned"
    assert [m.value for m in bus.read("work")] == [b"m0", b"m1", b"m2"]


def test_lag_per_partition(make_bus: MakeBus) -> None:
    bus = make_bus(partitions=3)
    topic = "sluice.ready.load"
    bus.publish(topic, keyed(30))
    per_partition = bus.lag_by_partition("g", topic)
    assert set(per_partition) == {0, 1, 2} and sum(per_partition.values()) == 30

    consumer = bus.consumer("g", topic)
    received = poll_until(consumer, 30)
    first_partition = [m for m in received if m.partition == 0]
    consumer.commit(first_partition)
    lags = bus.lag_by_partition("g", topic)
    assert lags == {0: 0, 1: per_partition[1], 2: per_partition[2]}
    assert counter(metrics.BUS_CONSUMER_LAG, "g", topic, "1") == per_partition[1]


def test_replay_needs_a_single_partition_topic(make_bus: MakeBus) -> None:
    bus = make_bus(partitions=2)
    bus.publish("sluice.ready.x", keyed(2))
    for call in (lambda: bus.read("sluice.ready.x"), lambda: bus.end_offset("sluice.ready.x")):
        with pytest.raises(BusError, match="2 partitions"):
            call()
    with pytest.raises(BusError, match="2 partitions"):
        bus.seek("g", "sluice.ready.x", 0)


def test_seek_before_the_group_joins(make_bus: MakeBus) -> None:
    bus = make_bus()
    offsets = bus.publish("sluice.events", keyed(5))
    bus.seek("coordinator.run", "sluice.events", offsets[3])
    assert bus.lag("coordinator.run", "sluice.events") == 2
    consumer = bus.consumer("coordinator.run", "sluice.events", exclusive=True)
    assert [m.offset for m in poll_until(consumer, 2)] == offsets[3:]


def test_namespaces_keep_projects_apart(make_bus: MakeBus, kafka_url: str) -> None:
    ours = make_bus()
    theirs = KafkaBus(kafka_url.removeprefix("kafka://"), namespace=f"{ours.namespace}.other")
    try:
        ours.publish("sluice.events", [("1", b"ours")])
        theirs.publish("sluice.events", [("1", b"theirs")])
        assert [m.value for m in ours.read("sluice.events")] == [b"ours"]
        assert [m.value for m in theirs.read("sluice.events")] == [b"theirs"]
        assert [m.topic for m in ours.read("sluice.events")] == ["sluice.events"]
    finally:
        theirs.close()


def test_publishing_from_many_threads_keeps_each_threads_order(make_bus: MakeBus) -> None:
    bus = make_bus()
    results: dict[int, list[int]] = {}

    def publish(thread: int) -> None:
        offsets: list[int] = []
        for batch in range(20):
            offsets += bus.publish("events", [("k", f"{thread}:{batch}:{i}".encode()) for i in range(5)])
        results[thread] = offsets

    threads = [threading.Thread(target=publish, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(offsets == sorted(offsets) for offsets in results.values())
    values = [m.value.decode() for m in bus.read("events", 0, 1000)]
    assert len(values) == len(set(values)) == 400
    for thread in range(4):
        mine = [v for v in values if v.startswith(f"{thread}:")]
        assert mine == [f"{thread}:{b}:{i}" for b in range(20) for i in range(5)]


@pytest.mark.parametrize("topic", ["sluice.events", "sluice.ready.ingest"])
def test_a_message_the_broker_refuses_fails_its_publication_wherever_it_is(make_bus: MakeBus, topic: str) -> None:
    # One partition: only the last message of a batch reports to Python, the others' errors are read then. Six
    # partitions: every message reports. Either way the waiter raises, and the publication counts as failed.
    bus = make_bus(config={"message.max.bytes": 3_000_000})  # the broker takes 1 MB at most: it refuses the second
    failed = counter(metrics.BUS_PRODUCE_ERRORS, topic)
    written = bus.publish_many_nowait([(topic, [("1", b"a"), ("2", b"x" * 2_000_000), ("3", b"c")])])
    with pytest.raises(BusError, match="Message size too large"):
        written()
    assert counter(metrics.BUS_PRODUCE_ERRORS, topic) == failed + 3
    produced = counter(metrics.BUS_MESSAGES_PRODUCED, topic)
    bus.publish_many_nowait([(topic, [("4", b"d"), ("5", b"e")])])()  # the next publication is not affected
    assert counter(metrics.BUS_MESSAGES_PRODUCED, topic) == produced + 2


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("kafka://", "not host:port"),
        ("kafka://127.0.0.1:notaport", "not host:port"),
        ("kafka://127.0.0.1:29092/path", "kafka://host:port"),
        ("kafka://127.0.0.1:29092?partition=3", "Did you mean 'partitions'"),
        ("kafka://127.0.0.1:29092?partitions=0", "partitions: expected int >= 1, got '0'"),
        ("kafka://127.0.0.1:29092?partitions=two", "partitions: expected int, got str"),
        ("kafka://127.0.0.1:29092?retention_days=week", "retention_days: expected float, got str"),
        ("kafka://127.0.0.1:29092?namespace=a/b", "namespace"),
        ("kafak://127.0.0.1:29092", "Did you mean 'kafka'"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_bus(url)


def test_urls_pick_servers_and_options() -> None:
    bus = open_bus("kafka://127.0.0.1:29092,localhost?partitions=3&retention_days=2&namespace=team-a")
    try:
        assert isinstance(bus, KafkaBus)
        assert bus.bootstrap == "127.0.0.1:29092,localhost:9092"
        assert (bus.partitions, bus.retention_ms, bus.namespace) == (3, 2 * 86_400_000, "team-a")
        assert bus.kafka_name("sluice.events") == "team-a.sluice.events"
    finally:
        bus.close()


def test_an_unreachable_broker_says_what_to_do() -> None:
    bus = open_bus("kafka://127.0.0.1:1")
    try:  # a user's message: what to do with their broker, not the project's test scripts
        with pytest.raises(BusError, match=r"127\.0\.0\.1:1.*start the broker, or point 'bus:' / --bus at a running one"):
            bus.ping()
    finally:
        bus.close()


def test_pkeys_publish_to_chosen_partitions_and_poll_one_partition(make_bus: MakeBus) -> None:
    """Change-data capture's partitioned topics: the publisher picks each batch's partition; a member polls one
    partition at a time, in offset order, while the others stay buffered for their own calls."""
    bus = make_bus()
    assert bus.create_topic("cdc", 3) == 3 and bus.create_topic("cdc", 5) == 3  # an existing topic keeps its count
    bus.publish_partitions([("cdc", 2, [("a", b"a0"), ("a", b"a1")]), ("cdc", 0, [("b", b"b0")]), ("cdc", 2, [("c", b"a2")])])
    with pytest.raises(BusError, match="partition 3"):
        bus.publish_partitions([("cdc", 3, [("x", b"x")])])
    assert [m.value for m in bus.read_partition("cdc", 2)] == [b"a0", b"a1", b"a2"]
    consumer = bus.consumer("g", "cdc")
    assert consumer.partitions() == [0, 1, 2]
    deadline = time.monotonic() + WAIT_S
    two: list[Message] = []
    while len(two) < 3 and time.monotonic() < deadline:
        two += consumer.poll_partition(2, 10, timeout_s=0.1)
    assert [(m.partition, m.value) for m in two] == [(2, b"a0"), (2, b"a1"), (2, b"a2")]
    assert consumer.poll_partition(1, 10) == []
    zero = consumer.poll_partition(0, 10, timeout_s=WAIT_S)
    assert [m.value for m in zero] == [b"b0"]
    consumer.commit(two[:2])
    assert consumer.position(2) == 2 and consumer.position(0) == 0


def test_pkeys_a_partition_nobody_polls_does_not_stop_the_others(make_bus: MakeBus, monkeypatch: Any) -> None:
    """Flow control is per partition: one partition left alone (apply holds it at a barrier) fills its share of
    the buffer and pauses, while another partition of the same member keeps flowing."""
    import sluice.bus.kafka_consumer as kc

    monkeypatch.setattr(kc, "BUFFER_MAX", 100)
    bus = make_bus()
    bus.create_topic("cdc", 2)
    bus.publish_partitions([("cdc", 0, [(None, b"held")] * 3000), ("cdc", 1, [(None, b"first")])])
    consumer = bus.consumer("g", "cdc")
    assert [m.value for m in consumer.poll_partition(1, 10, timeout_s=WAIT_S)] == [b"first"]
    bus.publish_partitions([("cdc", 1, [(None, f"later{i}".encode()) for i in range(300)])])
    later: list[Message] = []
    deadline = time.monotonic() + WAIT_S
    while len(later) < 300 and time.monotonic() < deadline:
        batch = consumer.poll_partition(1, 50, timeout_s=0.1)
        consumer.commit(batch)
        later += batch
    assert len(later) == 300, "partition 1 kept flowing while partition 0 was full"
    held = consumer.poll_partition(0, 3000, timeout_s=0.1)
    # Paused once full (100), at most one fetched batch (500) later: not the 3,000 there are.
    assert 0 < len(held) <= 600
