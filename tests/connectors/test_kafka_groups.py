"""Deleting a batch Kafka source's consumer group (connectors/kafka_groups.py) against the real broker: what the
group held, a deletion done twice, and a member that joined after the check (the broker's NON_EMPTY_GROUP)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.kafka_fixtures import member_of
from sluice.connectors.kafka_groups import GroupResetError, KafkaGroup, delete_groups, inspect_groups
from sluice.urls import kafka_servers

pytestmark = pytest.mark.kafka


@pytest.fixture
def group(kafka_url: str, topic: str) -> Iterator[KafkaGroup]:
    """A group holding offsets 4 and 6 of partitions 0 and 2 of ``topic`` (test_kafka_source's topic fixture, which
    deletes the groups whose names hold the topic's)."""
    bootstrap = kafka_servers(kafka_url)
    name = f"reset-{topic}-{uuid.uuid4().hex[:6]}"
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": name, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 4), TopicPartition(topic, 2, 6)], asynchronous=False)
    consumer.close()
    yield KafkaGroup("object 7 (orders)", "events", bootstrap, name, topic, "earliest")


def test_the_offsets_a_group_held_are_told_and_a_second_deletion_is_done_already(group: KafkaGroup) -> None:
    [held] = inspect_groups([group])
    assert held.offsets == {0: 4, 2: 6} and held.group == group.group
    delete_groups([held])
    assert inspect_groups([group])[0].offsets == {}
    delete_groups([held])  # GROUP_ID_NOT_FOUND: nothing left to forget, not an error


def test_a_member_that_joined_after_the_check_makes_the_deletion_fail_in_one_line(group: KafkaGroup) -> None:
    [held] = inspect_groups([group])
    with member_of(group.bootstrap, group.group, group.topic), pytest.raises(GroupResetError) as refused:
        delete_groups([held])
    assert str(refused.value) == (
        f"object 7 (orders): consumer group '{group.group}' has active members; the state store was left as it was: "
        "stop the running object (or whatever consumes with that group) first, then reset again"
    )
