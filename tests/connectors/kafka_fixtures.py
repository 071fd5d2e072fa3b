"""Fixtures of the Kafka source's tests (test_kafka_source.py), also used by the consumer-group reset's
(test_kafka_groups.py, tests/runtime/test_state_reset.py): a topic of the test's own, a producer into it, a SQLite
state store."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sluice.state.sqlite import SqliteStateStore


@pytest.fixture
def topic(kafka_url: str) -> Iterator[str]:
    """A new topic with 3 partitions; it, its dead-letter topic and the test's consumer groups are deleted afterwards."""
    name = f"test-source-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": kafka_url.removeprefix("kafka://")})
    for future in admin.create_topics([NewTopic(name, 3, 1)], operation_timeout=10).values():
        future.result(timeout=10)
    wait_for_metadata(admin, name, 3)
    yield name
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(name)]
    for future in admin.delete_topics(names, operation_timeout=10).values():
        future.result(timeout=10)
    groups = [
        g.group_id for g in admin.list_consumer_groups().result(timeout=10).valid if name in g.group_id or "shop" in g.group_id
    ]
    for future in admin.delete_consumer_groups(groups, request_timeout=10).values() if groups else ():
        with contextlib.suppress(Exception):  # a group another test still uses
            future.result(timeout=10)


def wait_for_metadata(admin: AdminClient, name: str, partitions: int, timeout_s: float = 30.0) -> None:
    """Wait until the broker's metadata shows topic ``name`` with ``partitions`` partitions, each with a leader.
    CreateTopics returns once the controller made it; a broker (KRaft) answers metadata from its own cache, which a
    fresh broker brings up to date a little later: a test that looked at once found no topic (CI, a fresh server)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = admin.list_topics(name, timeout=10).topics.get(name)
        shown = [] if found is None or found.error is not None else list(found.partitions.values())
        if len(shown) == partitions and all(p.leader >= 0 for p in shown):
            return
        assert time.monotonic() < deadline, f"topic {name} not in the broker's metadata after {timeout_s:.0f} s"
        time.sleep(0.1)


Produce = Callable[[Sequence[bytes | None]], None]


@pytest.fixture
def produce(kafka_url: str, topic: str) -> Produce:
    producer = Producer({"bootstrap.servers": kafka_url.removeprefix("kafka://"), "acks": "all"})

    def send(values: Sequence[bytes | None]) -> None:
        for value in values:
            producer.produce(topic, value=value, key=None if value is None else value[:8])
        assert producer.flush(30) == 0

    return send


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStateStore]:
    opened = SqliteStateStore(tmp_path / "state.db")
    yield opened
    opened.close()


@contextlib.contextmanager
def member_of(bootstrap: str, group: str, topic: str) -> Iterator[None]:
    """A consumer subscribed to ``topic`` in ``group``, holding its partitions until the block ends: an active member."""
    member = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    member.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        assert member.assignment(), f"{group} got no partition of {topic} in 60 s"
        yield
    finally:
        member.close()
