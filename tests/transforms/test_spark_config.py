"""Spark objects are checked before anything runs: engine names, pyspark without Spark, Java, the spark section."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_yaml
from sluice.errors import SluiceError
from sluice.project.load import load_project
from sluice.project.validate import ahead_of_run

SOURCE = "  - {id: 1001, name: people, source: {type: faker, schema: users, rows: 3}}\n"


def problems(tmp_path: Path, text: str) -> list[str]:
    folder = tmp_path / "project"
    write_yaml(folder, text)
    (folder / "jobs.py").write_text("def frame(people):\n    return people\n", encoding="utf-8")
    try:
        project = load_project(folder)
    except SluiceError as exc:
        return [line.split("sluice.yaml", 1)[-1] for line in str(exc).splitlines() if "sluice.yaml" in line]
    return [str(problem).split("sluice.yaml", 1)[-1] for problem in ahead_of_run(project)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "objects:\n" + SOURCE + "  - {id: 2001, name: a, parents: [1001], engine: sprak, sql: select 1 as x}\n",
            ":3: object 2001 (a): unknown engine 'sprak' (engines: duckdb, spark). Did you mean 'spark'?",
        ),
        (
            "engine: duckbd\nobjects:\n" + SOURCE,
            ":1: top level: engine: unknown engine 'duckbd' (engines: duckdb, spark). Did you mean 'duckdb'?",
        ),
        (
            "objects:\n" + SOURCE + "  - {id: 2001, name: a, parents: [1001], engine: duckdb, pyspark: jobs:frame}\n",
            ":3: object 2001 (a): pyspark runs on Spark, not on duckdb; drop 'engine' or use python:",
        ),
        (
            "objects:\n" + SOURCE + "  - {id: 2001, name: a, parents: [1001], engine: spark, python: jobs:frame}\n",
            ":3: object 2001 (a): a python function runs in Sluice on Arrow tables, not on spark; "
            "for a PySpark function write pyspark: module:function",
        ),
        (
            "objects:\n  - {id: 1001, name: people, engine: spark, source: {type: faker, schema: users}}\n",
            ":2: object 1001 (people): 'engine' applies to sql and pyspark objects; this one has no sql or pyspark",
        ),
        (
            "objects:\n" + SOURCE + "  - {id: 2001, name: a, parents: [1001], pyspark: jobs:fram}\n",
            ":3: object 2001 (a): pyspark 'jobs:fram': module 'jobs'",
        ),
        (
            "objects:\n" + SOURCE + "  - {id: 2001, name: a, parents: [1001], pyspark: 'jobs'}\n",
            ":3: object 2001 (a): pyspark must be 'module:function'",
        ),
        (
            "spark: {master: 'local[2]', confs: {}}\nobjects:\n" + SOURCE,
            ":1: spark: unknown key 'confs'. Did you mean 'conf'?",
        ),
        (
            "objects:\n" + SOURCE + "  - {id: 2001, name: a, parents: [1001], engine: spark, sql: select * from peple}\n",
            ":3: object 2001 (a): the SQL reads 'peple', which is not one of its parents. Did you mean 'people'?",
        ),
    ],
)
def test_a_wrong_spark_object_is_refused_before_it_runs(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(problem.startswith(expected) or expected in problem for problem in found), found


def test_without_java_a_local_spark_project_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    found = problems(tmp_path, "objects:\n" + SOURCE + "  - {id: 2001, name: a, parents: [1001], pyspark: jobs:frame}\n")
    assert found == [
        ":3: object 2001 (a): Spark needs Java 17 or 21, which is not installed or not on PATH: install a JDK or JRE "
        "(e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    ]


def test_the_spark_section_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    write_yaml(folder, "spark: {master: 'spark://10.0.0.5:7077', conf: {spark.executor.memory: 4g}}\nobjects:\n" + SOURCE)
    project = load_project(folder)
    assert project.spark.master == "spark://10.0.0.5:7077"
    assert project.spark.conf == {"spark.executor.memory": "4g"}
    assert project.objects[1001].definition() == {**project.objects[1001].definition()}
    assert "engine" not in project.objects[1001].definition()  # definitions of objects without engine stay as they were


def test_without_java_a_spark_object_fails_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyspark")
    from sluice.transforms import spark_session
    from sluice.transforms.plugins import SparkSettings

    monkeypatch.setattr(spark_session, "_SESSION", None)  # as in a fresh worker process; the shared one stays up
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(spark_session.JavaMissing, match=r"^Spark needs Java 17 or 21, which is not installed"):
        spark_session.spark_session(SparkSettings())
