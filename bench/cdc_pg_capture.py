"""PostgreSQL capture rate: rows/s from commit to yielded events, for a ~1M-row workload (one command).

    PYTHONPATH=src python bench/cdc_pg_capture.py [--rows 1000000] [--url postgresql://postgres@127.0.0.1:25432/postgres]

Creates a scratch database ``cappg_bench_<random>``, a table of typical types, a slot; writes ``--rows``
inserts (in transactions of 10,000 rows) then updates and deletes of a tenth of them; streams everything
back through :class:`sluice.cdc.pg_capture.PostgresCapture`, acknowledging each batch like the runtime, and
prints rows/s and peak RSS. Then, for ``--latency-s`` seconds, a writer commits 100-row transactions at
10,000 rows/s while capture streams: p50/p99 of (time the event is yielded - commit time). Drops the slot
and the database at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from sluice.cdc.events import ChangeEvent
from sluice.cdc.pg_capture import PostgresCapture
from sluice.cdc.plugins import PostgresCaptureOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--latency-s", type=float, default=10.0)
    parser.add_argument("--url", default=os.environ.get("SLUICE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:25432/postgres"))
    args = parser.parse_args()
    name = f"cappg_bench_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(args.url)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    with psycopg.connect(args.url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    capture = PostgresCapture(url, PostgresCaptureOptions(slot=name), "bench", "pg")
    try:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(
                "CREATE TABLE orders (id bigint PRIMARY KEY, customer int, amount numeric(12,2), note text, "
                "status varchar(16), created timestamptz, day date, payload jsonb)"
            )
            table = next(t for t in capture.list_tables() if t.name == "orders")
            start, _ = capture.current_position()
            began = time.perf_counter()
            step = 10_000
            for low in range(1, args.rows + 1, step):
                high = min(low + step - 1, args.rows)
                db.execute(
                    "INSERT INTO orders SELECT g, g %% 1000, (g %% 100000) / 100.0, md5(g::text), 'new', "
                    "now(), current_date, jsonb_build_object('g', g) FROM generate_series(%s::bigint, %s::bigint) g",
                    [low, high],
                )
            tenth = args.rows // 10
            db.execute("UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id <= %s", [tenth])
            db.execute("DELETE FROM orders WHERE id > %s", [args.rows - tenth])
            written_s = time.perf_counter() - began
        expected = args.rows + 2 * tenth
        seen = 0
        began = time.perf_counter()
        stream = capture.stream(start, [table], max_wait_s=1.0)
        for batch in stream:
            seen += sum(1 for e in batch.events if isinstance(e, ChangeEvent))
            capture.acknowledge(batch.position)
            if seen >= expected:
                break
        stream.close()
        read_s = time.perf_counter() - began
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"wrote {expected:,} row changes in {written_s:.1f} s")
        print(f"captured {seen:,} row changes in {read_s:.1f} s: {seen / read_s:,.0f} rows/s; peak RSS {rss_mb:.0f} MB")
        if args.latency_s > 0:
            latency(capture, url, table, args.rows, args.latency_s)
    finally:
        capture.drop()
        capture.close()
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def latency(capture: PostgresCapture, url: str, table: Any, first_id: int, seconds: float) -> None:
    """Commit -> yielded latency at a steady 10,000 rows/s (100-row transactions every 10 ms)."""
    start, _ = capture.current_position()
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(url, autocommit=True) as db:
            next_id = first_id + 1
            tick = time.perf_counter()
            while not stop.is_set():
                db.execute(
                    "INSERT INTO orders (id, customer, note) SELECT g, 1, 'x' FROM generate_series(%s::bigint, %s::bigint) g",
                    [next_id, next_id + 99],
                )
                next_id += 100
                tick += 0.01
                time.sleep(max(0.0, tick - time.perf_counter()))

    writer = threading.Thread(target=write)
    writer.start()
    delays: list[float] = []
    ends = time.monotonic() + seconds
    stream = capture.stream(start, [table], max_wait_s=1.0)
    for batch in stream:
        now_us = time.time() * 1_000_000
        delays.extend((now_us - e.source.commit_ts_us) / 1000 for e in batch.events if isinstance(e, ChangeEvent))
        capture.acknowledge(batch.position)
        if time.monotonic() > ends:
            break
    stream.close()
    stop.set()
    writer.join()
    cuts = statistics.quantiles(delays, n=100)
    print(f"latency at 10,000 rows/s over {seconds:.0f} s ({len(delays):,} rows): p50 {cuts[49]:.0f} ms, p99 {cuts[98]:.0f} ms")


if __name__ == "__main__":
    main()
