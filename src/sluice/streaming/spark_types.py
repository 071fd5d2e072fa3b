"""Declared columns decoded on Spark as Sluice's micro-batcher decodes them (:mod:`sluice.streaming.records`, which
parses with ``pyarrow.json`` against the declared schema), for ``engine: spark`` streaming objects.

Spark's ``from_json`` reads some types differently from ``pyarrow.json``, so those columns are read by
``from_json`` in a type that takes the JSON token as it comes, then converted in Spark SQL with the
micro-batcher's rules; a value the micro-batcher rejects makes the record a misfit (dead-lettered):

- **timestamp[s|ms|us|ns]** and **timestamp[unit, tz=UTC]**: ``from_json`` into ``TIMESTAMP_NTZ`` (Sluice's
  ``spark.sql.timestampType``) refuses every value with a UTC offset, and into ``TIMESTAMP`` reads fewer shapes than
  ``pyarrow.json`` (no ``hh`` alone, no ``±hhmm``). Read as a string;
  accepted when it has pyarrow's ISO-8601 shape (:func:`iso_8601`): ``YYYY-MM-DD``, then optionally ``T`` or a
  space and ``hh``, ``hh:mm`` or ``hh:mm:ss`` with at most as many fraction digits as the unit holds (0, 3, 6, 9),
  then optionally ``Z``, ``±hh``, ``±hhmm`` or ``±hh:mm``. A value with an offset is the instant converted to UTC,
  one without is its wall-clock time as written (``2024-05-01T12:00:00+01:00`` and ``2024-05-01 11:00`` both give
  ``2024-05-01 11:00:00``); the result is ``TIMESTAMP_NTZ`` (``TIMESTAMP``, the same instant, for a column with a
  zone, where a value without offset is taken as UTC, as on the micro-batcher) whatever the session's time zone. Spark's own
  range checks apply on top (no 24:00, no 23:59:60, no February 30th, as pyarrow); offsets beyond ±18:00 are
  rejected by Spark only.
- **date32**: ``pyarrow.json`` reads a JSON integer as days since 1970-01-01 and rejects strings, where Spark
  reads date strings and rejects integers: read as an ``int`` (int32 range; a fraction or a string is a misfit),
  then ``date_from_unix_date``.
- **binary**: ``pyarrow.json`` keeps a string's UTF-8 bytes, Spark would decode base64: read as a string and cast.
- **decimal(p,s)**: both read a number or a numeric string, but Spark rounds digits beyond the scale where
  ``pyarrow.json`` refuses the value: read as text, cast, and a misfit unless the cast is exact (no spaces either).

Every other type is read by ``from_json`` in its Spark type (:func:`spark_schema`). Spark's ``TIMESTAMP_NTZ`` holds
microseconds: a ``timestamp[ns]`` value's digits beyond the sixth are dropped, and Spark writes every such column in
microseconds; the declared unit comes back through the commit's schema
(:func:`sluice.streaming.spark_query.written_schema`).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from sluice.errors import TerminalError

__all__ = ["iso_8601", "json_schema", "spark_schema", "typed"]

FRACTION_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}
"""Most fraction-of-second digits ``pyarrow.json`` takes for a timestamp of each unit."""


def iso_8601(unit: str) -> str:
    """The Java regular expression of the timestamp strings ``pyarrow.json`` parses into ``timestamp[unit]``."""
    digits = FRACTION_DIGITS[unit]
    fraction = rf"(\.\d{{1,{digits}}})?" if digits else ""
    return rf"^\d{{4}}-\d{{2}}-\d{{2}}([T ]\d{{2}}(:\d{{2}}(:\d{{2}}{fraction})?)?(Z|[+-]\d{{2}}(:?\d{{2}})?)?)?$"


def spark_schema(schema: pa.Schema) -> Any:
    """The Spark ``StructType`` of an Arrow schema (declared columns: ``timestamp[us]`` is TIMESTAMP_NTZ,
    ``timestamp[us, tz=UTC]`` TIMESTAMP, as in DuckDB). Raises TerminalError for a type Spark lacks."""
    from pyspark.sql.pandas.types import from_arrow_schema

    try:
        return from_arrow_schema(schema)
    except Exception as exc:
        raise TerminalError(f"schema: a declared type has no Spark equivalent ({exc}); declare another type") from exc


def json_schema(schema: pa.Schema) -> Any:
    """The ``StructType`` ``from_json`` reads the declared ``schema`` with: :func:`spark_schema`, with timestamp,
    binary and decimal columns as strings and date32 columns as ints (converted by :func:`typed`)."""
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    fields = []
    for arrow, spark in zip(schema, spark_schema(schema).fields, strict=True):
        if pa.types.is_timestamp(arrow.type) or pa.types.is_binary(arrow.type) or pa.types.is_decimal(arrow.type):
            spark = StructField(arrow.name, StringType())
        elif pa.types.is_date32(arrow.type):
            spark = StructField(arrow.name, IntegerType())
        fields.append(spark)
    return StructType(fields)


def typed(parsed: Any, schema: pa.Schema) -> tuple[Any, Any]:
    """``(columns, misfit)`` for ``parsed``, the ``from_json`` struct column read with :func:`json_schema`: the
    declared columns in their Spark types (a list of columns named as declared) and a boolean column, true where a
    value is present but does not convert as on the micro-batcher (the module's rules)."""
    from pyspark.sql import functions as F

    columns: list[Any] = []
    misfits: list[Any] = []
    for arrow in schema:
        raw = parsed.getField(arrow.name)
        if pa.types.is_timestamp(arrow.type):
            value = _timestamp(raw, zoned=arrow.type.tz is not None)
            misfits.append(raw.isNotNull() & (~raw.rlike(iso_8601(arrow.type.unit)) | value.isNull()))
        elif pa.types.is_date32(arrow.type):
            value = F.date_from_unix_date(raw)
        elif pa.types.is_binary(arrow.type):
            value = raw.cast("binary")
        elif pa.types.is_decimal(arrow.type):
            value, exact = _decimal(raw, arrow.type)
            misfits.append(raw.isNotNull() & (value.isNull() | ~exact | raw.rlike(r"\s")))
        else:
            value = raw
        columns.append(value.alias(arrow.name))
    misfit = F.lit(False)
    for one in misfits:
        misfit = misfit | one
    return columns, misfit


def _decimal(text: Any, type_: Any) -> tuple[Any, Any]:
    """``text`` (a JSON number's or string's text) as ``decimal(p, s)`` (null where it does not parse or fit) and
    whether that is its exact value: Spark's cast rounds extra fraction digits, ``pyarrow.json`` refuses them. The
    exact value is the cast with as many fraction digits as 38 leave beside the type's integer digits."""
    precision, scale = int(type_.precision), int(type_.scale)
    value = text.try_cast(f"decimal({precision},{scale})")
    wide = text.try_cast(f"decimal(38,{38 - (precision - scale)})")
    return value, wide.isNotNull() & (wide == value)


def _timestamp(text: Any, zoned: bool) -> Any:
    """``text`` (an ISO-8601 string of :func:`iso_8601`'s shape) as TIMESTAMP_NTZ in UTC (``zoned``: TIMESTAMP, the
    same instant); null where Spark cannot read it. Missing minutes and seconds become ``:00`` and a missing offset
    ``Z`` (Spark's cast refuses ``hh:mmZ``), and the instant is added to the epoch in microseconds, so the session's
    time zone plays no part."""
    from pyspark.sql import functions as F

    date = r"^(\d{4}-\d{2}-\d{2})"
    full = F.regexp_replace(text, date + "$", "$1T00")
    full = F.regexp_replace(full, date + r"([T ]\d{2})(Z|[+-]|$)", "$1$2:00$3")
    full = F.regexp_replace(full, date + r"([T ]\d{2}:\d{2})(Z|[+-]|$)", "$1$2:00$3")
    full = F.regexp_replace(full, r"([T ]\d{2}:\d{2}:\d{2}(\.\d+)?)$", "$1Z")
    instant = full.try_cast("timestamp_ltz")  # the offset counts; null where Spark cannot read it
    if zoned:
        return F.timestamp_micros(F.unix_micros(instant))
    epoch = F.lit("1970-01-01 00:00:00").cast("timestamp_ntz")
    return F.timestamp_add("MICROSECOND", F.unix_micros(instant), epoch)
