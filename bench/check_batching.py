"""Data-quality checks inside PostgreSQL: the checks that can share a scan counted by one query, against one query per
check, same table, same run (docs/checks.md).

    python bench/check_batching.py [--rows 2000000] [--rounds 3]

A throwaway database on the test server (``SLUICE_TEST_PG_URL``, else ``scripts/servers/postgres.sh url``) gets a table
of ``--rows`` rows (id, user_id, amount, status, ts, email with 0.1 % nulls) and a 10,000-row ``users`` table; an
object loaded there carries ten checks (not_null x2, accepted_values, expression x2, row_count, freshness, unique,
relationships, sql), six of which fail. Each round runs :class:`~sluice.checks.run.CheckRunner` with ``batch=True``
and ``batch=False`` back to back (who goes first alternates) and prints seconds and the ratio; then the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sluice.checks.run import CheckRunner  # noqa: E402
from sluice.lake.registry import open_lake  # noqa: E402
from sluice.project.load import load_project  # noqa: E402

CHECKS = """
      - not_null: {columns: [email]}
      - not_null: {columns: [id, user_id]}
      - accepted_values: {column: status, values: [completed, pending, refunded]}
      - expression: amount >= 0
      - expression: amount < 990
      - row_count: {min: 1}
      - freshness: {column: ts, max_age: 1d}
      - unique: {columns: [id]}
      - relationships: {column: user_id, to: users, field: user_id}
      - sql: select * from {{ this }} where email like '%@y'
"""


def server_url() -> str:
    url = os.environ.get("SLUICE_TEST_PG_URL", "").strip()
    if url:
        return url
    done = subprocess.run([str(REPO / "scripts/servers/postgres.sh"), "url"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or sys.exit("no PostgreSQL: set SLUICE_TEST_PG_URL or run scripts/servers/postgres.sh start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = server_url()
    name = f"check_batching_{os.getpid()}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE facts AS SELECT g AS id, g % 10000 AS user_id, (g % 997)::float8 AS amount, "
                "(ARRAY['completed','pending','refunded','failed'])[1 + g % 4] AS status, "
                "timestamp '2026-01-01' - (g % 86400) * interval '1 second' AS ts, "
                f"CASE WHEN g % 1000 = 0 THEN NULL ELSE 'u' || g || '@x' END AS email FROM generate_series(1, {args.rows}) AS g"
            )
            conn.execute("CREATE TABLE users AS SELECT g AS user_id FROM generate_series(0, 9998) AS g")
            conn.execute("ANALYZE facts")
            conn.execute("ANALYZE users")
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "sluice.yaml").write_text(
                f"connections: {{db: '{url}'}}\nobjects:\n"
                "  - {id: 1001, name: users, source: {type: sql, connection: db, table: users}, "
                "destination: {connection: db, table: users}}\n"
                "  - id: 1002\n    name: facts\n    parents: [1001]\n    source: {type: sql, connection: db, table: facts}\n"
                "    destination: {connection: db, table: facts}\n    checks:" + CHECKS
            )
            project = load_project(folder)
            lake = open_lake(project)
            obj = project.objects[1002]
            print(f"{args.rows:,} rows, {len(obj.checks)} checks; load: {os.getloadavg()[0]:.2f}")
            ratios, times = [], {True: [], False: []}
            for round_ in range(args.rounds):
                seconds = {}
                for batch in (True, False) if round_ % 2 == 0 else (False, True):
                    started = time.perf_counter()
                    results = CheckRunner(project, lake, batch=batch).run(obj, "", store=False).results
                    seconds[batch] = time.perf_counter() - started
                    failed = sum(r.status == "failed" for r in results)
                    if os.environ.get("CHECK_BATCHING_DETAIL"):
                        print(batch, [(r.check, round(r.duration_s, 2)) for r in results])
                    errors = [r.message for r in results if r.status == "error"]
                    assert not errors, errors
                    times[batch].append(seconds[batch])
                ratios.append(seconds[False] / seconds[True])
                print(
                    f"round {round_ + 1}: batched {seconds[True]:.2f}s, one query per check {seconds[False]:.2f}s, "
                    f"ratio {ratios[-1]:.2f}x ({failed} failed)"
                )
            print(
                f"median: batched {statistics.median(times[True]):.2f}s, one query per check "
                f"{statistics.median(times[False]):.2f}s, ratio (median of rounds) {statistics.median(ratios):.2f}x; "
                f"load: {os.getloadavg()[0]:.2f}"
            )
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
