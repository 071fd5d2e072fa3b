"""Event-time windows (``sluice.streaming.windows``): records/s through the operator, next to one DuckDB query.

1,000,000 records (``--records``) spread over one hour of event time (about 278 records/s of event time), out of
order by up to 5 s, grouped by ``user_id`` over 10,000 users, with ``count(*)``, ``sum(amount)`` and
``avg(amount)``. The operator takes them in micro-batches (``--batch`` records each, default 10,000 and 100,000)
with a 10 s watermark delay, then ``flush()`` emits the windows left open; tumbling 1-minute windows and
sliding 1-minute windows every 10 s (each record in 6 windows). Printed per case: seconds, records/s, the
windows emitted, the largest state (records kept) and the ratio to the peer.

Peer, in the same run on the same table: one DuckDB query computing the same windows over the whole input at
once (what a batch job would do; no watermark, no state, no micro-batches): the lower bound for the operator,
which runs DuckDB on each window's records when it closes. Both outputs are checked equal (window, group,
count, sum) before any figure is printed. Best of ``--repeats`` for each.

    python bench/windows.py
    python bench/windows.py --records 200000 --repeats 1     # quick
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import duckdb
import msgspec
import numpy as np
import pyarrow as pa

from sluice.streaming.window_options import WindowOptions
from sluice.streaming.windows import WindowOperator

SECOND = 1_000_000
AGGREGATES = {"n": "count(*)", "total": "sum(amount)::BIGINT", "mean": "avg(amount)"}


def records(count: int, seed: int = 13) -> pa.Table:
    """``count`` records over one hour from 2024-01-01 UTC, in arrival order, up to 5 s out of order."""
    rng = np.random.default_rng(seed)
    arrival = np.sort(rng.uniform(0, 3600, count))
    event = arrival - rng.uniform(0, 5, count)
    start = 1_704_067_200 * SECOND
    return pa.table(
        {
            "ts": pa.array(start + (event * SECOND).astype("int64")).cast(pa.timestamp("us", tz="UTC")),
            "user_id": rng.integers(0, 10_000, count),
            "amount": rng.integers(1, 1_000, count),
            "note": pa.array(np.char.add("order-", rng.integers(0, 10**6, count).astype(str))),
        }
    )


def through_operator(table: pa.Table, options: WindowOptions, batch: int) -> tuple[pa.Table, int]:
    operator = WindowOperator(options)
    closed, peak = [], 0
    for offset in range(0, table.num_rows, batch):
        result = operator.process(table.slice(offset, batch))
        closed.append(result.closed)
        peak = max(peak, operator.state_records)
    closed.append(operator.flush().closed)
    operator.close()
    return pa.concat_tables(closed), peak


def in_duckdb(table: pa.Table, size_s: int, slide_s: int) -> pa.Table:
    windows = size_s // slide_s
    sql = f"""
        SELECT to_timestamp(s::DOUBLE) AS window_start, to_timestamp((s + {size_s})::DOUBLE) AS window_end, user_id,
               count(*) AS n, sum(amount)::BIGINT AS total, avg(amount) AS mean
        FROM (SELECT *, (epoch_us(ts) // {slide_s * SECOND}) * {slide_s} - k * {slide_s} AS s
              FROM events, range({windows}) AS w(k))
        GROUP BY ALL ORDER BY window_start, user_id
    """
    con = duckdb.connect()
    con.register("events", table)
    result = con.sql(sql).to_arrow_table()
    con.close()
    return result


def key_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    starts = [value.timestamp() for value in table.column("window_start").to_pylist()]
    return sorted(
        zip(
            starts,
            table.column("user_id").to_pylist(),
            table.column("n").to_pylist(),
            table.column("total").to_pylist(),
            strict=True,
        )
    )


def best(repeats: int, job: Callable[[], Any]) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        value = job()
        times.append(time.perf_counter() - began)
    return min(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, action="append", help="micro-batch sizes (default 10,000 and 100,000)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    table = records(args.records)
    print(f"{args.records:,} records, {table.nbytes / 1e6:.0f} MB in Arrow, 10,000 users, one hour of event time")
    cases = [
        ("tumbling 1m", {"type": "tumbling", "size": "1m"}, 60, 60),
        ("sliding 1m/10s", {"type": "sliding", "size": "1m", "slide": "10s"}, 60, 10),
    ]
    for label, window, size_s, slide_s in cases:
        raw = {**window, "time_column": "ts", "watermark": "10s", "group_by": ["user_id"], "aggregates": AGGREGATES}
        options = msgspec.convert(raw, WindowOptions)
        peer_s, expected = best(args.repeats, lambda size_s=size_s, slide_s=slide_s: in_duckdb(table, size_s, slide_s))
        print(
            f"\n{label}: DuckDB, one query over all records: {peer_s:.2f} s, {args.records / peer_s:,.0f} records/s, "
            f"{expected.num_rows:,} windows"
        )
        for size in args.batch or [10_000, 100_000]:
            seconds, (closed, peak) = best(
                args.repeats, lambda size=size, options=options: through_operator(table, options, size)
            )
            same = key_rows(closed) == key_rows(expected)
            print(
                f"  operator, micro-batches of {size:,}: {seconds:.2f} s, {args.records / seconds:,.0f} records/s, "
                f"{closed.num_rows:,} windows, largest state {peak:,} records, {peer_s / seconds:.2f}x DuckDB's rate, "
                f"same windows: {'yes' if same else 'NO'}"
            )


if __name__ == "__main__":
    main()
