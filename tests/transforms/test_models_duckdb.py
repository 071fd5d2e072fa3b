"""SQL models run by DuckDB over the lake: table, view (inlined where read), incremental across runs, and
a whole project run with ``sluice run``."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from helpers import summary_json
from models_project import YAML, make, run_incremental_twice
from sluice.plugins import Plugin, registry
from sluice.plugins.registry import Registry
from sluice.project.load import load_project
from sluice.runtime.run import run_project
from sluice.transforms.plugins import SqlEngineOptions


def lake(tmp_path: Path, name: str) -> list[dict[str, object]]:
    """The model's lake output, sorted on its first column."""
    table = pq.read_table(tmp_path / ".sluice" / "lake" / "curated" / f"{name}.parquet")
    return table.sort_by(table.column_names[0]).to_pylist()  # type: ignore[no-any-return]


def test_table_view_and_incremental_twice(tmp_path: Path) -> None:
    path = make(tmp_path, "1,ann,FR,2026-01-01\n2,bob,DE,2026-01-02\n")
    project = load_project(path)
    ids = {obj.name: obj.id for obj in project.objects.values()}
    first = run_project(project)
    assert first.status == "succeeded"
    assert first.objects[ids["users_inc"]].rows == 2 and first.objects[ids["stg_users"]].rows == 0
    assert lake(tmp_path, "by_country") == [{"country": "DE", "n": 1}, {"country": "FR", "n": 1}]
    assert not (tmp_path / ".sluice" / "lake" / "curated" / "stg_users.parquet").exists()  # a view stores nothing

    # One row updated (bob, later updated_at), one new row, one unchanged.
    (tmp_path / "users.csv").write_text(
        "id,name,country,updated_at\n1,ann,FR,2026-01-01\n2,bobby,DE,2026-01-05\n3,cy,FR,2026-01-06\n", encoding="utf-8"
    )
    second = run_project(load_project(path))
    assert second.status == "succeeded"
    assert second.objects[ids["users_inc"]].rows == 2  # the new and the updated row
    rows = lake(tmp_path, "users_inc")
    assert [(r["id"], r["name"]) for r in rows] == [(1, "ANN"), (2, "BOBBY"), (3, "CY")]
    assert lake(tmp_path, "by_country") == [{"country": "DE", "n": 1}, {"country": "FR", "n": 2}]


def test_sluice_run_on_a_models_folder(tmp_path: Path) -> None:
    path = make(tmp_path, "1,ann,FR,2026-01-01\n")
    validate = subprocess.run(
        [sys.executable, "-m", "sluice", "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert validate.returncode == 0, validate.stderr
    result = subprocess.run(
        [sys.executable, "-m", "sluice", "run", str(path), "--json"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    summary = summary_json(result.stdout)
    assert summary["status"] == "succeeded" and len(summary["objects"]) == 4  # type: ignore[arg-type]
    assert lake(tmp_path, "users_inc") == [{"id": 1, "name": "ANN", "country": "FR", "updated_at": datetime.date(2026, 1, 1)}]


def test_an_unknown_table_stops_validate_before_anything_runs(tmp_path: Path) -> None:
    path = make(tmp_path, "1,ann,FR,2026-01-01\n")
    (tmp_path / "models" / "bad.sql").write_text("select *\nfrom {{ ref('user') }}\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "sluice", "run", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert f"{tmp_path / 'models' / 'bad.sql'}:2: model bad: the SQL reads 'user'" in result.stderr
    assert "Did you mean 'users'?" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / ".sluice" / "lake").exists()


def test_an_engine_plugin_registered_by_name_runs_table_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model's ``engine`` resolves through the plugin registry: a plain engine (DuckDB's ``sql:`` one)
    registered as ``standin`` gets the model with its SQL bound to the parents' views (Spark's path is
    tests/transforms/test_spark.py)."""
    extended = Registry(
        [
            *registry().all(),
            Plugin("engine", "standin", SqlEngineOptions, "sluice.transforms.engines:DuckdbSqlEngine", "stand-in"),
        ]
    )
    monkeypatch.setattr("sluice.project.models.registry", lambda: extended)
    monkeypatch.setattr("sluice.transforms.engines.registry", lambda: extended)
    path = make(tmp_path, "1,ann,FR,2026-01-01\n")
    (tmp_path / "models" / "on_spark.sql").write_text(
        "{{ config(engine='standin', dialect='duckdb') }}\nselect count(*) as n from {{ ref('users') }}\n", encoding="utf-8"
    )
    project = load_project(path)
    summary = run_project(project)
    spark = next(o.id for o in project.objects.values() if o.name == "on_spark")
    assert summary.objects[spark].status == "loaded" and lake(tmp_path, "on_spark") == [{"n": 1}]


def test_a_duckdb_model_is_also_published_to_its_destination(tmp_path: Path) -> None:
    path = make(tmp_path, "1,ann,FR,2026-01-01\n2,bob,FR,2026-01-02\n")
    (tmp_path / "sluice.yaml").write_text(
        YAML.replace("objects:", "connections:\n  out: duckdb:///out.duckdb\nobjects:")
        + "    by_country: {destination: {connection: out, table: marts.by_country}}\n",
        encoding="utf-8",
    )
    summary = run_project(load_project(path))
    assert summary.status == "succeeded"
    with duckdb.connect(str(tmp_path / "out.duckdb"), read_only=True) as con:
        assert con.execute("select country, n from marts.by_country").fetchall() == [("FR", 2)]


def test_incremental_models_over_a_partitioned_parent(tmp_path: Path) -> None:
    """The previous output and the parents are found whatever shape the lake gave them (a partitioned folder)."""
    yaml = YAML.replace("source: {type: csv, path: users.csv}}", "source: {type: csv, path: users.csv}, partition_by: [country]}")
    _, rows = run_incremental_twice(tmp_path, yaml)
    assert rows == [(1, "ANN"), (2, "BOBBY"), (3, "CY")]
