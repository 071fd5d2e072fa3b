"""Apply throughput of the change-data-capture targets: PostgresApply and MysqlApply, rows per second.

Builds ``--rows`` row changes in memory (default 1,000,000: 70% inserts, 20% updates, 10% deletes of
keys inserted before, 8 typical columns: bigint key, two strings, decimal(12,2), int32, datetime(6),
timestamp(6), bool), then applies them in batches of ``--batch`` (default 20,000) to a fresh schema /
database on each target and prints rows/s (changes handed to ``apply_batch`` per second of wall time,
building the events excluded). The machine's load average is printed with the figures: other work on
the 2 cores shows in them. The servers are the project's throwaway ones (``SLUICE_TEST_PG_URL`` /
``SLUICE_TEST_MYSQL_URL`` or the defaults below); what the run creates is dropped at the end.

    python bench/cdc_apply.py
    python bench/cdc_apply.py --rows 200000 --targets pg
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
import uuid
from typing import Any

from sluice.cdc.apply_base import SqlApply
from sluice.cdc.base import TableRef
from sluice.cdc.events import ChangeEvent, Column, Source, TableSchema
from sluice.cdc.plugins import ApplyOptions

PG_URL = os.environ.get("SLUICE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:25432/postgres")
MYSQL_URL = os.environ.get("SLUICE_TEST_MYSQL_URL", "mysql://sluice:sluice@127.0.0.1:23306/sluice")
COLUMNS = [
    Column("id", "int64", nullable=False),
    Column("name", "string", length=64),
    Column("email", "string", length=128),
    Column("amount", "decimal(12,2)"),
    Column("qty", "int32"),
    Column("created", "datetime(6)"),
    Column("updated", "timestamp(6)"),
    Column("active", "bool"),
]


def build(rows: int, seed: int = 7) -> list[ChangeEvent]:
    """``rows`` changes of table ``src.bench`` with increasing positions."""
    rng = random.Random(seed)
    live: list[int] = []
    events: list[ChangeEvent] = []
    next_id = 1
    for i in range(rows):
        roll = rng.random()
        source = Source("mysql", "src", [1, i + 1, 0], f"bin.000001:{i + 1}", 1_700_000_000_000_000 + i)
        if roll < 0.7 or len(live) < 100:
            key = next_id
            next_id += 1
            live.append(key)
            after = _row(key, i)
            events.append(ChangeEvent("c", "src.bench", [key], source, None, after))
        elif roll < 0.9:
            key = live[rng.randrange(len(live))]
            events.append(ChangeEvent("u", "src.bench", [key], source, {"id": key}, _row(key, i)))
        else:
            slot = rng.randrange(len(live))
            key = live[slot]
            live[slot] = live[-1]
            live.pop()
            events.append(ChangeEvent("d", "src.bench", [key], source, {"id": key}, None))
    return events


def _row(key: int, i: int) -> dict[str, Any]:
    return {
        "id": key,
        "name": f"employee {key}",
        "email": f"user{key}@example.org",
        "amount": f"{i % 100000}.{i % 100:02d}",
        "qty": i % 1000,
        "created": "2024-05-06 07:08:09.123456",
        "updated": 1_700_000_000_000_000 + i,
        "active": i % 2 == 0,
    }


def run(name: str, apply: SqlApply, table: TableRef, events: list[ChangeEvent], batch: int) -> float:
    apply.prepare([table])
    started = time.perf_counter()
    for start in range(0, len(events), batch):
        apply.apply_batch(table, events[start : start + batch])
    elapsed = time.perf_counter() - started
    rate = len(events) / elapsed
    load = os.getloadavg()[0]
    print(f"{name}: {len(events):,} changes in {elapsed:.2f} s = {rate:,.0f} rows/s (load average {load:.1f})")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=20_000)
    parser.add_argument("--targets", default="pg,mysql", help="comma-separated: pg, mysql")
    args = parser.parse_args()
    started = time.perf_counter()
    events = build(args.rows)
    gc.collect()
    gc.freeze()  # the runtime holds one batch, not a million events: keep the collector off them
    print(f"built {len(events):,} events in {time.perf_counter() - started:.2f} s")
    suffix = uuid.uuid4().hex[:8]
    namespace = f"apply_bench_{suffix}"
    options = ApplyOptions(namespace=f"{namespace}_cdc")
    table = TableRef(TableSchema("src", "bench", COLUMNS, ["id"]), namespace, "bench")
    targets = args.targets.split(",")
    if "pg" in targets:
        import psycopg

        from sluice.cdc.pg_apply import PostgresApply

        pg = PostgresApply(PG_URL, options, "bench", "pg")
        try:
            run("PostgreSQL", pg, table, events, args.batch)
        finally:
            pg.close()
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}" CASCADE')
                conn.execute(f'DROP SCHEMA IF EXISTS "{namespace}_cdc" CASCADE')
    if "mysql" in targets:
        import pymysql

        from sluice.cdc.mysql_apply import MysqlApply
        from sluice.connectors.mysql import connect_arguments

        my = MysqlApply(MYSQL_URL, options, "bench", "mysql")
        try:
            run("MariaDB", my, table, events, args.batch)
        finally:
            my.close()
            my_conn = pymysql.connect(**connect_arguments(MYSQL_URL), autocommit=True)
            with my_conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{namespace}`")
                cursor.execute(f"DROP DATABASE IF EXISTS `{namespace}_cdc`")
            my_conn.close()


if __name__ == "__main__":
    main()
