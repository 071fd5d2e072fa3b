"""The outbox publishes outcomes with their commits, and retries a failed bus write instead of losing it."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from servers_fixtures import delete_kafka_namespace
from sluice import events as ev
from sluice.bus.base import Consumer, Message
from sluice.bus.embedded import EmbeddedBus
from sluice.bus.kafka import KafkaBus
from sluice.bus.names import DEAD_LETTER_TOPIC
from sluice.errors import BusError
from sluice.runtime.outbox import Outbox


class FlakyBus(EmbeddedBus):
    """The embedded bus whose first ``failures`` publish-and-commit calls fail like a locked database."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    def publish_and_commit(
        self, topic: str, messages: Sequence[tuple[str | None, bytes]], consumer: Consumer, settled: Sequence[Message]
    ) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        super().publish_and_commit(topic, messages, consumer, settled)


def test_a_failed_write_is_retried_in_order(tmp_path: Path) -> None:
    bus = FlakyBus(tmp_path / "bus.db", failures=2)
    bus.publish("work", [("1", b"job")])
    consumer = bus.consumer("g", "work")
    job = consumer.poll(1)
    committed: list[Message] = []
    outbox = Outbox(bus, consumer, on_committed=committed.extend)
    started = ev.ObjectStarted(run_id="r", object_id=1, stage="ingest")
    loaded = ev.ObjectLoaded(run_id="r", object_id=1, stage="ingest", rows=3)
    outbox.send([started, loaded], job)
    deadline = time.monotonic() + 20
    while not committed and time.monotonic() < deadline:
        time.sleep(0.02)
    outbox.close()
    assert bus.failures == 0
    assert committed == job
    published = [ev.decode(m.value) for m in bus.read(ev.EVENTS_TOPIC)]
    assert published == [started, loaded]
    assert bus.lag("g", "work") == 0
    bus.close()


class BackgroundBus(EmbeddedBus):
    """The embedded bus made to write like Kafka (``writes_in_background``): ``publish_many_nowait`` returns at once
    and the write happens when its waiter runs, once ``gate`` is set; the first ``failures`` writes fail."""

    writes_in_background = True

    def __init__(self, path: Path, failures: int = 0) -> None:
        super().__init__(path)
        self.failures = failures
        self.gate = threading.Event()
        self.handed: list[list[bytes]] = []  # the values of each write handed over, in order

    def publish_many_nowait(
        self, batches: Sequence[tuple[str, Sequence[tuple[str | None, bytes]]]], *, own_group: str | None = None
    ) -> Callable[[], None]:
        self.handed.append([value for _, messages in batches for _, value in messages])
        failing = self.failures > 0
        self.failures -= failing

        def written() -> None:
            self.gate.wait(20)
            if failing:
                raise BusError("Kafka did not acknowledge 1 message in time")
            self.publish_many(batches)

        return written


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 20
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_at_once_events_go_to_the_bus_in_the_senders_thread_and_are_committed_once_written(tmp_path: Path) -> None:
    bus = BackgroundBus(tmp_path / "bus.db")
    bus.publish("work", [("1", b"job1"), ("2", b"job2")])
    consumer = bus.consumer("g", "work")
    jobs = consumer.poll(2)
    committed: list[Message] = []
    outbox = Outbox(bus, consumer, on_committed=committed.extend)
    assert outbox.at_once
    first = ev.ObjectLoaded(run_id="r", object_id=1, stage="ingest")
    second = ev.ObjectLoaded(run_id="r", object_id=2, stage="ingest")
    outbox.send([first], jobs[:1])
    outbox.send([second], jobs[1:])
    # Both writes were handed to the bus by send itself, the second without waiting for the first.
    assert bus.handed == [[ev.encode(first)], [ev.encode(second)]]
    time.sleep(0.1)  # the outbox thread is waiting for the writes: nothing may be committed yet
    assert committed == []
    assert bus.lag("g", "work") == 2
    bus.gate.set()
    wait_until(lambda: len(committed) == 2)
    outbox.close()
    assert committed == jobs
    assert [ev.decode(m.value) for m in bus.read(ev.EVENTS_TOPIC)] == [first, second]
    assert bus.lag("g", "work") == 0
    bus.close()


def test_at_once_a_failed_write_is_published_again_first_and_only_then_committed(tmp_path: Path) -> None:
    bus = BackgroundBus(tmp_path / "bus.db", failures=1)
    bus.publish("work", [("1", b"job1"), ("2", b"job2"), ("3", b"job3"), ("4", b"job4")])
    consumer = bus.consumer("g", "work")
    jobs = consumer.poll(4)
    committed: list[Message] = []
    outbox = Outbox(bus, consumer, on_committed=committed.extend)
    started = ev.ObjectStarted(run_id="r", object_id=1, stage="ingest")
    loaded = ev.ObjectLoaded(run_id="r", object_id=1, stage="ingest")
    other = ev.ObjectLoaded(run_id="r", object_id=2, stage="ingest")
    third = ev.ObjectLoaded(run_id="r", object_id=3, stage="ingest")
    outbox.send([started], [])  # this write fails
    outbox.send([other], jobs[1:2])  # another object, handed over before the failure is known: written
    outbox.send([loaded], jobs[:1])  # object 1 has a write unacknowledged: queued behind it, not handed over
    assert len(bus.handed) == 2
    bus.gate.set()
    wait_until(lambda: len(committed) == 2)
    assert sorted(committed) == jobs[:2]
    outbox.send([third], jobs[2:3])  # after the retry: at once again
    outbox.dead_letter(jobs[3], "not an ObjectReady", "g")
    wait_until(lambda: len(committed) == 4)
    outbox.close()
    assert len(bus.handed) == 4, "the failed write went out again from the outbox thread, not through the nowait path"
    # One object's events stay in the order they were sent, though the first write failed.
    assert [ev.decode(m.value) for m in bus.read(ev.EVENTS_TOPIC)] == [other, started, loaded, third]
    assert len(bus.read(DEAD_LETTER_TOPIC)) == 1
    assert bus.lag("g", "work") == 0
    bus.close()


def test_the_embedded_bus_is_batched(tmp_path: Path) -> None:
    bus = EmbeddedBus(tmp_path / "bus.db")
    consumer = bus.consumer("g", "work")
    outbox = Outbox(bus, consumer)
    assert not outbox.at_once
    plain = Outbox(bus)
    assert not plain.at_once  # no consumer: nothing to commit, batched
    outbox.close()
    plain.close()
    bus.close()


@pytest.mark.kafka
def test_at_once_on_kafka_a_refused_write_is_retried_in_order_then_committed(kafka_url: str, monkeypatch: Any) -> None:
    bus = KafkaBus(kafka_url.removeprefix("kafka://"), namespace=f"test-{uuid.uuid4().hex[:12]}")
    try:
        bus.publish("work", [(str(i), f"job{i}".encode()) for i in range(3)])
        consumer = bus.consumer("g", "work")
        jobs = poll_until(consumer, 3)
        committed: list[Message] = []
        outbox = Outbox(bus, consumer, on_committed=committed.extend)
        assert outbox.at_once
        start = bus._start
        refusals = [BusError("reading the metadata of topic 'sluice.events' on Kafka failed")]

        def refusing(*args: Any, **kwargs: Any) -> Any:
            if refusals:
                raise refusals.pop()
            return start(*args, **kwargs)

        monkeypatch.setattr(bus, "_start", refusing)
        events = [ev.ObjectLoaded(run_id="r", object_id=i, stage="ingest", rows=i) for i in range(3)]
        for event, job in zip(events, jobs, strict=True):
            outbox.send([event], [job])
        wait_until(lambda: len(committed) == 3)
        outbox.close()
        assert sorted(committed) == jobs
        assert [ev.decode(m.value) for m in bus.read(ev.EVENTS_TOPIC)] == events
        assert bus.lag("g", "work") == 0
    finally:
        bus.close()
        delete_kafka_namespace(f"{kafka_url}?namespace={bus.namespace}")


def poll_until(consumer: Consumer, count: int) -> list[Message]:
    received: list[Message] = []
    deadline = time.monotonic() + 30
    while len(received) < count and time.monotonic() < deadline:
        received += consumer.poll(count - len(received), timeout_s=0.1)
    return received
