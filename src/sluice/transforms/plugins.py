"""The built-in transform engines: SQL on DuckDB, Python functions on Arrow tables, and SQL models (docs/models.md)."""

from __future__ import annotations

import re
from typing import Annotated

from msgspec import Meta

from sluice.plugins.base import Plugin, Settings
from sluice.project.dbt_project import DbtProjectSettings
from sluice.project.model_settings import ModelConfig

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
]
