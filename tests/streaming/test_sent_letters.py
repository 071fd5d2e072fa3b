"""Dead letters exactly once in effect (sluice.streaming.sent_letters): a stream killed with SIGKILL after a
micro-batch's dead letters were acknowledged and before its lake commit, then restarted, has dead-lettered each
malformed record once and written each good one once, on Sluice's micro-batcher and on Spark."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from helpers import read_topic
from sluice.lake.registry import open_lake
from sluice.project.load import load_project
from sluice.streaming.sent_letters import COMMIT_KEY, KILL_ENV, STREAM_KEY
from sluice.urls import kafka_servers
from streaming.streams import MakeTopic, produce

SRC = str(Path(__file__).resolve().parents[2] / "src")
GOOD = 300
BAD_PER_SLICE = 2
SLICES = 6


def write_project(root: Path, kafka_url: str, topic: str, engine: str, name: str = "streams") -> Path:
    """Streaming object 1001 ``events`` of project ``name`` reading ``topic`` in micro-batches of at most 40 records."""
    root.mkdir(parents=True)
    obj: dict[str, Any] = {
        "id": 1001,
        "name": "events",
        "source": {
            "type": "kafka",
            "connection": "events",
            "topic": topic,
            "schema": {"id": "int64", "user": "string", "amount": "float64", "ts": "string"},
        },
        "streaming": {"trigger": {"interval": "500ms"}, "max_batch_records": 40},
    }
    project: dict[str, Any] = {"name": name, "connections": {"events": kafka_url}, "objects": [obj]}
    if engine == "spark":
        obj["engine"] = "spark"
        project["spark"] = {"master": "local[2]", "conf": {"spark.sql.shuffle.partitions": 2, "spark.ui.enabled": False}}
    path = root / "sluice.yaml"
    path.write_text(json.dumps(project, indent=2))
    return path


def sluice_stream(path: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sluice", "stream", str(path), "--quiet", *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC, **(env or {})},
        timeout=600,
        check=False,
    )


def places(messages: list[Any]) -> Counter[tuple[int, int]]:
    """How many dead letters each source (partition, offset) has."""
    found: Counter[tuple[int, int]] = Counter()
    for message in messages:
        headers = dict(message.headers())
        assert headers["sluice.errors.object"] == b"object 1001 (events)"
        found[(int(headers["sluice.errors.partition"]), int(headers["sluice.errors.offset"]))] += 1
    return found


def kill_between_dead_letters_and_commit(tmp_path: Path, kafka_url: str, topics: MakeTopic, engine: str) -> None:
    topic = topics(2)
    for n in range(SLICES):  # malformed records spread over the topic, so several micro-batches have some
        chunk = range(n * GOOD // SLICES, (n + 1) * GOOD // SLICES)
        produce(kafka_url, topic, chunk, malformed=[b"{oops %d" % n, b"[%d]" % n], partitions=2)
    path = write_project(tmp_path / "p", kafka_url, topic, engine)
    lake = open_lake(load_project(path))

    crashed = sluice_stream(path, "--available-now", env={KILL_ENV: "2"})  # killed at the second micro-batch with dead letters
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    commit = lake.last_commit("raw", "events")
    assert commit is not None and commit[COMMIT_KEY]  # the first one committed, with where its dead letters end
    sent = places(read_topic(kafka_url, f"{topic}.dead-letter"))
    committed = {int(p): o for p, o in commit["offsets"][topic].items()}
    lost = [place for place in sent if place[1] >= committed.get(place[0], 0)]
    assert lost and max(sent.values()) == 1  # dead letters the lake's commit does not cover: a restart reads them again

    done = sluice_stream(path, "--available-now")
    assert done.returncode == 0, done.stderr[-2000:]
    letters = places(read_topic(kafka_url, f"{topic}.dead-letter"))
    assert len(letters) == SLICES * BAD_PER_SLICE and set(letters.values()) == {1}  # each malformed record once
    ids = lake.read("raw/events").read_all().column("id").to_pylist()
    assert len(ids) == GOOD and sorted(ids) == list(range(GOOD))  # each good record once


def test_a_micro_batcher_killed_before_its_commit_dead_letters_each_record_once(
    tmp_path: Path, kafka_url: str, topics: MakeTopic
) -> None:
    kill_between_dead_letters_and_commit(tmp_path, kafka_url, topics, "sluice")


@pytest.mark.usefixtures("kafka_spark")  # the connector's jars installed (the child starts its own session)
def test_a_spark_stream_killed_before_its_commit_dead_letters_each_record_once(
    tmp_path: Path, kafka_url: str, topics: MakeTopic
) -> None:
    kill_between_dead_letters_and_commit(tmp_path, kafka_url, topics, "spark")


def test_another_project_with_the_same_object_and_topic_does_not_hide_this_ones_dead_letters(
    tmp_path: Path, kafka_url: str, topics: MakeTopic
) -> None:
    """Two projects, each with an object 1001 ``events`` reading the same topic into the same dead-letter topic: the
    second's start reads back the first's dead letters, and must not take them for its own."""
    topic = topics(2)
    produce(kafka_url, topic, range(40), malformed=[b"{oops 1", b"[2]", b"{oops 3"], partitions=2)
    first = write_project(tmp_path / "a", kafka_url, topic, "sluice", name="shop")
    second = write_project(tmp_path / "b", kafka_url, topic, "sluice", name="audit")
    for path in (first, second):
        done = sluice_stream(path, "--available-now")
        assert done.returncode == 0, done.stderr[-2000:]
        assert "not sent twice" not in done.stderr
    letters = read_topic(kafka_url, f"{topic}.dead-letter")
    streams = Counter(dict(message.headers())["sluice.errors.stream"].decode() for message in letters)
    assert len(letters) == 6 and sorted(streams.values()) == [3, 3]  # each project dead-lettered each record once
    assert {text.split(",")[0] for text in streams} == {"project shop", "project audit"}
    assert places(letters) == Counter({place: 2 for place in places(letters)})


def test_recover_keeps_only_this_objects_dead_letters_past_the_commit_and_after_its_marks(
    kafka_url: str, topics: MakeTopic
) -> None:
    from confluent_kafka import Producer

    from sluice.streaming.dead_letters import dead_letters
    from sluice.streaming.records import Record, Rejected
    from sluice.streaming.sent_letters import SentLetters

    source, target = topics(), topics()
    producer = Producer({"bootstrap.servers": kafka_servers(kafka_url)})

    def send(origin: str, offsets: range) -> None:
        records = [Record(b"{oops", None, source, 0, offset) for offset in offsets]
        for key, value, headers in dead_letters(records, [Rejected(i, "not valid JSON") for i in range(len(records))], origin):
            producer.produce(target, value, key=key, headers=headers)
        assert producer.flush(30) == 0

    send("object 1001 (events)", range(0, 3))  # offsets 0-2 of the target: before the marks, not read
    send("object 1001 (events)", range(3, 6))  # 3-5: committed already (the lake is at source offset 6)
    send("object 1002 (other)", range(6, 9))  # 6-8: another object's
    send("object 1001 (events)", range(6, 9))  # 9-11: sent for records the lake has not committed
    commit = {"offsets": {source: {"0": 6}}, COMMIT_KEY: {target: {"0": 3}}}
    sent = SentLetters(kafka_servers(kafka_url), "object 1001 (events)", "project p, object 1001 (events), lake l")
    # the commit was written before the stream header existed: letters without it are this object's by their label
    assert sent.recover([target, f"{target}.none"], commit) == 3  # a topic that does not exist is empty
    assert sent.marks == {target: {0: 12}}
    replayed = [Record(b"{oops", None, source, 0, offset) for offset in range(4, 11)]
    unsent = sent.unsent(replayed, [Rejected(i, "not valid JSON") for i in range(len(replayed))])
    assert [replayed[item.index].offset() for item in unsent] == [4, 5, 9, 10]
    sent.delivered(target, 0, 12)
    assert sent.commit_record() == {COMMIT_KEY: {target: {"0": 13}}, STREAM_KEY: "project p, object 1001 (events), lake l"}


def test_recover_keeps_only_this_streams_dead_letters_of_its_project_and_lake(kafka_url: str, topics: MakeTopic) -> None:
    from confluent_kafka import Producer

    from sluice.streaming.dead_letters import dead_letters
    from sluice.streaming.records import Record, Rejected
    from sluice.streaming.sent_letters import SentLetters

    source, target = topics(), topics()
    producer = Producer({"bootstrap.servers": kafka_servers(kafka_url)})
    mine, theirs = "project p, object 1001 (events), lake /a/raw/events", "project q, object 1001 (events), lake /b/raw/events"

    def send(stream: str | None, offsets: range) -> None:
        records = [Record(b"{oops", None, source, 0, offset) for offset in offsets]
        rejected = [Rejected(i, "not valid JSON") for i in range(len(records))]
        for key, value, headers in dead_letters(records, rejected, "object 1001 (events)", stream):
            producer.produce(target, value, key=key, headers=headers)
        assert producer.flush(30) == 0

    send(theirs, range(0, 4))  # another project's object of the same id and name
    send(None, range(4, 6))  # an older version's, without the stream header: the last commit is newer, not ours
    send(mine, range(2, 3))
    commit = {"offsets": {source: {"0": 0}}, COMMIT_KEY: {target: {"0": 0}}, STREAM_KEY: mine}
    sent = SentLetters(kafka_servers(kafka_url), "object 1001 (events)", mine)
    assert sent.recover([target], commit) == 1
    replayed = [Record(b"{oops", None, source, 0, offset) for offset in range(6)]
    unsent = sent.unsent(replayed, [Rejected(i, "not valid JSON") for i in range(len(replayed))])
    assert [replayed[item.index].offset() for item in unsent] == [0, 1, 3, 4, 5]
