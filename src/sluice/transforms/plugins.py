"""The built-in transform engines: SQL on DuckDB, Python functions on Arrow tables, SQL or PySpark on Apache Spark."""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
from msgspec import Meta

from sluice.plugins.base import Plugin, Settings

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


class SparkSettings(Settings):
    """The project's ``spark:`` section: where Spark objects run (one session per worker process)."""

    master: Annotated[
        str,
        Meta(
            min_length=1,
            description="Spark master URL: local[*] (default: this machine, every core), local[2], spark://host:7077, "
            "yarn, k8s://... The lake must be reachable from the executors at the same path.",
        ),
    ] = "local[*]"
    app_name: Annotated[str, Meta(min_length=1, description="Application name shown by Spark's UI and cluster manager.")] = (
        "sluice"
    )
    conf: Annotated[
        dict[str, str | int | float | bool],
        Meta(
            description="Spark configuration (spark.executor.memory: 4g, spark.sql.shuffle.partitions: 64...), applied "
            "over Sluice's defaults when the session starts (docs/engines.md)."
        ),
    ] = msgspec.field(default_factory=dict)


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
        "spark",
        SparkEngineOptions,
        "sluice.transforms.spark_engine:SparkEngine",
        "SQL (DuckDB's dialect, translated) or a PySpark function on Apache Spark; Spark reads and writes the lake itself.",
        extra="spark",
        modules=("pyspark",),
    ),
]
