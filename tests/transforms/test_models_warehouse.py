"""SQL models pushed down into PostgreSQL: each materialisation runs inside the warehouse (nothing in the
lake, results read back from the server), incremental twice with new and updated rows, dialect translation."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from sluice.errors import TerminalError
from sluice.project.load import load_project
from sluice.runtime.run import run_project
from sluice.transforms.models import rewrite
from sluice.transforms.warehouse import warehouse_names

YAML = """\
connections:
  dw: {url}
objects:
  - id: 1001
    name: users
    source: {{type: csv, path: users.csv}}
    destination: {{connection: dw, table: staging.users}}
models:
  engine: warehouse
  schema: analytics
  sources: {{crm: {{schema: crm, tables: [countries]}}}}
"""
MODELS = {
    "dim_users.sql": (
        "{{ config(materialized='table') }}\n"
        "select u.id, u.name, c.label as country from staging.users u\n"
        "join {{ source('crm', 'countries') }} c on c.code = u.country\n"
    ),
    "users_view.sql": "{{ config(materialized='view') }}\nselect id, upper(name) as name from {{ ref('dim_users') }}\n",
    "users_inc.sql": (
        "{{ config(materialized='incremental', unique_key='id', alias='users_latest', dialect='duckdb') }}\n"
        "select id, name, updated_at, strftime(updated_at, '%Y') as year from staging.users\n"
        "{% if is_incremental() %}\n"
        "where updated_at > (select max(updated_at) from {{ this }})\n"
        "{% endif %}\n"
    ),
}


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql).fetchall())


def make(tmp_path: Path, url: str, rows: str) -> Path:
    (tmp_path / "sluice.yaml").write_text(YAML.format(url=url), encoding="utf-8")
    (tmp_path / "users.csv").write_text("id,name,country,updated_at\n" + rows, encoding="utf-8")
    (tmp_path / "models").mkdir(exist_ok=True)
    for name, text in MODELS.items():
        (tmp_path / "models" / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_each_materialisation_runs_inside_postgresql_and_incremental_merges(tmp_path: Path, pg_db_url: str) -> None:
    with psycopg.connect(pg_db_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA crm")
        conn.execute("CREATE TABLE crm.countries (code text primary key, label text)")
        conn.execute("INSERT INTO crm.countries VALUES ('FR', 'France'), ('DE', 'Germany')")
    path = make(tmp_path, pg_db_url, "1,ann,FR,2026-01-01 00:00:00\n2,bob,DE,2026-01-02 00:00:00\n")
    project = load_project(path)
    ids = {obj.name: obj.id for obj in project.objects.values()}
    first = run_project(project)
    assert first.status == "succeeded", {i: s.error for i, s in first.objects.items()}
    assert first.objects[ids["dim_users"]].rows == 2
    assert first.objects[ids["users_inc"]].rows == 2
    assert query(pg_db_url, "select id, name, country from analytics.dim_users order by id") == [
        (1, "ann", "France"),
        (2, "bob", "Germany"),
    ]
    assert query(pg_db_url, "select relkind from pg_class where relname = 'users_view'") == [("v",)]
    assert query(pg_db_url, "select * from analytics.users_view order by id") == [(1, "ANN"), (2, "BOB")]
    assert query(pg_db_url, "select id, year from analytics.users_latest order by id") == [(1, "2026"), (2, "2026")]
    curated = tmp_path / ".sluice" / "lake" / "curated"
    assert not curated.exists() or not list(curated.iterdir())  # push-down: nothing went through the lake

    (tmp_path / "users.csv").write_text(
        "id,name,country,updated_at\n1,ann,FR,2026-01-01 00:00:00\n2,bobby,DE,2026-01-05 00:00:00\n3,cy,FR,2026-01-06 00:00:00\n",
        encoding="utf-8",
    )
    second = run_project(load_project(path))
    assert second.status == "succeeded", {i: s.error for i, s in second.objects.items()}
    assert second.objects[ids["users_inc"]].rows == 2  # one inserted, one updated
    assert query(pg_db_url, "select id, name from analytics.users_latest order by id") == [(1, "ann"), (2, "bobby"), (3, "cy")]
    assert query(pg_db_url, "select count(*) from analytics.dim_users") == [(3,)]
    assert query(pg_db_url, "select * from analytics.users_view order by id")[-1] == (3, "CY")
    assert not curated.exists() or not list(curated.iterdir())


def test_sql_is_translated_and_bound_to_warehouse_tables(tmp_path: Path, pg_db_url: str) -> None:
    project = load_project(make(tmp_path, pg_db_url, "1,ann,FR,2026-01-01 00:00:00\n"))
    obj = next(o for o in project.objects.values() if o.name == "users_inc")
    assert obj.model is not None
    sql = rewrite(obj.model, obj.model.sql(True), warehouse_names(project.objects, obj.model), write="postgres", object_label="x")
    assert '"staging"."users" AS users' in sql and '"analytics"."users_latest" AS _sluice_this' in sql
    assert "TO_CHAR(" in sql  # DuckDB's strftime in PostgreSQL


def test_a_warehouse_error_is_terminal_and_names_the_model(tmp_path: Path, pg_db_url: str) -> None:
    path = make(tmp_path, pg_db_url, "1,ann,FR,2026-01-01 00:00:00\n")
    (tmp_path / "models" / "dim_users.sql").write_text("select nosuch from staging.users\n", encoding="utf-8")
    project = load_project(path)
    summary = run_project(project)
    dim = next(o.id for o in project.objects.values() if o.name == "dim_users")
    assert summary.objects[dim].status == "failed"
    assert "models/dim_users.sql" in (summary.objects[dim].error or "") and "nosuch" in (summary.objects[dim].error or "")
    assert issubclass(TerminalError, Exception)


pytestmark = pytest.mark.filterwarnings("error")
