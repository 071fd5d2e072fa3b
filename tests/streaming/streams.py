"""Helpers of the streaming-object tests: topics of their own on the real broker, a producer, a project file.

``topics`` (fixture) gives a function making uniquely named topics, deleted after the test; ``produce`` writes
JSON records ``{"id": i, "user": ..., "amount": ..., "ts": ...}`` (and raw bytes for malformed ones);
``write_project`` writes a sluice.yaml with one streaming object reading those topics into the lake.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from sluice.urls import kafka_servers

MakeTopic = Callable[..., str]


@pytest.fixture
def topics(kafka_url: str) -> Iterator[MakeTopic]:
    """``make(partitions=1)``: a new topic named ``sluice-test-stream-<hex>``; every one (and its dead letters) deleted after."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": kafka_servers(kafka_url)})
    made: list[str] = []

    def make(partitions: int = 1) -> str:
        name = f"sluice-test-stream-{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(timeout=30)
        made.append(name)
        return name

    yield make
    present = set(admin.list_topics(timeout=10).topics)
    doomed = [t for t in present if any(t.startswith(name) for name in made)]
    if doomed:
        for future in admin.delete_topics(doomed, operation_timeout=10).values():
            future.result()


def record(i: int) -> bytes:
    """Record ``i``: about 110 bytes of JSON with an event time ``ts`` (one a second from 2026-11-30T00:00:00Z)."""
    return json.dumps(
        {
            "id": i,
            "user": f"u{i % 97}",
            "amount": round(i * 0.25, 2),
            "ts": f"2026-11-30T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z",
        }
    ).encode()


def produce(
    kafka_url: str, topic: str, ids: Sequence[int] | range, *, malformed: Sequence[bytes] = (), partitions: int = 1
) -> None:
    """Write records ``ids`` (key: the id, spread over ``partitions``) then the ``malformed`` values; wait for acks."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": kafka_servers(kafka_url), "linger.ms": 20, "queue.buffering.max.messages": 2_000_000}
    )
    for i in ids:
        producer.produce(topic, record(i), key=str(i).encode(), partition=i % partitions)
        if i % 10_000 == 0:
            producer.poll(0)
    for value in malformed:
        producer.produce(topic, value, partition=0)
    assert producer.flush(60) == 0


def write_project(
    root: Path,
    kafka_url: str,
    topic: str | list[str],
    *,
    streaming: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    lake: Any = None,
    extra_objects: Sequence[dict[str, Any]] = (),
) -> Path:
    """A sluice.yaml in ``root`` with streaming object 1001 ``events`` reading ``topic``; its path."""
    root.mkdir(parents=True, exist_ok=True)
    obj = {
        "id": 1001,
        "name": "events",
        "source": {"type": "kafka", "connection": "events", "topic": topic, **(source or {})},
        "streaming": streaming or {"trigger": {"interval": "200ms"}},
    }
    project: dict[str, Any] = {
        "name": "streams",
        "connections": {"events": kafka_url},
        "objects": [obj, *extra_objects],
    }
    if lake is not None:
        project["lake"] = lake
    path = root / "sluice.yaml"
    path.write_text(json.dumps(project, indent=2))
    return path
