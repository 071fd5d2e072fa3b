"""Names, intervals and bounds of the PostgreSQL warehouse's range partitions and indexes (no database here).

- :func:`pg_name`: ``<base>_<suffix>`` within PostgreSQL's 63 bytes, deterministic (a hash when cut);
- :func:`interval_starts`: the first day of each day/month/year interval an Arrow column's dates fall in
  (vectorised with ``pyarrow.compute.floor_temporal``; zoned timestamps at UTC midnight);
- :func:`parse_range`: a partition's bounds as ``pg_get_expr(relpartbound, 0)`` prints them.

Example::

    interval_starts(pa.array([date(2026, 1, 5), date(2026, 3, 1)]), "month")   # {date(2026, 1, 1), date(2026, 3, 1)}
    pg_name("fact_orders", partition_suffix(date(2026, 11, 1), "month"))       # 'fact_orders_p2026_11'
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pyarrow as pa
import pyarrow.compute as pc

from sluice.destinations.warehouse_options import IndexSpec

MAX_NAME_BYTES = 63  # NAMEDATALEN - 1


def pg_name(base: str, suffix: str) -> str:
    """``<base>_<suffix>``, cut to 63 bytes with an 8-hex-digit hash of the whole name when longer (deterministic)."""
    full = f"{base}_{suffix}"
    if len(full.encode()) <= MAX_NAME_BYTES:
        return full
    digest = hashlib.blake2b(full.encode(), digest_size=4).hexdigest()
    room = MAX_NAME_BYTES - len(f"_{digest}_{suffix}".encode())
    return f"{base.encode()[:room].decode(errors='ignore')}_{digest}_{suffix}"


def index_name(table: str, index: IndexSpec) -> str:
    """``<table>_<col>_<col>_idx`` (``_key`` for a unique index), at most 63 bytes."""
    return pg_name("_".join([table, *index.columns]), "key" if index.unique else "idx")


def next_start(start: dt.date, interval: str) -> dt.date:
    """The first day of the interval after the one starting on ``start`` (``day``, ``month`` or ``year``)."""
    if interval == "day":
        return start + dt.timedelta(days=1)
    if interval == "year":
        return dt.date(start.year + 1, 1, 1)
    return dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)


def partition_suffix(start: dt.date, interval: str) -> str:
    """``p2026`` (year), ``p2026_11`` (month) or ``p2026_11_30`` (day)."""
    return {"year": f"p{start:%Y}", "month": f"p{start:%Y_%m}"}.get(interval, f"p{start:%Y_%m_%d}")


def is_partition_type(kind: pa.DataType) -> bool:
    """Date and timestamp columns can partition a table."""
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_date(kind) or pa.types.is_timestamp(kind))


def interval_starts(column: pa.Array | pa.ChunkedArray, interval: str) -> set[dt.date]:
    """The first day of each interval ``column``'s values fall in (vectorised; nulls are the caller's to refuse)."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode() if isinstance(column, pa.Array) else pc.cast(column, column.type.value_type)
    kind = column.type
    if pa.types.is_timestamp(kind) and kind.tz is not None:
        column = pc.cast(column, pa.timestamp(kind.unit, "UTC"))
    elif pa.types.is_date64(kind):
        column = pc.cast(column, pa.date32())
    starts = pc.unique(pc.floor_temporal(column, unit=interval)).drop_null().to_pylist()
    return {value.date() if isinstance(value, dt.datetime) else value for value in starts}


_RANGE = re.compile(r"FOR VALUES FROM \((MINVALUE|'[^']*')\) TO \((MAXVALUE|'[^']*')\)")


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day)


def parse_range(bound: str) -> tuple[dt.datetime, dt.datetime] | None:
    """A range partition's bounds (``pg_get_expr(relpartbound, oid)``) as naive datetimes, UTC for zoned ones.

    ``FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')``: from 2026-01-01 00:00 to 2026-02-01 00:00;
    MINVALUE and MAXVALUE are the smallest and largest datetimes. None for anything else (a DEFAULT
    partition, several columns, a value Python cannot read such as ``infinity``).
    """
    match = _RANGE.fullmatch(bound.strip())
    if match is None:
        return None
    values: list[dt.datetime] = []
    for text, extreme in ((match.group(1), dt.datetime.min), (match.group(2), dt.datetime.max)):
        if text in ("MINVALUE", "MAXVALUE"):
            values.append(extreme)
            continue
        try:
            value = dt.datetime.fromisoformat(text.strip("'"))
        except ValueError:
            return None
        values.append(value.astimezone(dt.UTC).replace(tzinfo=None) if value.tzinfo is not None else value)
    return values[0], values[1]
