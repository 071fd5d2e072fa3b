"""The built-in transform engines: SQL on DuckDB, Python functions on Arrow tables, SQL models (docs/models.md),
dbt projects, and SQL or PySpark on Apache Spark."""

from __future__ import annotations

import re
from typing import Annotated

from msgspec import Meta

from sluice.plugins.base import Plugin, Settings
from sluice.project.dbt_project import DbtProjectSettings
from sluice.project.model_settings import ModelConfig
from sluice.transforms.spark_settings import SparkSettings

__all__ = ["ENGINE_DEFAULT", "PLUGINS", "SparkEngineOptions", "SparkSettings"]

_PYTHON_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class SqlEngineOptions(Settings):
    """``sql: select ... from parent``: a query over the parents, each a view named after it."""

    sql: Annotated[str, Meta(min_length=1, description="A SELECT over the parents (each a view named after it).")]


class PythonEngineOptions(Settings):
    """``python: module:function``: a function of the project called with one Arrow table per parent."""

    python: Annotated[
        str, Meta(description="module:function in the project folder; called with one pyarrow.Table keyword per parent.")
    ]

    def __post_init__(self) -> None:
        if not _PYTHON_REF.fullmatch(self.python):
            raise ValueError(f"python must be 'module:function' (e.g. transforms:dim_users), got {self.python!r}")


class SparkEngineOptions(Settings):
    """``engine: spark`` with ``sql: select ...`` (DuckDB's dialect, translated), or ``pyspark: module:function``."""

    sql: Annotated[
        Annotated[str, Meta(min_length=1)] | None,
        Meta(description="A SELECT over the parents in DuckDB's dialect, translated to Spark SQL."),
    ] = None
    pyspark: Annotated[
        str | None,
        Meta(description="module:function in the project folder; called with one pyspark DataFrame keyword per parent."),
    ] = None

    def __post_init__(self) -> None:
        if (self.sql is None) == (self.pyspark is None):
            raise ValueError("a Spark object needs exactly one of sql or pyspark")
        if self.pyspark is not None and not _PYTHON_REF.fullmatch(self.pyspark):
            raise ValueError(f"pyspark must be 'module:function' (e.g. transforms:dim_users), got {self.pyspark!r}")


ENGINE_DEFAULT = "duckdb"
"""``engine: duckdb``: the default, ``sql:`` in DuckDB and ``python:`` in the Sluice process."""


PLUGINS: list[Plugin] = [
    Plugin(
        "engine",
        "sql",
        SqlEngineOptions,
        "sluice.transforms.engines:DuckdbSqlEngine",
        "SQL over the parents' Parquet, in DuckDB.",
    ),
    Plugin(
        "engine", "python", PythonEngineOptions, "sluice.transforms.engines:PythonEngine", "A Python function on Arrow tables."
    ),
    Plugin(
        "engine",
        "duckdb",
        ModelConfig,
        "sluice.transforms.models:DuckdbModelEngine",
        "SQL models (models/ folder) over the lake's Parquet, in DuckDB.",
    ),
    Plugin(
        "engine",
        "warehouse",
        ModelConfig,
        "sluice.transforms.warehouse:WarehouseEngine",
        "SQL models (models/ folder) pushed down into a PostgreSQL warehouse.",
        extra="postgres",
        modules=("psycopg",),
    ),
    Plugin(
        "engine",
        "dbt",
        DbtProjectSettings,
        "sluice.transforms.dbt:DbtEngine",
        "Nodes of a dbt project (dbt: in sluice.yaml) run by dbt-core in its own environment (scripts/dbt-venv.sh).",
    ),
    Plugin(
        "engine",
        "spark",
        SparkEngineOptions,
        "sluice.transforms.spark_engine:SparkEngine",
        "SQL (DuckDB's dialect, translated) or a PySpark function on Apache Spark; Spark reads and writes the lake itself.",
        extra="spark",
        modules=("pyspark",),
    ),
]
