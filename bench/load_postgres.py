"""Bulk-load throughput into PostgreSQL: a Sluice object against a raw binary COPY of the same rows.

Both sides load the same N rows (id int64, user_id int64, amount float64, currency 3-char string,
ts timestamp, note ~20-char string) into a freshly created, regular, index-free table and commit:

- raw: the rows' pre-encoded PostgreSQL binary COPY stream (made once with ``COPY (SELECT ...) TO STDOUT
  (FORMAT binary)`` and kept in a file) streamed with psycopg 3 into ``COPY t FROM STDIN (FORMAT binary)``
  in 8 MiB chunks: the server-side floor, no client-side encoding at all;
- sluice: a whole run (RunStarted to RunFinished) of a one-object Sluice project: a parquet source, no lake
  copy, a PostgreSQL destination in append mode; the time includes orchestration, Parquet decoding and
  Arrow -> COPY encoding (PostgresDestination, ADBC).

Runs alternate (raw, sluice, raw, sluice, ...), ``--repeat`` times each, after a CHECKPOINT so no run
pays for the previous one's dirty pages; best and median are reported. Inputs are cached in .tmp/bench/.

    python bench/load_postgres.py --rows 5000000
    python bench/load_postgres.py --rows 1000000 --repeat 5 --json

``measure(rows)`` returns the same numbers as a dict for other benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sluice.project.load import load_project
from sluice.runtime.run import RunOptions, run_project

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".tmp" / "bench"
GENERATOR_VERSION = 1  # bump when generate() changes, so cached files are rebuilt
CHUNK_ROWS = 1_000_000  # rows generated (and written as one Parquet row group) at a time
BATCH_ROWS = 65_536  # rows per Arrow batch handed to the destination
COPY_CHUNK = 8 << 20
TABLE_DDL = "CREATE TABLE {} (id bigint, user_id bigint, amount double precision, currency text, ts timestamp, note text)"
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("user_id", pa.int64()),
        ("amount", pa.float64()),
        ("currency", pa.string()),
        ("ts", pa.timestamp("us")),
        ("note", pa.string()),
    ]
)


def postgres_url() -> str:
    """The benchmark database: SLUICE_BENCH_PG_URL if set, else ``sluice_bench`` on the throwaway server."""
    if os.environ.get("SLUICE_BENCH_PG_URL"):
        return os.environ["SLUICE_BENCH_PG_URL"]
    done = subprocess.run(
        [str(REPO / "scripts" / "servers" / "postgres.sh"), "start"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"cannot start PostgreSQL:\n{done.stdout}{done.stderr}")
    server = done.stdout.strip().splitlines()[-1]
    with psycopg.connect(server, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'sluice_bench'").fetchone():
            conn.execute("CREATE DATABASE sluice_bench")
    return server.rsplit("/", 1)[0] + "/sluice_bench"


# -- inputs ----------------------------------------------------------------------------------------------


def _uniform(n: int, seed: int, high: float) -> pa.Array:
    return pc.multiply(pc.random(n, initializer=seed), high)


def _chunk(start: int, n: int) -> pa.RecordBatch:
    """Rows start .. start+n-1, the same on every machine (seeded by position)."""
    seed = GENERATOR_VERSION * 1_000_003 + start
    ids = pc.add(pc.cumulative_sum(pa.nulls(n, pa.int64()).fill_null(1)), start - 1)
    currencies = pa.array(["EUR", "USD", "GBP", "JPY", "CHF", "SEK"])
    notes = pa.array([f"order note {i:04d} " + "xyzabc"[: i % 7] for i in range(4096)])  # 16-22 chars
    micros = pc.cast(pc.floor(_uniform(n, seed + 4, 365 * 86_400 * 1e6)), pa.int64())
    return pa.RecordBatch.from_arrays(
        [
            ids,
            pc.cast(pc.floor(_uniform(n, seed + 1, 1_000_000)), pa.int64()),
            pc.round(_uniform(n, seed + 2, 10_000), 2),
            pc.take(currencies, pc.cast(pc.floor(_uniform(n, seed + 3, len(currencies))), pa.int32())),
            pc.cast(pc.add(micros, 1_704_067_200_000_000), pa.timestamp("us")),  # from 2024-01-01
            pc.take(notes, pc.cast(pc.floor(_uniform(n, seed + 5, len(notes))), pa.int32())),
        ],
        schema=SCHEMA,
    )


def parquet_file(rows: int) -> Path:
    """The cached Parquet file with ``rows`` rows, generated when missing."""
    path = CACHE / f"orders_v{GENERATOR_VERSION}_{rows}.parquet"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with pq.ParquetWriter(partial, SCHEMA) as writer:
        for start in range(0, rows, CHUNK_ROWS):
            writer.write_batch(_chunk(start, min(CHUNK_ROWS, rows - start)), row_group_size=CHUNK_ROWS)
    partial.rename(path)
    return path


def copy_file(url: str, parquet: Path, rows: int) -> Path:
    """The rows' binary COPY stream, made by PostgreSQL itself from a table loaded with them."""
    path = parquet.with_suffix(".pgcopy")
    if path.exists() and path.stat().st_mtime >= parquet.stat().st_mtime:
        return path
    import adbc_driver_postgresql.dbapi

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_encode")
        conn.execute(TABLE_DDL.format("bench_encode"))
    with adbc_driver_postgresql.dbapi.connect(url) as adbc, adbc.cursor() as cur:
        cur.adbc_ingest("bench_encode", parquet_reader(parquet), mode="append")
        adbc.commit()
    partial = path.with_suffix(".partial")
    with psycopg.connect(url, autocommit=True) as conn:
        with (
            partial.open("wb") as out,
            conn.cursor().copy("COPY (SELECT * FROM bench_encode ORDER BY id) TO STDOUT (FORMAT binary)") as copy,
        ):
            for chunk in copy:
                out.write(chunk)
        count = conn.execute("SELECT count(*) FROM bench_encode").fetchone()
        conn.execute("DROP TABLE bench_encode")
    if count is None or count[0] != rows:
        raise SystemExit(f"encoding table has {count} rows, expected {rows}")
    partial.rename(path)
    return path


def parquet_reader(parquet: Path, batch_rows: int = BATCH_ROWS) -> pa.RecordBatchReader:
    source = pq.ParquetFile(parquet)
    return pa.RecordBatchReader.from_batches(source.schema_arrow, source.iter_batches(batch_size=batch_rows))


# -- the two contenders ----------------------------------------------------------------------------------


def _fresh_table(url: str, table: str, create: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        if create:
            conn.execute(TABLE_DDL.format(table))
        conn.execute("CHECKPOINT")
    os.sync()  # flush the page cache now rather than during the timed run


def run_raw(url: str, copy_path: Path, table: str = "bench_raw") -> float:
    """Seconds to stream the pre-encoded COPY file into a fresh table and commit."""
    _fresh_table(url, table, create=True)
    with psycopg.connect(url) as conn, copy_path.open("rb") as stream:
        started = time.perf_counter()
        with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
            while chunk := stream.read(COPY_CHUNK):
                copy.write(chunk)
        conn.commit()
        return time.perf_counter() - started


def object_project(url: str, parquet: Path, table: str) -> Path:
    """A one-object Sluice project: read the Parquet file, append it to ``table`` (no lake copy)."""
    folder = CACHE / "object-project"
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "name": "load-bench",
        "connections": {"warehouse": url},
        "objects": [
            {
                "id": 1001,
                "name": "orders",
                "source": {"type": "parquet", "path": str(parquet)},
                "lake": False,
                "destination": {"connection": "warehouse", "table": table, "mode": "append"},
            }
        ],
    }
    (folder / "sluice.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    return folder


def run_sluice(url: str, parquet: Path, rows: int, table: str = "bench_sluice") -> float:
    """Seconds for a Sluice run of one object loading the Parquet rows into a fresh table (RunStarted to RunFinished)."""
    _fresh_table(url, table, create=False)
    project = load_project(object_project(url, parquet, table))
    summary = run_project(project, RunOptions(force=True))
    loaded = summary.objects[1001]
    if summary.status != "succeeded" or loaded.rows != rows:
        raise SystemExit(f"the Sluice run {summary.status}: {loaded.status}, {loaded.rows} rows (want {rows}); {loaded.error}")
    return summary.duration_s


def _same_rows(url: str, left: str, right: str) -> None:
    check = (
        "SELECT count(*), sum(id), sum(user_id), sum(amount::numeric), string_agg(DISTINCT currency, ','), "
        "sum(length(note)), max(ts) FROM {}"
    )
    with psycopg.connect(url) as conn:
        a, b = conn.execute(check.format(left)).fetchone(), conn.execute(check.format(right)).fetchone()
    if a != b:
        raise SystemExit(f"the two loads differ: {left} {a} vs {right} {b}")


def measure(rows: int, repeat: int = 3, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load ``rows`` rows both ways, alternating, ``repeat`` times each; return timings, rows/s and ratios."""
    say = log or (lambda message: None)
    url = postgres_url()
    say(f"preparing {rows:,} rows in {CACHE}")
    parquet = parquet_file(rows)
    copy_path = copy_file(url, parquet, rows)
    raw: list[float] = []
    sluice: list[float] = []
    for round_ in range(repeat):
        raw.append(run_raw(url, copy_path))
        say(f"  raw    #{round_ + 1}: {raw[-1]:.2f} s")
        sluice.append(run_sluice(url, parquet, rows))
        say(f"  sluice #{round_ + 1}: {sluice[-1]:.2f} s")
        if round_ == 0:
            _same_rows(url, "bench_raw", "bench_sluice")
    raw_best, raw_median = rows / min(raw), rows / statistics.median(raw)
    sluice_best, sluice_median = rows / min(sluice), rows / statistics.median(sluice)
    result = {
        "rows": rows,
        "repeat": repeat,
        "parquet_bytes": parquet.stat().st_size,
        "copy_bytes": copy_path.stat().st_size,
        "raw_s": raw,
        "sluice_s": sluice,
        "raw_rows_per_s_best": raw_best,
        "raw_rows_per_s_median": raw_median,
        "sluice_rows_per_s_best": sluice_best,
        "sluice_rows_per_s_median": sluice_median,
        "ratio_best": sluice_best / raw_best,
        "ratio_median": sluice_median / raw_median,
    }
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw")
        conn.execute("DROP TABLE IF EXISTS bench_sluice")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    result = measure(args.rows, args.repeat, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"rows: {args.rows:,}  (best / median of {args.repeat})")
    print(f"raw COPY binary : {result['raw_rows_per_s_best']:>12,.0f} / {result['raw_rows_per_s_median']:>12,.0f} rows/s")
    print(f"sluice object   : {result['sluice_rows_per_s_best']:>12,.0f} / {result['sluice_rows_per_s_median']:>12,.0f} rows/s")
    print(f"ratio sluice/raw: {result['ratio_best']:>12.3f} / {result['ratio_median']:>12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
