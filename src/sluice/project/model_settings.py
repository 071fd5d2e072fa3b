"""The typed shape of a model's configuration and of ``sluice.yaml``'s ``models:`` section (docs/models.md).

A model's configuration comes, later ones winning, from the ``models:`` section's own keys (defaults
for every model), ``models.config`` entries for the folders holding it (outermost first), the
``models.config`` entry named after it, and the ``{{ config(...) }}`` call at the top of its file, as
in dbt (https://docs.getdbt.com/reference/model-configs).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sluice.plugins.base import Settings

DEFAULT_IDS = "1000000-1999999"


class ModelConfig(Settings):
    """One model's configuration (every key optional)."""

    materialized: Annotated[
        Literal["table", "view", "incremental"] | None,
        Meta(description="table (rebuilt each run, default), view, or incremental (merged on unique_key)."),
    ] = None
    unique_key: Annotated[
        str | list[str] | None, Meta(description="incremental: the column(s) identifying a row; new rows replace old ones.")
    ] = None
    engine: Annotated[
        str | None, Meta(description="Where it runs: duckdb (over the lake, default), warehouse (inside PostgreSQL), spark.")
    ] = None
    connection: Annotated[
        str | None, Meta(description="warehouse: the PostgreSQL connection (default: the project's only postgresql one).")
    ] = None
    schema: Annotated[
        str | None, Meta(description="warehouse: the schema of the model's table (default: the search path's).")
    ] = None
    alias: Annotated[str | None, Meta(description="warehouse: the table name (default: the model's name).")] = None
    stage: Annotated[str | None, Meta(description="The stage it runs in (default: the project's last stage).")] = None
    id: Annotated[int | None, Meta(description="Its object id (default: derived from its name in models.ids).")] = None
    dialect: Annotated[
        str | None,
        Meta(description="sqlglot dialect the SQL is written in (default: the engine's: duckdb, or postgres for warehouse)."),
    ] = None
    destination: Annotated[
        dict[str, Any] | None,
        Meta(description="duckdb: also publish the output to a table, as an object's destination: {connection, table, mode}."),
    ] = None
    checks: Annotated[
        list[dict[str, Any]] | None,
        Meta(description="Data-quality checks on the model's output, as an object's checks: (docs/checks.md)."),
    ] = None


class ModelSourceSettings(Settings):
    """``models.sources.crm: {schema: crm, tables: [customers, orders]}``: warehouse tables dbt's source() names."""

    tables: Annotated[list[str], Meta(description="The source's table names.")] = msgspec.field(default_factory=list)
    schema: Annotated[str | None, Meta(description="The warehouse schema holding them (default: the source's name).")] = None


class ModelsSettings(ModelConfig):
    """``models:``: where the model files are, their id range, declared sources, and configuration."""

    path: Annotated[str, Meta(description="Folder of .sql model files, relative to sluice.yaml (subfolders allowed).")] = "models"
    ids: Annotated[str, Meta(description="Range of the ids derived from model names: 'low-high'.")] = DEFAULT_IDS
    sources: Annotated[
        dict[str, ModelSourceSettings], Meta(description="Warehouse tables not made by Sluice, for source('name', 'table').")
    ] = msgspec.field(default_factory=dict)
    config: Annotated[
        dict[str, ModelConfig], Meta(description="Configuration per folder ('staging/') or per model ('dim_users').")
    ] = msgspec.field(default_factory=dict)
    vars: Annotated[dict[str, Any], Meta(description="Values of the model files' {{ var('name') }}, as dbt's vars.")] = (
        msgspec.field(default_factory=dict)
    )


CONFIG_FIELDS: tuple[str, ...] = tuple(field.name for field in msgspec.structs.fields(ModelConfig))


def merged(*layers: ModelConfig | None) -> dict[str, Any]:
    """The keys set in ``layers``, later layers winning (plain values)."""
    result: dict[str, Any] = {}
    for layer in layers:
        if layer is None:
            continue
        for name in CONFIG_FIELDS:
            value = getattr(layer, name)
            if value is not None:
                result[name] = value
    return result
