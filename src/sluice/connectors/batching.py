"""Helpers shared by sources: wrap a batch generator into a reader, turn rows into Arrow columns.

>>> import pyarrow as pa
>>> schema = pa.schema([("a", pa.int64())])
>>> reader = stream(schema, iter([pa.record_batch([pa.array([1, 2])], schema=schema)]))
>>> reader.read_all().num_rows
2
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from sluice.errors import TerminalError

_DECIMAL = re.compile(r"^decimal(?:128|256)?\((\d+)\s*,\s*(\d+)\)$")
_TIMESTAMP = re.compile(r"^(?:timestamp|datetime)\[\s*(s|ms|us|ns)\s*(?:,\s*tz\s*=\s*([^\]]*?)\s*)?\]$", re.IGNORECASE)
_OFFSET = re.compile(r"^[+-](?:[01]\d|2[0-3]):[0-5]\d$")


def stream(
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    *,
    on_error: Callable[[Exception], Exception | None] | None = None,
    on_close: Callable[[], None] | None = None,
) -> pa.RecordBatchReader:
    """A reader over ``batches`` that runs ``on_close`` once the batches end, fail or the reader is dropped.

    ``on_error`` may translate an exception raised while producing batches (for example a driver error
    into a :class:`~sluice.errors.TerminalError`); returning None re-raises the original.
    """

    def generate() -> Iterator[pa.RecordBatch]:
        try:
            yield from batches
        except Exception as exc:
            translated = on_error(exc) if on_error is not None else None
            if translated is None or translated is exc:
                raise
            raise translated from exc
        finally:
            close()

    iterator = generate()
    # Runs on_close once: when the batches end or fail, or when the reader (and so the iterator) is
    # dropped, even before the first batch was read.
    close = weakref.finalize(iterator, on_close or _nothing)
    return pa.RecordBatchReader.from_batches(schema, iterator)


def _nothing() -> None:
    return None


def transpose(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows (tuples) to columns (lists); ``width`` columns even when there are no rows."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def arrow_type(name: str) -> pa.DataType:
    """An Arrow type from a name a user can write in a definition file.

    >>> arrow_type("int64"), arrow_type("decimal(10,2)"), arrow_type("timestamp[us]")
    (DataType(int64), Decimal128Type(decimal128(10, 2)), TimestampType(timestamp[us]))
    >>> arrow_type("timestamp[ms, tz=UTC]"), arrow_type("timestamp[us, tz=Europe/Paris]"), arrow_type("timestamp[s, tz=+02:00]")
    (TimestampType(timestamp[ms, tz=UTC]), TimestampType(timestamp[us, tz=Europe/Paris]), TimestampType(timestamp[s, tz=+02:00]))

    Time-zone-aware timestamps are written as pyarrow prints them, ``timestamp[<unit>, tz=<zone>]``: the zone an IANA
    name (``UTC``, ``Europe/Paris``) or a fixed offset (``+02:00``).
    """
    stamp = _TIMESTAMP.match(name.strip())
    if stamp:
        return _timestamp(name, stamp.group(1).lower(), stamp.group(2))
    text = name.strip().lower()
    aliases = {"int": "int64", "integer": "int64", "float": "float64", "double": "float64", "text": "string", "date": "date32"}
    text = aliases.get(text, text)
    if text in ("timestamp", "datetime"):
        return pa.timestamp("us")
    match = _DECIMAL.match(text)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        return pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    try:
        return pa.type_for_alias(text)
    except ValueError:
        raise TerminalError(
            f"unknown column type {name!r}; use an Arrow type name such as string, int64, float64, bool, "
            "date32, timestamp[us], timestamp[ms, tz=UTC] or decimal(10,2)"
        ) from None


def _timestamp(name: str, unit: str, zone: str | None) -> pa.DataType:
    """``timestamp[unit]`` or ``timestamp[unit, tz=zone]``, the zone checked (pyarrow accepts any text until it
    converts a value)."""
    if zone is None:
        return pa.timestamp(unit)
    if zone.upper() == "UTC":
        zone = "UTC"
    elif not _OFFSET.match(zone):
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise TerminalError(
                f"unknown time zone {zone!r} in column type {name!r}; use an IANA name or an offset, "
                "e.g. timestamp[ms, tz=UTC], timestamp[ms, tz=Europe/Paris] or timestamp[ms, tz=+02:00]"
            ) from None
    return pa.timestamp(unit, tz=zone)


def schema_overrides(raw: Any, what: str) -> dict[str, pa.DataType]:
    """Parse a ``column_types: {column: type}`` option."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TerminalError(f"{what}: 'column_types' must be a mapping of column name to type, e.g. {{id: int64}}")
    return {str(column): arrow_type(str(type_name)) for column, type_name in raw.items()}
