"""Date-part columns (``year``, ``month``, ``day``, ``hour``) added to an output before it is written.

An ``Objets.json`` object's ``NiveauHierarchique`` partitions its lake output by date parts
(docs/objets-json.md): the parts are integer columns (int32) taken from ``date_column`` when the object's
settings name one (a date, a timestamp, or an ISO-8601 string such as ``2026-11-30T10:00:00Z``), else from
the load time in UTC (one instant per write). A part column the data already has is kept as it is.

>>> import pyarrow as pa
>>> data = pa.RecordBatchReader.from_batches(pa.schema([("d", pa.string())]), [pa.record_batch({"d": ["2024-05-06"]})])
>>> with_date_parts(data, ("year", "month"), "d", "object 1001").read_all().to_pylist()
[{'d': '2024-05-06', 'year': 2024, 'month': 5}]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from sluice.errors import TerminalError

DATE_PARTS: tuple[str, ...] = ("year", "month", "day", "hour")
"""The date parts a partition level may name, coarsest first."""


def with_date_parts(
    reader: pa.RecordBatchReader, parts: Sequence[str], date_column: str | None, label: str
) -> pa.RecordBatchReader:
    """``reader`` with an int32 column per name of ``parts`` (among :data:`DATE_PARTS`) appended.

    Values come from ``date_column`` (a date, timestamp or ISO-8601 string column) when given, else from the
    current UTC time. Raises TerminalError (one line naming ``label`` and the column) when ``date_column`` is
    missing or cannot be read as a timestamp.
    """
    schema = reader.schema
    wanted = [part for part in parts if schema.get_field_index(part) < 0]
    if not wanted:
        return reader
    if date_column is not None and schema.get_field_index(date_column) < 0:
        names = ", ".join(schema.names) or "none"
        raise TerminalError(
            f"{label}: date_column '{date_column}' is not in the data (columns: {names}); fix objets.date_column in sluice.yaml"
        )
    now = dt.datetime.now(dt.UTC)
    out_schema = schema
    for part in wanted:
        out_schema = out_schema.append(pa.field(part, pa.int32()))

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            columns = list(batch.columns)
            stamps = _stamps(batch.column(date_column), date_column, label) if date_column is not None else None
            for part in wanted:
                if stamps is None:
                    value = getattr(now, part)
                    columns.append(pa.array([value] * batch.num_rows, pa.int32()))
                else:
                    columns.append(pc.cast(getattr(pc, part)(stamps), pa.int32()))
            yield pa.RecordBatch.from_arrays(columns, schema=out_schema)

    return pa.RecordBatchReader.from_batches(out_schema, batches())


def _stamps(column: pa.Array, name: str, label: str) -> pa.Array:
    """``column`` as timestamps (dates and timestamps as they are, strings parsed as ISO 8601)."""
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        return column
    try:
        return pc.cast(column, pa.timestamp("us", tz="UTC"))  # with a zone offset (Z, +02:00)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        return pc.cast(column, pa.timestamp("us"))  # a date or a local time: its own parts
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise TerminalError(
            f"{label}: date_column '{name}' ({column.type}) cannot be read as dates ({exc}); name a date or timestamp column"
        ) from exc
