"""The typed shape of ``sluice.yaml``'s own sections (top level, stages, connections, objects).

The reader (:mod:`sluice.project.yaml_file`) checks each mapping of the file against these structures
with :func:`sluice.plugins.options.convert_options`, so every level reports unknown keys (with "Did you
mean"), wrong types and values out of range at their own line. A source's, destination's or lake's
options are the plugin's own structures; :mod:`sluice.plugins.schema` joins both into the JSON Schema
that ``sluice schema`` prints.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sluice.alerts.settings import AlertsSettings
from sluice.api.settings import ApiSettings
from sluice.cdc.config import SyncSettings
from sluice.plugins.base import Settings
from sluice.project.dbt_project import DbtProjectSettings
from sluice.project.model import RetrySpec
from sluice.project.model_settings import ModelsSettings
from sluice.project.objets_mapping import ObjetsSettings
from sluice.runtime.history_settings import HistorySettings
from sluice.scheduling.sensor_settings import SensorSettings
from sluice.scheduling.spec import ScheduleSettings
from sluice.server.serve_settings import ServeSettings
from sluice.streaming.settings import StreamingSettings
from sluice.transforms.spark_settings import SparkSettings


class StageSettings(Settings):
    """``stages: {ingest: {ids: 1000-1999, concurrency: 4, layer: raw, delay_s: 0.5}}``."""

    ids: Annotated[
        str | list[int | None] | None,
        Meta(description="Object ids of the stage: '1000-1999', '3000+' or [low, high] (null: open)."),
    ] = None
    concurrency: Annotated[
        Annotated[int, Meta(ge=1)] | None, Meta(description="Objects a worker of the stage processes at once.")
    ] = None
    layer: Annotated[
        Annotated[str, Meta(min_length=1)] | None, Meta(description="Lake layer the stage writes (raw, cleaned, curated).")
    ] = None
    delay_s: Annotated[
        Annotated[float, Meta(ge=0)] | None, Meta(description="Seconds a simulated object of the stage sleeps (--simulate).")
    ] = None


class ConnectionSettings(Settings):
    """``connections: {warehouse: {url: postgresql://...}}`` (or just the URL)."""

    url: Annotated[str, Meta(min_length=1, description="postgresql://, mysql://, sqlite:///file.db, duckdb:///file.duckdb...")]


class ObjectSettings(Settings):
    """One object. ``source``, ``destination`` are checked against their plugin's options."""

    id: Annotated[int, Meta(description="Unique id; its range picks the stage unless 'stage' is given.")]
    name: Annotated[str | None, Meta(description="Identifier usable as a SQL table name (default obj_<id>).")] = None
    stage: Annotated[str | None, Meta(description="Stage name, instead of the id range.")] = None
    parents: Annotated[int | list[int] | None, Meta(description="Ids of the objects this one reads.")] = None
    source: Annotated[dict[str, Any] | None, Meta(description="What the object extracts: {type: csv, path: ...}.")] = None
    sql: Annotated[str | None, Meta(description="A SELECT over the parents (DuckDB).")] = None
    python: Annotated[str | None, Meta(description="module:function called with one Arrow table per parent.")] = None
    pyspark: Annotated[
        str | None, Meta(description="module:function called on Spark with one DataFrame per parent, returning a DataFrame.")
    ] = None
    engine: Annotated[
        str | None,
        Meta(
            description="What runs the object's sql: duckdb (default) or spark; a pyspark object runs on spark; a "
            "streaming object runs on Sluice's micro-batcher (default) or on Spark Structured Streaming (spark)."
        ),
    ] = None
    destination: Annotated[dict[str, Any] | None, Meta(description="A table to publish to: {connection, table, mode, key}.")] = (
        None
    )
    lake: Annotated[bool, Meta(description="Keep a Parquet copy of the output in the lake.")] = True
    partition_by: Annotated[
        list[str],
        Meta(
            description="Columns whose values split the lake output into Hive-style folders (dt=2026-11-30/); "
            "string, integer or date columns."
        ),
    ] = msgspec.field(default_factory=list)
    metadata: Annotated[dict[str, Any], Meta(description="Free-form values kept with the object (shown by the API).")] = (
        msgspec.field(default_factory=dict)
    )
    streaming: Annotated[
        StreamingSettings | None,
        Meta(
            description="A continuous streaming object: its Kafka source consumed in micro-batches appended to the lake "
            "with their offsets (docs/streaming.md); run by `sluice stream`, not `sluice run`."
        ),
    ] = None
    checks: Annotated[
        list[dict[str, Any]] | None,
        Meta(
            description="Data-quality checks on the written output, run where it is before the children are released: "
            "not_null, unique, accepted_values, relationships, row_count, freshness, expression, sql, python; each "
            "with name, severity (error, warn), sample and rows (load: the rows of this load, the default; table: the "
            "whole output) (docs/checks.md)."
        ),
    ] = None
    tags: Annotated[
        list[Annotated[str, Meta(min_length=1)]], Meta(description="Free labels schedules select objects by (tags: [...]).")
    ] = msgspec.field(default_factory=list)
    criticality: Annotated[
        Literal["low", "high"] | None, Meta(description="low or high: chooses alert channels and severity.")
    ] = None


class ProjectSettings(Settings):
    """The top level of ``sluice.yaml``."""

    objects: Annotated[list[ObjectSettings], Meta(description="The project's objects.")] = msgspec.field(default_factory=list)
    name: Annotated[str | None, Meta(description="Project name (default: the folder's name).")] = None
    bus: Annotated[str | None, Meta(description="Bus URL: sqlite:///.sluice/bus.db (default) or kafka://host:9092.")] = None
    state: Annotated[
        str | None, Meta(description="State store URL: sqlite:///.sluice/state.db (default) or postgresql://...")
    ] = None
    lake: Annotated[
        str | dict[str, Any] | None,
        Meta(description="Lake folder, s3://bucket/prefix?endpoint=..., or {type: local|s3, ...} (docs/lakes.md)."),
    ] = None
    lease_s: Annotated[float, Meta(ge=0.1, description="Seconds before an unfinished object is handed to another worker.")] = 30.0
    retry: RetrySpec | None = None
    stages: Annotated[
        dict[str, StageSettings] | None, Meta(description="Stages by name (default: ingest, standardize, application).")
    ] = None
    connections: Annotated[dict[str, str | ConnectionSettings] | None, Meta(description="Database connections by name.")] = None
    syncs: Annotated[
        list[SyncSettings], Meta(description="Tables kept in sync between two connections by change-data capture (docs/cdc).")
    ] = msgspec.field(default_factory=list)
    api: Annotated[ApiSettings | None, Meta(description="The data API (GraphQL) served by `sluice serve` (docs/api).")] = None
    engine: Annotated[
        str | None, Meta(description="Default engine of the sql objects: duckdb (default) or spark (docs/engines.md).")
    ] = None
    spark: Annotated[
        SparkSettings | None, Meta(description="The Spark session of spark objects: master URL and conf (docs/engines.md).")
    ] = None
    models: Annotated[
        ModelsSettings | None,
        Meta(description="SQL models: the models/ folder of .sql files and their configuration (docs/models.md)."),
    ] = None
    dbt: Annotated[
        DbtProjectSettings | list[DbtProjectSettings] | None,
        Meta(description="dbt projects whose models become objects run by dbt-core (docs/models.md, dbt projects)."),
    ] = None
    objets: Annotated[
        ObjetsSettings | None,
        Meta(description="Objects from an Objets.json, its fields mapped to sources and lake folders (docs/objets-json.md)."),
    ] = None
    alerts: Annotated[
        AlertsSettings | None,
        Meta(description="Alert channels (email, Slack, webhook), rules and SLA deadlines (docs/alerts.md)."),
    ] = None
    history: Annotated[
        HistorySettings | None,
        Meta(description="How long finished runs, their events and backfills are kept before pruning (docs/operations.md)."),
    ] = None
    sensors: Annotated[
        dict[str, SensorSettings] | None,
        Meta(
            description="Sensors by name: start a run when files, S3 keys, a synced table or another project's runs "
            "change (docs/sensors.md)."
        ),
    ] = None
    schedules: Annotated[
        dict[str, ScheduleSettings] | None,
        Meta(description="Schedules by name: cron, timezone, targets or tags, catch_up... (docs/schedules.md)."),
    ] = None
    serve: Annotated[
        ServeSettings | None,
        Meta(description="sluice serve: where its control token is read, an environment variable or a file (docs/api.md)."),
    ] = None


NESTED_KEYS = (
    "objects",
    "lake",
    "retry",
    "stages",
    "connections",
    "syncs",
    "api",
    "spark",
    "models",
    "dbt",
    "alerts",
    "history",
    "sensors",
    "schedules",
    "serve",
)
