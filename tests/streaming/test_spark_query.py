"""``engine: spark`` streaming queries (sluice.streaming.spark_query) against the real Kafka broker: Spark's Kafka
source, from_json, metadata columns, per-batch SQL, micro-batches appended to the lake with their offsets,
restarts with and without Spark's checkpoint, and replays of a batch Spark did not checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sluice.errors import TerminalError
from sluice.lake.local import LocalLake
from sluice.streaming.settings import CompactSettings
from sluice.streaming.spark_query import BatchDone, SparkStream, batch_writer, checkpoint_folder, start_query
from sluice.urls import kafka_servers
from streaming.streams import MakeTopic, produce

SCHEMA = pa.schema([("id", pa.int64()), ("user", pa.string()), ("amount", pa.float64())])


def run(session: Any, lake: LocalLake, stream: SparkStream) -> None:
    query = start_query(session, lake, stream, object_label="object 1001 (events)")
    query.awaitTermination()
    assert query.exception() is None


def stream_of(kafka_url: str, topic: str, **changes: Any) -> SparkStream:
    settings: dict[str, Any] = {
        "servers": kafka_servers(kafka_url),
        "topics": [topic],
        "schema": SCHEMA,
        "layer": "raw",
        "name": "events",
    }
    return SparkStream(**{**settings, "trigger_s": None, **changes})


def test_a_query_appends_each_micro_batch_with_the_offsets_it_covers(
    kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path
) -> None:
    topic = topics(2)
    produce(kafka_url, topic, range(50), partitions=2)
    lake = LocalLake(tmp_path / "lake")
    stream = stream_of(kafka_url, topic, columns=["_key", "_partition", "_offset", "_topic", "_timestamp", "_headers"])
    run(kafka_spark, lake, stream)
    table = lake.read("raw/events").read_all().sort_by("id")
    assert table.column_names == ["id", "user", "amount", "_key", "_partition", "_offset", "_topic", "_timestamp", "_headers"]
    assert table.column("id").to_pylist() == list(range(50))
    assert table.column("_key").to_pylist() == [str(i) for i in range(50)]
    assert set(table.column("_topic").to_pylist()) == {topic}
    assert table.schema.field("_partition").type == pa.int32() and table.schema.field("_offset").type == pa.int64()
    assert table.schema.field("_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert table.schema.field("_headers").type == pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))
    commit = lake.last_commit("raw", "events")
    assert commit is not None and commit["engine"] == "spark"
    counts = table.group_by("_partition").aggregate([("_offset", "max")]).to_pylist()
    assert commit["offsets"] == {topic: {str(row["_partition"]): row["_offset_max"] + 1 for row in counts}}
    assert Path(checkpoint_folder(lake, "raw", "events")).is_dir()


def test_a_restart_reads_only_new_records_with_or_without_spark_checkpoint(
    kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path
) -> None:
    topic = topics(2)
    lake = LocalLake(tmp_path / "lake")
    stream = stream_of(kafka_url, topic, max_batch_records=15)
    produce(kafka_url, topic, range(40), partitions=2)
    run(kafka_spark, lake, stream)
    batches = lake.last_commit("raw", "events")
    run(kafka_spark, lake, stream)  # nothing new: no new micro-batch
    assert lake.last_commit("raw", "events") == batches
    produce(kafka_url, topic, range(40, 60), partitions=2)
    run(kafka_spark, lake, stream)
    shutil.rmtree(checkpoint_folder(lake, "raw", "events"))  # lost checkpoint: the lake's offsets say where to go on
    produce(kafka_url, topic, range(60, 70), partitions=2)
    run(kafka_spark, lake, stream)
    ids = lake.read("raw/events").read_all().column("id").to_pylist()
    assert sorted(ids) == list(range(70))
    assert len(lake.parquet_files("raw/events")) >= 5  # 40 records in batches of at most 15, then more


def test_a_replayed_batch_adds_nothing(kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path) -> None:
    topic = topics(1)
    produce(kafka_url, topic, range(10))
    lake = LocalLake(tmp_path / "lake")
    stream = stream_of(kafka_url, topic)

    def source() -> Any:
        reader = kafka_spark.read.format("kafka").option("kafka.bootstrap.servers", kafka_servers(kafka_url))
        return reader.option("subscribe", topic).load()

    done: list[BatchDone] = []
    write = batch_writer(lake, stream, object_label="object 1001 (events)", committed=done.append)
    write(source(), 0)
    write(source(), 0)  # Spark replays batch 0 after a crash between the lake's commit and its checkpoint's
    assert lake.read("raw/events").read_all().num_rows == 10
    assert [(d.batch_id, d.records) for d in done] == [(0, 10)]  # the replay is not counted again
    write(source().limit(0), 1)  # an empty micro-batch commits nothing
    commit = lake.last_commit("raw", "events") or {}
    assert {key: commit.get(key) for key in ("engine", "batch", "offsets", "records")} == {
        "engine": "spark",
        "batch": 0,
        "offsets": {topic: {"0": 10}},
        "records": 10,
    }
    produce(kafka_url, topic, range(10, 15))
    write(source().filter("offset >= 10"), 0)  # a new query's batch 0 (its checkpoint deleted): not a replay
    assert sorted(lake.read("raw/events").read_all().column("id").to_pylist()) == list(range(15))


def test_the_per_batch_sql_is_duckdb_sql_over_batch(kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path) -> None:
    topic = topics(1)
    produce(kafka_url, topic, range(20))
    lake = LocalLake(tmp_path / "lake")
    sql = "SELECT id, upper(user) AS user, CAST(amount * 100 AS BIGINT) AS cents FROM batch WHERE id % 2 = 0"
    run(kafka_spark, lake, stream_of(kafka_url, topic, sql=sql))
    rows = lake.read("raw/events").read_all().sort_by("id").to_pylist()
    assert rows[:2] == [{"id": 0, "user": "U0", "cents": 0}, {"id": 2, "user": "U2", "cents": 50}] and len(rows) == 10


def test_spark_needs_a_declared_schema_and_a_local_or_s3_lake(kafka_spark: Any, kafka_url: str, tmp_path: Path) -> None:
    lake = LocalLake(tmp_path / "lake")
    with pytest.raises(TerminalError, match="needs the record schema declared"):
        start_query(kafka_spark, lake, stream_of(kafka_url, "t", schema=pa.schema([])), object_label="object 1001 (events)")
    with pytest.raises(TerminalError, match="in a local or an S3 lake"):
        checkpoint_folder(object(), "raw", "events")  # type: ignore[arg-type]


def test_the_spark_writer_compacts_small_batches_when_asked(
    kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path
) -> None:
    topic = topics(2)
    produce(kafka_url, topic, range(120), partitions=2)
    lake = LocalLake(tmp_path / "lake")
    compact = CompactSettings(min_files=3, target_bytes=1 << 20)
    run(kafka_spark, lake, stream_of(kafka_url, topic, max_batch_records=20, compact=compact))
    commit = lake.last_commit("raw", "events") or {}
    assert commit["batch"] == 5  # six micro-batches of 20 records, each a part per Kafka partition
    assert len(lake.parquet_files("raw/events")) <= 3  # compacted after batches 3 and 6
    assert sorted(lake.read("raw/events").read_all().column("id").to_pylist()) == list(range(120))
