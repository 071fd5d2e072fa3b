"""The in-memory shape of a Sluice project: objects, stages, connections and settings.

These are plain frozen dataclasses with no I/O; :mod:`sluice.project.load` builds them from
``sluice.yaml`` or ``Objets.json`` and :mod:`sluice.project.validate` checks them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sluice.alerts.model import AlertsSpec
from sluice.api.settings import ApiSettings
from sluice.cdc.config import SyncSettings
from sluice.checks.settings import CheckSpec
from sluice.plugins.base import Settings
from sluice.project.model_spec import ModelSpec
from sluice.runtime.history_settings import HistorySettings
from sluice.scheduling.sensor_settings import SensorSpec
from sluice.scheduling.spec import ScheduleSpec
from sluice.server.serve_settings import ServeSpec
from sluice.streaming.settings import StreamingSettings
from sluice.transforms.spark_settings import SparkSettings
from sluice.urls import connection_scheme

WriteMode = Literal["append", "replace", "merge"]
WRITE_MODES: tuple[str, ...] = ("append", "replace", "merge")
SchemaEvolution = Literal["strict", "widen"]
SCHEMA_EVOLUTIONS: tuple[str, ...] = ("strict", "widen")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a definition came from, for error messages. ``keys``: the line of each of its keys; ``paths``, when
    kept (a sync's, the ``api:`` section's), the line of each key and list item inside it
    (:func:`~sluice.project.yaml_tree.path_lines`)."""

    file: str
    line: int | None = None
    keys: tuple[tuple[str, int], ...] = ()
    paths: tuple[tuple[tuple[str | int, ...], int], ...] = ()

    def line_of(self, key: str) -> int | None:
        """The line of the definition's ``key`` (from ``keys``), else the definition's own line."""
        return dict(self.keys).get(key, self.line)

    def line_at(self, *path: str | int) -> int | None:
        """The line of what ``path`` names inside the definition (``"tables", 2``: its third ``tables:`` entry), else
        of the longest start of ``path`` whose line is kept, else the definition's own line."""
        lines = dict(self.paths)
        for end in range(len(path), 1, -1):
            if path[:end] in lines:
                return lines[path[:end]]
        return self.line_of(str(path[0])) if path else self.line

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True, slots=True)
class StageSpec:
    """A processing stage: which object ids belong to it and how its workers behave."""

    name: str
    min_id: int | None
    max_id: int | None
    concurrency: int = 4
    layer: str = "raw"
    delay_s: float = 0.0

    def matches(self, object_id: int) -> bool:
        low_ok = self.min_id is None or object_id >= self.min_id
        high_ok = self.max_id is None or object_id <= self.max_id
        return low_ok and high_ok

    def describe_ids(self) -> str:
        if self.min_id is not None and self.max_id is None:
            return f"{self.min_id}+"
        if self.min_id is None and self.max_id is None:
            return "any id"
        return f"{self.min_id if self.min_id is not None else ''}-{self.max_id}"


DEFAULT_STAGES: tuple[StageSpec, ...] = (
    StageSpec("ingest", 1000, 1999, concurrency=4, layer="raw", delay_s=0.5),
    StageSpec("standardize", 2000, 2999, concurrency=4, layer="cleaned", delay_s=0.6),
    StageSpec("application", 3000, None, concurrency=4, layer="curated", delay_s=0.8),
)


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """A named database connection, by URL (``postgresql://``, ``mysql://``, ``sqlite:///``, ``duckdb:///``)."""

    name: str
    url: str
    origin: Origin

    @property
    def scheme(self) -> str:
        return connection_scheme(self.url)


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What an extracting object reads: a file, a database table or query, or a Faker generator.

    ``kind`` is the source ``type`` (``csv``, ``sql``...); ``options`` the source plugin's typed options
    (a :class:`~sluice.plugins.base.Settings`). A plain mapping given as ``options`` is converted on
    creation, raising ConfigError on a problem: ``SourceSpec("csv", {"path": "x.csv"})``.
    """

    kind: str
    options: Settings

    def __post_init__(self) -> None:
        if isinstance(self.options, Mapping):
            object.__setattr__(self, "options", source_options(self.kind, self.options))

    def get(self, key: str, default: Any = None) -> Any:
        """The option ``key``, or ``default`` when the kind has no such option or it is unset (None)."""
        value = getattr(self.options, key, None)
        return default if value is None else value


def source_options(kind: str, raw: Mapping[str, Any]) -> Settings:
    """``raw`` as the typed options of source ``kind`` (a nested ``options:`` mapping merged in).

    Raises ConfigError (a PluginError for an unknown kind) listing every problem.
    """
    from sluice.connectors.plugins import SQL_KIND, SqlSourceOptions
    from sluice.connectors.registry import source_plugin
    from sluice.errors import ConfigError
    from sluice.plugins.options import convert_options

    nested = raw.get("options")
    flat = {**{k: v for k, v in raw.items() if k != "options"}, **nested} if isinstance(nested, Mapping) else raw
    settings = SqlSourceOptions if kind == SQL_KIND else source_plugin(kind, None, {}).options
    options, problems = convert_options(settings, flat, label=f"{kind} source", file=None)
    if options is None:
        raise ConfigError("; ".join(problem.message for problem in problems))
    return options


class DestinationSpec(Settings):
    """Where an object's result is published besides the lake: a table over one of the project's connections."""

    connection: Annotated[str, Meta(min_length=1, description="Name of one of the project's connections.")]
    table: Annotated[str, Meta(min_length=1, description="Table to write, optionally schema-qualified (schema.table).")]
    mode: Annotated[WriteMode, Meta(description="append (idempotent per run and object), replace, or merge (upsert on key).")] = (
        "replace"
    )
    key: Annotated[tuple[str, ...], Meta(description="merge: the columns that identify a row.")] = ()
    schema_evolution: Annotated[
        SchemaEvolution,
        Meta(
            description="When a column's type in the data no longer fits the existing table: strict (fail naming the "
            "table, column and both types) or widen (alter the column to a type that holds both, e.g. bigint to double "
            "precision or numeric). New columns are added as nullable columns either way; see docs/destinations.md."
        ),
    ] = "strict"

    def __post_init__(self) -> None:
        if self.mode == "merge" and not self.key:
            raise ValueError("mode merge needs 'key' columns, e.g. key: [id]")

    def layout(self) -> dict[str, Any]:
        """The table's declared layout (partitions, keys, indexes) when a plugin's options set one, for the
        object's definition: a change of layout runs the object again. Empty here, so definitions without
        one keep their hash."""
        return {}

    def declared_columns(self) -> list[tuple[str, str]]:
        """``(option, column)`` for each column a destination plugin's options name (none here), checked against the data."""
        return []


@dataclass(frozen=True, slots=True)
class LakeSpec:
    """The project's lake: a lake plugin's name and its typed options (local folder by default)."""

    kind: str = "local"
    options: Settings | None = None


@dataclass(frozen=True, slots=True)
class ObjectSpec:
    """One data object: its identity, stage, parents and the work that produces it."""

    id: int
    name: str
    stage: str
    parents: tuple[int, ...]
    origin: Origin
    source: SourceSpec | None = None
    sql: str | None = None
    python: str | None = None
    destination: DestinationSpec | None = None
    lake: bool = True
    metadata: Mapping[str, Any] = field(default_factory=dict)
    pyspark: str | None = None
    chosen_engine: str | None = None
    """The ``engine:`` that runs ``sql:`` or ``pyspark:`` when not the default (``spark``); None: DuckDB / Python."""
    model: ModelSpec | None = None
    """A SQL model of the ``models/`` folder (docs/models.md); None for an object of the definition file."""
    partition_by: tuple[str, ...] = ()
    layer: str | None = None
    """The lake layer the output goes to, when not its stage's (an ``Objets.json`` ``DataLakeRootFolder``)."""
    date_parts: tuple[str, ...] = ()
    """Integer columns (``year``, ``month``, ``day``, ``hour``) added to the output before it is written, from
    ``date_column`` or else the load time in UTC (an ``Objets.json`` ``NiveauHierarchique``)."""
    date_column: str | None = None
    streaming: StreamingSettings | None = None
    """A continuous streaming object's ``streaming:`` (docs/streaming.md); None for a batch object."""
    tags: tuple[str, ...] = ()
    """Free labels (``tags:``) that schedules, sensors and backfills select objects by."""
    criticality: str | None = None
    """``low`` or ``high`` (an ``Objets.json`` ``Criticité``, or ``criticality:``): chooses alert channels and severity."""
    checks: tuple[CheckSpec, ...] = ()
    """Data-quality checks run on the written output before the children are released (``checks:``, docs/checks.md);
    not part of the definition's fingerprint: changing a check does not make the object run again."""

    @property
    def kind(self) -> Literal["source", "sql", "python", "pyspark", "model", "noop"]:
        if self.model is not None:
            return "model"
        if self.source is not None:
            return "source"
        if self.sql is not None:
            return "sql"
        if self.python is not None:
            return "python"
        if self.pyspark is not None:
            return "pyspark"
        return "noop"

    @property
    def engine(self) -> str:
        """The engine plugin that runs the object: a model's ``engine``, else its :attr:`chosen_engine` (``spark``),
        else its kind (``sql``, ``python``)."""
        if self.model is not None:
            return self.model.engine
        if self.chosen_engine:
            return self.chosen_engine
        return "spark" if self.kind == "pyspark" else self.kind

    def definition(self) -> dict[str, Any]:
        """A canonical, JSON-serialisable description used for fingerprints and the API."""
        found: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "stage": self.stage,
            "parents": sorted(self.parents),
            "source": None if self.source is None else {"kind": self.source.kind, **msgspec.to_builtins(self.source.options)},
            "sql": self.sql,
            "python": self.python,
            "destination": None
            if self.destination is None
            else {
                "connection": self.destination.connection,
                "table": self.destination.table,
                "mode": self.destination.mode,
                "key": list(self.destination.key),
                **self.destination.layout(),
            },
            "lake": self.lake,
            "metadata": dict(self.metadata),
            **({"model": self.model.definition()} if self.model is not None else {}),
            # only when set, so the definitions (and fingerprints) of objects written before them stay the same
            **({"engine": self.chosen_engine} if self.chosen_engine else {}),
            **({"pyspark": self.pyspark} if self.pyspark else {}),
        } | ({"partition_by": list(self.partition_by)} if self.partition_by else {})
        if self.checks:  # a new or changed check runs on fresh data too: the object runs again (docs/checks.md)
            found["checks"] = [check.definition() for check in self.checks]
        return found | self._objets_definition()

    def _objets_definition(self) -> dict[str, Any]:
        """The layer and date parts when set (absent otherwise, so other objects keep their hash)."""
        extra: dict[str, Any] = {"layer": self.layer} if self.layer is not None else {}
        if self.date_parts:
            extra |= {"date_parts": list(self.date_parts), "date_column": self.date_column}
        if self.streaming is not None:
            extra |= {"streaming": msgspec.to_builtins(self.streaming)}
        return extra

    def definition_hash(self) -> str:
        text = msgspec.json.encode(self.definition(), order="sorted", enc_hook=str)
        return hashlib.blake2b(text, digest_size=16).hexdigest()


class RetrySpec(Settings):
    """How failed objects are retried: ``attempts`` in all, waiting ``backoff_s * 2**(n-1)`` between."""

    attempts: Annotated[int, Meta(ge=1, description="Attempts in all, the first included.")] = 3
    backoff_s: Annotated[float, Meta(ge=0, description="Seconds before the first retry; doubled at each retry.")] = 0.5
    max_backoff_s: Annotated[float, Meta(ge=0, description="Longest wait between two attempts, in seconds.")] = 30.0

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 = first retry)."""
        if attempt <= 1:
            return 0.0
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 2)))


@dataclass(frozen=True, slots=True)
class LeftOut:
    """An object the definition file lists but no plan includes: inactive (``EtatObjet``), or a child of one."""

    object: ObjectSpec
    reason: str


@dataclass(frozen=True, slots=True)
class SyncSpec:
    """One entry of ``syncs:``: its checked settings, where it is written, and its connections' URLs."""

    settings: SyncSettings
    origin: Origin
    urls: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """The ``api:`` section (docs/api): its checked settings, where it is written, and its connections' URLs."""

    settings: ApiSettings
    origin: Origin
    urls: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Project:
    """A loaded project. ``root`` is the folder the definition file lives in.

    ``objects`` are the objects runs may plan; ``left_out`` those the file defines but leaves out of
    every plan (an ``Objets.json`` object whose ``EtatObjet`` is not active, and its descendants).
    """

    name: str
    root: Path
    source_file: Path
    objects: Mapping[int, ObjectSpec]
    connections: Mapping[str, ConnectionSpec]
    stages: tuple[StageSpec, ...] = DEFAULT_STAGES
    retry: RetrySpec = field(default_factory=RetrySpec)
    bus_url: str = ""
    bus_line: int | None = None
    """The line of ``bus:`` in ``source_file`` (None: no ``bus:`` there), for ``sluice validate --live``."""
    state_url: str = ""
    lake: LakeSpec = LakeSpec()
    lease_s: float = 30.0
    left_out: Mapping[int, LeftOut] = field(default_factory=dict)
    syncs: tuple[SyncSpec, ...] = ()
    """The ``syncs:`` of ``sluice.yaml`` (change-data capture), in file order."""
    api: ApiSpec | None = None
    """The ``api:`` of ``sluice.yaml`` (the data API ``sluice serve`` serves), if any."""
    notes: tuple[str, ...] = ()
    """One-line remarks that are not errors, shown by ``sluice validate`` and ``sluice plan``: an ``Objets.json``
    object whose fields could not be mapped to work, and what to do about it."""
    spark: SparkSettings = field(default_factory=SparkSettings)
    """The ``spark:`` section: master URL and configuration of the Spark session (docs/engines.md)."""
    alerts: AlertsSpec | None = None
    """The ``alerts:`` section: channels, rules and SLA deadlines (docs/alerts.md), if any."""
    history: HistorySettings | None = None
    """The ``history:`` section: how long finished runs are kept (None: for ever, until ``sluice prune --keep``)."""
    sensors: tuple[SensorSpec, ...] = ()
    """The ``sensors:`` of ``sluice.yaml``, in file order (docs/sensors.md)."""
    schedules: tuple[ScheduleSpec, ...] = ()
    """The ``schedules:`` of ``sluice.yaml`` and those an ``Objets.json``'s ``Fréquence`` gives (docs/schedules.md)."""
    serve: ServeSpec | None = None
    """The ``serve:`` section: where ``sluice serve`` reads its control token (docs/api.md), if any."""

    def sync(self, name: str | None) -> SyncSpec:
        """The sync called ``name`` (None: the only one). Raises ConfigError naming the choices."""
        from sluice.errors import ConfigError, did_you_mean

        names = [s.settings.name for s in self.syncs]
        if not self.syncs:
            raise ConfigError(f"{self.source_file} defines no syncs; add a 'syncs:' section (see docs/cdc/README.md)")
        if name is None:
            if len(self.syncs) > 1:
                raise ConfigError(f"{self.source_file} defines several syncs ({', '.join(names)}); choose one with --name")
            return self.syncs[0]
        for spec in self.syncs:
            if spec.settings.name == name:
                return spec
        raise ConfigError(f"no sync named {name!r} (syncs: {', '.join(names)}).{did_you_mean(name, names)}")

    @property
    def work_dir(self) -> Path:
        """The ``.sluice`` folder beside the project that holds state, bus and lake by default."""
        return self.root / ".sluice"

    def stage(self, name: str) -> StageSpec:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    def resolve_bus_url(self) -> str:
        return self.bus_url or f"sqlite:///{self.work_dir / 'bus.db'}"

    def resolve_state_url(self) -> str:
        return self.state_url or f"sqlite:///{self.work_dir / 'state.db'}"

    def resolve_lake_path(self) -> Path:
        """The folder of a local lake (``lake: {path: ...}`` relative to the project, else ``.sluice/lake``)."""
        path = Path(str(getattr(self.lake.options, "path", "") or "")).expanduser()
        if not str(path) or str(path) == ".":
            return self.work_dir / "lake"
        return path if path.is_absolute() else self.root / path


def stage_for_id(object_id: int, stages: tuple[StageSpec, ...]) -> StageSpec | None:
    """The first stage whose id range contains ``object_id``."""
    for stage in stages:
        if stage.matches(object_id):
            return stage
    return None


def parent_keys(project: Project, obj: ObjectSpec) -> dict[int, str]:
    """The key of each of ``obj``'s parents in its inputs (``ObjectReady.inputs``): parent id -> key.

    A parent's key is its name, or ``<layer>.<name>`` when another parent of ``obj`` has the same name
    (names are unique within a stage, not across stages: ``customers`` raw and ``customers`` cleaned).
    """
    objects = project.objects
    parents = [(p, objects[p]) for p in obj.parents if p in objects]
    names = [parent.name for _, parent in parents]
    if len(set(names)) == len(names):  # no clash: every key is the parent's name (asked once per object ready)
        return {parent_id: parent.name for parent_id, parent in parents}
    keys: dict[int, str] = {}
    for parent_id, parent in parents:
        clash = names.count(parent.name) > 1
        keys[parent_id] = f"{layer_of(project, parent)}.{parent.name}" if clash else parent.name
    return keys


def layer_of(project: Project, obj: ObjectSpec) -> str:
    """The lake layer ``obj`` writes to: its own ``layer`` when set, else its stage's (its stage's name for an
    unknown stage)."""
    return obj.layer if obj.layer is not None else layer_of_stage(project.stages, obj.stage)


def layer_of_stage(stages: tuple[StageSpec, ...], name: str) -> str:
    """The lake layer of stage ``name`` among ``stages``, or ``name`` itself for an unknown stage."""
    for stage in stages:
        if stage.name == name:
            return stage.layer
    return name
