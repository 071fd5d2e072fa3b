"""What running one dbt model costs per object: a ``dbt run --select <model>`` subprocess, dbt-core's
programmatic runner in one process with the parsed manifest passed in, and Sluice's long-lived dbt worker
(``src/sluice/transforms/dbt_worker.py``: that runner in a process of dbt's environment, one request per model).

The test fixture's dbt project (``tests/transforms/fixtures/dbt_shop``: three models over a source
table of 100 rows) is copied to a temporary folder and run against a database created for it on
``$SLUICE_TEST_PG_URL`` (default: the test PostgreSQL, 127.0.0.1:25432). Both ways run inside dbt's own
environment (``scripts/dbt-venv.sh``): this script re-executes itself with ``.venv-dbt/bin/python``.
Each model runs ``--repeat`` times each way; the median, min and max seconds per model are printed.

    python bench/dbt_overhead.py
    python bench/dbt_overhead.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parents[1]
MODELS = ["stg_orders", "customer_totals", "top_customers"]


def summary(label: str, seconds: list[float]) -> str:
    median = statistics.median(seconds)
    return f"{label}: median {median:.2f} s, min {min(seconds):.2f} s, max {max(seconds):.2f} s (n={len(seconds)})"


def measure(folder: Path, repeat: int) -> None:
    dbt = str(Path(sys.executable).with_name("dbt"))
    flags = ["--profiles-dir", str(folder), "--project-dir", str(folder), "--quiet"]
    subprocess.run([dbt, "parse", *flags], check=True)
    spawned = []
    for _ in range(repeat):
        for model in MODELS:
            start = time.perf_counter()
            subprocess.run([dbt, "run", "--select", model, *flags], check=True)
            spawned.append(time.perf_counter() - start)
    from dbt.cli.main import dbtRunner

    start = time.perf_counter()
    parsed = dbtRunner().invoke(["parse", *flags])
    parse_s = time.perf_counter() - start
    runner = dbtRunner(manifest=parsed.result)
    inside = []
    for _ in range(repeat):
        for model in MODELS:
            start = time.perf_counter()
            result = runner.invoke(["run", "--select", model, *flags])
            assert result.success, result.exception
            inside.append(time.perf_counter() - start)
    worker = subprocess.Popen(
        [sys.executable, str(REPO / "src" / "sluice" / "transforms" / "dbt_worker.py"), json.dumps(flags)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert worker.stdin is not None and worker.stdout is not None
    start = time.perf_counter()
    assert json.loads(worker.stdout.readline())["ready"]
    worker_start_s = time.perf_counter() - start
    served = []
    for _ in range(repeat):
        for model in MODELS:
            start = time.perf_counter()
            worker.stdin.write(json.dumps({"args": ["run", "--select", model, *flags]}) + "\n")
            worker.stdin.flush()
            assert json.loads(worker.stdout.readline())["success"]
            served.append(time.perf_counter() - start)
    worker.stdin.close()
    worker.wait()
    worker.stdout.close()
    print(summary("subprocess, dbt run --select <model>", spawned))
    print(f"in-process dbtRunner: parse once {parse_s:.2f} s, then")
    print(summary("in-process dbtRunner(manifest=...).invoke(run --select <model>)", inside))
    print(f"Sluice's dbt worker (sluice.transforms.dbt_worker): start and parse {worker_start_s:.2f} s, then")
    print(summary("one request per model to the worker", served))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    venv_python = REPO / ".venv-dbt" / "bin" / "python"
    if Path(sys.executable) != venv_python:
        subprocess.run([str(REPO / "scripts" / "dbt-venv.sh")], check=True, stdout=subprocess.DEVNULL)
        os.execv(venv_python, [str(venv_python), __file__, *sys.argv[1:]])
    url = os.environ.get("SLUICE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:25432/postgres")
    parts = urlsplit(url)
    database = f"sluice_dbt_bench_{os.getpid()}"
    admin = ["psql", url, "-qc"]
    subprocess.run([*admin, f"CREATE DATABASE {database}"], check=True)
    try:
        target = parts._replace(path=f"/{database}").geturl()
        subprocess.run(
            [
                "psql",
                target,
                "-qc",
                "CREATE SCHEMA staging; CREATE TABLE staging.orders AS "
                "SELECT g AS id, 'c' || (g % 5) AS customer, g AS amount FROM generate_series(1, 100) g",
            ],
            check=True,
        )
        os.environ.update(
            SLUICE_DBT_HOST=parts.hostname or "127.0.0.1",
            SLUICE_DBT_PORT=str(parts.port or 5432),
            SLUICE_DBT_USER=unquote(parts.username or "postgres"),
            SLUICE_DBT_PASSWORD=unquote(parts.password or ""),
            SLUICE_DBT_DBNAME=database,
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        )
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "shop"
            shutil.copytree(REPO / "tests" / "transforms" / "fixtures" / "dbt_shop", folder)
            measure(folder, args.repeat)
    finally:
        subprocess.run([*admin, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], check=False)


if __name__ == "__main__":
    main()
