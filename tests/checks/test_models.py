"""``checks:`` in a SQL model's configuration (``models: config:``): a DuckDB table model checked over the lake, a
``warehouse`` model checked inside PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import events_of, load, write_yaml
from sluice import events as ev
from sluice.runtime.run import RunOptions, run_project


def models_project(tmp_path: Path, warehouse: str | None) -> Path:
    folder = tmp_path / ("pg" if warehouse else "lake")
    engine = "engine: warehouse\n      connection: warehouse\n      schema: marts\n      " if warehouse else ""
    write_yaml(
        folder,
        (f"connections: {{warehouse: '{warehouse}'}}\n" if warehouse else "")
        + f"""objects:
  - id: 1001
    name: users
    source: {{type: csv, path: users.csv}}
    {"destination: {connection: warehouse, table: raw_users}" if warehouse else ""}
models:
  config:
    by_country:
      {engine}materialized: table
      checks:
        - unique: {{columns: [country]}}
        - row_count: {{min: 3}}
          severity: warn
""",
    )
    (folder / "users.csv").write_text("id,country\n1,FR\n2,FR\n3,DE\n", encoding="utf-8")
    (folder / "models").mkdir(exist_ok=True)
    table = "raw_users" if warehouse else "{{ ref('users') }}"
    (folder / "models" / "by_country.sql").write_text(f"select country, count(*) as n from {table} group by 1\n")
    return folder


@pytest.mark.parametrize("place", ["duckdb", pytest.param("warehouse", marks=pytest.mark.postgres)])
def test_a_model_s_checks_run_where_it_is_materialised(tmp_path: Path, place: str, request: pytest.FixtureRequest) -> None:
    url = str(request.getfixturevalue("pg_db_url")) if place == "warehouse" else None
    project = load(models_project(tmp_path, url))
    model = next(o for o in project.objects.values() if o.name == "by_country")
    assert [c.name for c in model.checks] == ["unique_country", "row_count"]
    assert model.model is not None and "checks" not in model.model.config  # not in the fingerprint
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", summary.objects
    finished = {e.check: e for _, e in events_of(project, summary.run_id) if isinstance(e, ev.CheckFinished)}
    assert (finished["unique_country"].status, finished["row_count"].status) == ("passed", "failed")
    assert finished["row_count"].sample == ["row_count=2"] and finished["row_count"].severity == "warn"
