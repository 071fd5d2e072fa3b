"""PostgreSQL source over ADBC: the driver copies rows out in binary and hands over Arrow batches.

Types follow the ADBC driver (``int4`` -> int32, ``timestamptz`` -> timestamp[us, UTC], ``jsonb`` ->
arrow.json, ``uuid`` -> arrow.uuid, arrays -> lists) with two fixes so the lake can store everything:
``numeric(p, s)`` becomes decimal128(p, s) and unconstrained ``numeric`` (what ``SUM`` returns) float64,
since the driver returns numerics as text; ``interval`` becomes duration[us], counting a month as 30
days as PostgreSQL itself does. Other types the driver does not know (``inet``, ``tsvector``...) arrive
as their binary wire form: cast them to text in a query.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from sluice.connectors.batching import stream
from sluice.connectors.sql import SqlSource
from sluice.errors import TerminalError
from sluice.urls import libpq_url

TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58")
TRANSIENT_SQLSTATES = ("55P03",)  # lock_not_available
TERMINAL_CONNECT_HINTS = ("does not exist", "authentication failed", "no pg_hba.conf entry")
_US_PER_DAY = 86_400_000_000
_MONTH_DAYS = 30

Converter = Callable[[pa.Array | pa.ChunkedArray], pa.Array]


def numeric_type(typmod: int) -> pa.DataType:
    """Arrow type for ``numeric`` with a given type modifier (-1 when unconstrained)."""
    if typmod < 4:
        return pa.float64()
    precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    return pa.decimal128(precision, scale) if 0 < precision <= 38 else pa.float64()


def _numeric_converter(target: pa.DataType) -> Converter:
    def convert(array: pa.Array | pa.ChunkedArray) -> pa.Array:
        storage = array.storage if isinstance(array, pa.ExtensionArray) else array
        return storage.cast(target)

    return convert


def _interval_to_duration(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    values = [
        None if value is None else (value.months * _MONTH_DAYS + value.days) * _US_PER_DAY + value.nanoseconds // 1000
        for value in array.to_pylist()
    ]
    return pa.array(values, pa.duration("us"))


def lake_friendly(schema: pa.Schema) -> tuple[pa.Schema, dict[int, Converter]]:
    """The schema the source publishes and the converters (by column position) that produce it."""
    fields: list[pa.Field] = []
    converters: dict[int, Converter] = {}
    for position, field in enumerate(schema):
        type_ = field.type
        metadata = field.metadata or {}
        if isinstance(type_, pa.BaseExtensionType) and metadata.get(b"POSTGRESQL:type") == b"numeric":
            target = numeric_type(int(metadata.get(b"POSTGRESQL:typmod", b"-1")))
            converters[position] = _numeric_converter(target)
            field = field.with_type(target)
        elif pa.types.is_interval(type_):
            converters[position] = _interval_to_duration
            field = field.with_type(pa.duration("us"))
        fields.append(field)
    return pa.schema(fields, metadata=schema.metadata), converters


class PostgresSource(SqlSource):
    """``{type: sql, connection: warehouse, table: public.orders}`` over a ``postgresql://`` connection."""

    scheme = "postgresql"

    def read(self) -> pa.RecordBatchReader:
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as pg

        query = self.query
        try:
            con = pg.connect(libpq_url(self.connection.url))
        except adbc_driver_manager.Error as exc:
            raise self.connect_error(exc) from exc
        cursor = con.cursor()
        try:
            cursor.execute(query)
            reader = cursor.fetch_record_batch()
        except adbc_driver_manager.Error as exc:
            _close_all(cursor, con)
            raise self.error(exc) from exc
        schema, converters = lake_friendly(reader.schema)

        def batches() -> Iterator[pa.RecordBatch]:
            for batch in reader:
                if not converters:
                    yield batch
                    continue
                columns = [converters[i](column) if i in converters else column for i, column in enumerate(batch.columns)]
                yield pa.RecordBatch.from_arrays(columns, schema=schema)

        return stream(schema, batches(), on_error=self.translate, on_close=lambda: _close_all(reader, cursor, con))

    def connect_error(self, exc: Exception) -> Exception:
        text = str(exc)
        if any(hint in text for hint in TERMINAL_CONNECT_HINTS):
            return TerminalError(
                f"postgresql {self.describe()}: cannot connect: {' '.join(text.split())}; fix the connection URL"
            )
        return self.unreachable(exc)

    def error(self, exc: Exception) -> Exception:
        sqlstate = str(getattr(exc, "sqlstate", None) or "")
        if sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES or sqlstate in TRANSIENT_SQLSTATES:
            return self.busy(exc)
        if not sqlstate and "[libpq]" in str(exc) and "ERROR:" not in str(exc):
            return self.busy(exc)  # the connection dropped while reading
        return self.rejected(exc)

    def translate(self, exc: Exception) -> Exception | None:
        import adbc_driver_manager

        return self.error(exc) if isinstance(exc, adbc_driver_manager.Error) else None


def _close_all(*resources: Any) -> None:
    for resource in resources:
        with contextlib.suppress(Exception):  # closing after a failure must not hide the failure
            resource.close()
