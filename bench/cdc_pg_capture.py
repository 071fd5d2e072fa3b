"""PostgreSQL capture rate: rows/s from commit to yielded events, for a ~1M-row workload (one command).

    PYTHONPATH=src python bench/cdc_pg_capture.py [--rows 1000000] [--url postgresql://postgres@127.0.0.1:25432/postgres]

Creates a scratch database ``cappg_bench_<random>``, a table of typical types, a slot; writes ``--rows``
inserts (in transactions of 10,000 rows) then updates and deletes of a tenth of them; streams everything
back through :class:`sluice.cdc.pg_capture.PostgresCapture`, acknowledging each batch like the runtime, and
prints rows/s and peak RSS. Drops the slot and the database at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg

from sluice.cdc.events import ChangeEvent
from sluice.cdc.pg_capture import PostgresCapture
from sluice.cdc.plugins import PostgresCaptureOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
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
    finally:
        capture.drop()
        capture.close()
        with psycopg.connect(args.url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
