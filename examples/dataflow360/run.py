"""DataEnginerFlow360 (seed 004) end to end, in one command: ``python examples/dataflow360/run.py``.

1. the throwaway Kafka and PostgreSQL servers (``scripts/servers/kafka.sh start``, ``postgres.sh start``; a server
   already running, from this checkout or another, is used; ``SLUICE_TEST_KAFKA_URL`` / ``SLUICE_TEST_PG_URL``
   name other servers);
2. topics ``df360-<random>-users``, ``-products`` and ``-transactions`` filled by ``sluice produce faker``
   (10,000 users, 1,000 products, ``--transactions`` transactions of which ``--malformed`` are malformed), and a
   throwaway database ``dataflow360_<random>`` for the warehouse;
3. ``sluice stream --available-now`` on a copy of the project in a temporary folder: the three streaming
   objects commit what the topics hold into the raw layer of the local lake, then stop;
4. ``sluice run``: the Spark transforms (latest record per id) and the star schema in PostgreSQL;
5. what landed where (lake datasets, dead letters, warehouse tables and partitions), the data-quality checks' results
   (``metrics.check_results`` of the warehouse: docs/checks.md), and that every fact's user and product is in its
   dimension;
6. it then drops the database and the topics and stops the servers it started (``--keep`` keeps the database).
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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "src"))  # this checkout's Sluice, whichever one is installed
from sluice.errors import SluiceError  # noqa: E402

SERVERS = REPO / "scripts" / "servers"
USERS, PRODUCTS = 10_000, 1_000  # the ids sluice produce faker's transactions refer to (streaming/faker_events.py)
STREAMS = {"users": "users_events", "products": "products_events", "transactions": "transactions_events"}


class ExampleError(SluiceError):
    """The example could not run: a server, the producer, ``sluice stream`` or ``sluice run`` failed."""


@dataclass
class Landed:
    """What a run left: rows per lake dataset (``layer/name``), dead letters per topic, rows per warehouse table,
    the partitions of ``analytics.fact_transactions`` and facts whose user or product has no dimension row."""

    lake: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    warehouse: dict[str, int] = field(default_factory=dict)
    partitions: list[str] = field(default_factory=list)
    orphans: int = 0
    checks: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    """``object.check`` -> (severity, status, failing rows) of the run's data-quality checks."""


def server(script: str, override_env: str) -> tuple[str, bool]:
    """The server's URL and whether this call started it: ``override_env``'s value, a running one, or a new one."""
    if os.environ.get(override_env, "").strip():
        return os.environ[override_env].strip(), False
    path = str(SERVERS / script)
    if subprocess.run([path, "status"], capture_output=True, check=False).returncode == 0:
        url = subprocess.run([path, "url"], capture_output=True, text=True, check=False).stdout.strip()
        if url:
            return url, False
    done = subprocess.run([path, "start"], capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise ExampleError(f"scripts/servers/{script} start failed:\n{done.stdout}{done.stderr}")
    return lines[-1].strip(), True


def sluice(*args: str, env: dict[str, str], what: str) -> str:
    """Run ``python -m sluice ARGS``; its stdout. Raises ExampleError with the end of its output when it fails."""
    done = subprocess.run([sys.executable, "-m", "sluice", *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise ExampleError(f"{what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


@contextmanager
def warehouse_database(pg_url: str, name: str, keep: bool) -> Iterator[str]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    parts = urlsplit(pg_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    finally:
        if not keep:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def topics(bootstrap: str, prefix: str) -> Iterator[None]:
    """Delete the example's topics (and their dead-letter topics) on exit; the producer creates them."""
    from confluent_kafka.admin import AdminClient

    try:
        yield
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=30).values():
                future.result()


def dead_letters(bootstrap: str, topic: str) -> int:
    """Records in ``<topic>.dead-letter`` (its high watermarks summed; 0 when it does not exist)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "dataflow360-count"})
    try:
        meta = consumer.list_topics(f"{topic}.dead-letter", timeout=10).topics.get(f"{topic}.dead-letter")
        if meta is None or meta.error is not None:
            return 0
        return sum(consumer.get_watermark_offsets(TopicPartition(meta.topic, p), timeout=10)[1] for p in meta.partitions)
    finally:
        consumer.close()


def warehouse(url: str) -> tuple[dict[str, int], list[str], int]:
    with psycopg.connect(url) as conn:
        rows = {
            table: int(conn.execute(sql.SQL("SELECT count(*) FROM analytics.{}").format(sql.Identifier(table))).fetchone()[0])  # type: ignore[index]
            for table in ("dim_users", "dim_products", "fact_transactions")
        }
        partitions = [
            str(name)
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'analytics.fact_transactions'::regclass ORDER BY 1"
            ).fetchall()
        ]
        orphans = conn.execute(
            "SELECT count(*) FROM analytics.fact_transactions f "
            "LEFT JOIN analytics.dim_users u USING (user_id) LEFT JOIN analytics.dim_products p USING (product_id) "
            "WHERE u.user_id IS NULL OR p.product_id IS NULL"
        ).fetchone()
    return rows, partitions, int(orphans[0]) if orphans else -1


def check_results(url: str, run_id: str) -> dict[str, tuple[str, str, int]]:
    """The run's check results, from ``metrics.check_results`` of the warehouse (docs/checks.md)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT object, "check", severity, status, failing_rows FROM metrics.check_results WHERE run_id = %s '
            'ORDER BY object_id, "check"',
            (run_id,),
        ).fetchall()
    return {f"{obj}.{check}": (severity, status, int(failing)) for obj, check, severity, status, failing in rows}


def run_example(kafka_url: str, pg_url: str, *, transactions: int, malformed: float, keep: bool = False) -> Landed:
    """Produce, stream, transform and load against these servers; what landed (printed too)."""
    from sluice.lake.registry import open_lake
    from sluice.project.load import load_project
    from sluice.project.model import layer_of
    from sluice.urls import kafka_servers

    token = secrets.token_hex(3)
    prefix = f"df360-{token}-"
    bootstrap = kafka_servers(kafka_url)
    with (
        warehouse_database(pg_url, f"dataflow360_{token}", keep) as db_url,
        topics(bootstrap, prefix),
        tempfile.TemporaryDirectory(prefix="dataflow360-") as tmp,
    ):
        project = Path(tmp) / "dataflow360"
        shutil.copytree(HERE, project, ignore=shutil.ignore_patterns(".sluice", "__pycache__"))
        env = {
            **os.environ,
            "DF_KAFKA_URL": kafka_url,
            "DF_WAREHOUSE_URL": db_url,
            "DF_TOPIC_PREFIX": prefix,
            # this checkout's Sluice, whichever one is installed
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p),
        }
        print(f"Kafka {bootstrap}, topics {prefix}* | warehouse {db_url}")
        for schema, count, bad in (("users", USERS, 0.0), ("products", PRODUCTS, 0.0), ("transactions", transactions, malformed)):
            args = ["--schema", schema, "--topic", prefix + schema, "--count", str(count), "--rate", "0"]
            out = sluice("produce", "faker", *args, "--malformed", str(bad), "--bootstrap", bootstrap, env=env, what="produce")
            print(out.strip())
        sluice("stream", str(project), "--available-now", "--quiet", env=env, what="sluice stream --available-now")
        summary = json.loads(sluice("run", str(project), "--json", env=env, what="sluice run").strip().splitlines()[-1])
        print(f"sluice run: {summary.get('status')}, {len(summary.get('objects', {}))} objects")
        landed = Landed()
        loaded = load_project(project)
        lake = open_lake(loaded)
        for obj in sorted(loaded.objects.values(), key=lambda o: o.id):
            layer = layer_of(loaded, obj)
            location = lake.current_location(layer, obj.name)
            if location is not None:
                landed.lake[f"{layer}/{obj.name}"] = lake.read(location).read_all().num_rows
        landed.dead_letters = {prefix + name: dead_letters(bootstrap, prefix + name) for name in STREAMS}
        landed.warehouse, landed.partitions, landed.orphans = warehouse(db_url)
        landed.checks = check_results(db_url, str(summary.get("run_id", "")))
        report(landed)
        return landed


def report(landed: Landed) -> None:
    print("\nlocal lake (layer/dataset: rows)")
    for name, rows in landed.lake.items():
        print(f"  {name:<32} {rows:>8}")
    print("\ndead letters (topic: records)")
    for topic, count in landed.dead_letters.items():
        print(f"  {topic}.dead-letter  {count}")
    print("\nPostgreSQL warehouse (table: rows)")
    for table, rows in landed.warehouse.items():
        print(f"  analytics.{table:<24} {rows:>8}")
    print(f"  analytics.fact_transactions partitions: {', '.join(landed.partitions)}")
    print(f"  facts without their user or product: {landed.orphans}")
    print("\ndata-quality checks (metrics.check_results: object.check severity: status, failing rows)")
    for name, (severity, status, failing) in landed.checks.items():
        print(f"  {name:<48} {severity:<5}: {status}, {failing}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run DataEnginerFlow360 (seed 004) against the throwaway servers.")
    parser.add_argument("--transactions", type=int, default=100_000, help="transactions to produce (default 100,000)")
    parser.add_argument("--malformed", type=float, default=0.01, help="share of malformed transactions (default 0.01)")
    parser.add_argument("--keep", action="store_true", help="keep the warehouse database")
    args = parser.parse_args()
    started: list[str] = []
    try:
        kafka_url, kafka_started = server("kafka.sh", "SLUICE_TEST_KAFKA_URL")
        started += ["kafka.sh"] if kafka_started else []
        pg_url, pg_started = server("postgres.sh", "SLUICE_TEST_PG_URL")
        started += ["postgres.sh"] if pg_started else []
        run_example(kafka_url, pg_url, transactions=args.transactions, malformed=args.malformed, keep=args.keep)
    except ExampleError as exc:
        sys.exit(f"run.py: {exc}")
    finally:
        for script in started:
            subprocess.run([str(SERVERS / script), "stop"], capture_output=True, check=False)


if __name__ == "__main__":
    main()
