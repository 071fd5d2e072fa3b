"""The base install (no database or Kafka driver) runs embedded projects; a missing extra is one line.

The drivers are installed here (the dev extra brings them), so each test blocks them in a subprocess
the way an absent package behaves: ``sys.modules[name] = None`` makes ``import name`` raise ImportError
and ``importlib.util.find_spec(name)`` return None.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sluice.plugins.registry import builtin_plugins

DRIVERS = ("psycopg", "pymysql", "confluent_kafka", "adbc_driver_postgresql", "adbc_driver_manager", "pyspark")
WITHOUT_DRIVERS = f"""
import sys
for name in {DRIVERS!r}:
    sys.modules[name] = None
from sluice.cli.main import main
sys.argv = ["sluice", *sys.argv[1:]]
main()
"""


def sluice_without_drivers(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", WITHOUT_DRIVERS, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_every_extra_driver_is_blocked() -> None:
    declared = {module for plugin in builtin_plugins() for module in plugin.modules}
    assert declared == set(DRIVERS)
    assert {plugin.extra for plugin in builtin_plugins() if plugin.extra} == {"postgres", "mysql", "kafka", "spark"}


def test_embedded_project_runs_without_drivers(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    (tmp_path / "sluice.yaml").write_text(
        "connections:\n"
        "  warehouse: duckdb:///warehouse.duckdb\n"
        "objects:\n"
        "  - {id: 1001, name: people, source: {type: csv, path: data.csv}}\n"
        "  - {id: 1002, name: fakes, source: {type: faker, schema: users, rows: 5}}\n"
        "  - id: 2001\n"
        "    name: both\n"
        "    parents: [1001, 1002]\n"
        "    sql: select count(*) as n from people union all select count(*) from fakes\n"
        "    destination: {connection: warehouse, table: both}\n"
    )
    assert sluice_without_drivers("validate", str(tmp_path)).returncode == 0
    result = sluice_without_drivers("run", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert summary["objects"]["2001"]["rows"] == 2
    listing = sluice_without_drivers("plugins", "--kind", "source")
    assert "extra: mysql (not installed: pip install 'sluice[mysql]')" in listing.stdout


def assert_one_line(result: subprocess.CompletedProcess[str], extra: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if f"pip install 'sluice[{extra}]'" in line]
    assert len(lines) == 1, result.stderr


@pytest.mark.parametrize("command", ["validate", "run"])
def test_mysql_source_without_its_extra_is_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "sluice.yaml").write_text(
        "connections:\n"
        "  shop: mysql://reader@127.0.0.1:3306/shop\n"
        "objects:\n"
        "  - {id: 1001, name: orders, source: {type: sql, connection: shop, table: orders}}\n"
    )
    result = sluice_without_drivers(command, str(tmp_path))
    assert_one_line(result, "mysql")
    assert "sluice.yaml:4: object 1001 (orders): source: the source 'mysql' plugin needs pymysql" in result.stderr
    assert not (tmp_path / ".sluice").exists()


@pytest.mark.parametrize("command", ["validate", "run"])
def test_spark_object_without_pyspark_is_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "sluice.yaml").write_text(
        "objects:\n"
        "  - {id: 1001, name: people, source: {type: faker, schema: users, rows: 5}}\n"
        "  - {id: 2001, name: n, parents: [1001], engine: spark, sql: select count(*) as n from people}\n"
    )
    result = sluice_without_drivers(command, str(tmp_path))
    assert_one_line(result, "spark")
    assert "sluice.yaml:3: object 2001 (n): sql: the engine 'spark' plugin needs pyspark" in result.stderr
    assert not (tmp_path / ".sluice").exists()


@pytest.mark.parametrize(
    ("option", "url", "extra"),
    [("--bus", "kafka://127.0.0.1:9", "kafka"), ("--state", "postgresql://me@127.0.0.1:9/db", "postgres")],
)
def test_backend_without_its_extra_is_one_line(tmp_path: Path, option: str, url: str, extra: str) -> None:
    (tmp_path / "sluice.yaml").write_text("objects:\n  - {id: 1001, name: people, source: {type: faker, schema: users}}\n")
    result = sluice_without_drivers("run", str(tmp_path), option, url)
    assert_one_line(result, extra)
