"""``engine: spark`` streaming objects (sluice.streaming.spark_stream) against the real broker: the same object on
Sluice's micro-batcher and on Spark Structured Streaming writes the same rows for the same input."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from helpers import load, read_topic, write_yaml
from sluice.errors import SluiceError, ValidationFailed
from sluice.lake.local import LocalLake
from sluice.lake.registry import open_lake
from sluice.lake.s3 import S3Lake
from sluice.streaming.host import StreamHost
from sluice.streaming.loop import MicroBatcher, run_stream
from sluice.streaming.spark_stream import SparkStreamer, stream_runner
from streaming.streams import MakeTopic, produce

OBJECT = """
  - id: {id}
    name: {name}
    {engine}
    source:
      type: kafka
      connection: events
      topic: {topic}
      schema: {schema}
      columns: [{columns}]
    streaming:
      trigger: {{interval: 500ms}}
      max_batch_records: 70
"""
SCHEMA = "{id: int64, user: string, amount: float64, ts: string}"
COLUMNS = "_key, _partition, _offset, _topic, _timestamp"
SQL = """      sql: >-
        SELECT id, upper(user) AS user, amount * 2 AS doubled, ts, _key, _partition, _offset, _topic, _timestamp
        FROM batch WHERE id % 5 <> 0
"""


def project_file(
    root: Path,
    kafka_url: str,
    topic: str,
    sql: str = SQL,
    s3: tuple[str, str] | None = None,
    schema: str = SCHEMA,
    columns: str = COLUMNS,
) -> Path:
    """Objects 1001 (``on_sluice``) and 1002 (``on_spark``, ``engine: spark``) reading ``topic`` with the declared
    ``schema`` (YAML) and metadata ``columns``; ``s3``: (the server's URL, a bucket) for an S3 lake in
    ``s3://<bucket>/lake``."""
    same = {"topic": topic, "schema": schema, "columns": columns}
    objects = [
        OBJECT.format(id=1001, name="on_sluice", engine="", **same) + sql,
        OBJECT.format(id=1002, name="on_spark", engine="engine: spark", **same) + sql,
    ]
    lake = f"lake_s3: '{s3[0]}'}}\nlake: {{type: s3, url: 's3://{s3[1]}/lake', connection: lake_s3" if s3 else ""
    text = f"name: streams\nconnections: {{events: '{kafka_url}'{', ' if s3 else ''}{lake}}}\nobjects:\n" + "".join(objects)
    text += "spark:\n  master: local[2]\n  conf: {spark.sql.shuffle.partitions: 4, spark.ui.enabled: false}\n"
    return write_yaml(root, text)


def sorted_table(table: pa.Table, timestamp: pa.DataType | None = None) -> pa.Table:
    """Rows in offset order (micro-batches commit files in their own order), ``_timestamp`` cast to ``timestamp``."""
    if timestamp is not None:
        table = table.set_column(table.schema.get_field_index("_timestamp"), "_timestamp", table["_timestamp"].cast(timestamp))
    return table.replace_schema_metadata(None).sort_by([("_partition", "ascending"), ("_offset", "ascending")])


@pytest.mark.parametrize("sql", [SQL, ""], ids=["sql", "no-sql"])
def test_both_engines_write_the_same_rows_for_the_same_input(
    kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path, sql: str
) -> None:
    topic = topics(2)
    produce(kafka_url, topic, range(300), partitions=2)
    project = load(project_file(tmp_path / "project", kafka_url, topic, sql))
    lake = LocalLake(tmp_path / "lake")
    sluice = run_stream(project, 1001, lake=lake, until=lambda status: status.records >= 300)
    spark = SparkStreamer(project, project.objects[1002], lake).run(until=lambda status: status.records >= 300)
    assert (sluice.records, spark.records) == (300, 300) and spark.state == "stopped"
    assert spark.bytes == sluice.bytes > 300 * 50
    assert spark.last_batch is not None and set(spark.lag) <= {(topic, 0), (topic, 1)}  # Spark's last progress report
    # After sql, DuckDB's result has _timestamp as timestamp[us, tz=Etc/UTC], Spark's as timestamp[us, tz=UTC]: same instants
    unit = pa.timestamp("us", tz="UTC") if sql else None
    on_sluice = sorted_table(lake.read("raw/on_sluice").read_all(), unit)
    on_spark = sorted_table(lake.read("raw/on_spark").read_all(), unit)
    assert on_sluice.num_rows == (240 if sql else 300)
    assert on_spark.schema == on_sluice.schema
    assert sql or on_spark.schema.field("_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert on_spark.equals(on_sluice)
    assert lake.last_commit("raw", "on_spark")["offsets"] == lake.last_commit("raw", "on_sluice")["offsets"]  # type: ignore[index]
    assert len(lake.parquet_files("raw/on_spark")) >= 5  # micro-batches of at most 70 records


MALFORMED = [
    b"{oops",  # not JSON
    b"[1, 2]",  # not an object
    b'"text"',
    b'{"id": "abc", "user": "u", "amount": 1.0, "ts": "x"}',  # does not fit the schema
    b'{"id": 1.5}',
    b'{"id": 7} and more',  # something after the object
    None,  # a tombstone
]


def test_both_engines_dead_letter_the_same_records_and_write_the_same_rows(
    kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    topic = topics(2)
    produce(kafka_url, topic, range(200), partitions=2)
    producer = Producer({"bootstrap.servers": kafka_url.removeprefix("kafka://")})
    for i, value in enumerate(MALFORMED):
        producer.produce(topic, value, key=f"bad{i}".encode(), partition=i % 2, headers=[("trace", f"t{i}".encode())])
    produce(kafka_url, topic, range(200, 300), partitions=2)
    assert producer.flush(30) == 0
    total = 300 + len(MALFORMED)
    project = load(project_file(tmp_path / "project", kafka_url, topic, ""))
    lake = LocalLake(tmp_path / "lake")
    sluice = run_stream(project, 1001, lake=lake, until=lambda status: status.records >= total)
    spark = SparkStreamer(project, project.objects[1002], lake).run(until=lambda status: status.records >= total)
    assert (sluice.dead_letters, spark.dead_letters) == (len(MALFORMED), len(MALFORMED))
    on_sluice = sorted_table(lake.read("raw/on_sluice").read_all())
    on_spark = sorted_table(lake.read("raw/on_spark").read_all())
    assert sorted(on_spark.column("id").to_pylist()) == list(range(300))
    assert on_spark.equals(on_sluice)
    assert lake.last_commit("raw", "on_spark")["offsets"] == lake.last_commit("raw", "on_sluice")["offsets"]  # type: ignore[index]
    letters: dict[bytes, list[tuple[Any, ...]]] = {}
    sent = read_topic(kafka_url, f"{topic}.dead-letter")
    assert len(sent) == 2 * len(MALFORMED)
    for message in sent:
        headers = message.headers()
        origin, stream = dict(headers)["sluice.errors.object"], dict(headers)["sluice.errors.stream"]
        assert stream.startswith(b"project %s, %s, lake " % (project.name.encode(), origin))  # each its own stream
        rest = [(k, v) for k, v in headers if k not in ("sluice.errors.object", "sluice.errors.stream")]
        letters.setdefault(origin, []).append((message.key(), message.value(), rest))
    assert set(letters) == {b"object 1001 (on_sluice)", b"object 1002 (on_spark)"}
    assert sorted(letters[b"object 1002 (on_spark)"]) == sorted(letters[b"object 1001 (on_sluice)"])
    assert len(letters[b"object 1002 (on_spark)"]) == len(MALFORMED)
    reasons = {dict(rest)["sluice.errors.reason"].split(b":")[0] for _, _, rest in letters[b"object 1002 (on_spark)"]}
    assert reasons == {b"not valid JSON", b"not a JSON object", b"does not fit the schema", b"no value (a tombstone)"}
    assert (b"bad0", b"{oops") in {(key, value) for key, value, _ in letters[b"object 1002 (on_spark)"]}
    assert all(rest[0] == ("trace", f"t{key.decode()[3:]}".encode()) for key, _, rest in letters[b"object 1002 (on_spark)"])


def test_engine_spark_with_dead_letter_false_fails_on_a_malformed_record(
    kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path
) -> None:
    topic = topics(1)
    produce(kafka_url, topic, range(10), malformed=[b"{oops"])
    path = project_file(tmp_path / "project", kafka_url, topic, "")
    path.write_text(path.read_text().replace("      columns: [", "      dead_letter: false\n      columns: ["))
    project = load(path)
    lake = LocalLake(tmp_path / "lake")
    with pytest.raises(SluiceError, match=r"object 1002 \(on_spark\): the record at partition 0 offset 10 .* cannot be decoded"):
        SparkStreamer(project, project.objects[1002], lake).run(until=lambda status: status.records >= 11)
    assert not lake.exists("raw/on_spark")


@pytest.mark.s3
def test_engine_spark_streams_into_the_s3_lake_with_its_checkpoint_there(
    s3_spark: Any, kafka_url: str, s3_url: str, topics: MakeTopic, tmp_path: Path
) -> None:
    from lake.contract import _delete_bucket

    topic = topics(2)
    produce(kafka_url, topic, range(300), malformed=[b"{oops"], partitions=2)
    bucket = f"sluice-test-{uuid.uuid4().hex[:10]}"
    try:
        project = load(project_file(tmp_path / "project", kafka_url, topic, SQL, s3=(s3_url, bucket)))
        lake = open_lake(project)
        assert isinstance(lake, S3Lake)
        sluice = run_stream(project, 1001, lake=lake, until=lambda status: status.records >= 301)
        spark = SparkStreamer(project, project.objects[1002], lake).run(until=lambda status: status.records >= 301)
        assert (spark.records, spark.dead_letters, sluice.dead_letters) == (301, 1, 1)
        unit = pa.timestamp("us", tz="UTC")
        on_spark = sorted_table(lake.read("raw/on_spark").read_all(), unit)
        assert on_spark.equals(sorted_table(lake.read("raw/on_sluice").read_all(), unit)) and on_spark.num_rows == 240
        files = lake.parquet_files("raw/on_spark")
        assert len(files) >= 5 and all(f.startswith(f"s3://{bucket}/lake/raw/on_spark/v=") for f in files)
        checkpoint = lake.fs.get_file_info(pafs.FileSelector(f"{bucket}/lake/raw/_checkpoints/on_spark", recursive=True))
        assert {"offsets", "commits"} <= {info.base_name for info in checkpoint}
        produce(kafka_url, topic, range(300, 400), partitions=2)  # a restart goes on from the checkpoint in S3
        again = SparkStreamer(project, project.objects[1002], lake).run(until=lambda status: status.records >= 100)
        assert again.records == 100
        ids = lake.read("raw/on_spark").read_all().column("id").to_pylist()
        assert sorted(ids) == [i for i in range(400) if i % 5]
        commit = lake.last_commit("raw", "on_spark") or {}
        assert commit["offsets"] == {topic: {"0": 201, "1": 200}} and commit["engine"] == "spark"
    finally:
        _delete_bucket(s3_url, bucket)


def test_streaming_hosts_pick_spark_for_engine_spark(kafka_url: str, tmp_path: Path) -> None:
    project = load(project_file(tmp_path / "project", kafka_url, "t"))
    lake = LocalLake(tmp_path / "lake")
    assert isinstance(stream_runner(project, project.objects[1001], lake), MicroBatcher)
    assert isinstance(stream_runner(project, project.objects[1002], lake), SparkStreamer)
    assert [type(loop) for loop in StreamHost(project, lake).loops] == [MicroBatcher, SparkStreamer]


def test_engine_spark_needs_a_declared_schema(kafka_url: str, tmp_path: Path) -> None:
    path = project_file(tmp_path / "project", kafka_url, "t")
    text = path.read_text()
    path.write_text(text.replace("      schema: {id: int64, user: string, amount: float64, ts: string}\n", ""))
    with pytest.raises(
        ValidationFailed, match=r"sluice.yaml:\d+: object 1002 \(on_spark\): engine: spark needs the records' schema"
    ):
        load(path)
    path.write_text(text.replace("engine: spark", "engine: duckdb"))
    assert load(path).objects[1002].chosen_engine is None  # the default: Sluice's micro-batcher


TYPED_COLUMNS = "_partition, _offset, _timestamp"


def run_both(project: Any, lake: LocalLake, total: int) -> tuple[pa.Table, pa.Table]:
    """Both objects of ``project`` over their topic until ``total`` records each; their datasets in offset order,
    after checking that neither dead-lettered a record."""
    sluice = run_stream(project, 1001, lake=lake, until=lambda status: status.records >= total)
    spark = SparkStreamer(project, project.objects[1002], lake).run(until=lambda status: status.records >= total)
    assert (sluice.records, spark.records, sluice.dead_letters, spark.dead_letters) == (total, total, 0, 0)
    return sorted_table(lake.read("raw/on_sluice").read_all()), sorted_table(lake.read("raw/on_spark").read_all())


TIMESTAMPS = [
    "2024-05-01T12:00:00Z",
    "2024-05-01T12:00:00+00:00",
    "2024-05-01T12:00:00+01:00",  # 11:00 UTC
    "2024-05-01T12:00:00",  # no offset: as written
    "2024-05-01T12:00:00.123",
    "2024-05-01T12:00:00.5-05:30",
    "2024-05-01 23:59:59.999Z",
    "2024-05-01T12:00+0200",
    "2024-05-01T12Z",
    "2024-05-01",
    None,
]


def test_both_engines_read_declared_timestamps_and_dates_alike(
    kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    topic = topics(2)
    producer = Producer({"bootstrap.servers": kafka_url.removeprefix("kafka://")})
    values = [
        {"user_id": i, "name": f"n{i}", "signup_ts": ts, "at": ts, "day": 19844 - i, "raw": "xy"}
        for i, ts in enumerate(TIMESTAMPS * 10)
    ]
    for value in values:
        producer.produce(topic, json.dumps(value).encode(), partition=value["user_id"] % 2)
    assert producer.flush(30) == 0
    schema = '{user_id: int64, name: string, signup_ts: "timestamp[ms]", at: "timestamp[ms, tz=UTC]", day: date32, raw: binary}'
    project = load(project_file(tmp_path / "project", kafka_url, topic, "", schema=schema, columns=TYPED_COLUMNS))
    on_sluice, on_spark = run_both(project, LocalLake(tmp_path / "lake"), len(values))
    assert on_spark.schema == on_sluice.schema, f"{on_spark.schema} != {on_sluice.schema}"
    assert on_spark.schema.field("signup_ts").type == pa.timestamp("ms")
    assert on_spark.schema.field("_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert on_spark.schema.field("at").type == pa.timestamp("ms", tz="UTC")  # instants: a value without offset is UTC
    assert on_spark["at"].cast(pa.timestamp("ms")).equals(on_spark["signup_ts"])
    assert on_spark.equals(on_sluice)
    stamps = dict(zip(on_spark["user_id"].to_pylist(), on_spark["signup_ts"].to_pylist(), strict=True))
    assert on_spark.num_rows == len(values) and stamps[10] is None
    assert on_spark["day"][0].as_py() == date(2024, 5, 1) and on_spark["raw"][0].as_py() == b"xy"
    assert [stamps[i] for i in range(10)] == [
        datetime(2024, 5, 1, 12),
        datetime(2024, 5, 1, 12),
        datetime(2024, 5, 1, 11),
        datetime(2024, 5, 1, 12),
        datetime(2024, 5, 1, 12, 0, 0, 123000),
        datetime(2024, 5, 1, 17, 30, 0, 500000),
        datetime(2024, 5, 1, 23, 59, 59, 999000),
        datetime(2024, 5, 1, 10),
        datetime(2024, 5, 1, 12),
        datetime(2024, 5, 1),
    ]


@pytest.mark.parametrize("schema", ["users", "transactions"])
def test_both_engines_write_the_same_faker_events(
    kafka_spark: Any, kafka_url: str, topics: MakeTopic, tmp_path: Path, schema: str
) -> None:
    from sluice.streaming.produce import produce_events

    topic = topics(2)
    produce_events(kafka_url.removeprefix("kafka://"), topic, schema, rate=0, count=400, seed=3)
    declared = {
        "users": '{user_id: int64, name: string, email: string, country: string, city: string, signup_ts: "timestamp[ms]"}',
        "transactions": "{transaction_id: int64, user_id: int64, product_id: int64, amount: double, currency: string, "
        'ts: "timestamp[ms]", status: string, channel: string, country: string}',
    }[schema]
    project = load(project_file(tmp_path / "project", kafka_url, topic, "", schema=declared, columns=TYPED_COLUMNS))
    on_sluice, on_spark = run_both(project, LocalLake(tmp_path / "lake"), 400)
    assert on_spark.num_rows == 400 and on_spark.schema == on_sluice.schema
    assert on_spark.equals(on_sluice)
