"""The Bus contract, run over every backend.

A backend is one entry of ``BACKENDS``: a function of the test's request and temporary folder that returns
a factory of buses, each call opening a new client on the same shared log (as another process would).
Tests take unique topic names from the ``topic`` fixture (and names derived from it); on Kafka each test
also has a namespace of its own (named after its topic) for its consumer groups, and its topics are deleted
afterwards.
Message offsets are only assumed to increase within a topic and key, and a message is identified by its
(partition, offset), as in Kafka.

Leases differ: the embedded bus gives a message whose consumer stalls to another consumer once its lease
runs out; Kafka has no per-message lease, a message comes back once its consumer leaves the group (closes,
or stops heartbeating). Tests of lease expiry run on ``LEASE_BACKENDS`` only; tests/bus/test_kafka.py
covers Kafka's side.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sluice.bus.base import Bus, Consumer, Message
from sluice.bus.embedded import EmbeddedBus

BusFactory = Callable[[], Bus]


def kafka_backend(request: pytest.FixtureRequest, tmp_path: Path) -> BusFactory:
    from sluice.bus.registry import open_bus

    # Each test in a namespace of its own, deleted after it: its consumer groups do not meet those of other tests.
    url = str(request.getfixturevalue("kafka_ns_url"))
    return lambda: open_bus(url)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], BusFactory]] = {
    "embedded": lambda request, tmp_path: lambda: EmbeddedBus(tmp_path / "bus.db"),
    "kafka": kafka_backend,
}
LEASE_BACKENDS = ["embedded"]
lease_backends_only = pytest.mark.parametrize("bus_factory", LEASE_BACKENDS, indirect=True)

WAIT_S = 20.0  # upper bound for waits that should end much sooner; never reached when the bus works
SHORT_LEASE_S = 0.3


@pytest.fixture(params=[pytest.param(name, marks=[pytest.mark.kafka] if name == "kafka" else []) for name in sorted(BACKENDS)])
def bus_factory(request: pytest.FixtureRequest, tmp_path: Path, topic: str) -> Iterator[BusFactory]:
    """Opens buses on one shared log; all of them are closed after the test (on Kafka, its namespace then deleted)."""
    make = BACKENDS[request.param](request, tmp_path)
    opened: list[Bus] = []

    def open_bus() -> Bus:
        bus = make()
        opened.append(bus)
        return bus

    yield open_bus
    for bus in opened:
        bus.close()  # before kafka_ns_url's teardown deletes the namespace (a group with members cannot be)


@pytest.fixture
def bus(bus_factory: BusFactory) -> Bus:
    return bus_factory()


@pytest.fixture
def topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def messages(count: int, key: str | None = "k", prefix: str = "m") -> list[tuple[str | None, bytes]]:
    return [(key, f"{prefix}{i}".encode()) for i in range(count)]


def poll_until(consumer: Consumer, count: int, max_messages: int = 500) -> list[Message]:
    """Poll until ``count`` messages arrived (or WAIT_S passed: then the caller's assertion fails)."""
    received: list[Message] = []
    deadline = time.monotonic() + WAIT_S
    while len(received) < count and time.monotonic() < deadline:
        received += consumer.poll(max_messages=min(max_messages, count - len(received)), timeout_s=0.1)
    return received


def values(received: list[Message]) -> list[bytes]:
    return [m.value for m in received]


def test_publish_returns_increasing_offsets_and_keeps_order(bus: Bus, topic: str) -> None:
    first = bus.publish(topic, messages(3))
    second = bus.publish(topic, [("k", b"m3")])
    offsets = first + second
    assert offsets == sorted(offsets) and len(set(offsets)) == 4

    replay = bus.read(topic)
    assert [m.offset for m in replay] == offsets
    assert values(replay) == [b"m0", b"m1", b"m2", b"m3"]
    assert {(m.topic, m.partition) for m in replay} == {(topic, replay[0].partition)}
    assert bus.publish(topic, []) == []


def test_keys_and_values_are_kept(bus: Bus, topic: str) -> None:
    sent: list[tuple[str | None, bytes]] = [("42", b"\x00\xff binary"), (None, b"no key"), ("é", b"")]
    bus.publish(topic, sent)
    assert [(m.key, m.value) for m in bus.read(topic)] == sent
    received = poll_until(bus.consumer("g", topic), 3)
    assert sorted((m.key or "", m.value) for m in received) == sorted((k or "", v) for k, v in sent)


def test_read_replays_from_any_offset(bus: Bus, topic: str) -> None:
    bus.publish(f"{topic}.other", messages(2, prefix="other"))
    offsets = bus.publish(topic, messages(5))
    bus.publish(f"{topic}.other", messages(2, prefix="other"))

    assert values(bus.read(topic)) == [f"m{i}".encode() for i in range(5)]
    assert [m.offset for m in bus.read(topic, from_offset=offsets[2])] == offsets[2:]
    assert [m.offset for m in bus.read(topic, from_offset=offsets[1], max_messages=2)] == offsets[1:3]
    assert bus.read(topic, from_offset=bus.end_offset(topic)) == []
    assert bus.read(f"{topic}.never") == []


def test_publish_many_publishes_to_several_topics(bus: Bus, topic: str) -> None:
    bus.publish_many(
        [
            (f"{topic}.a", messages(2, prefix="a")),
            (f"{topic}.b", messages(3, prefix="b")),
            (f"{topic}.c", []),
            (f"{topic}.a", [("k", b"a2")]),
        ]
    )
    assert values(bus.read(f"{topic}.a")) == [b"a0", b"a1", b"a2"]
    assert values(bus.read(f"{topic}.b")) == [b"b0", b"b1", b"b2"]
    assert bus.read(f"{topic}.c") == []
    assert bus.end_offset(f"{topic}.c") == 0
    bus.publish_many([])


def test_publish_many_nowait_keeps_the_order_of_publications_and_their_waiters_return_once_written(bus: Bus, topic: str) -> None:
    waiters = [
        bus.publish_many_nowait([(f"{topic}.a", [("k", b"a0")]), (f"{topic}.b", [("k", b"b0")])]),
        bus.publish_many_nowait([(f"{topic}.a", [("k", b"a1"), ("k", b"a2")])]),
        bus.publish_many_nowait([]),
    ]
    for wait in waiters:
        wait()
    assert values(bus.read(f"{topic}.a")) == [b"a0", b"a1", b"a2"]
    assert values(bus.read(f"{topic}.b")) == [b"b0"]


def test_end_offset(bus: Bus, topic: str) -> None:
    assert bus.end_offset(topic) == 0
    offsets = bus.publish(topic, messages(3))
    end = bus.end_offset(topic)
    assert end > offsets[-1]
    bus.publish(f"{topic}.other", messages(2))
    assert bus.end_offset(topic) == end
    assert bus.publish(topic, messages(1))[0] >= end


def test_prepare_topics_of_existing_and_missing_topics_changes_nothing_a_publish_does(bus: Bus, topic: str) -> None:
    bus.publish(topic, [("k", b"a")])
    missing = topic + ".prepared"
    bus.prepare_topics([topic, missing])  # never raises, whether the topic exists or not
    bus.publish(topic, [("k", b"b")])
    bus.publish(missing, [("k", b"c")])  # created by its first publish, as without prepare_topics
    assert [m.value for m in bus.read(topic)] == [b"a", b"b"]
    assert [m.value for m in bus.read(missing)] == [b"c"]


def test_a_group_delivers_each_message_to_exactly_one_of_its_consumers(bus_factory: BusFactory, topic: str) -> None:
    total = 200
    publisher = bus_factory()
    publisher.publish(topic, [(str(i % 7), str(i).encode()) for i in range(total)])
    consumers = [bus_factory().consumer("workers", topic), bus_factory().consumer("workers", topic)]
    got: list[list[bytes]] = [[], []]
    lock = threading.Lock()
    done = threading.Event()

    def work(index: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while not done.is_set() and time.monotonic() < deadline:
            batch = consumers[index].poll(max_messages=5, timeout_s=0.05)
            consumers[index].commit(batch)
            with lock:
                got[index] += values(batch)
                if len(got[0]) + len(got[1]) >= total:
                    done.set()

    threads = [threading.Thread(target=work, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    first, second = got
    assert not set(first) & set(second), "a message went to both consumers of the group"
    assert sorted(first + second) == sorted(str(i).encode() for i in range(total)), "a message was lost or repeated"
    assert publisher.lag("workers", topic) == 0


def test_consumers_of_a_group_share_the_work(bus: Bus, topic: str) -> None:
    # Kafka shares a topic by partitions and places messages by key: two partitions, twenty keys
    # (ten land on each partition).
    bus.create_topic(topic, partitions=2)
    bus.publish(topic, [(str(i), f"m{i}".encode()) for i in range(20)])
    first, second = bus.consumer("g", topic), bus.consumer("g", topic)
    a = poll_until(first, 5, max_messages=5)
    b = poll_until(second, 5, max_messages=5)
    assert len(a) == len(b) == 5
    assert not {(m.partition, m.offset) for m in a} & {(m.partition, m.offset) for m in b}


def test_separate_groups_each_get_every_message(bus_factory: BusFactory, topic: str) -> None:
    bus_factory().publish(topic, messages(10))
    for group in ("billing", "audit"):
        consumer = bus_factory().consumer(group, topic)
        received = poll_until(consumer, 10)
        consumer.commit(received)
        assert values(received) == [f"m{i}".encode() for i in range(10)]
        assert all(m.deliveries == 1 for m in received)


def test_a_committed_message_is_not_delivered_again(bus: Bus, topic: str) -> None:
    bus.publish(topic, messages(3))
    first = bus.consumer("g", topic, lease_s=SHORT_LEASE_S)
    received = poll_until(first, 3)
    first.commit(received)
    first.close()

    second = bus.consumer("g", topic, lease_s=SHORT_LEASE_S)
    assert second.poll(timeout_s=3 * SHORT_LEASE_S) == []
    assert bus.lag("g", topic) == 0


@lease_backends_only
def test_an_uncommitted_message_is_redelivered_after_its_lease_expires(bus_factory: BusFactory, topic: str) -> None:
    bus = bus_factory()
    offsets = bus.publish(topic, messages(2))
    stalled = bus.consumer("g", topic, lease_s=SHORT_LEASE_S)
    assert [m.offset for m in poll_until(stalled, 2)] == offsets

    other = bus_factory().consumer("g", topic, lease_s=SHORT_LEASE_S)
    again = poll_until(other, 2)
    assert [(m.offset, m.deliveries) for m in again] == [(offsets[0], 2), (offsets[1], 2)]
    other.commit(again)
    assert bus.lag("g", topic) == 0


def test_extend_keeps_a_lease_alive_past_its_original_expiry(bus: Bus, topic: str) -> None:
    lease_s = 1.0
    bus.publish(topic, messages(1))
    holder = bus.consumer("g", topic, lease_s=lease_s)
    other = bus.consumer("g", topic, lease_s=lease_s)
    held = poll_until(holder, 1)
    polled_at = time.monotonic()

    time.sleep(0.7 * lease_s)
    holder.extend(held)
    time.sleep(max(0.0, polled_at + 1.3 * lease_s - time.monotonic()))  # past the lease taken at poll time
    assert other.poll(timeout_s=0.0) == [], "the message was redelivered although its lease was extended"


@lease_backends_only
def test_a_lease_no_longer_extended_runs_out(bus: Bus, topic: str) -> None:
    lease_s = 1.0
    bus.publish(topic, messages(1))
    holder = bus.consumer("g", topic, lease_s=lease_s)
    other = bus.consumer("g", topic, lease_s=lease_s)
    held = poll_until(holder, 1)
    time.sleep(0.7 * lease_s)
    holder.extend(held)
    assert other.poll(timeout_s=0.5 * lease_s) == []

    again = poll_until(other, 1)
    assert [(m.offset, m.deliveries) for m in again] == [(held[0].offset, 2)]


def test_close_makes_uncommitted_messages_available_at_once(bus: Bus, topic: str) -> None:
    offsets = bus.publish(topic, messages(3))
    leaving = bus.consumer("g", topic, lease_s=600.0)
    staying = bus.consumer("g", topic, lease_s=600.0)
    received = poll_until(leaving, 3)
    leaving.commit(received[:1])
    assert staying.poll(timeout_s=0.0) == []
    leaving.close()

    # The lease is ten minutes: only close can have released the two uncommitted messages.
    again = poll_until(staying, 2)
    assert [(m.offset, m.deliveries) for m in again] == [(offsets[1], 2), (offsets[2], 2)]


def test_seek_replays_for_a_group(bus: Bus, topic: str) -> None:
    offsets = bus.publish(topic, messages(5))
    consumer = bus.consumer("g", topic)
    consumer.commit(poll_until(consumer, 5))
    assert bus.lag("g", topic) == 0

    bus.seek("g", topic, offsets[2])
    assert bus.lag("g", topic) == 3
    replayed = poll_until(consumer, 3)
    assert [m.offset for m in replayed] == offsets[2:]
    consumer.commit(replayed)

    other_group = bus.consumer("other", topic)
    assert len(poll_until(other_group, 5)) == 5, "seek of one group does not move another"


def test_lag_counts_unread_and_uncommitted_messages(bus: Bus, topic: str) -> None:
    assert bus.lag("g", topic) == 0
    bus.publish(topic, messages(5))
    assert bus.lag("g", topic) == 5
    consumer = bus.consumer("g", topic)
    taken = poll_until(consumer, 2, max_messages=2)
    assert bus.lag("g", topic) == 5
    consumer.commit(taken[:1])
    assert bus.lag("g", topic) == 4
    rest = poll_until(consumer, 3)
    consumer.commit([*taken[1:], *rest])
    assert bus.lag("g", topic) == 0
    assert bus.lag("another group", topic) == 5


def test_poll_wakes_up_when_another_thread_publishes(bus_factory: BusFactory, topic: str) -> None:
    bus = bus_factory()
    consumer = bus.consumer("g", topic)
    assert consumer.poll(timeout_s=0.0) == []
    publisher = threading.Timer(0.2, lambda: bus.publish(topic, [("k", b"wake up")]))
    publisher.start()
    try:
        received = consumer.poll(timeout_s=60.0)
    finally:
        publisher.join()
    assert values(received) == [b"wake up"]


def test_ping(bus: Bus) -> None:
    bus.ping()


def test_exclusive_consumer_commits_offsets_in_order(bus_factory: BusFactory, topic: str) -> None:
    bus = bus_factory()
    bus.publish(topic, messages(5))
    first = bus.consumer("solo", topic, exclusive=True)
    received = poll_until(first, 5)
    assert values(received) == [f"m{i}".encode() for i in range(5)]
    assert first.poll(10) == []  # nothing delivered twice to the same consumer
    first.commit(received[:3])
    first.close()
    assert bus.lag("solo", topic) == 2
    again = bus_factory().consumer("solo", topic, exclusive=True)
    assert values(poll_until(again, 2)) == [b"m3", b"m4"]


def test_committed_is_the_first_offset_a_group_has_not_committed(bus: Bus, topic: str) -> None:
    offsets = bus.publish(topic, messages(4))
    assert bus.committed("g", topic) is None
    shared = bus.consumer("g", topic)
    taken = poll_until(shared, 4)
    shared.commit(taken[:2])
    assert bus.committed("g", topic) == offsets[1] + 1
    shared.commit(taken[2:])
    assert bus.committed("g", topic) == offsets[3] + 1
    solo = bus.consumer("solo", topic, exclusive=True)
    solo.commit(poll_until(solo, 4)[:3])
    assert bus.committed("solo", topic) == offsets[2] + 1


def test_publish_and_commit(bus: Bus, topic: str) -> None:
    bus.publish(topic, messages(2))
    consumer = bus.consumer("g", topic)
    received = poll_until(consumer, 2)
    out = f"{topic}-out"
    bus.publish_and_commit(out, messages(1, prefix="answer"), consumer, received[:1])
    assert values(bus.read(out)) == [b"answer0"]
    assert bus.lag("g", topic) == 1
