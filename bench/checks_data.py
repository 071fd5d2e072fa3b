"""The table bench/checks.py checks: 10,000,000 orders in PostgreSQL with faults put there on purpose.

``bench_checks.customers`` (1,000 rows, primary key) is the dimension; ``bench_checks.orders`` (no index, as a
fact table loaded by a pipeline usually is) has an id, a foreign key to the dimension, a status, an amount, an
email and two timestamps. Rows are made by ``generate_series`` inside PostgreSQL and streamed through the client
from ``COPY (SELECT ...) TO STDOUT`` into ``COPY orders FROM STDIN`` (binary), so nothing is built row by row in
Python. The faults are fixed by the row number ``i`` (see ``EXPECTED``), so every tool must find the same counts:

- ``order_id`` repeats the previous id on every row ``i`` multiple of 1,000,003 (9 ids twice, 18 rows);
- ``customer_id`` is NULL on multiples of 200,003 (49 rows) and 5000 + i % 7 (not a customer) on multiples of
  400,009 (24 rows);
- ``status`` is ``unknown`` (not an accepted value) on multiples of 250,007 (39 rows);
- ``amount`` is negative on multiples of 333,331 (30 rows);
- ``email`` is NULL on multiples of 97 (103,092 rows);
- ``updated_at`` is before ``created_at`` on multiples of 500,009 (19 rows).

The table is made once and reused while it has the expected row count and ``GENERATOR_VERSION`` in its comment.
"""

from __future__ import annotations

import time

import psycopg

SCHEMA = "bench_checks"
GENERATOR_VERSION = 1  # bump when the rows change, so an old table is rebuilt
STATUSES = ("placed", "shipped", "delivered", "returned", "cancelled")
CUSTOMERS = 1000
FRESH_UNTIL = "2026-11-01 00:00:00+00"  # created_at of the last row; rows go back 2 s each

ORDERS_DDL = f"""
CREATE TABLE {SCHEMA}.orders (
    order_id bigint,
    customer_id bigint,
    status text,
    amount numeric(12, 2),
    email text,
    created_at timestamptz,
    updated_at timestamptz
)"""

CUSTOMERS_SQL = f"""
CREATE TABLE {SCHEMA}.customers (customer_id bigint PRIMARY KEY, name text, country text);
INSERT INTO {SCHEMA}.customers
SELECT c, 'customer ' || c, (ARRAY['FR', 'DE', 'ES', 'IT', 'BE'])[1 + c % 5] FROM generate_series(1, {CUSTOMERS}) AS c;
"""

ORDERS_SELECT = """
SELECT
    CASE WHEN i % 1000003 = 0 THEN i - 1 ELSE i END,
    CASE WHEN i % 200003 = 0 THEN NULL WHEN i % 400009 = 0 THEN 5000 + i % 7 ELSE 1 + (i * 7919) % {customers} END,
    CASE WHEN i % 250007 = 0 THEN 'unknown' ELSE (ARRAY{statuses})[1 + i % 5] END,
    (CASE WHEN i % 333331 = 0 THEN -1 - (i * 37) % 100000 ELSE (i * 37) % 100000 END / 100.0)::numeric(12, 2),
    CASE WHEN i % 97 = 0 THEN NULL ELSE 'user' || (i % 100000) || '@example.com' END,
    timestamptz '{fresh}' - ({rows} - i) * interval '2 seconds',
    timestamptz '{fresh}' - ({rows} - i) * interval '2 seconds'
        + CASE WHEN i % 500009 = 0 THEN interval '-1 hour' ELSE (i % 86400) * interval '1 second' END
FROM generate_series(1::bigint, {rows}) AS i
"""


def expected(rows: int) -> dict[str, int]:
    """Failing rows each fault gives in a table of ``rows`` rows (duplicates: rows sharing an id)."""
    orphans = sum(1 for i in range(400009, rows + 1, 400009) if i % 200003 != 0)
    return {
        "duplicate_rows": 2 * (rows // 1000003),
        "duplicate_ids": rows // 1000003,
        "null_customer": rows // 200003,
        "orphan_customer": orphans,
        "unknown_status": rows // 250007,
        "negative_amount": rows // 333331,
        "null_email": rows // 97,
        "updated_before_created": rows // 500009,
    }


def comment(rows: int) -> str:
    return f"bench/checks.py v{GENERATOR_VERSION} rows={rows}"


def ensure_table(url: str, rows: int) -> tuple[bool, float]:
    """Create and load the tables unless they are there with ``rows`` rows; (made now, seconds taken)."""
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        found = conn.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (f"{SCHEMA}.orders",)).fetchone()
        if found is not None and found[0] == comment(rows):
            return False, time.perf_counter() - started
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(CUSTOMERS_SQL)
        conn.execute(ORDERS_DDL)
        select = ORDERS_SELECT.format(customers=CUSTOMERS, statuses=list(STATUSES), fresh=FRESH_UNTIL, rows=rows)
        with (
            psycopg.connect(url, autocommit=True) as reader,
            conn.cursor() as writer,
            reader.cursor() as source,
            source.copy(f"COPY ({select}) TO STDOUT (FORMAT binary)") as out,
            writer.copy(f"COPY {SCHEMA}.orders FROM STDIN (FORMAT binary)") as into,
        ):
            for chunk in out:
                into.write(chunk)
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.orders")
        conn.execute(f"COMMENT ON TABLE {SCHEMA}.orders IS '{comment(rows)}'")
    return True, time.perf_counter() - started
