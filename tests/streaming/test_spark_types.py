"""Declared columns decoded on Spark as on the micro-batcher (sluice.streaming.spark_types): each value through
Spark's ``from_json`` and :func:`typed`, and through the micro-batcher's :class:`Decoder`, gives the same value or
the same rejection."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from sluice.streaming.columns import Record
from sluice.streaming.options import RecordSettings
from sluice.streaming.records import Decoder
from sluice.streaming.spark_types import json_schema, typed

TIMESTAMPS: list[Any] = [
    "2024-05-01T12:00:00Z",
    "2024-05-01T12:00:00+00:00",
    "2024-05-01T12:00:00+01:00",
    "2024-05-01T12:00:00-05:30",
    "2024-05-01T12:00:00+0100",
    "2024-05-01T12:00:00+01",
    "2024-05-01T12:00:00",
    "2024-05-01 12:00:00",
    "2024-05-01T12:00:00.5",
    "2024-05-01T12:00:00.123Z",
    "2024-05-01T12:00:00.123456",
    "2024-05-01T12:00:00.1234567Z",
    "2024-05-01T12:00",
    "2024-05-01T12:00Z",
    "2024-05-01T12",
    "2024-05-01T12+01:00",
    "2024-05-01",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59.999",
    None,
    # refused by both
    "2024-02-30T00:00:00",
    "2024-05-01T24:00:00",
    "2024-05-01T23:59:60",
    "2024-05-01T12:60:00",
    "2024-05-01Z",
    "2024-05-01T12:00:00.Z",
    "2024-05-01t12:00:00",
    " 2024-05-01T12:00:00",
    "2024-5-1T12:00:00",
    "2024-05-01T12:00:00+1",
    "2024-05-01T12:00:00 +01:00",
    "yesterday",
    "",
    1714564800,
    True,
    {"at": "2024-05-01"},
]
DATES: list[Any] = [19844, 0, -1, None, 1.5, 19844.0, "19844", "2024-05-01", 3_000_000_000, False]
DECIMALS: list[Any] = [1.25, 1, -0.5, "1.25", "-1", 1e2, "1e2", 12345678.99, None, 1.255, "1.255", 0.001, 123456789.99]
DECIMALS += ["abc", " 1.25", True]
BINARIES: list[Any] = ["xy", "", "é\u00e9", "eHk=", None]  # a number is read as its text, as for string (docs/engines.md)


def both(spark: Any, type_name: str, values: list[Any]) -> tuple[list[Any], list[Any]]:
    """Each of ``values`` as ``{"v": value}`` declared ``{v: type_name}``: (the micro-batcher's, Spark's), a value
    or ``"rejected"`` each."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType

    settings = RecordSettings(schema={"v": type_name})
    schema = settings.declared_schema()
    assert schema is not None
    texts = [json.dumps({"v": value}) for value in values]
    decoded = Decoder(settings).decode([Record(text.encode(), offset_=i) for i, text in enumerate(texts)])
    rejected = {item.index for item in decoded.rejected}
    kept = iter(decoded.batch.column("v").to_pylist())
    on_sluice = ["rejected" if i in rejected else next(kept) for i in range(len(values))]
    frame = spark.createDataFrame([(i, text) for i, text in enumerate(texts)], "i int, text string")
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}  # as spark_query.parsed
    parsed = F.from_json("text", json_schema(schema).add("_corrupt", StringType()), options).alias("json")
    columns, misfit = typed(F.col("json"), schema)
    bad = misfit | F.col("json._corrupt").isNotNull()
    rows = frame.select("i", parsed).select("i", F.struct(*columns).alias("p"), bad.alias("bad")).orderBy("i").collect()
    on_spark = ["rejected" if row["bad"] else row["p"]["v"] for row in rows]
    return on_sluice, on_spark


@pytest.mark.parametrize("unit", ["s", "ms", "us"])
def test_timestamps_are_read_as_on_the_micro_batcher(kafka_spark: Any, unit: str) -> None:
    on_sluice, on_spark = both(kafka_spark, f"timestamp[{unit}]", TIMESTAMPS)
    assert on_spark == on_sluice
    assert on_sluice[20:] == ["rejected"] * (len(TIMESTAMPS) - 20)
    assert sum(value != "rejected" for value in on_sluice) == {"s": 15, "ms": 18, "us": 19}[unit]  # fractions: the unit's


def test_offsets_are_converted_to_utc_and_values_without_one_taken_as_written(kafka_spark: Any) -> None:
    from datetime import datetime

    kafka_spark.conf.set("spark.sql.session.timeZone", "Europe/Paris")  # plays no part
    try:
        _, on_spark = both(kafka_spark, "timestamp[ms]", TIMESTAMPS[:8])
    finally:
        kafka_spark.conf.set("spark.sql.session.timeZone", "UTC")
    noon = datetime(2024, 5, 1, 12)
    assert on_spark[:6] == [noon, noon, datetime(2024, 5, 1, 11), datetime(2024, 5, 1, 17, 30), *[datetime(2024, 5, 1, 11)] * 2]
    assert on_spark[6:] == [noon, noon]


@pytest.mark.parametrize(("type_name", "values"), [("date32", DATES), ("binary", BINARIES), ("decimal(10,2)", DECIMALS)])
def test_dates_binaries_decimals_are_read_as_on_the_micro_batcher(kafka_spark: Any, type_name: str, values: list[Any]) -> None:
    on_sluice, on_spark = both(kafka_spark, type_name, values)
    assert on_spark == on_sluice
    assert any(value not in ("rejected", None) for value in on_spark)


def test_a_declared_schema_keeps_its_arrow_types_on_spark(kafka_spark: Any) -> None:
    schema = pa.schema([("t", pa.timestamp("ms")), ("d", pa.date32()), ("b", pa.binary()), ("n", pa.int64())])
    assert [f.dataType.simpleString() for f in json_schema(schema).fields] == ["string", "int", "string", "bigint"]
