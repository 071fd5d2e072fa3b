"""Dead letters to a topic that does not exist on a broker that does not create topics (streaming/dead_letters.py):
one terminal line that says so, from the first dead letter and from any after it, records or rows alike."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pyarrow as pa
import pytest

from helpers import read_topic
from sluice.errors import TerminalError
from sluice.streaming.dead_letters import OBJECT, PROPAGATION_MS, REASON, TOPIC, DeadLetterProducer, send_dead_letters
from sluice.streaming.records import Record, Rejected
from sluice.urls import kafka_servers
from streaming.streams import MakeTopic

pytestmark = pytest.mark.kafka


def test_dead_letters_to_a_topic_the_broker_does_not_create_fail_terminal_in_one_line(
    kafka_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test broker creates topics (scripts/servers/kafka.sh): the producer is told not to ask for it
    (allow.auto.create.topics=false), which is what a broker with auto.create.topics.enable=false answers. Rows of a
    window were lost without a word (the delivery error had no callback), a record's dead letter failed as transient
    after 30 s, and the next one as a bare KafkaException ('Local: Unknown topic')."""
    from confluent_kafka import Producer

    def no_auto_create(config: dict[str, Any]) -> Producer:
        return Producer({**config, "allow.auto.create.topics": False})

    monkeypatch.setattr("confluent_kafka.Producer", no_auto_create)
    missing = f"sluice-test-missing-{uuid.uuid4().hex[:10]}"
    dead = DeadLetterProducer(kafka_servers(kafka_url))
    expected = (
        f"object 1001 (tx): the dead-letter topic '{missing}' does not exist and the broker does not create topics "
        "(auto.create.topics.enable=false); create it, or set dead_letter to an existing topic, or to false to fail "
        "the read on records that cannot be decoded"
    )
    started = time.monotonic()
    with pytest.raises(TerminalError) as caught:
        dead.send_rows(missing, pa.table({"id": [1]}), "no event time", "tx", "object 1001 (tx)")
    assert str(caught.value) == expected
    assert time.monotonic() - started < PROPAGATION_MS / 1000 + 5  # the delivery said why before the flush gave up
    started = time.monotonic()
    with pytest.raises(TerminalError) as caught:  # the producer knows the topic is missing now: produce refuses at once
        send_dead_letters(dead.producer(), missing, [Record(b"{oops", b"k", "tx", 0, 7)], [Rejected(0, "x")], "object 1001 (tx)")
    assert str(caught.value) == expected
    assert time.monotonic() - started < 5


def test_rows_without_an_event_time_reach_an_existing_dead_letter_topic_with_their_headers(
    kafka_url: str, topics: MakeTopic
) -> None:
    target = topics()
    DeadLetterProducer(kafka_servers(kafka_url)).send_rows(
        target, pa.table({"id": [1, 2]}), "no event time", "tx", "object 1001 (tx)"
    )
    letters = read_topic(kafka_url, target)
    assert sorted(m.value() for m in letters) == [b'{"id":1}', b'{"id":2}']
    assert dict(letters[0].headers()) == {REASON: b"no event time", TOPIC: b"tx", OBJECT: b"object 1001 (tx)"}
