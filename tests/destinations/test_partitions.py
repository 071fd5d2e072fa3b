"""Partition and index names, interval starts and partition bounds (no database)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from sluice.destinations.partitions import index_name, interval_starts, next_start, parse_range, pg_name
from sluice.destinations.warehouse_options import IndexSpec


def test_long_names_are_cut_to_63_bytes_deterministically() -> None:
    table = "t" * 60
    name = index_name(table, IndexSpec(columns=("customer_id", "order_date")))
    assert len(name.encode()) <= 63 and name.endswith("_idx") and name.startswith("t" * 40)
    assert name == index_name(table, IndexSpec(columns=("customer_id", "order_date")))
    assert name != index_name(table, IndexSpec(columns=("customer_id", "order_day")))
    assert len(pg_name("é" * 40, "p2026_11_30").encode()) <= 63
    assert pg_name("orders", "p2026_11") == "orders_p2026_11"


def test_partition_bounds_are_read_as_utc_datetimes() -> None:
    assert parse_range("FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')") == (dt.datetime(2026, 1, 1), dt.datetime(2026, 2, 1))
    assert parse_range("FOR VALUES FROM ('2026-01-01 01:00:00+01') TO (MAXVALUE)") == (dt.datetime(2026, 1, 1), dt.datetime.max)
    assert parse_range("FOR VALUES FROM (MINVALUE) TO ('2026-01-01 00:00:00')") == (dt.datetime.min, dt.datetime(2026, 1, 1))
    assert parse_range("DEFAULT") is None
    assert parse_range("FOR VALUES FROM ('-infinity') TO ('2026-01-01')") is None


def test_interval_starts_cut_dates_and_timestamps_to_their_interval() -> None:
    days = pa.array([dt.date(2026, 1, 5), dt.date(2026, 1, 31), dt.date(2026, 3, 1)], pa.date32())
    assert interval_starts(days, "month") == {dt.date(2026, 1, 1), dt.date(2026, 3, 1)}
    assert interval_starts(days, "year") == {dt.date(2026, 1, 1)}
    zoned = pa.array([dt.datetime(2026, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))], pa.timestamp("us", tz="+01:00"))
    assert interval_starts(zoned, "day") == {dt.date(2025, 12, 31)}  # 23:30 UTC the day before
    assert interval_starts(pa.array([dt.datetime(2026, 2, 3, 4)], pa.timestamp("ns")).dictionary_encode(), "day") == {
        dt.date(2026, 2, 3)
    }


def test_next_start_rolls_over_months_and_years() -> None:
    assert next_start(dt.date(2026, 12, 1), "month") == dt.date(2027, 1, 1)
    assert next_start(dt.date(2026, 2, 28), "day") == dt.date(2026, 3, 1)
    assert next_start(dt.date(2026, 1, 1), "year") == dt.date(2027, 1, 1)
