"""Files to PostgreSQL (issue 12): Sluice against dlt and a raw COPY, a Parquet file and a CSV file, local and S3 lakes.

Two inputs, generated once and cached in ``.tmp/bench/``:

- **parquet**: ``bench/load_postgres.py``'s 5,000,000-row file (id, user_id, amount float64, currency, ts, note);
- **csv**: about 1 GB of CSV with a header (id, customer_id, amount with two decimals, price float, status,
  a quoted note holding commas, created_at timestamp, order_date date, active boolean, score int with ~10 % empty
  fields = NULL), written by pyarrow (every text value quoted).

Each round loads each file into PostgreSQL with every contender, in an order rotated from round to round, each
in a process of its own (timed section only; imports and table drops are outside it, Sluice's lazy imports
too: :data:`SLUICE_IMPORTS`):

- ``copy``: the plain path. CSV: the file streamed into ``COPY t FROM STDIN (FORMAT csv, HEADER true)`` in 8 MiB
  chunks (what ``psql \\copy`` does). Parquet: two plain paths, the faster median counts: ``copy-csv``, pyarrow
  reading the file and encoding CSV in a thread while the main thread streams it into ``COPY ... (FORMAT csv)``,
  and ``copy-adbc``, ``adbc_ingest`` of the file's Arrow batches (binary COPY). The table is created before the
  clock starts, with the column types Sluice creates.
- ``sluice-local``: ``run_project`` of a one-object project (the file source, lake on local disk, PostgreSQL
  destination, ``mode: replace``, ``analyze: false``: a raw COPY does not ANALYZE, nor does dlt), RunStarted to
  RunFinished plus loading the project: the file is read and its batches written to the lake as Parquet and loaded
  into the table at once.
- ``sluice-s3``: the same with ``lake: s3://filebench/lake?endpoint=...`` on the S3 test server (versitygw).
- ``sluice-nolake``: a diagnostic, not a goal: the same object with ``lake: false`` (the file straight into the
  table), which shows what keeping the lake copy costs (the destination is loaded while the lake file is written,
  from the same batches, and commits once that file is complete, docs/lakes.md).
- ``dlt``: dlt 1.31.0 (``bench/.venvs/dlt``, ``peers/setup_venvs.sh dlt``) through ``peers/run_dlt_files.py``:
  ``filesystem | read_parquet(use_pyarrow=True)`` / ``read_csv_duckdb(use_pyarrow=True)``, postgres destination,
  ``loader_file_format="csv"`` (COPY; its default is ``insert_values``), ``write_disposition="replace"``; in the
  first ``--dlt-rounds`` rounds only (default 1: its load of the 1 GB CSV takes minutes).

After every load the rows in PostgreSQL are counted; a load that does not hold every row stops the bench.
A CHECKPOINT runs before every load. Printed: rows/s per round and median, CPU seconds of the contender's process
(all threads; the PostgreSQL server's CPU is not counted), per-round and median ratios Sluice/dlt and Sluice/COPY,
and verdicts against the aims (>= 5x dlt and >= 0.85 of COPY, both files, both lakes), with the load average.

    python bench/files_postgres.py                 # 5,000,000-row Parquet, ~1 GB CSV, 3 rounds (~17 minutes here)
    python bench/files_postgres.py --quick         # 1,000,000 rows, ~230 MB CSV, 2 rounds (~5 minutes)
    python bench/files_postgres.py --profile sluice-local:csv   # + py-spy of that contender, once, after the rounds
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = REPO / ".tmp" / "bench"
WORK = CACHE / "files-postgres"
DLT_PYTHON = HERE / ".venvs" / "dlt" / "bin" / "python"
COPY_CHUNK = 8 << 20
CSV_VERSION = 1  # bump when csv_file() changes, so the cached file is rebuilt
CSV_CHUNK_ROWS = 1 << 20
CSV_TYPES = {"amount": "decimal(12,2)", "created_at": "timestamp[us]"}
CSV_DDL = (
    "CREATE TABLE {} (id bigint, customer_id bigint, amount numeric(12,2), price double precision, status text, "
    "note text, created_at timestamp, order_date date, active boolean, score bigint)"
)
PARQUET_DDL = "CREATE TABLE {} (id bigint, user_id bigint, amount double precision, currency text, ts timestamp, note text)"
SLUICE_IMPORTS = (
    "adbc_driver_postgresql.dbapi",
    "sluice.bus.embedded",
    "sluice.state.sqlite",
    "sluice.connectors.files",
    "sluice.destinations.postgres",
    "sluice.destinations.registry",
    "sluice.lake.local",
    "sluice.lake.s3",
    "sluice.alerts.plugins",
    "sluice.cdc.plugins",
    "sluice.checks.plugins",
    "sluice.destinations.plugins",
    "sluice.state.plugins",
)
"""What a Sluice run of these objects imports on its way (lazily, inside ``run_project``), imported before the clock
starts: the plain paths import adbc, psycopg and pyarrow before theirs. Under PYTHONDONTWRITEBYTECODE (set on the
machine where this was measured) each of them is compiled again in every process: some 90 ms at load 8."""
AIM_DLT = 5.0
AIM_COPY = 0.85
BUCKET = "filebench"


# -- servers ---------------------------------------------------------------------------------------------


def postgres_url() -> str:
    """SLUICE_BENCH_PG_URL, else the database ``sluice_filebench`` on the test server (SLUICE_TEST_PG_URL), else
    on the throwaway server ``bench/load_postgres.py`` starts."""
    import psycopg

    if os.environ.get("SLUICE_BENCH_PG_URL"):
        return os.environ["SLUICE_BENCH_PG_URL"]
    server = os.environ.get("SLUICE_TEST_PG_URL", "")
    if not server:
        sys.path.insert(0, str(HERE))
        from load_postgres import postgres_url as throwaway

        server = throwaway()
    with psycopg.connect(server, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'sluice_filebench'").fetchone():
            conn.execute("CREATE DATABASE sluice_filebench")
    return server.rsplit("/", 1)[0] + "/sluice_filebench"


def dlt_url(url: str) -> str:
    """dlt insists on a password: a server that trusts the local user ignores the placeholder it is given."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is not None or not parts.username:
        return url
    return urllib.parse.urlunsplit(
        parts._replace(netloc=parts.netloc.replace(f"{parts.username}@", f"{parts.username}:unused@", 1))
    )


def s3_server() -> str:
    """http://KEY:SECRET@host:port of the S3 server: SLUICE_TEST_S3_URL, else ``scripts/servers/s3.sh start``."""
    url = os.environ.get("SLUICE_TEST_S3_URL", "")
    if url:
        return url
    done = subprocess.run([str(REPO / "scripts/servers/s3.sh"), "start"], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def s3_lake(server: str) -> tuple[str, dict[str, str]]:
    """The project's ``lake:`` URL and the environment holding the S3 credentials."""
    parts = urllib.parse.urlsplit(server)
    endpoint = f"{parts.scheme}://{parts.hostname}:{parts.port}"
    env = {
        "AWS_ACCESS_KEY_ID": urllib.parse.unquote(parts.username or ""),
        "AWS_SECRET_ACCESS_KEY": urllib.parse.unquote(parts.password or ""),
    }
    return f"s3://{BUCKET}/lake?endpoint={endpoint}&region=us-east-1", env


# -- inputs ----------------------------------------------------------------------------------------------


def parquet_file(rows: int) -> Path:
    sys.path.insert(0, str(HERE))
    from load_postgres import parquet_file as make

    return make(rows)


def _csv_chunk(start: int, n: int) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    seed = CSV_VERSION * 7_000_003 + start

    def uniform(k: int, high: float) -> Any:
        return pc.multiply(pc.random(n, initializer=seed + k), high)

    def ints(k: int, high: float) -> Any:
        return pc.cast(pc.floor(uniform(k, high)), pa.int64())

    ids = pc.add(pc.cumulative_sum(pa.nulls(n, pa.int64()).fill_null(1)), start)
    statuses = pa.array(["new", "paid", "shipped", "delivered", "returned", "cancelled"])
    notes = pa.array([f"note {i}, line {i % 13}, {'gift' if i % 5 == 0 else 'standard'}" for i in range(1024)])
    cents = ints(1, 10_000_000)
    score = ints(9, 100_000)
    return pa.table(
        {
            "id": ids,
            "customer_id": ints(2, 1_000_000),
            "amount": pc.cast(pc.divide(pc.cast(cents, pa.float64()), 100.0), pa.decimal128(12, 2), safe=False),
            "price": pc.round(uniform(3, 1000), 4),
            "status": pc.take(statuses, pc.cast(ints(4, len(statuses)), pa.int32())),
            "note": pc.take(notes, pc.cast(ints(5, len(notes)), pa.int32())),
            "created_at": pc.cast(pc.add(ints(6, 365 * 86_400), 1_704_067_200), pa.timestamp("s")),
            "order_date": pc.cast(pc.cast(pc.add(ints(7, 730), 19_723), pa.int32()), pa.date32()),
            "active": pc.less(uniform(8, 1), 0.7),
            "score": pc.if_else(pc.less(uniform(10, 1), 0.1), pa.scalar(None, pa.int64()), score),
        }
    )


def csv_file(megabytes: int) -> tuple[Path, int]:
    """The cached CSV file of about ``megabytes`` MB (whole chunks of 2**20 rows) and its row count."""
    import pyarrow.csv as pa_csv

    path = CACHE / f"files_v{CSV_VERSION}_{megabytes}mb.csv"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, int(json.loads(meta.read_text())["rows"])
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    rows = 0
    with partial.open("wb") as out:
        while out.tell() < megabytes * 1_000_000:
            table = _csv_chunk(rows, CSV_CHUNK_ROWS)
            pa_csv.write_csv(table, out, pa_csv.WriteOptions(include_header=rows == 0))
            rows += table.num_rows
    partial.rename(path)
    meta.write_text(json.dumps({"rows": rows}))
    return path, rows


# -- the contenders, each run in a child process (``--child``) -------------------------------------------


def child_copy(kind: str, file: str, url: str, table: str) -> dict[str, Any]:
    """The plain paths: ``copy`` (CSV file streamed), ``copy-csv`` (Parquet -> CSV -> COPY), ``copy-adbc``."""
    import psycopg

    if kind == "copy-adbc":
        import adbc_driver_postgresql.dbapi
        import pyarrow as pa
        import pyarrow.parquet as pq

        start, cpu = time.perf_counter(), time.process_time()
        source = pq.ParquetFile(file)
        reader = pa.RecordBatchReader.from_batches(source.schema_arrow, source.iter_batches(batch_size=65_536))
        with adbc_driver_postgresql.dbapi.connect(url) as adbc, adbc.cursor() as cur:
            cur.adbc_ingest(table, reader, mode="append")
            adbc.commit()
        return {"seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}
    with psycopg.connect(url) as conn:
        start, cpu = time.perf_counter(), time.process_time()
        with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv{', HEADER true' if kind == 'copy' else ''})") as copy:
            if kind == "copy":
                with open(file, "rb") as stream:
                    while chunk := stream.read(COPY_CHUNK):
                        copy.write(chunk)
            else:
                for block in _csv_blocks(file):
                    copy.write(block)
        conn.commit()
        return {"seconds": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}


def _csv_blocks(file: str) -> Any:
    """The Parquet file's rows as CSV (no header), encoded by pyarrow in a thread, 131,072 rows a block."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    blocks: queue.Queue[Any] = queue.Queue(maxsize=4)
    options = pa_csv.WriteOptions(include_header=False)

    def encode() -> None:
        try:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=131_072):
                sink = pa.BufferOutputStream()
                pa_csv.write_csv(batch, sink, options)
                blocks.put(memoryview(sink.getvalue()))
        finally:
            blocks.put(None)

    thread = threading.Thread(target=encode, daemon=True)
    thread.start()
    while (block := blocks.get()) is not None:
        yield block
    thread.join()


def child_sluice(kind: str, file: str, url: str, table: str, lake: str) -> dict[str, Any]:
    """A one-object project run in this process: the file -> the lake -> ``table`` (replace, no ANALYZE)."""
    import importlib
    import resource

    from sluice.project.load import load_project
    from sluice.runtime.run import RunOptions, run_project

    for module in SLUICE_IMPORTS:  # outside the timed section, as the COPY contenders' imports are
        importlib.import_module(module)

    folder = WORK / f"project-{table}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source: dict[str, Any] = {"type": kind, "path": file}
    if kind == "csv":
        source["column_types"] = CSV_TYPES
    config: dict[str, Any] = {
        "name": "files-bench",
        "lake": lake if lake and lake != "none" else str(folder / "lake"),
        "connections": {"warehouse": url},
        "objects": [
            {
                "id": 1001,
                "name": "orders",
                "source": source,
                "destination": {"connection": "warehouse", "table": table, "mode": "replace", "analyze": False},
            }
        ],
    }
    if lake == "none":
        config["objects"][0]["lake"] = False
    (folder / "sluice.yaml").write_text(json.dumps(config, indent=2))  # JSON is YAML
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start, cpu = time.perf_counter(), time.process_time()
    summary = run_project(load_project(folder), RunOptions(force=True))
    seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s += (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    loaded = summary.objects[1001]
    if summary.status != "succeeded":
        raise SystemExit(f"the Sluice run {summary.status}: {loaded.status}; {loaded.error}")
    return {"seconds": seconds, "cpu_s": cpu_s, "run_s": summary.duration_s}


# -- the parent: rounds, checks, report ------------------------------------------------------------------


class Bench:
    def __init__(self, url: str, s3: str, rows: dict[str, int], files: dict[str, Path]) -> None:
        self.url, self.s3, self.rows, self.files = url, s3, rows, files

    def table(self, contender: str, kind: str) -> str:
        return f"fb_{contender.replace('-', '_')}_{kind}"

    def prepare(self, contender: str, kind: str) -> None:
        import psycopg

        table = self.table(contender, kind)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
            conn.execute(f"DROP SCHEMA IF EXISTS {table} CASCADE")
            if contender.startswith("copy"):
                conn.execute((CSV_DDL if kind == "csv" else PARQUET_DDL).format(table))
            conn.execute("CHECKPOINT")
        shutil.rmtree(WORK / f"dlt-{table}", ignore_errors=True)

    def command(self, contender: str, kind: str) -> tuple[list[str], dict[str, str]]:
        table, file = self.table(contender, kind), str(self.files[kind])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
        if contender == "dlt":
            pipelines = str(WORK / f"dlt-{table}")
            peer = [str(DLT_PYTHON), str(HERE / "peers" / "run_dlt_files.py"), kind, file, dlt_url(self.url), table, pipelines]
            return peer, env
        lake = "none" if contender == "sluice-nolake" else ""
        if contender == "sluice-s3":
            lake, creds = s3_lake(self.s3)
            env.update(creds)
        args = [sys.executable, str(Path(__file__).resolve()), "--child", contender, kind, file, self.url, table, lake]
        return args, env

    def count(self, contender: str, kind: str) -> int:
        import psycopg

        table = self.table(contender, kind)
        name = f"{table}.orders" if contender == "dlt" else table
        with psycopg.connect(self.url) as conn:
            row = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
        return int(row[0]) if row else -1

    def run(self, contender: str, kind: str, profile: Path | None = None) -> dict[str, Any]:
        self.prepare(contender, kind)
        args, env = self.command(contender, kind)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        spy = None
        if profile is not None:
            spy = subprocess.Popen(
                ["py-spy", "record", "--pid", str(proc.pid), "--gil", "--nonblocking", "--subprocesses",
                 "--format", "raw", "--output", str(profile)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        out, err = proc.communicate()
        if spy is not None:
            spy.wait(timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"{contender} on {kind} failed ({proc.returncode}):\n{err[-4000:]}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        got = self.count(contender, kind)
        if got != self.rows[kind]:
            raise SystemExit(f"{contender} on {kind}: {got:,} rows in PostgreSQL, expected {self.rows[kind]:,}")
        result["rows_per_s"] = self.rows[kind] / result["seconds"]
        return result

    def cleanup(self, contenders: list[str]) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            for contender in contenders:
                for kind in self.files:
                    table = self.table(contender, kind)
                    conn.execute(f"DROP TABLE IF EXISTS {table}")
                    conn.execute(f"DROP SCHEMA IF EXISTS {table} CASCADE")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt_rate(value: float) -> str:
    return f"{value / 1e6:.3f}M"


def report(results: dict[str, dict[str, list[dict[str, Any]]]], rounds: int) -> list[str]:
    """Per-round and median figures, ratios and verdicts, as lines."""
    lines: list[str] = []
    verdicts: list[str] = []
    for kind, by in results.items():
        lines.append(f"\n== {kind} ==")
        lines.append(
            f"{'contender':<13} " + " ".join(f"{'round ' + str(i + 1):>9}" for i in range(rounds)) + "    median   CPU s (median)"
        )
        for contender, runs in by.items():
            rates = [r["rows_per_s"] for r in runs]
            cpu = statistics.median(r["cpu_s"] for r in runs)
            missing = " ".join(f"{'-':>9}" for _ in range(rounds - len(rates)))
            lines.append(
                f"{contender:<13} "
                + " ".join(f"{fmt_rate(x):>9}" for x in rates)
                + (f" {missing}" if missing else "")
                + f" {fmt_rate(statistics.median(rates)):>9}"
                f"   {cpu:7.1f}   rows/s; median {statistics.median(r['seconds'] for r in runs):.2f} s"
            )
        copies = [c for c in by if c.startswith("copy")]
        best_copy = max(copies, key=lambda c: statistics.median(r["rows_per_s"] for r in by[c])) if copies else ""
        if best_copy:
            lines.append(f"COPY baseline: {best_copy} (the faster plain path by median)")
        for sluice in (c for c in by if c.startswith("sluice")):
            mine = [r["rows_per_s"] for r in by[sluice]]
            for peer, aim in (("dlt", AIM_DLT), (best_copy, AIM_COPY)):
                if not peer or peer not in by:
                    continue
                theirs = [r["rows_per_s"] for r in by[peer]]
                per_round = [a / b for a, b in zip(mine, theirs, strict=False)]  # dlt may run in fewer rounds
                median_ratio = statistics.median(mine) / statistics.median(theirs)
                ok = median_ratio >= aim
                label = "dlt" if peer == "dlt" else "COPY"
                lines.append(
                    f"{sluice}/{label}: per round " + ", ".join(f"{x:.2f}" for x in per_round)
                    + f"; of medians {median_ratio:.2f}, median of rounds {statistics.median(per_round):.2f}"
                    + f"  (aim >= {aim:g}: {'MET' if ok else 'MISSED'})"
                )  # fmt: skip
                if peer == "dlt":
                    cpu_ratio = statistics.median(r["cpu_s"] for r in by["dlt"]) / statistics.median(
                        r["cpu_s"] for r in by[sluice]
                    )
                    lines.append(f"  client CPU s, dlt/{sluice} (medians; less load-sensitive than wall time): {cpu_ratio:.2f}")
                if sluice == "sluice-nolake":
                    continue  # a diagnostic: the goals are for runs that keep the lake copy
                verdicts.append(
                    f"{kind:<8} {sluice:<13} vs {label:<5} {median_ratio:6.2f}x  aim >= {aim:<4g} {'MET' if ok else 'MISSED'}"
                )
    lines.append("\n== verdicts (ratio of medians) ==")
    lines.extend(verdicts)
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        contender, kind, file, url, table, lake = argv[1:7]
        if contender.startswith("sluice"):
            result = child_sluice(kind, file, url, table, lake)
        else:
            result = child_copy(contender, file, url, table)
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="1,000,000 Parquet rows, ~200 MB of CSV, 2 rounds")
    parser.add_argument("--rows", type=int, help="Parquet rows (default 5,000,000)")
    parser.add_argument("--csv-mb", type=int, help="CSV size in MB (default 1,000)")
    parser.add_argument("--rounds", type=int, help="default 3")
    parser.add_argument("--files", default="parquet,csv")
    parser.add_argument("--dlt-rounds", type=int, help="rounds with dlt (default 1: its CSV load takes minutes)")
    parser.add_argument("--no-dlt", action="store_true")
    parser.add_argument("--no-nolake", action="store_true", help="skip the diagnostic Sluice run without a lake copy")
    parser.add_argument("--no-s3", action="store_true")
    parser.add_argument("--profile", default="", help="CONTENDER:FILE, e.g. sluice-local:csv: one more run under py-spy")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--report", type=Path, help="print the report of a run saved with --json, and stop")
    args = parser.parse_args(argv)
    if args.report:
        saved = json.loads(args.report.read_text())["results"]
        for line in report(saved, max(len(runs) for by in saved.values() for runs in by.values())):
            print(line)
        return 0
    rows = args.rows or (1_000_000 if args.quick else 5_000_000)
    csv_mb = args.csv_mb or (200 if args.quick else 1000)
    rounds = args.rounds or (2 if args.quick else 3)
    dlt_rounds = min(rounds, args.dlt_rounds or 1)
    kinds = [k for k in args.files.split(",") if k]

    print(f"load average at start: {loadavg()}  ({os.cpu_count()} CPUs)", flush=True)
    url = postgres_url()
    s3 = "" if args.no_s3 else s3_server()
    files: dict[str, Path] = {}
    counts: dict[str, int] = {}
    if "parquet" in kinds:
        files["parquet"] = parquet_file(rows)
        counts["parquet"] = rows
    if "csv" in kinds:
        files["csv"], counts["csv"] = csv_file(csv_mb)
    for kind, path in files.items():
        print(f"{kind}: {path} ({path.stat().st_size / 1e6:,.0f} MB, {counts[kind]:,} rows)", flush=True)
    if not args.no_dlt and not DLT_PYTHON.exists():
        subprocess.run([str(HERE / "peers" / "setup_venvs.sh"), "dlt"], check=True)
    WORK.mkdir(parents=True, exist_ok=True)
    bench = Bench(url, s3, counts, files)
    contenders = {
        kind: (["copy-csv", "copy-adbc"] if kind == "parquet" else ["copy"])
        + ["sluice-local"]
        + ([] if args.no_s3 else ["sluice-s3"])
        + ([] if args.no_nolake else ["sluice-nolake"])
        + ([] if args.no_dlt else ["dlt"])
        for kind in files
    }
    print(
        "Sluice: one object, mode replace, analyze: false (neither COPY nor dlt analyzes); "
        "dlt: read_parquet/read_csv_duckdb(use_pyarrow=True), loader_file_format=csv (COPY)",
        flush=True,
    )
    results: dict[str, dict[str, list[dict[str, Any]]]] = {k: {c: [] for c in contenders[k]} for k in files}
    started = time.monotonic()
    for round_ in range(rounds):
        for kind in files:
            order = contenders[kind][round_ % len(contenders[kind]) :] + contenders[kind][: round_ % len(contenders[kind])]
            for contender in order:
                if contender == "dlt" and round_ >= dlt_rounds:
                    continue
                result = bench.run(contender, kind)
                results[kind][contender].append(result)
                print(
                    f"round {round_ + 1} {kind:<7} {contender:<13} {result['seconds']:7.2f} s"
                    f" {fmt_rate(result['rows_per_s']):>8} rows/s"
                    f"  CPU {result['cpu_s']:6.1f} s  load {loadavg()}",
                    flush=True,
                )
    for line in report(results, rounds):
        print(line)
    print(f"\nload average at end: {loadavg()}; {time.monotonic() - started:.0f} s of rounds")
    if args.profile:
        contender, kind = args.profile.split(":")
        out = WORK / f"profile-{contender}-{kind}.txt"
        result = bench.run(contender, kind, profile=out)
        print(f"profiled {contender} on {kind}: {result['seconds']:.2f} s; py-spy raw stacks in {out}")
    if args.json:
        args.json.write_text(json.dumps({"rows": counts, "results": results}, indent=1))
    bench.cleanup(sorted({c for cs in contenders.values() for c in cs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
