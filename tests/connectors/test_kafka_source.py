"""The batch Kafka source against the real broker: reads up to the high watermark, commits only once the output is
durable (a failed write re-reads the same records), dead letters with reasons, metadata columns, schemas."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from connectors.kafka_fixtures import Produce
from helpers import load, read_topic, write_yaml
from sluice.errors import TerminalError, TransientError
from sluice.lake.base import LakeWrite, Then
from sluice.lake.local import LocalLake
from sluice.observability import metrics
from sluice.project.model import Project
from sluice.runtime.execute import ObjectExecutor
from sluice.state.sqlite import SqliteStateStore
from sluice.streaming.dead_letters import OFFSET, PARTITION, REASON, TOPIC

pytestmark = pytest.mark.kafka

PROJECT = """
name: shop
connections:
  events: {url}
  lite: sqlite:///lite.db
objects:
  - id: 1001
    name: orders
    source:
      type: kafka
      connection: events
      topic: {topic}
{options}
"""
DECLARED = "      schema: {id: int64, amount: float64}\n      columns: [_partition, _offset]\n      batch_size: 7"


def orders(start: int, count: int) -> list[bytes]:
    return [json.dumps({"id": i, "amount": i / 2, "extra": "x"}).encode() for i in range(start, start + count)]


def project(tmp_path: Path, kafka_url: str, topic: str, options: str = DECLARED) -> Project:
    folder = tmp_path / "shop"
    write_yaml(folder, PROJECT.format(url=kafka_url, topic=topic, options=options))
    return load(folder)


def run(shop: Project, store: SqliteStateStore, lake: LocalLake | None = None) -> pa.Table:
    lake = lake or LocalLake(shop.root / "lake")
    outcome = ObjectExecutor(shop, lake, store).run(shop.objects[1001], f"r{uuid.uuid4().hex[:6]}", {})
    assert outcome.location is not None
    return lake.read(outcome.location).read_all()


def test_a_run_reads_everything_and_the_next_one_adds_only_what_is_new_to_the_lake_output(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    shop = project(tmp_path, kafka_url, topic)
    produce(orders(0, 20))
    first = run(shop, store)
    assert sorted(first.column("id").to_pylist()) == list(range(20))
    assert first.schema.names == ["id", "amount", "_partition", "_offset"]
    assert first.schema.field("_partition").type == pa.int32() and first.schema.field("_offset").type == pa.int64()
    assert len(set(zip(first.column("_partition").to_pylist(), first.column("_offset").to_pylist(), strict=True))) == 20
    nothing = run(shop, store)  # nothing new: the output stays what was read so far
    assert nothing.num_rows == 20 and nothing.schema == first.schema
    produce(orders(20, 5))
    second = run(shop, store)  # reads the five new records, appended to the output (docs/sources.md)
    assert sorted(second.column("id").to_pylist()) == list(range(25)) and second.schema == first.schema


class LakeThatFailsAfterReading(LocalLake):
    """Reads everything, then fails as a full disk would: the output never becomes durable."""

    def write(
        self, layer: str, name: str, data: pa.RecordBatchReader, *, then: Then | None = None, partition_by: Sequence[str] = ()
    ) -> LakeWrite:
        data.read_all()
        raise TransientError("disk full")


def test_a_failure_after_reading_and_before_the_output_is_durable_reads_the_same_records_again(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    shop = project(tmp_path, kafka_url, topic)
    produce(orders(0, 10))
    with pytest.raises(TransientError, match="disk full"):
        run(shop, store, LakeThatFailsAfterReading(shop.root / "lake"))
    produce(orders(10, 3))
    again = run(shop, store)
    assert sorted(again.column("id").to_pylist()) == list(range(13))


def test_records_that_cannot_be_decoded_go_to_the_dead_letter_topic_with_the_reason_and_are_counted(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    shop = project(tmp_path, kafka_url, topic)
    produce([*orders(0, 5), b"{not json", b'{"id": "seven", "amount": 1}', None])
    counter = metrics.child(metrics.KAFKA_DEAD_LETTERS, "1001", topic)
    before = counter._value.get()
    table = run(shop, store)
    assert sorted(table.column("id").to_pylist()) == list(range(5))
    assert counter._value.get() - before == 3
    letters = read_topic(kafka_url, f"{topic}.dead-letter")
    assert sorted(m.value() or b"" for m in letters) == [b"", b'{"id": "seven", "amount": 1}', b"{not json"]
    by_value = {m.value(): dict(m.headers()) for m in letters}
    headers = by_value[b"{not json"]
    assert headers[REASON].startswith(b"not valid JSON") and headers[TOPIC] == topic.encode()
    assert int(headers[PARTITION]) in (0, 1, 2) and int(headers[OFFSET]) >= 0
    assert b"does not fit the schema" in by_value[b'{"id": "seven", "amount": 1}'][REASON]
    assert by_value[None][REASON].startswith(b"no value (a tombstone)")
    assert run(shop, store).num_rows == 5  # committed: the bad records are not read again (nor the good ones)


def test_dead_letter_false_fails_the_read_naming_the_record_and_commits_nothing(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    shop = project(tmp_path, kafka_url, topic, DECLARED + "\n      dead_letter: false")
    produce([b"{not json"])
    with pytest.raises(TerminalError, match=rf"offset 0 of '{topic}' cannot be decoded: not valid JSON"):
        run(shop, store)


def test_a_dead_letter_topic_the_broker_does_not_create_fails_the_read_in_one_line_and_commits_nothing(
    tmp_path: Path,
    kafka_url: str,
    topic: str,
    produce: Produce,
    store: SqliteStateStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The test broker creates topics (auto.create.topics.enable=true, scripts/servers/kafka.sh): its producers are
    told not to ask for it (allow.auto.create.topics=false), which is what a broker with it false answers. It used
    to take 30 s and fail as transient (retried, to the same end), as librdkafka's KafkaError{code=UNKNOWN_TOPIC_OR_PART
    ...} or '1 not acknowledged after 30 s', whichever of the delivery and the flush's 30 s came first."""
    from confluent_kafka import Producer

    def no_auto_create(config: dict[str, Any]) -> Producer:
        return Producer({**config, "allow.auto.create.topics": False})

    monkeypatch.setattr("confluent_kafka.Producer", no_auto_create)
    missing = f"{topic}-bad"
    shop = project(tmp_path, kafka_url, topic, DECLARED + f"\n      dead_letter: {missing}")
    produce([*orders(0, 3), b"{not json"])
    with pytest.raises(TerminalError) as caught:
        run(shop, store)
    assert str(caught.value) == (
        f"object 1001 (orders): the dead-letter topic '{missing}' does not exist and the broker does not create "
        "topics (auto.create.topics.enable=false); create it, or set dead_letter to an existing topic, or to false "
        "to fail the read on records that cannot be decoded"
    )
    monkeypatch.undo()
    assert sorted(run(shop, store).column("id").to_pylist()) == [0, 1, 2]  # nothing was committed: all read again
    assert [m.value() for m in read_topic(kafka_url, missing)] == [b"{not json"]


def test_an_inferred_schema_with_every_metadata_column_and_an_empty_topic(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    options = "      columns: [_key, _headers, _timestamp, _partition, _offset, _topic]\n      group: my-group-" + topic
    shop = project(tmp_path, kafka_url, topic, options)
    empty = run(shop, store)
    assert empty.num_rows == 0 and empty.schema.names == ["_key", "_headers", "_timestamp", "_partition", "_offset", "_topic"]
    produce(orders(0, 4))
    table = run(shop, store)
    assert table.schema.names[:3] == ["id", "amount", "extra"]
    assert table.schema.field("_timestamp").type == pa.timestamp("ms", tz="UTC")
    row = table.sort_by("id").to_pylist()[0]
    assert row["_key"] == '{"id": 0' and row["_topic"] == topic and row["_headers"] is None
    assert row["_timestamp"] is not None
    produce([json.dumps({"id": 9, "amount": 1, "new": True}).encode()])
    later = run(shop, store)  # the schema learnt by the last run is kept; the new field joins it
    assert later.schema.names[:3] == ["id", "amount", "extra"] and later.schema.names[-1] == "new"
    added = [row for row in later.to_pylist() if row["id"] == 9]
    assert later.num_rows == 5 and added[0]["amount"] == 1.0 and added[0]["new"] is True


def test_start_latest_skips_what_was_there_before_the_first_run(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    shop = project(tmp_path, kafka_url, topic, DECLARED + "\n      start: latest")
    produce(orders(0, 5))
    assert run(shop, store).num_rows == 0
    produce(orders(5, 2))
    assert sorted(run(shop, store).column("id").to_pylist()) == [5, 6]


def test_a_topic_that_does_not_exist_is_a_terminal_error(tmp_path: Path, kafka_url: str, store: SqliteStateStore) -> None:
    shop = project(tmp_path, kafka_url, f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(TerminalError, match="does not exist"):
        run(shop, store)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("connection: events", "connection: eventz"), "unknown connection 'eventz' in source"),
        (
            ("connection: events", "connection: lite"),
            "connection 'lite' is sqlite://; a kafka source needs a kafka:// connection",
        ),
        (("      batch_size: 7", "      batch_size: 0"), "batch_size"),
        (("{id: int64, amount: float64}", "{id: integr}"), "schema: column 'id': unknown column type 'integr'"),
        (("[_partition, _offset]", "[_partition, _size]"), "_size"),
    ],
)
def test_validate_refuses_bad_options_naming_the_file_and_line(
    tmp_path: Path, kafka_url: str, change: tuple[str, str], message: str
) -> None:
    from sluice.errors import ValidationFailed

    folder = tmp_path / "shop"
    write_yaml(folder, PROJECT.format(url=kafka_url, topic="t", options=DECLARED).replace(*change))
    with pytest.raises(ValidationFailed) as failed:
        load(folder)
    assert message in str(failed.value) and "sluice.yaml:" in str(failed.value)


def test_records_produced_while_a_run_reads_wait_for_the_next_run(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.connectors.kafka_source import KafkaSource

    shop = project(tmp_path, kafka_url, topic, DECLARED.replace("batch_size: 7", "batch_size: 1000"))
    produce(orders(0, 30))
    taken = KafkaSource._ranges

    def then_more(source: KafkaSource, consumer: Any) -> dict[int, tuple[int, int]]:
        ranges = taken(source, consumer)  # the high watermarks are taken now
        produce(orders(30, 30))  # fetched with the first ones, past the ends
        return ranges

    monkeypatch.setattr(KafkaSource, "_ranges", then_more)
    assert sorted(run(shop, store).column("id").to_pylist()) == list(range(30))
    monkeypatch.setattr(KafkaSource, "_ranges", taken)
    assert sorted(run(shop, store).column("id").to_pylist()) == list(range(60))  # the 30 later ones added once


def test_a_read_on_from_committed_offsets_without_the_previous_output_fails_naming_the_reset_remedy(
    tmp_path: Path, kafka_url: str, topic: str, produce: Produce, store: SqliteStateStore
) -> None:
    """Adding to nothing would replace every record read before with the new ones alone: refused, offsets kept; the
    remedy is ``sluice state reset``, which deletes the group (runtime/state_reset.py), and then reads everything."""
    from sluice.runtime.state_reset import reset_state

    shop = project(tmp_path, kafka_url, topic, DECLARED + f"\n      group: own-{topic}")  # not another test's
    lake = LocalLake(shop.root / "lake")
    produce(orders(0, 5))
    assert run(shop, store, lake).num_rows == 5
    lake.remove("raw", "orders")
    produce(orders(5, 2))
    with pytest.raises(TerminalError) as raised:
        run(shop, store, lake)
    message = str(raised.value)
    assert message.startswith("object 1001 (orders): the previous lake output raw/orders is missing"), message
    assert message.endswith(f"run 'sluice state reset {shop.root} --object 1001' to read everything again")
    reset_state(shop, store, [1001])
    assert sorted(run(shop, store, lake).column("id").to_pylist()) == list(range(7))  # the remedy reads everything
