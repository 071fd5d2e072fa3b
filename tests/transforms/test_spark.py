"""``engine: spark``: SQL and PySpark objects on Spark, Spark writing the lake itself, one session per process, errors."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from helpers import load, write_yaml
from sluice.errors import TerminalError
from sluice.lake.local import LocalLake
from sluice.project.model import Project
from sluice.runtime.execute import ObjectExecutor
from sluice.runtime.run import RunOptions, run_project
from sluice.transforms.spark_engine import spark_sql
from transforms.conftest import SPARK_YAML

PEOPLE = "id,name,country,joined\n1,ada,FR,2024-01-05\n2,bob,DE,2024-02-11\n3,cy,FR,2024-02-20\n4,di,IT,2024-03-01\n"

JOBS = """
from pyspark.sql import functions as F


def countries(people):
    return people.groupBy("country").agg(F.count("*").alias("n"))


def application(people):
    return people.limit(1).select(F.lit(people.sparkSession.sparkContext.applicationId).alias("app"))


def not_a_frame(people):
    return 42
"""


def project_with(tmp_path: Path, objects: str, head: str = "") -> Project:
    folder = tmp_path / "project"
    write_yaml(
        folder,
        head + SPARK_YAML + "objects:\n  - {id: 1001, name: people, source: {type: csv, path: people.csv}}\n" + objects,
    )
    (folder / "people.csv").write_text(PEOPLE, encoding="utf-8")
    (folder / "jobs.py").write_text(JOBS, encoding="utf-8")
    return load(folder)


def rows(project: Project, layer: str, name: str, order: str) -> list[dict[str, Any]]:
    table = LocalLake(project.resolve_lake_path()).read(f"{layer}/{name}.parquet").read_all()
    return table.sort_by(order).to_pylist()


def test_a_sql_object_runs_on_spark_which_writes_the_lake(tmp_path: Path, spark: Any) -> None:
    project = project_with(
        tmp_path,
        "  - id: 2001\n    name: per_country\n    parents: [1001]\n    engine: spark\n"
        "    sql: select country, count(*) as n, min(joined) as first from people group by country\n",
    )
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    assert summary.objects[2001].rows == 3
    assert rows(project, "cleaned", "per_country", "country") == [
        {"country": "DE", "n": 1, "first": date(2024, 2, 11)},
        {"country": "FR", "n": 2, "first": date(2024, 1, 5)},
        {"country": "IT", "n": 1, "first": date(2024, 3, 1)},
    ]
    output = project.resolve_lake_path() / "cleaned" / "per_country.parquet"
    assert output.is_symlink() and output.resolve().is_dir()  # Spark's parts folder, swapped in by a link
    assert any(part.name.startswith("part-") for part in output.resolve().glob("*.parquet"))


def test_a_parent_named_two_ways_is_read_once_and_seen_under_both_names(tmp_path: Path, spark: Any) -> None:
    project = project_with(
        tmp_path,
        "  - id: 2001\n    name: pairs\n    parents: [1001]\n    engine: spark\n"
        "    sql: select p.id, q.name from people p join raw.people q on q.id = p.id where p.country = 'FR'\n",
    )
    jobs_before = set(spark.sparkContext.statusTracker().getJobIdsForGroup(None))
    summary = run_project(project, RunOptions(targets=[2001]))
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    assert rows(project, "cleaned", "pairs", "id") == [{"id": 1, "name": "ada"}, {"id": 3, "name": "cy"}]
    tracker = spark.sparkContext.statusTracker()
    jobs = [tracker.getJobInfo(job) for job in set(tracker.getJobIdsForGroup(None)) - jobs_before]
    stages = [tracker.getStageInfo(stage) for job in jobs if job is not None for stage in job.stageIds]
    footer_reads = [stage for stage in stages if stage is not None and stage.name.startswith("parquet at ")]  # read.parquet's
    assert len(footer_reads) == 1  # one schema read of the parent's files, not one per view (people, raw__people)


def test_a_pyspark_function_gets_one_dataframe_per_parent(tmp_path: Path, spark: Any) -> None:
    project = project_with(tmp_path, "  - {id: 2001, name: countries, parents: [1001], pyspark: jobs:countries}\n")
    assert project.objects[2001].engine == "spark"
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    assert rows(project, "cleaned", "countries", "country") == [
        {"country": "DE", "n": 1},
        {"country": "FR", "n": 2},
        {"country": "IT", "n": 1},
    ]


def test_objects_of_a_run_share_the_process_session(tmp_path: Path, spark: Any) -> None:
    project = project_with(
        tmp_path,
        "  - {id: 2001, name: first, parents: [1001], pyspark: jobs:application}\n"
        "  - {id: 2002, name: second, parents: [1001], pyspark: jobs:application}\n",
    )
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    first, second = (rows(project, "cleaned", name, "app") for name in ("first", "second"))
    assert first == second == [{"app": spark.sparkContext.applicationId}]


def test_a_spark_object_output_feeds_a_duckdb_child_and_a_rerun_is_fresh(tmp_path: Path, spark: Any) -> None:
    project = project_with(
        tmp_path,
        "  - {id: 2001, name: countries, parents: [1001], engine: spark, sql: 'select country from people'}\n"
        "  - {id: 3001, name: total, parents: [2001], sql: 'select count(distinct country) as n from countries'}\n",
    )
    first = run_project(project, RunOptions())
    assert first.status == "succeeded", {oid: s.error for oid, s in first.objects.items()}
    assert rows(project, "curated", "total", "n") == [{"n": 3}]
    again = run_project(project, RunOptions())
    assert {oid: state.status for oid, state in again.objects.items()} == {1001: "skipped", 2001: "skipped", 3001: "skipped"}


def test_a_default_engine_applies_to_sql_objects(tmp_path: Path) -> None:
    folder = tmp_path / "default"
    write_yaml(
        folder,
        "engine: spark\nobjects:\n  - {id: 1001, name: people, source: {type: faker, schema: users, rows: 3}}\n"
        "  - {id: 2001, name: a, parents: [1001], sql: select 1 as one from people}\n"
        "  - {id: 2002, name: b, parents: [1001], engine: duckdb, sql: select 1 as one from people}\n",
    )
    project = load(folder)
    assert project.objects[2001].engine == "spark"
    assert project.objects[2002].engine == "sql"
    assert project.objects[1001].engine == "source"


def test_qualified_parents_are_views_of_their_own() -> None:
    text, views = spark_sql("select * from raw.users u join users v using (id)", ["raw.users", "users"])
    assert text == "SELECT * FROM raw__users AS u JOIN users AS v USING (id)"
    assert views == {"raw__users": "raw.users", "users": "users"}


def test_only_the_inputs_the_sql_names_become_views() -> None:
    inputs = ["users", "raw.users", "ingest.users", "orders", "raw.orders", "ingest.orders"]
    text, views = spark_sql("with orders as (select 1 as id) select * from users join orders using (id)", inputs)
    assert text == "WITH orders AS (SELECT 1 AS id) SELECT * FROM users JOIN orders USING (id)"
    assert views == {"users": "users", "orders": "orders"}  # a CTE's name may shadow an input: a view too many is harmless
    assert spark_sql("select * from RAW.Users", inputs) == ("SELECT * FROM raw__users", {"raw__users": "raw.users"})


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        (
            "  - {id: 2001, name: bad, parents: [1001], engine: spark, sql: select nope from people}\n",
            "object 2001 (bad): Spark failed: [UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function "
            "parameter with name `nope` cannot be resolved.",
        ),
        (
            "  - {id: 2001, name: bad, parents: [1001], engine: spark, sql: select * from peple}\n",
            "object 2001 (bad): Spark failed: [TABLE_OR_VIEW_NOT_FOUND] The table or view `peple` cannot be found.",
        ),
        (
            "  - {id: 2001, name: bad, parents: [1001], pyspark: jobs:not_a_frame}\n",
            "object 2001 (bad): jobs:not_a_frame returned a int; a pyspark function must return a DataFrame",
        ),
    ],
)
def test_spark_errors_name_the_object_and_quote_the_first_line(tmp_path: Path, spark: Any, objects: str, expected: str) -> None:
    project = project_with(tmp_path, objects)
    lake = LocalLake(project.resolve_lake_path())
    people = lake.write("raw", "people", pa.table({"id": [1], "name": ["ada"]}).to_reader())
    with pytest.raises(TerminalError) as caught:
        ObjectExecutor(project, lake).run(project.objects[2001], "r1", {"people": people.location})
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message
    if "peple" in expected:
        assert "Did you mean 'people'?" in message and "Available input tables: people" in message
    assert not list((project.resolve_lake_path() / "cleaned").glob(".*.tmp"))  # the staging folder is gone


def test_sluice_run_of_a_spark_object_read_by_a_duckdb_child(tmp_path: Path, spark: Any) -> None:
    from click.testing import CliRunner

    from sluice.cli.main import cli

    project = project_with(
        tmp_path,
        "  - {id: 2001, name: countries, parents: [1001], pyspark: jobs:countries}\n"
        "  - {id: 3001, name: biggest, parents: [2001], sql: 'select country from countries order by n desc limit 1'}\n",
    )
    result = CliRunner().invoke(cli, ["run", str(project.root), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["status"] == "succeeded"
    assert summary["objects"]["2001"]["rows"] == 3
    assert rows(project, "curated", "biggest", "country") == [{"country": "FR"}]


def test_a_spark_object_publishes_to_a_destination_with_or_without_a_lake_copy(tmp_path: Path, spark: Any) -> None:
    import duckdb

    project = project_with(
        tmp_path,
        "  - id: 2001\n    name: kept\n    parents: [1001]\n    engine: spark\n    sql: select id, name from people\n"
        "    destination: {connection: wh, table: kept}\n"
        "  - id: 2002\n    name: passed\n    parents: [1001]\n    engine: spark\n    lake: false\n"
        "    sql: select id from people where country = 'FR'\n    destination: {connection: wh, table: passed}\n",
        head="connections:\n  wh: duckdb:///wh.duckdb\n",
    )
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    assert (summary.objects[2001].rows, summary.objects[2002].rows) == (4, 2)
    with duckdb.connect(str(project.root / "wh.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from kept").fetchall() == [(4,)]
        assert con.sql("select id from passed order by id").fetchall() == [(1,), (3,)]
    cleaned = project.resolve_lake_path() / "cleaned"
    assert (cleaned / "kept.parquet").exists() and not (cleaned / "passed.parquet").exists()
    assert not list(cleaned.glob(".*.tmp"))  # the staged parts of the object without a lake copy are gone


def test_a_spark_table_model_is_written_by_spark_and_read_by_a_duckdb_child(
    tmp_path: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sluice.transforms.spark_engine import SparkEngine

    def collected(*args: Any, **kwargs: Any) -> pa.RecordBatchReader:
        raise AssertionError("a Spark model's data went through Sluice (SparkEngine.run / toArrow)")

    monkeypatch.setattr(SparkEngine, "run", collected)
    folder = tmp_path / "project"
    write_yaml(folder, SPARK_YAML + "objects:\n  - {id: 1001, name: people, source: {type: csv, path: people.csv}}\n")
    (folder / "people.csv").write_text(PEOPLE, encoding="utf-8")
    models = folder / "models"
    models.mkdir()
    (models / "per_country.sql").write_text(
        "{{ config(engine='spark', materialized='table') }}\n"
        "select country, count(*) as n, min(joined) as first from {{ ref('people') }} group by country\n",
        encoding="utf-8",
    )
    (models / "biggest.sql").write_text(
        "select country, n from {{ ref('per_country') }} order by n desc limit 1\n", encoding="utf-8"
    )
    project = load(folder)
    by_name = {obj.name: obj for obj in project.objects.values()}
    assert by_name["per_country"].engine == "spark" and by_name["biggest"].engine == "duckdb"
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    assert summary.objects[by_name["per_country"].id].rows == 3
    layer = project.stage(by_name["per_country"].stage).layer
    output = project.resolve_lake_path() / layer / "per_country.parquet"
    assert output.is_symlink() and output.resolve().is_dir()  # Spark's parts folder, committed by the lake
    assert rows(project, layer, "per_country", "country") == [
        {"country": "DE", "n": 1, "first": date(2024, 2, 11)},
        {"country": "FR", "n": 2, "first": date(2024, 1, 5)},
        {"country": "IT", "n": 1, "first": date(2024, 3, 1)},
    ]
    assert rows(project, project.stage(by_name["biggest"].stage).layer, "biggest", "country") == [{"country": "FR", "n": 2}]
    again = run_project(project, RunOptions())
    assert {state.status for state in again.objects.values()} == {"skipped"}


def test_a_spark_object_reads_a_partitioned_parent_with_its_partition_columns(tmp_path: Path, spark: Any) -> None:
    folder = tmp_path / "project"
    write_yaml(
        folder,
        SPARK_YAML + "objects:\n  - {id: 1001, name: people, source: {type: csv, path: people.csv}, partition_by: [country]}\n"
        "  - id: 2001\n    name: per_country\n    parents: [1001]\n    engine: spark\n"
        "    sql: select country, count(*) as n from people group by country\n",
    )
    (folder / "people.csv").write_text(PEOPLE, encoding="utf-8")
    project = load(folder)
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    assert (project.resolve_lake_path() / "raw" / "people" / "_manifest.json").is_file()
    assert rows(project, "cleaned", "per_country", "country") == [
        {"country": "DE", "n": 1},
        {"country": "FR", "n": 2},
        {"country": "IT", "n": 1},
    ]


def test_a_spark_object_reads_what_a_streaming_parent_committed(tmp_path: Path, spark: Any) -> None:
    """A streaming object's output (an append-only dataset of micro-batches) is read by Spark file by file."""
    folder = tmp_path / "project"
    write_yaml(
        folder,
        SPARK_YAML + "connections: {events: 'kafka://127.0.0.1:1'}\nobjects:\n"
        "  - {id: 1001, name: events, source: {type: kafka, connection: events, topic: t}, streaming: {}}\n"
        "  - id: 2001\n    name: per_user\n    parents: [1001]\n    engine: spark\n"
        "    sql: select user, count(*) as n from events group by user\n",
    )
    project = load(folder)
    lake = LocalLake(project.resolve_lake_path())
    for batch, users in enumerate((["a", "b"], ["a"], ["c", "a"]), 1):  # three micro-batches, as the loop commits them
        lake.append("raw", "events", pa.table({"user": users}).to_reader(), commit={"batch": batch})
    summary = run_project(project, RunOptions())
    assert summary.status == "succeeded", {oid: s.error for oid, s in summary.objects.items()}
    assert summary.objects[1001].status == "skipped"  # never run by a run: what it committed is its output
    assert rows(project, "cleaned", "per_user", "user") == [{"user": "a", "n": 3}, {"user": "b", "n": 1}, {"user": "c", "n": 1}]


def test_partition_by_is_refused_on_a_spark_object(tmp_path: Path) -> None:
    from sluice.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="partition_by is not supported on engine spark"):
        project_with(
            tmp_path,
            "  - {id: 2001, name: c, parents: [1001], engine: spark, sql: 'select * from people', partition_by: [country]}\n",
        )
