"""ETL-Cloud (seed 003) end to end, in one command: ``python examples/etl-cloud/run.py``.

1. the throwaway PostgreSQL and S3 servers (``scripts/servers/postgres.sh start``, ``s3.sh start``; a server
   already running, from this checkout or another, is used; ``SLUICE_TEST_PG_URL`` / ``SLUICE_TEST_S3_URL``
   name other servers);
2. a throwaway database ``etl_cloud_<random>`` holding the source table ``source.products`` and, once the
   project ran, the warehouse schemas ``staging``, ``analytics`` and ``metrics``; throwaway buckets
   ``etl-<random>-raw-data``, ``-cleaned-data`` and ``-enriched-data``;
3. the shop's API (``api_server.py``) on a free loopback port;
4. ``sluice run`` on a copy of the project in a temporary folder (its ``.sluice/`` state is thrown away);
5. what landed where: each lake dataset with its rows, each warehouse table with its rows;
6. it then drops the database and the buckets, stops the API and the servers it started (``--keep`` keeps the
   database and the buckets to look at them).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from pyarrow import fs as pafs

from sluice.errors import SluiceError

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
SERVERS = REPO / "scripts" / "servers"
sys.path.insert(0, str(HERE))
import shop_data  # noqa: E402

LAYERS = {"raw": "raw-data", "cleaned": "cleaned-data", "curated": "enriched-data"}
SCHEMAS = ("source", "staging", "analytics", "metrics")
API_PASSWORD = "etl-secret"  # noqa: S105 - the throwaway API server's own credentials
API_TOKEN = "etl-token"  # noqa: S105


class ExampleError(SluiceError):
    """The example could not run: a server, the API or ``sluice run`` failed."""


@dataclass
class Landed:
    """What a run left: ``lake[bucket][dataset] = rows``, ``warehouse["schema.table"] = rows``, ``files`` and the
    partitions of ``analytics.fact_orders``; ``database_url`` and ``s3_url`` while they still exist."""

    lake: dict[str, dict[str, int]]
    warehouse: dict[str, int]
    files: dict[str, str]  # "bucket/dataset" -> its current version's files (and partition columns)
    partitions: list[str]
    database_url: str
    s3_url: str


def server_url(script: str, override_env: str) -> tuple[str, bool]:
    """The server's URL, and whether this call started it (so it is stopped afterwards)."""
    override = os.environ.get(override_env, "").strip()
    if override:
        return override, False
    path = str(SERVERS / script)
    # Already running (from this checkout or another one): used, and left running.
    url = subprocess.run([path, "url"], capture_output=True, text=True, check=False).stdout.strip()
    if url and answers(script, url):
        return url, False
    done = subprocess.run([path, "start"], capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return lines[-1].strip(), True
    raise ExampleError(f"scripts/servers/{script} start failed:\n{done.stdout}{done.stderr}")


def answers(script: str, url: str) -> bool:
    try:
        if script == "postgres.sh":
            with psycopg.connect(url, connect_timeout=3):
                return True
        s3(url).get_file_info(pafs.FileSelector("", recursive=False))
        return True
    except Exception:
        return False


def s3(url: str) -> pafs.S3FileSystem:
    parts = urlsplit(url)
    return pafs.S3FileSystem(
        access_key=unquote(parts.username or ""),
        secret_key=unquote(parts.password or ""),
        endpoint_override=f"{parts.hostname}:{parts.port}",
        scheme=parts.scheme,
        region="us-east-1",
        allow_bucket_creation=True,
        allow_bucket_deletion=True,
    )


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


@contextmanager
def database(pg_url: str, name: str, keep: bool) -> Iterator[str]:
    """A new database with the source table ``source.products``; dropped on exit unless ``keep``."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(pg_url, name)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA source")
            conn.execute(
                "CREATE TABLE source.products (product_id integer PRIMARY KEY, name text NOT NULL, "
                "category_id integer NOT NULL, unit_price numeric(10, 2) NOT NULL)"
            )
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO source.products VALUES (%s, %s, %s, %s)", shop_data.products())
        yield url
    finally:
        if not keep:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def buckets(s3_url: str, prefix: str, keep: bool) -> Iterator[list[str]]:
    """The three layer buckets, created empty; deleted with their objects on exit unless ``keep``."""
    fs = s3(s3_url)
    names = [prefix + bucket for bucket in LAYERS.values()]
    for name in names:
        fs.create_dir(name)
    try:
        yield names
    finally:
        if not keep:
            for name in names:
                with suppress(OSError):
                    fs.delete_dir(name)


@contextmanager
def api_server() -> Iterator[str]:
    """``api_server.py`` on a free loopback port; its base URL (without credentials)."""
    env = {**os.environ, "ETL_API_PASSWORD": API_PASSWORD, "ETL_API_TOKEN": API_TOKEN}
    process = subprocess.Popen(
        [sys.executable, str(HERE / "api_server.py"), "--port", "0"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        url = process.stdout.readline().strip() if process.stdout is not None else ""
        if not url.startswith("http://"):
            raise ExampleError(f"api_server.py did not start (exit {process.poll()})")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def lake_contents(s3_url: str, names: list[str]) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """Each bucket's datasets (folders with a committed ``_manifest.json``) and their rows; the files of each."""
    fs = s3(s3_url)
    found: dict[str, dict[str, int]] = {}
    files: dict[str, str] = {}
    for bucket in names:
        found[bucket] = {}
        for info in fs.get_file_info(pafs.FileSelector(bucket, allow_not_found=True)):
            if info.type != pafs.FileType.Directory:
                continue
            with suppress(FileNotFoundError), fs.open_input_stream(f"{info.path}/_manifest.json") as stream:
                manifest = json.loads(stream.read())
                found[bucket][info.base_name] = int(manifest["rows"])
                by = f", partitioned by {', '.join(manifest['partition_by'])}" if manifest["partition_by"] else ""
                files[f"{bucket}/{info.base_name}"] = f"{len(manifest['files'])} file(s){by}"
    return found, files


def warehouse_contents(url: str) -> tuple[dict[str, int], list[str]]:
    """Rows of each table and view of the warehouse schemas (partitions counted in their parent), and the
    partitions of ``analytics.fact_orders``."""
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition "
            "ORDER BY array_position(%s, n.nspname::text), c.relname",
            (list(SCHEMAS), list(SCHEMAS)),
        ).fetchall()
        rows: dict[str, int] = {}
        for schema, table in tables:
            count = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
            rows[f"{schema}.{table}"] = int(conn.execute(count).fetchall()[0][0])
        partitions = [
            str(name)
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'analytics.fact_orders'::regclass ORDER BY 1"
            ).fetchall()
        ]
    return rows, partitions


def sluice_run(project: Path, env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "run", str(project), "--json"], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise ExampleError(f"sluice run failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"sluice run: {summary.get('status')}, {len(summary.get('objects', {}))} objects")


def run_example(pg_url: str, s3_url: str, *, keep: bool = False, check: Callable[[Landed], None] | None = None) -> Landed:
    """Run the project against these servers; ``check`` sees what landed before anything is dropped."""
    token = secrets.token_hex(3)
    prefix = f"etl-{token}-"
    with (
        database(pg_url, f"etl_cloud_{token}", keep) as db_url,
        buckets(s3_url, prefix, keep) as names,
        api_server() as api_url,
        tempfile.TemporaryDirectory(prefix="etl-cloud-") as tmp,
    ):
        project = Path(tmp) / "etl-cloud"
        shutil.copytree(HERE, project, ignore=shutil.ignore_patterns(".sluice", "__pycache__"))
        api = urlsplit(api_url)
        env = {
            **os.environ,
            "ETL_API_URL": urlunsplit((api.scheme, f"etl:{quote(API_PASSWORD)}@{api.netloc}", "", "", "")),
            "ETL_API_TOKEN": API_TOKEN,
            "ETL_SOURCE_URL": db_url,
            "ETL_WAREHOUSE_URL": db_url,
            "ETL_S3_URL": s3_url,
            "ETL_BUCKET_PREFIX": prefix,
            # this checkout's Sluice, whichever one is installed
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p),
        }
        endpoint = urlsplit(s3_url)
        print(f"API {api_url} | database {db_url} | S3 {endpoint.hostname}:{endpoint.port}, buckets {', '.join(names)}")
        sluice_run(project, env)
        rows, partitions = warehouse_contents(db_url)
        lake, files = lake_contents(s3_url, names)
        landed = Landed(lake, rows, files, partitions, db_url, s3_url)
        report(landed)
        if check is not None:
            check(landed)
        return landed


def report(landed: Landed) -> None:
    print("\nS3 lake (layer bucket, dataset: rows of its current version)")
    for bucket, datasets in landed.lake.items():
        layer = next(layer for layer, suffix in LAYERS.items() if bucket.endswith(suffix))
        print(f"  s3://{bucket}/  (layer {layer})")
        for name, rows in sorted(datasets.items()):
            print(f"    {name:<28} {rows:>6} rows  {landed.files[f'{bucket}/{name}']}")
    print("\nPostgreSQL warehouse (schema.table: rows)")
    for table, rows in landed.warehouse.items():
        print(f"  {table:<38} {rows:>6} rows")
    print(f"  analytics.fact_orders partitions: {', '.join(landed.partitions)}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run ETL-Cloud (seed 003) against the throwaway servers.")
    parser.add_argument("--keep", action="store_true", help="keep the database and the buckets")
    args = parser.parse_args()
    started: list[str] = []
    try:
        pg_url, pg_started = server_url("postgres.sh", "SLUICE_TEST_PG_URL")
        started += ["postgres.sh"] if pg_started else []
        s3_url, s3_started = server_url("s3.sh", "SLUICE_TEST_S3_URL")
        started += ["s3.sh"] if s3_started else []
        run_example(pg_url, s3_url, keep=args.keep)
    except ExampleError as exc:
        sys.exit(f"run.py: {exc}")
    finally:
        for script in started:
            subprocess.run([str(SERVERS / script), "stop"], capture_output=True, check=False)


if __name__ == "__main__":
    main()
