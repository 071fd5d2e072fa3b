"""``sluice state reset``'s library side (runtime/state_reset.py) against the real broker: a batch Kafka object reads
its topic again from the start, a group in use or an unreachable broker resets nothing, streaming objects are left
as they are (their offsets are in the lake with their files)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.kafka_fixtures import Produce, member_of
from connectors.test_kafka_source import PROJECT, orders, run
from helpers import load, write_yaml
from sluice.connectors.kafka_groups import GroupResetError
from sluice.lake.local import LocalLake
from sluice.project.model import Project, layer_of
from sluice.runtime.execute import ObjectExecutor
from sluice.runtime.state_reset import StreamingReset, reset_state
from sluice.state.sqlite import SqliteStateStore
from sluice.streaming.loop import run_stream
from sluice.urls import kafka_servers
from streaming.streams import MakeTopic, write_project
from streaming.streams import produce as produce_records

pytestmark = pytest.mark.kafka

INFERRED = "      columns: [_partition, _offset]"


def shop(tmp_path: Path, url: str, topic: str, options: str = INFERRED) -> Project:
    """test_kafka_source's project under a name of the test's own: its default group, sluice.<name>.1001, is too
    (the topic fixture deletes groups whose name holds the topic's)."""
    text = PROJECT.format(url=url, topic=topic, options=options).replace("name: shop", f"name: shop-{topic}")
    return load(write_yaml(tmp_path / "shop", text).parent)


def ran(tmp_path: Path, url: str, topic: str, produce: Produce, store: SqliteStateStore, count: int) -> tuple[Project, str]:
    """:func:`shop` after ``count`` records were produced and read by a run; and its consumer group."""
    project = shop(tmp_path, url, topic)
    produce(orders(0, count))
    assert run(project, store).num_rows == count
    return project, f"sluice.shop-{topic}.1001"


def committed(url: str, group: str) -> dict[tuple[str, int], int]:
    admin = AdminClient({"bootstrap.servers": kafka_servers(url)})
    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(timeout=30)
    return {(tp.topic, tp.partition): tp.offset for tp in listed.topic_partitions if tp.offset >= 0}


def test_a_reset_kafka_object_reads_its_topic_again_from_the_start_and_replaces_its_output(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    project, group = ran(tmp_path, kafka_url, topic, produce, store, 10)
    assert run(project, store).num_rows == 10  # nothing new
    held = committed(kafka_url, group)
    assert sum(held.values()) == 10 and 1001 in store.source_cursors(project.name)

    done = reset_state(project, store, [1001])

    assert done.cursors == [1001] and done.streaming == []
    [reset] = done.groups
    assert (reset.group, reset.topic, reset.label, reset.start) == (group, topic, "object 1001 (orders)", "earliest")
    assert reset.offsets == {p: o for (_, p), o in sorted(held.items())}
    assert committed(kafka_url, group) == {} and store.source_cursors(project.name) == {}
    lake = LocalLake(project.root / "lake")
    outcome = ObjectExecutor(project, lake, store).run(project.objects[1001], f"r{uuid.uuid4().hex[:6]}", {})
    assert outcome.rows == 10 and not outcome.accumulated  # read again from the start, the output replaced
    assert outcome.location is not None
    assert sorted(lake.read(outcome.location).read_all().column("id").to_pylist()) == list(range(10))
    assert reset_state(project, store, [1001]).groups[0].offsets == {p: o for (_, p), o in sorted(held.items())}
    assert reset_state(project, store, [1001]).groups[0].offsets == {}  # once more: nothing left, nothing refused


def test_a_group_with_an_active_member_is_refused_and_nothing_is_reset(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    project, group = ran(tmp_path, kafka_url, topic, produce, store, 5)
    with member_of(kafka_servers(kafka_url), group, topic), pytest.raises(GroupResetError) as refused:
        reset_state(project, store, [1001])
    message = str(refused.value)
    assert message.startswith(f"object 1001 (orders): consumer group '{group}' has 1 active member(s)")
    assert "stop the running object" in message and "\n" not in message
    assert sum(committed(kafka_url, group).values()) == 5 and 1001 in store.source_cursors(project.name)


def test_a_group_that_also_holds_another_topics_offsets_is_not_deleted(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    group = f"shared-{topic}"
    project = shop(tmp_path, kafka_url, topic, f"{INFERRED}\n      group: {group}")
    produce(orders(0, 3))
    run(project, store)
    other = f"{topic}.dead-letter"  # the topic fixture deletes it afterwards
    admin = AdminClient({"bootstrap.servers": kafka_servers(kafka_url)})
    admin.create_topics([NewTopic(other, 1, 1)])[other].result(timeout=30)
    consumer = Consumer({"bootstrap.servers": kafka_servers(kafka_url), "group.id": group})
    consumer.commit(offsets=[TopicPartition(other, 0, 0)], asynchronous=False)
    consumer.close()
    with pytest.raises(GroupResetError, match=rf"also holds offsets of topic\(s\) {other}, .*give the object a group of its own"):
        reset_state(project, store, [1001])
    assert (other, 0) in committed(kafka_url, group) and 1001 in store.source_cursors(project.name)


def test_an_unreachable_broker_is_one_line_and_resets_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: SqliteStateStore
) -> None:
    monkeypatch.setattr("sluice.bus.kafka_common.REQUEST_TIMEOUT_S", 2.0)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    project = shop(tmp_path, f"kafka://127.0.0.1:{port}", "orders")
    store.save_source_cursor(project.name, 1001, json.dumps({"schema": "00"}), time.time())
    with pytest.raises(GroupResetError) as failed:
        reset_state(project, store, None)
    message = str(failed.value)
    assert message.startswith(f"object 1001 (orders): cannot reach Kafka at 127.0.0.1:{port} to reset consumer group")
    assert "nothing was reset: start the broker or fix connection 'events'" in message and "\n" not in message
    assert 1001 in store.source_cursors(project.name)


def test_streaming_objects_are_refused_by_name_and_left_as_they_are_by_all(
    tmp_path: Path, kafka_url: str, topics: MakeTopic, store: SqliteStateStore
) -> None:
    streamed, batch = topics(), topics()
    batch_object = {"id": 1002, "name": "batch", "source": {"type": "kafka", "connection": "events", "topic": batch}}
    project = load(write_project(tmp_path / "streams", kafka_url, streamed, extra_objects=[batch_object]).parent)
    produce_records(kafka_url, streamed, range(7))
    lake = LocalLake(tmp_path / "lake")
    run_stream(project, 1001, lake=lake, until=lambda status: status.records >= 7)
    before = lake.last_commit(layer_of(project, project.objects[1001]), "events")
    assert before is not None and before["offsets"] == {streamed: {"0": 7}}

    with pytest.raises(StreamingReset) as refused:
        reset_state(project, store, [1002, 1001])
    message = str(refused.value)
    assert message.startswith("object 1001 (events) is a streaming object: its offsets are committed with its lake files")
    assert f"remove its output from the lake (the folder {layer_of(project, project.objects[1001])}/events)" in message

    done = reset_state(project, store, None)
    assert [obj.id for obj in done.streaming] == [1001]
    assert [g.group for g in done.groups] == [f"sluice.{project.name}.1002"]  # the batch object's only
    assert lake.last_commit(layer_of(project, project.objects[1001]), "events") == before
