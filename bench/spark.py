"""Spark engine: a join + aggregate over 10,000,000 generated rows as a Sluice object vs the same job in plain PySpark.

One command: ``python bench/spark.py`` (``--rows``, ``--repeats``, ``--master``). It generates ``orders``
(``--rows`` rows: order id, customer id, amount, timestamp) and ``customers`` (``--customers`` rows with a
country) as Parquet files, loads both into a project's lake once (untimed), then times, in the same
process and on the same Spark session (started once, before anything is timed):

- **sluice**: ``run_project`` of the ``engine: spark`` object alone (its parents fresh), the whole run
  from planning to the last event: Sluice's machinery + Spark reading the lake, joining, aggregating and
  writing Parquet parts + the lake's commit;
- **pyspark**: the same job written by hand: ``spark.read.parquet`` of the same lake files, the same join
  and aggregate in Spark SQL, ``df.write.parquet`` to a folder;
- **duckdb**: the same model as an ``engine: duckdb`` object (``run_project``, same as Sluice's Spark run).

Both Spark jobs do the same work: the same session and settings (``spark.sql.shuffle.partitions``, zstd
Parquet), the same input files, the same SQL (the text Sluice's sqlglot translation gives), the same output
(timestamps cast to wall-clock ``TIMESTAMP_NTZ`` as Sluice writes them, the same number of parts).

Each repetition changes the objects' ``metadata`` so they (and only they) run again. ``--warmup`` untimed
rounds come first (Spark's JIT keeps speeding up the first few jobs). In each round Sluice and plain PySpark
run back to back, Sluice first in even rounds and second in odd ones, then DuckDB; a JVM and Python garbage
collection (untimed) precedes every job. Per job: wall seconds and CPU seconds (this process, which holds
DuckDB's threads, plus the Spark JVM's, from ``/proc``). Sluice's overhead over plain PySpark (goal: at most
10 %) is the median of each round's own ratio, the two jobs having shared that round's conditions; the ratio
of the median CPU seconds, which other processes on a shared machine move less, is printed beside it.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sluice.project.load import load_project
from sluice.runtime.run import RunOptions, run_project

MODEL = (
    "select c.country, date_trunc('month', o.ordered_at) as month, count(*) as orders, sum(o.amount) as revenue, "
    "avg(o.amount) as average from orders o join customers c on c.customer_id = o.customer_id group by all"
)
PLAIN_SPARK_SQL = (
    "SELECT c.country, DATE_TRUNC('MONTH', o.ordered_at) AS month, COUNT(*) AS orders, SUM(o.amount) AS revenue, "
    "AVG(o.amount) AS average FROM orders AS o JOIN customers AS c ON c.customer_id = o.customer_id GROUP BY ALL"
)
"""The model in Spark SQL, written by hand (the text sqlglot's translation of MODEL gives, so only Sluice differs)."""
COUNTRIES = ["FR", "DE", "IT", "ES", "NL", "BE", "PT", "PL", "SE", "DK", "FI", "IE", "AT", "CZ", "GR", "HU", "RO", "SK"]


def generate(folder: Path, rows: int, customers: int) -> None:
    """``orders.parquet`` (``rows`` rows, written in 1M-row groups) and ``customers.parquet`` in ``folder``."""
    rng = np.random.default_rng(7)
    people = pa.table(
        {
            "customer_id": np.arange(1, customers + 1, dtype=np.int64),
            "country": pa.array(np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), customers)]),
        }
    )
    pq.write_table(people, folder / "customers.parquet")
    start = np.datetime64("2024-01-01T00:00:00", "us")
    chunk = 1_000_000
    schema = pa.schema(
        [("order_id", pa.int64()), ("customer_id", pa.int64()), ("amount", pa.float64()), ("ordered_at", pa.timestamp("us"))]
    )
    with pq.ParquetWriter(folder / "orders.parquet", schema, compression="zstd") as writer:
        for offset in range(0, rows, chunk):
            n = min(chunk, rows - offset)
            seconds = rng.integers(0, 730 * 86400, n).astype("timedelta64[s]").astype("timedelta64[us]")
            writer.write_table(
                pa.table(
                    {
                        "order_id": np.arange(offset, offset + n, dtype=np.int64),
                        "customer_id": rng.integers(1, customers + 1, n, dtype=np.int64),
                        "amount": np.round(rng.lognormal(3.0, 1.0, n), 2),
                        "ordered_at": start + seconds,
                    },
                    schema=schema,
                )
            )


def write_project(folder: Path, master: str, partitions: int, repetition: int) -> None:
    (folder / "sluice.yaml").write_text(
        f"spark: {{master: '{master}', conf: {{spark.sql.shuffle.partitions: {partitions}, spark.ui.enabled: false}}}}\n"
        "objects:\n"
        "  - {id: 1001, name: orders, source: {type: parquet, path: orders.parquet}}\n"
        "  - {id: 1002, name: customers, source: {type: parquet, path: customers.parquet}}\n"
        + "".join(
            f"  - {{id: {oid}, name: on_{engine}, parents: [1001, 1002], engine: {engine}, metadata: {{rep: {repetition}}}, "
            f'sql: "{MODEL}"}}\n'
            for oid, engine in ((2001, "spark"), (2002, "duckdb"))
        ),
        encoding="utf-8",
    )


def timed_run(folder: Path, master: str, partitions: int, repetition: int, target: int) -> float:
    write_project(folder, master, partitions, repetition)
    project = load_project(folder)
    started = time.perf_counter()
    summary = run_project(project, RunOptions(targets=[target]))
    elapsed = time.perf_counter() - started
    ran = {oid: s.status for oid, s in summary.objects.items()}
    if summary.status != "succeeded" or ran.get(target) != "loaded" or any(ran[p] != "skipped" for p in (1001, 1002)):
        raise SystemExit(f"run of {target} did not load it alone: {ran} {[s.error for s in summary.objects.values()]}")
    return elapsed


def plain_pyspark(spark: object, lake: Path, out: Path) -> float:
    """The same job in plain PySpark on the same session: read the lake's files, join, aggregate, write Parquet."""
    session = spark.newSession()  # type: ignore[attr-defined]
    started = time.perf_counter()
    session.read.parquet(f"file://{lake / 'raw' / 'orders.parquet'}").createOrReplaceTempView("orders")
    session.read.parquet(f"file://{lake / 'raw' / 'customers.parquet'}").createOrReplaceTempView("customers")
    frame = session.sql(PLAIN_SPARK_SQL)
    frame = frame.withColumn("month", frame["month"].cast("timestamp_ntz"))  # wall-clock, as Sluice writes it
    frame.write.mode("overwrite").parquet(f"file://{out}")
    return time.perf_counter() - started


def jvm_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (``/proc/<pid>/stat``; 0 where there is no /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def collect_garbage(spark: object) -> None:
    """A full garbage collection in the JVM and in Python, untimed, between two timed jobs."""
    spark.sparkContext._jvm.java.lang.System.gc()  # type: ignore[attr-defined]
    gc.collect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (default 2)")
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--partitions", type=int, default=8, help="spark.sql.shuffle.partitions")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="sluice-bench-spark-"))
    try:
        started = time.perf_counter()
        generate(folder, args.rows, args.customers)
        print(f"generated {args.rows:,} orders and {args.customers:,} customers in {time.perf_counter() - started:.1f} s")
        write_project(folder, args.master, args.partitions, 0)
        project = load_project(folder)
        ingest = run_project(project, RunOptions(targets=[1001, 1002]))
        if ingest.status != "succeeded":
            raise SystemExit(f"ingest failed: {[s.error for s in ingest.objects.values()]}")
        from sluice.transforms.spark_session import spark_session

        started = time.perf_counter()
        spark = spark_session(project.spark)
        print(f"Spark {spark.version} session ({args.master}) started in {time.perf_counter() - started:.1f} s (not timed below)")
        lake = project.resolve_lake_path()
        jobs = {
            "sluice": lambda rep: timed_run(folder, args.master, args.partitions, rep, 2001),
            "pyspark": lambda rep: plain_pyspark(spark, lake, folder / "plain-out"),
            "duckdb": lambda rep: timed_run(folder, args.master, args.partitions, rep, 2002),
        }
        jvm = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())

        def measured(name: str, repetition: int) -> tuple[float, float]:
            collect_garbage(spark)  # no job pays for the garbage of the one before it
            cpu = time.process_time() + jvm_cpu_seconds(jvm)
            wall = jobs[name](repetition)
            return wall, time.process_time() + jvm_cpu_seconds(jvm) - cpu

        repetition = 1
        for _ in range(args.warmup):  # JIT, page cache
            for name in jobs:
                measured(name, repetition)
            repetition += 1
        times: dict[str, list[float]] = {name: [] for name in jobs}
        cpu: dict[str, list[float]] = {name: [] for name in jobs}
        for round_ in range(args.repeats):
            pair = ["sluice", "pyspark"] if round_ % 2 == 0 else ["pyspark", "sluice"]
            for name in [*pair, "duckdb"]:
                wall, used = measured(name, repetition)
                times[name].append(wall)
                cpu[name].append(used)
            repetition += 1
            print(
                f"round {round_ + 1}: "
                + ", ".join(f"{name} {times[name][-1]:.2f} s ({cpu[name][-1]:.1f} CPU s)" for name in jobs)
                + f"; sluice / pyspark {times['sluice'][-1] / times['pyspark'][-1]:.3f}",
                flush=True,
            )
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"\njoin + aggregate over {args.rows:,} rows, {args.repeats} rounds; load average now {load}")
        print(f"{'job':<10}{'best s':>10}{'median s':>10}{'median CPU s':>14}")
        for name, values in times.items():
            print(f"{name:<10}{min(values):>10.2f}{statistics.median(values):>10.2f}{statistics.median(cpu[name]):>14.1f}")
        paired = statistics.median(s / p for s, p in zip(times["sluice"], times["pyspark"], strict=True)) - 1
        of_medians = statistics.median(times["sluice"]) / statistics.median(times["pyspark"]) - 1
        of_cpu = statistics.median(cpu["sluice"]) / statistics.median(cpu["pyspark"]) - 1
        print(
            f"\nSluice overhead over plain PySpark: {paired * 100:+.1f} % (median of the rounds' ratios; goal <= 10 %), "
            f"{of_medians * 100:+.1f} % (ratio of medians), {of_cpu * 100:+.1f} % in CPU seconds"
        )
        duck = statistics.median(times["duckdb"]) / statistics.median(times["pyspark"])
        print(f"DuckDB on the same model: {statistics.median(times['duckdb']):.2f} s median, {duck:.2f}x plain PySpark's time")
        if args.json:
            result = {"rows": args.rows, "seconds": times, "cpu_seconds": cpu, "overhead_paired_median": paired}
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
