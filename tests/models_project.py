"""A small models/ project shared by the SQL-model tests of several folders (DuckDB over the local lake, the
S3 lake): a CSV source, a view model, a table model and an incremental one."""

from __future__ import annotations

from pathlib import Path

from sluice.lake.registry import open_lake
from sluice.project.load import load_project
from sluice.project.model import Project
from sluice.runtime.run import run_project

YAML = """\
objects:
  - {id: 1001, name: users, source: {type: csv, path: users.csv}}
models:
  config:
    marts/: {materialized: table}
"""
MODELS = {
    "staging/stg_users.sql": (
        "{{ config(materialized='view') }}\nselect id, upper(name) as name, country, updated_at from {{ ref('users') }}\n"
    ),
    "marts/by_country.sql": "with u as (select * from {{ ref('stg_users') }})\nselect country, count(*) as n from u group by 1\n",
    "marts/users_inc.sql": (
        "{{ config(materialized='incremental', unique_key='id') }}\n"
        "select * from {{ ref('stg_users') }}\n"
        "{% if is_incremental() %}\n"
        "where updated_at > (select max(updated_at) from {{ this }})\n"
        "{% endif %}\n"
    ),
}


def make(tmp_path: Path, rows: str) -> Path:
    (tmp_path / "sluice.yaml").write_text(YAML, encoding="utf-8")
    (tmp_path / "users.csv").write_text("id,name,country,updated_at\n" + rows, encoding="utf-8")
    for name, text in MODELS.items():
        path = tmp_path / "models" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def run_incremental_twice(tmp_path: Path, yaml: str) -> tuple[Project, list[tuple[int, str]]]:
    """The models of :data:`MODELS` over ``yaml``'s project, run, then run again with one row updated and one new;
    the project and ``users_inc``'s (id, name) rows from the lake after the second run."""
    path = make(tmp_path, "1,ann,FR,2026-01-01\n2,bob,DE,2026-01-02\n")
    (tmp_path / "sluice.yaml").write_text(yaml, encoding="utf-8")
    assert run_project(load_project(path)).status == "succeeded"
    (tmp_path / "users.csv").write_text(
        "id,name,country,updated_at\n1,ann,FR,2026-01-01\n2,bobby,DE,2026-01-05\n3,cy,FR,2026-01-06\n", encoding="utf-8"
    )
    project = load_project(path)
    second = run_project(project)
    ids = {obj.name: obj.id for obj in project.objects.values()}
    assert second.status == "succeeded", {oid: s.error for oid, s in second.objects.items()}
    assert second.objects[ids["users_inc"]].rows == 2  # only the new and the updated row were read: incremental
    lake = open_lake(project)
    location = lake.current_location("curated", "users_inc")
    assert location is not None
    rows = lake.read(location).read_all().sort_by("id").to_pylist()
    return project, [(r["id"], r["name"]) for r in rows]
