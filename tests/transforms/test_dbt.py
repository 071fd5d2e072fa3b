"""A dbt project run through Sluice (docs/models.md, dbt projects): its models become objects with dbt's
dependencies and a Sluice extract feeding dbt's source, built by dbt-core in PostgreSQL, rows counted, a
failing model reported with its children skipped, fresh models skipped, connection failures retried.

dbt-core runs from ``.venv-dbt/`` (``scripts/dbt-venv.sh``, which the fixture calls: it installs dbt-core and
dbt-postgres from PyPI the first time)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from servers_fixtures import unavailable
from sluice.errors import ValidationFailed
from sluice.project.load import load_project
from sluice.runtime.run import run_project
from sluice.transforms import dbt_pool
from sluice.transforms.dbt import is_transient

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "dbt_shop"
YAML = """\
connections:
  dw: {url}
retry: {{attempts: 2, backoff_s: 0}}
objects:
  - id: 1001
    name: orders
    source: {{type: csv, path: orders.csv}}
    destination: {{connection: dw, table: staging.orders}}
dbt:
  project: shop
  profiles_dir: shop
"""


@pytest.fixture(scope="session")
def dbt_executable() -> str:
    done = subprocess.run([str(REPO / "scripts" / "dbt-venv.sh")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        unavailable(f"scripts/dbt-venv.sh failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def shop(tmp_path: Path, pg_db_url: str, dbt_executable: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    parts = urlsplit(pg_db_url)
    monkeypatch.setenv("SLUICE_DBT", dbt_executable)
    monkeypatch.setenv("SLUICE_DBT_HOST", parts.hostname or "127.0.0.1")
    monkeypatch.setenv("SLUICE_DBT_PORT", str(parts.port or 5432))
    monkeypatch.setenv("SLUICE_DBT_USER", unquote(parts.username or "postgres"))
    monkeypatch.setenv("SLUICE_DBT_PASSWORD", unquote(parts.password or ""))
    monkeypatch.setenv("SLUICE_DBT_DBNAME", parts.path.lstrip("/"))
    shutil.copytree(FIXTURE, tmp_path / "shop")
    (tmp_path / "sluice.yaml").write_text(YAML.format(url=pg_db_url), encoding="utf-8")
    (tmp_path / "orders.csv").write_text("id,customer,amount\n1,ann,5\n2,ann,7\n3,bob,3\n4,cat,12\n", encoding="utf-8")
    yield tmp_path
    dbt_pool.close_all()  # before the database is dropped


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql).fetchall())


def sluice_run(path: Path) -> dict[str, object]:
    """``sluice run --json`` in a process of its own, dbt run as one subprocess per model (no workers)."""
    done = subprocess.run(
        [sys.executable, "-m", "sluice", "run", "--json", str(path / "sluice.yaml")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SLUICE_DBT_SUBPROCESS": "1"},
    )
    assert done.stdout.strip(), done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_dbt_models_become_objects_with_dbt_dependencies_and_the_sluice_source(shop: Path) -> None:
    project = load_project(shop)
    by_name = {obj.name: obj for obj in project.objects.values()}
    assert set(by_name) == {"orders", "stg_orders", "customer_totals", "top_customers"}
    assert by_name["stg_orders"].parents == (1001,)  # dbt source raw.orders is staging.orders, which orders writes
    assert by_name["customer_totals"].parents == (by_name["stg_orders"].id,)
    assert by_name["top_customers"].parents == (by_name["customer_totals"].id,)
    assert by_name["top_customers"].kind == "model" and by_name["top_customers"].engine == "dbt"
    assert by_name["stg_orders"].model is not None and by_name["stg_orders"].model.path == "shop/models/stg_orders.sql"


def test_sluice_run_builds_the_dbt_models_then_skips_fresh_ones(shop: Path, pg_db_url: str) -> None:
    project = load_project(shop)
    ids = {obj.name: obj.id for obj in project.objects.values()}
    first = run_project(project)
    assert first.status == "succeeded", {i: s.error for i, s in first.objects.items()}
    assert first.objects[ids["stg_orders"]].rows == 4
    assert first.objects[ids["customer_totals"]].rows == 3
    assert first.objects[ids["top_customers"]].rows == 0  # a view
    assert query(pg_db_url, "select customer, total from analytics.top_customers order by customer") == [
        ("ann", 12),
        ("cat", 12),
    ]
    assert any(dbt_pool._IDLE.values())  # the models ran in a dbt worker, kept for the next ones
    second = run_project(load_project(shop))
    assert second.status == "succeeded"
    assert {second.objects[ids[n]].status for n in ("stg_orders", "customer_totals", "top_customers")} == {"skipped"}
    (shop / "shop" / "models" / "top_customers.sql").write_text(
        "{{ config(materialized='view') }}\nselect customer, total from {{ ref('customer_totals') }} where total > 12\n"
    )
    third = run_project(load_project(shop))
    assert third.objects[ids["top_customers"]].status == "loaded"  # it ran, into its table
    assert third.objects[ids["customer_totals"]].status == "skipped"
    assert query(pg_db_url, "select customer from analytics.top_customers") == []
    dbt_pool.close_all()
    assert not list((shop / "shop" / "target" / "sluice").glob("worker-*"))  # a worker's parse folder goes with it
    assert not list((shop / "shop" / "target" / "sluice-runs").iterdir())  # so does each run's artifacts folder


def test_a_failing_dbt_model_is_reported_with_dbt_message_and_its_children_skipped(shop: Path) -> None:
    (shop / "shop" / "models" / "customer_totals.sql").write_text(
        "select customer, sum(amount) as total, count(nosuchcolumn) as orders\nfrom {{ ref('stg_orders') }}\ngroup by customer\n"
    )
    summary = sluice_run(shop)
    objects = {int(k): v for k, v in summary["objects"].items()}  # type: ignore[attr-defined]
    ids = {obj.name: obj.id for obj in load_project(shop).objects.values()}
    assert summary["status"] == "failed"
    failed = objects[ids["customer_totals"]]
    assert failed["status"] == "failed" and failed["attempts"] == 1  # an SQL error is not retried
    assert "shop/models/customer_totals.sql" in failed["error"]
    assert 'column "nosuchcolumn" does not exist' in failed["error"], failed["error"]
    assert objects[ids["top_customers"]]["status"] == "skipped"
    assert objects[ids["stg_orders"]]["status"] == "loaded"


def test_an_unreachable_database_is_retried_per_the_project_retry_settings(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(shop)  # dbt parse does not connect
    monkeypatch.setenv("SLUICE_DBT_PORT", "1")  # nothing listens there: dbt cannot connect
    ids = {obj.name: obj.id for obj in project.objects.values()}
    summary = run_project(project)
    state = summary.objects[ids["stg_orders"]]
    assert state.status == "failed"
    assert state.attempt == 2  # retry: {attempts: 2}
    assert state.error is not None and "connect" in state.error.lower()
    assert summary.objects[ids["customer_totals"]].status == "skipped"


def test_two_invocations_creating_one_schema_at_once_is_a_transient_race() -> None:
    # what CI saw when a seed and a model of one stage both ran dbt's `create schema if not exists analytics`
    race = 'Database Error duplicate key value violates unique constraint "pg_namespace_nspname_index"'
    assert is_transient(race)
    assert is_transient("Database Error deadlock detected")
    assert not is_transient('Database Error duplicate key value violates unique constraint "orders_pkey"')
    assert not is_transient('Database Error relation "missing" does not exist')


def test_a_dbt_project_without_dbt_project_yml_is_refused_at_its_line(shop: Path) -> None:
    (shop / "sluice.yaml").write_text((shop / "sluice.yaml").read_text().replace("project: shop", "project: nowhere"))
    with pytest.raises(ValidationFailed) as caught:
        load_project(shop)
    assert "sluice.yaml:10: dbt: project 'nowhere' has no dbt_project.yml" in str(caught.value)


def test_seeds_become_objects_with_resources(shop: Path, pg_db_url: str) -> None:
    (shop / "shop" / "seeds").mkdir()
    (shop / "shop" / "seeds" / "countries.csv").write_text("code,label\nFR,France\nDE,Germany\n", encoding="utf-8")
    (shop / "sluice.yaml").write_text((shop / "sluice.yaml").read_text() + "  resources: [model, seed]\n")
    project = load_project(shop)
    countries = next(obj for obj in project.objects.values() if obj.name == "countries")
    summary = run_project(project)
    assert summary.objects[countries.id].status == "loaded" and summary.objects[countries.id].rows == 2
    assert query(pg_db_url, "select code from analytics.countries order by code") == [("DE",), ("FR",)]


def test_select_narrows_the_objects_with_dbt_selection_syntax(shop: Path) -> None:
    (shop / "sluice.yaml").write_text((shop / "sluice.yaml").read_text() + '  select: "customer_totals+"\n')
    by_name = {obj.name: obj for obj in load_project(shop).objects.values()}
    assert set(by_name) == {"orders", "customer_totals", "top_customers"}
    assert by_name["customer_totals"].parents == ()  # stg_orders is outside the selection: dbt reads its table as it is
    assert by_name["top_customers"].parents == (by_name["customer_totals"].id,)
