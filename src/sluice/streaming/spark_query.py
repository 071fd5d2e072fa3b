"""A streaming object on Spark Structured Streaming (``engine: spark``): Spark's Kafka source, ``from_json`` with
the declared schema, the Kafka metadata columns, the optional per-batch SQL, and ``foreachBatch`` appending
each micro-batch to the lake.

The query is the same job as Sluice's own micro-batcher, on Spark:

- **Source**: Spark's ``kafka`` source (connector jars from ``scripts/spark-kafka.sh``, see
  :func:`sluice.transforms.spark_session.kafka_jars`) subscribed to the object's topics;
  ``maxOffsetsPerTrigger`` bounds a micro-batch (``streaming.max_batch_records``).
- **Decoding**: ``from_json(CAST(value AS STRING), schema)``, the schema being the declared one (Spark needs
  it: an ``engine: spark`` streaming object without ``schema:`` is refused), with timestamp, date32 and binary
  columns read as ``pyarrow.json`` reads them on the micro-batcher (:mod:`sluice.streaming.spark_types`: an
  ISO-8601 timestamp with a UTC offset is converted to UTC, one without taken as written); metadata columns named as in
  :mod:`sluice.streaming.records`: ``_key`` (string), ``_headers`` (list<struct<key, value: binary>>),
  ``_timestamp`` (timestamp[ms, UTC]: the query's own session writes Parquet timestamps in milliseconds when
  ``_timestamp`` is asked for, no declared column is finer and there is no ``sql`` (whose DuckDB results on the
  micro-batcher are in microseconds); else microseconds, same values), declared timestamps in their declared unit
  (without ``sql``: the commit's schema, :func:`written_schema`),
  ``_partition`` (int32), ``_offset`` (int64), ``_topic`` (string).
- **SQL** (``streaming.sql``): DuckDB's dialect over the table ``batch``, translated to Spark SQL by sqlglot
  (:func:`sluice.transforms.spark_engine.spark_sql`), as for batch Spark objects.
- **Sink**: ``foreachBatch`` has Spark write the batch's Parquet parts into :meth:`Lake.stage_append`'s folder,
  then commits them with the offsets the batch covers (per topic and partition, the next offset to read) and
  Spark's batch id as the idempotency token: a batch Spark replays after a stop or crash (committed to the
  lake, not yet to Spark's checkpoint) is recognised by its batch id and offsets and adds nothing. This is
  the sink protocol of Delta Lake's streaming writer (``txn`` with the query id and batch id), on the lake's
  manifest.
- **Checkpoint**: Spark's checkpoint lives in the lake, ``<lake>/_checkpoints/<layer>/<name>`` on a local lake,
  ``s3a://<layer root>/_checkpoints/<name>`` on an S3 lake. Without a checkpoint (first run, or a deleted one)
  the query starts at the offsets of the lake's last commit, so the lake stays the source of truth and the
  two engines can take turns on one dataset.
- **S3 lake**: Spark writes and checkpoints through Hadoop's S3A (``s3a://``; hadoop-aws and the AWS SDK bundle
  from ``scripts/spark-s3.sh``), configured per bucket from the lake's endpoint and credentials
  (:func:`reach_lake`). Spark's parts go under the batch's staged prefix no reader looks at, and the commit
  is still the lake's own manifest PUT, so readers see a micro-batch whole or not at all.

- **Dead letters**: the value is parsed once per micro-batch (:func:`parsed`, cached for the batch's jobs);
  records that are not JSON objects of the declared schema (``from_json``'s corrupt-record column, Spark's
  PERMISSIVE mode) are counted in the same aggregation as the offsets, and only when there are some are those
  records (never the good ones) collected to the driver and sent to the dead-letter topic with the
  micro-batcher's reason and headers (:mod:`sluice.streaming.dead_letters`), acknowledged before the commit;
  the good ones are written by Spark. At the query's first micro-batch the dead letters it sent for records the
  lake has not committed are read back (:mod:`sluice.streaming.sent_letters`), so a batch Spark replays after a
  crash between the dead letters and the lake's commit does not send them again. Known difference: Spark reads a
  number or boolean where a string (or binary) is declared as its text; the micro-batcher rejects it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pyarrow as pa
import xxhash

from sluice.errors import SluiceError, TerminalError, TransientError
from sluice.lake.base import Lake
from sluice.streaming.columns import Record
from sluice.streaming.dead_letters import DeadLetterProducer, set_aside
from sluice.streaming.loop import compact_when_due
from sluice.streaming.options import RecordSettings
from sluice.streaming.records import METADATA_TYPES, Decoder, Rejected
from sluice.streaming.sent_letters import SentLetters, crash_point, read_back, stream_of
from sluice.streaming.settings import CompactSettings
from sluice.streaming.spark_types import json_schema, typed

BATCH_VIEW = "batch"
"""The name a micro-batch goes by in the per-batch SQL (as on the micro-batcher)."""

METADATA_EXPRESSIONS: dict[str, str] = {
    "_key": "CAST(key AS STRING)",
    "_headers": "headers",
    "_timestamp": "timestamp",
    "_partition": "partition",
    "_offset": "offset",
    "_topic": "topic",
}
"""Spark SQL for each metadata column, over the Kafka source's columns."""

BATCH_PREFIX = "spark:"
"""The lake commit's idempotency token is ``spark:<batch id>:<digest of the offsets it ends at>`` (the digest: a new
query's batch 0, after a deleted checkpoint, is not taken for a replay of an older query's batch 0)."""

CORRUPT, JSON, PARSED, BAD, SIZE = "_sluice_corrupt", "_sluice_json", "_sluice_parsed", "_sluice_bad", "_sluice_size"
"""Working columns of a micro-batch (:func:`parsed`): ``from_json``'s corrupt-record text, its struct
(:func:`~sluice.streaming.spark_types.json_schema`), the declared columns in their types
(:func:`~sluice.streaming.spark_types.typed`), the record's rejection, the bytes of its value."""
SPARK_REASON = "does not fit the schema: Spark's from_json could not convert it"
"""The reason of a record Spark rejects and the micro-batcher's decoder accepts."""


@dataclass(frozen=True)
class SparkStream:
    """What one streaming query reads and where it appends.

    ``servers``: Kafka's ``bootstrap.servers`` (``host:port,...``); ``schema``: the declared value columns
    (required: Spark parses with it); ``columns``: metadata columns to add, in order; ``sql``: DuckDB SQL
    over ``batch``; ``trigger_s``: seconds between micro-batches (None: process what is there, then stop:
    ``availableNow``; 0: one after the other); ``max_batch_records``: most records in one micro-batch (None: no bound); ``start``:
    where a partition starts when neither Spark's checkpoint nor the lake has an offset for it.
    """

    servers: str
    topics: Sequence[str]
    schema: pa.Schema
    layer: str
    name: str
    columns: Sequence[str] = ()
    sql: str | None = None
    trigger_s: float | None = 1.0
    max_batch_records: int | None = None
    start: Literal["earliest", "latest"] = "earliest"
    compact: CompactSettings | None = None
    """When the writer compacts the dataset's small files (``streaming.compact``; batch numbers are Spark's + 1)."""
    dead_letter: str | bool = True
    """Where rejected records go (the source's ``dead_letter``: true, ``<topic>.dead-letter``; a topic; false: fail)."""
    options: Mapping[str, str] = field(default_factory=dict)
    """More options of Spark's Kafka source (``kafka.security.protocol``...), passed as they are."""
    project: str = ""
    """The project's name: part of the dead letters' stream identity (:func:`~sluice.streaming.sent_letters.stream_of`)."""


def checkpoint_folder(lake: Lake, layer: str, name: str) -> str:
    """Spark's checkpoint of ``layer/name``'s query, in the lake: ``<lake root>/_checkpoints/<layer>/<name>`` (a
    path) on a local lake, ``s3a://<layer root>/_checkpoints/<name>`` on an S3 lake (its bucket created if
    missing; :meth:`S3Lake.checkpoint_folder <sluice.lake.s3.S3Lake.checkpoint_folder>`).

    Raises TerminalError for a lake that is neither.
    """
    root = getattr(lake, "root", None)
    if isinstance(root, Path):
        return str(root / "_checkpoints" / layer / name)
    from sluice.lake.s3 import S3Lake

    if isinstance(lake, S3Lake):
        return spark_uri(lake.checkpoint_folder(layer, name))
    raise TerminalError(
        f"engine: spark streaming objects keep Spark's checkpoint in a local or an S3 lake; the {type(lake).__name__} "
        "lake is neither (use engine: sluice)"
    )


def spark_uri(uri: str) -> str:
    """``uri`` as Spark opens it: ``s3://`` through Hadoop's S3A (``s3a://``); others as they are."""
    return "s3a://" + uri.removeprefix("s3://") if uri.startswith("s3://") else uri


def uses_s3(lake: Lake) -> bool:
    """True when Spark reaches ``lake`` through S3A (the session then needs hadoop-aws: scripts/spark-s3.sh)."""
    from sluice.lake.s3 import S3Lake

    return isinstance(lake, S3Lake)


def reach_lake(session: Any, lake: Lake, layer: str) -> None:
    """Give Spark's Hadoop configuration the S3A settings of ``layer``'s bucket on an S3 lake (endpoint,
    path-style access, region, keys: :func:`~sluice.lake.s3.s3a_options`, per bucket); nothing on a local lake."""
    from sluice.lake.s3 import S3Lake, s3a_options

    if not isinstance(lake, S3Lake):
        return
    hadoop = session.sparkContext._jsc.hadoopConfiguration()
    for key, value in s3a_options(lake.access, lake.root_of(layer).partition("/")[0]).items():
        hadoop.set(key, value)


def starting_offsets(lake: Lake, stream: SparkStream) -> str:
    """``startingOffsets`` of Spark's Kafka source: the lake's last commit's offsets (JSON, per topic and every
    partition, Spark's -2 (earliest) or -1 (latest) for one the lake has none of), or ``stream.start`` when
    nothing was committed. Used only when the query has no checkpoint yet."""
    commit = lake.last_commit(stream.layer, stream.name)
    offsets = (commit or {}).get("offsets") or {}
    if not any(topic in offsets for topic in stream.topics):
        return stream.start
    default = -2 if stream.start == "earliest" else -1
    partitions = partition_ids(stream.servers, stream.topics)
    chosen = {
        topic: {str(p): int(offsets.get(topic, {}).get(str(p), default)) for p in partitions[topic]} for topic in stream.topics
    }
    return json.dumps(chosen)


def partition_ids(servers: str, topics: Sequence[str]) -> dict[str, list[int]]:
    """The partitions of each topic, from the broker's metadata. Raises TransientError when Kafka does not answer."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    try:
        metadata = AdminClient({"bootstrap.servers": servers}).list_topics(timeout=10)
    except KafkaException as exc:
        raise TransientError(f"Kafka at {servers} did not list its topics: {exc}") from exc
    return {topic: sorted(metadata.topics[topic].partitions) if topic in metadata.topics else [0] for topic in topics}


def millisecond_timestamps(stream: SparkStream) -> bool:
    """True when ``_timestamp`` (Kafka's milliseconds) can be written as the micro-batcher writes it,
    timestamp[ms]: no declared timestamp column is finer than milliseconds."""
    finer = [f.name for f in stream.schema if pa.types.is_timestamp(f.type) and f.type.unit in ("us", "ns")]
    return "_timestamp" in stream.columns and not finer and not stream.sql  # after sql, DuckDB's results are in us


def written_schema(stream: SparkStream) -> pa.Schema | None:
    """The Arrow schema the micro-batcher writes for ``stream`` without ``sql``: the declared columns, then the
    metadata columns (:data:`~sluice.streaming.records.METADATA_TYPES`). Spark writes a declared ``timestamp[s]``,
    ``[ms]`` or ``[ns]`` column in microseconds (its one unit for a timestamp without a time zone), so a batch is
    committed with this schema (:meth:`~sluice.lake.base.StagedAppend.commit`) and read in the declared unit, the
    values being exact in it (:mod:`sluice.streaming.spark_types` takes no more fraction digits than the unit
    holds). None with ``sql``: its result's types are Spark's (DuckDB's on the micro-batcher may differ)."""
    if stream.sql:
        return None
    return pa.schema([*stream.schema, *(pa.field(name, METADATA_TYPES[name]) for name in stream.columns)])


def parsed(raw: Any, stream: SparkStream) -> Any:
    """The Kafka source's DataFrame with the value parsed once: its columns (``value`` kept only for rejected
    records, the dead letters' bytes), :data:`SIZE` (bytes of the value), :data:`PARSED` (a struct of the declared
    columns in their types: ``from_json`` then :func:`~sluice.streaming.spark_types.typed`) and :data:`BAD` (true:
    the record goes to the dead letters).

    A record is rejected, as on the micro-batcher (:mod:`sluice.streaming.records`), when its value is missing
    (a tombstone), is not JSON, is not one JSON object, has something after the object, or has a value that does
    not convert to its declared type (``from_json`` in PERMISSIVE mode puts such records' text in
    :data:`CORRUPT`: Spark's ``columnNameOfCorruptRecord``; timestamps, dates and binaries are converted with the
    micro-batcher's rules by :mod:`sluice.streaming.spark_types`, a value they refuse is a misfit)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    schema = json_schema(stream.schema).add(CORRUPT, StringType())
    text = F.col("value").cast("string")
    value = F.from_json(text, schema, {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT})
    ends = F.expr("endswith(TRIM(TRAILING ' \\t\\r\\n' FROM CAST(value AS STRING)), '}')")
    kept = [name for name in raw.columns if name != "value"]
    step = raw.select(*kept, "value", F.length("value").alias(SIZE), value.alias(JSON), ends.alias("_sluice_ends"))
    columns, misfit = typed(F.col(JSON), stream.schema)
    bad = F.col("value").isNull() | F.col(JSON).isNull() | F.col(JSON)[CORRUPT].isNotNull() | ~F.col("_sluice_ends")
    step = step.select(*kept, SIZE, F.struct(*columns).alias(PARSED), (bad | misfit).alias(BAD), "value")
    return step.select(*kept, SIZE, PARSED, BAD, F.when(F.col(BAD), F.col("value")).alias("value"))


def decoded(frame: Any, stream: SparkStream) -> Any:
    """The object's rows of the records of ``frame`` (:func:`parsed`) that were not rejected: declared columns,
    then the metadata columns."""
    from pyspark.sql import functions as F

    columns = [F.col(PARSED).getField(name).alias(name) for name in stream.schema.names]
    columns += [F.expr(METADATA_EXPRESSIONS[name]).alias(name) for name in stream.columns]
    return frame.filter(~F.col(BAD)).select(*columns)


@dataclass(frozen=True)
class Covered:
    """What one micro-batch covers: per topic and partition the next offset to read, its records, the bytes of
    their values, and how many were rejected."""

    offsets: dict[str, dict[str, int]]
    records: int
    size: int
    rejected: int


def covered_offsets(frame: Any) -> Covered:
    """The :class:`Covered` of the micro-batch ``frame`` (:func:`parsed`), in one aggregation."""
    from pyspark.sql import functions as F

    aggregates = [
        F.max("offset").alias("last"),
        F.count(F.lit(1)).alias("n"),
        F.sum(SIZE).alias("size"),
        F.sum(F.col(BAD).cast("long")).alias("bad"),
    ]
    rows = frame.groupBy("topic", "partition").agg(*aggregates).collect()
    offsets: dict[str, dict[str, int]] = {}
    for row in rows:
        offsets.setdefault(row["topic"], {})[str(row["partition"])] = int(row["last"]) + 1
    return Covered(
        offsets,
        sum(int(row["n"]) for row in rows),
        sum(int(row["size"] or 0) for row in rows),
        sum(int(row["bad"] or 0) for row in rows),
    )


def rejected_records(frame: Any, stream: SparkStream) -> tuple[list[Record], list[Rejected]]:
    """The rejected records of ``frame`` (:func:`parsed`), collected to the driver (only they are: a bad record is
    rare), as :class:`~sluice.streaming.columns.Record` with their key, value, headers and place, and why each was
    rejected: the micro-batcher's own reason (its :class:`~sluice.streaming.records.Decoder` with the declared
    schema, on these records alone), so both engines give the same dead letters; a record only Spark rejects
    (none known) gets :data:`SPARK_REASON`."""
    from pyspark.sql import functions as F

    rows = frame.filter(F.col(BAD)).select("key", "value", "headers", "topic", "partition", "offset").collect()
    records = [
        Record(
            row["value"],
            row["key"],
            row["topic"],
            int(row["partition"]),
            int(row["offset"]),
            headers_=[(h["key"], None if h["value"] is None else bytes(h["value"])) for h in row["headers"] or []] or None,
        )
        for row in sorted(rows, key=lambda r: (r["topic"], r["partition"], r["offset"]))
    ]
    decoder = Decoder(RecordSettings(), declared=stream.schema)  # unknown fields ignored, values that do not fit rejected
    reasons = {item.index: item.reason for item in decoder.decode(records).rejected}
    return records, [Rejected(index, reasons.get(index, SPARK_REASON)) for index in range(len(records))]


def token_of(batch_id: int, covered: Covered) -> str:
    """The idempotency token of a micro-batch (:data:`BATCH_PREFIX`)."""
    digest = xxhash.xxh64_hexdigest(json.dumps(covered.offsets, sort_keys=True).encode())
    return f"{BATCH_PREFIX}{batch_id}:{digest}"


def replayed(lake: Lake, stream: SparkStream, batch_id: int, covered: Covered) -> bool:
    """True when the lake's last commit is this very micro-batch (Spark's batch id, the same end offsets): Spark
    replays its last batch when it was stopped or killed after the lake's commit and before its own checkpoint's,
    and that batch is neither written, dead-lettered nor counted again."""
    last = lake.last_commit(stream.layer, stream.name) or {}
    return last.get("engine") == "spark" and last.get("batch") == batch_id and last.get("offsets") == covered.offsets


class BatchDone(NamedTuple):
    """One committed micro-batch: Spark's batch id, records read, bytes of their values, rows appended, seconds it
    took, and dead letters per source topic."""

    batch_id: int
    records: int
    size: int
    rows: int
    duration_s: float
    dead_letters: dict[str, int]


Committed = Callable[[BatchDone], None]
"""Told of each committed micro-batch."""


def batch_writer(
    lake: Lake,
    stream: SparkStream,
    *,
    object_label: str,
    committed: Committed | None = None,
    failed: Callable[[SluiceError], None] | None = None,
) -> Any:
    """The ``foreachBatch`` function: append a micro-batch to ``stream.layer/name``, committed with its offsets
    (the commit record is the micro-batcher's: ``offsets``, ``batch``, ``at``, ``records``; plus
    ``engine: spark``). Rejected records go to the dead letters first (:func:`rejected_records`,
    :func:`~sluice.streaming.dead_letters.set_aside`, acknowledged before the commit, as on the micro-batcher);
    with ``dead_letter: false`` the batch fails with the micro-batcher's TerminalError. ``failed`` is told of a
    SluiceError that fails a batch before Spark wraps it in its own ``StreamingQueryException``."""
    from sluice.transforms.spark_engine import spark_errors, spark_sql

    sql = spark_sql(stream.sql, [BATCH_VIEW]) if stream.sql else None
    schema = written_schema(stream)
    settings = RecordSettings(dead_letter=stream.dead_letter)
    dead = DeadLetterProducer(stream.servers)
    sent: list[SentLetters] = []  # read back at the query's first micro-batch

    def write(raw: Any, batch_id: int) -> None:
        try:
            append(raw, batch_id)
        except SluiceError as exc:
            if failed is not None:
                failed(exc)
            raise

    def append(raw: Any, batch_id: int) -> None:
        started = time.monotonic()
        batch = parsed(raw, stream).persist()
        try:
            covered = covered_offsets(batch)
            if not sent:  # the dead letters sent for records the lake has not committed, before a crash
                commit = lake.last_commit(stream.layer, stream.name)
                identity = stream_of(stream.project, object_label, lake, stream.layer, stream.name)
                sent.append(read_back(stream.servers, object_label, identity, settings, stream.topics, commit))
            if not covered.offsets or replayed(lake, stream, batch_id, covered):
                return
            letters: dict[str, int] = {}
            if covered.rejected:
                records, rejected = rejected_records(batch, stream)
                letters = set_aside(dead.producer, settings.dead_letter_topic, records, rejected, object_label, sent[0])
            frame = decoded(batch, stream)
            if sql is not None:
                text, views = sql
                for view in views:
                    frame.createOrReplaceTempView(view)
                frame = frame.sparkSession.sql(text)
            staged = lake.stage_append(stream.layer, stream.name)
            try:
                with spark_errors(object_label, [BATCH_VIEW]):
                    frame.write.mode("overwrite").parquet(spark_uri(staged.uri))
            except BaseException:
                staged.discard()
                raise
            record = {"engine": "spark", "batch": batch_id, "offsets": covered.offsets, "at": time.time()}
            record |= {"records": covered.records, **sent[0].commit_record()}
            crash_point(covered.rejected)
            done = staged.commit(commit=record, token=token_of(batch_id, covered), schema=schema)
            compact_when_due(lake, stream.layer, stream.name, stream.compact, batch_id + 1)
            if committed is not None:
                took = time.monotonic() - started
                committed(BatchDone(batch_id, covered.records, covered.size, done.rows, took, letters))
        finally:
            batch.unpersist()

    return write


def start_query(
    session: Any,
    lake: Lake,
    stream: SparkStream,
    *,
    object_label: str,
    checkpoint: str | None = None,
    committed: Committed | None = None,
    failed: Callable[[SluiceError], None] | None = None,
) -> Any:
    """Start the streaming query on ``session`` (one with the Kafka connector) and return Spark's ``StreamingQuery``.

    ``checkpoint`` defaults to :func:`checkpoint_folder`; ``committed`` and ``failed``: see :func:`batch_writer`.
    The caller waits (``awaitTermination``), watches ``lastProgress`` and stops it. Raises TerminalError when
    the schema is missing or the lake cannot host the checkpoint; Spark's own errors surface from the query
    (``exception()``).
    """
    if not len(stream.schema):
        raise TerminalError(f"{object_label}: engine: spark needs the record schema declared (schema: {{column: type}})")
    location = checkpoint or checkpoint_folder(lake, stream.layer, stream.name)
    session = session.newSession()  # SQL settings of its own: the timestamp unit below
    reach_lake(session, lake, stream.layer)
    if millisecond_timestamps(stream):
        session.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MILLIS")
    reader = (
        session.readStream.format("kafka")
        .option("kafka.bootstrap.servers", stream.servers)
        .option("subscribe", ",".join(stream.topics))
        .option("includeHeaders", "true")
        .option("startingOffsets", starting_offsets(lake, stream))
    )
    if stream.max_batch_records is not None:
        reader = reader.option("maxOffsetsPerTrigger", str(stream.max_batch_records))
    for key, value in stream.options.items():
        reader = reader.option(key, value)
    raw = reader.load()
    writer = (
        raw.writeStream.queryName(f"sluice_{stream.layer}_{stream.name}")
        .foreachBatch(batch_writer(lake, stream, object_label=object_label, committed=committed, failed=failed))
        .option("checkpointLocation", location)
    )
    if stream.trigger_s is None:
        writer = writer.trigger(availableNow=True)
    elif stream.trigger_s > 0:  # 0: the next micro-batch as soon as the last one is committed
        writer = writer.trigger(processingTime=f"{int(stream.trigger_s * 1000)} milliseconds")
    return writer.start()
