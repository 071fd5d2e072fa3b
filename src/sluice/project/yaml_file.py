"""Read ``sluice.yaml`` into a :class:`~sluice.project.model.Project`.

Every mapping of the file is checked against its typed structure (:mod:`sluice.project.settings` for
the file's own sections, the plugin's options for a source, destination or lake), so an unknown key
at any level, a wrong type, a value out of range or a missing option is reported at its own line,
with "Did you mean" for near misses. ``${VAR}`` and ``${VAR:-default}`` are expanded in every string
first. Problems are collected, not raised one by one, so a user sees every mistake at once.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import msgspec

from sluice.alerts.config import read_alerts
from sluice.alerts.model import AlertsSpec
from sluice.api.config import read_api
from sluice.cdc.config import SyncSettings, partitions_problem
from sluice.checks.read import read_checks
from sluice.connectors.plugins import SQL_KIND
from sluice.connectors.registry import source_plugin
from sluice.errors import ConfigError, did_you_mean
from sluice.plugins import Plugin, PluginError, PluginKind, Settings, registry
from sluice.plugins.options import convert_options, field_names
from sluice.plugins.urls import url_plugin
from sluice.project.dbt_project import read_dbt
from sluice.project.model import (
    DEFAULT_STAGES,
    ApiSpec,
    ConnectionSpec,
    DestinationSpec,
    LakeSpec,
    ObjectSpec,
    Origin,
    Project,
    RetrySpec,
    SourceSpec,
    StageSpec,
    SyncSpec,
    stage_for_id,
)
from sluice.project.models import read_models
from sluice.project.objets_project import read_objets
from sluice.project.settings import NESTED_KEYS, ConnectionSettings, ObjectSettings, ProjectSettings, StageSettings
from sluice.project.yaml_tree import YamlMap, duplicate_names, expand_tree, load_yaml, plain, read_text
from sluice.runtime.history_settings import HistorySettings
from sluice.scheduling.sensor_config import read_sensors
from sluice.scheduling.spec import read_schedules
from sluice.transforms.plugins import ENGINE_DEFAULT, SparkSettings
from sluice.urls import connection_scheme

S = TypeVar("S", bound=Settings)
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = str(path)
        self.problems: list[ConfigError] = []
        self.connections: dict[str, ConnectionSpec] = {}
        self.default_engine: str | None = None

    def problem(self, message: str, line: int | None) -> None:
        self.problems.append(ConfigError(message, self.file, line))

    def check(
        self,
        settings: type[S],
        raw: YamlMap,
        label: str,
        *,
        ignore: tuple[str, ...] = (),
        what: str = "key",
        file: str | None = None,
    ) -> S | None:
        """``raw`` as ``settings``: every problem (with its key's line, in ``file``, default this file) goes to
        :attr:`problems`."""
        for key, line in raw.duplicates:
            self.problem(f"{label}: key '{key}' is given twice; keep one", line)
        value, problems = convert_options(
            settings, raw, label=label, file=file or self.file, line=raw.line, key_lines=raw.key_lines, ignore=ignore, what=what
        )
        self.problems.extend(problems)
        return value

    def mapping(self, raw: Any, label: str, line: int | None, example: str) -> YamlMap | None:
        if isinstance(raw, YamlMap):
            return raw
        self.problem(f"{label} must be a mapping such as {example}, got {plain(raw)!r}", line)
        return None

    def read(self) -> Project:
        data = load_yaml(read_text(self.path), self.file)
        if not isinstance(data, YamlMap):
            raise ConfigError("the top level must be a mapping with an 'objects' list", self.file, 1)
        data = expand_tree(data, self.file, self.problems)
        return self.project(data)

    def project(self, data: YamlMap) -> Project:
        top = self.check(ProjectSettings, data, "top level", ignore=NESTED_KEYS)
        if not {"objects", "syncs", "api", "models", "dbt", "objets"} & set(data):
            self.problem("the file has no 'objects' list; add one (objects: [{id: 1001, ...}])", 1)
        stages = self.stages(data.get("stages"), data.line_of("stages"))
        self.default_engine = self.engine_name(top.engine if top else None, "top level: engine", data.line_of("engine"))
        self.connections = self.read_connections(data.get("connections"), data.line_of("connections"))
        objects = self.objects(data.get("objects", []), stages, data.line_of("objects"))
        objets = None
        if top is not None and top.objets is not None:  # objects from an Objets.json (docs/objets-json.md)
            objets = read_objets(
                self.path, top.objets, data.line_of("objets"), data.get("objects"), objects, stages, self.connections,
                self.problems,
            )  # fmt: skip
            objects = objets.objects
        root = self.path.parent.resolve()
        models = read_models(self, data.get("models"), data.line_of("models"), root, stages, self.connections, objects)
        objects = {**objects, **models}
        objects = {**objects, **read_dbt(self, data.get("dbt"), data.line_of("dbt"), root, stages, objects)}
        bus = self.url("bus", top.bus if top else None, data.line_of("bus"))
        state = self.url("state", top.state if top else None, data.line_of("state"))
        syncs = self.syncs(data.get("syncs"), data.line_of("syncs"), bus)
        sensors = read_sensors(self, data.get("sensors"), data.line_of("sensors"), objects, syncs)
        schedules = (
            *read_schedules(data.get("schedules"), data.line_of("schedules"), self.file, objects, self.problems),
            *(objets.schedules if objets is not None else ()),
        )
        return Project(
            name=str((top.name if top else None) or self.path.resolve().parent.name),
            root=self.path.parent.resolve(),
            source_file=self.path.resolve(),
            objects=objects,
            connections=self.connections,
            stages=stages,
            retry=self.retry(data.get("retry"), data.line_of("retry")),
            bus_url=bus,
            state_url=state,
            lake=self.lake(data.get("lake"), data.line_of("lake")),
            lease_s=top.lease_s if top else 30.0,
            syncs=syncs,
            api=self.api(data.get("api"), data.line_of("api"), [s.settings.name for s in syncs]),
            left_out=objets.left_out if objets is not None else {},
            notes=objets.notes if objets is not None else (),
            spark=self.spark(data.get("spark"), data.line_of("spark")),
            alerts=self.alerts(
                data.get("alerts"), data.line_of("alerts"), objects, [s.name for s in schedules], [s.name for s in sensors]
            ),
            history=self.history(data.get("history"), data.line_of("history")),
            sensors=sensors,
            schedules=schedules,
        )

    def alerts(
        self, raw: Any, line: int | None, objects: dict[int, ObjectSpec], schedules: list[str], sensors: list[str]
    ) -> AlertsSpec | None:
        """The ``alerts:`` section, every mapping checked at its line (:mod:`sluice.alerts.config`) against the
        project's objects, schedules and sensors."""
        if raw is None:
            return None
        spec, problems = read_alerts(raw, self.file, line, objects, schedules, sensors)
        self.problems.extend(problems)
        return spec

    def history(self, raw: Any, line: int | None) -> HistorySettings | None:
        """The ``history:`` section (``keep``, ``every``), checked key by key."""
        if raw is None:
            return None
        mapping = self.mapping(raw, "'history'", line, "{keep: 30d}")
        return self.check(HistorySettings, mapping, "history") if mapping is not None else None

    def spark(self, raw: Any, line: int | None) -> SparkSettings:
        """The ``spark:`` section (master URL, conf), checked key by key."""
        if raw is None:
            return SparkSettings()
        mapping = self.mapping(raw, "'spark'", line, "{master: 'local[*]', conf: {spark.executor.memory: 4g}}")
        spark = self.check(SparkSettings, mapping, "spark") if mapping is not None else None
        return spark or SparkSettings()

    def engine_name(self, value: str | None, label: str, line: int | None) -> str | None:
        """``value`` of an ``engine:`` key checked against the engine plugins: None for the default (duckdb)."""
        if value is None or value == ENGINE_DEFAULT:
            return None
        # sql and python are the kinds of the DuckDB default; duckdb (as a plugin), warehouse and dbt run models only
        model_only = ("sql", "python", ENGINE_DEFAULT, "warehouse", "dbt")
        choices = [ENGINE_DEFAULT, *(p.name for p in registry().of_kind("engine") if p.name not in model_only)]
        if value not in choices:
            self.problem(
                f"{label}: unknown engine {value!r} (engines: {', '.join(choices)}).{did_you_mean(value, choices)}", line
            )
            return None
        return value

    def api(self, raw: Any, line: int | None, syncs: list[str]) -> ApiSpec | None:
        """The ``api:`` section, every mapping checked at its line (:mod:`sluice.api.config`); ``syncs``: the
        names of the project's syncs (``api.sync_mutations`` names them)."""
        if raw is None:
            return None
        urls = {name: spec.url for name, spec in self.connections.items()}
        settings, problems = read_api(raw, plain(raw), self.file, line, urls, syncs)
        self.problems.extend(problems)
        if settings is None or problems:
            return None
        used = [s.connection for s in settings.sources] + list(settings.mutations.values())
        keys = tuple(raw.key_lines.items()) if isinstance(raw, YamlMap) else ()
        return ApiSpec(settings, Origin(self.file, line, keys), {name: urls[name] for name in used if name in urls})

    def syncs(self, raw: Any, line: int | None, bus: str = "") -> tuple[SyncSpec, ...]:
        """The ``syncs:`` list: each entry's keys, connections, plugins and plugin options, names unique;
        ``partitions`` above 1 only with a Kafka ``bus`` (the project's; empty: the embedded log)."""
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.problem(
                "'syncs' must be a list of syncs such as [{name: hr, source: hr, target: warehouse, tables: [...]}]", line
            )
            return ()
        result: list[SyncSpec] = []
        seen: dict[str, int | None] = {}
        for item in raw:
            mapping = self.mapping(item, "each sync", line, "{name: hr, source: hr, target: warehouse, tables: [employes]}")
            if mapping is None:
                continue
            name = mapping.get("name")
            label = f"sync '{name}'" if isinstance(name, str) and name else "sync"
            settings = self.check(SyncSettings, mapping, label, ignore=("capture", "apply"))
            if isinstance(name, str) and name in seen:
                self.problem(f"{label} is defined twice (also at line {seen[name]}); sync names must be unique", mapping.line)
            elif isinstance(name, str):
                seen[name] = mapping.line
            sides = [("source", "capture"), ("target", "apply")]
            if mapping.get("direction") == "both":
                sides += [("target", "capture"), ("source", "apply")]
            urls: dict[str, str] = {}
            plugins: dict[str, Plugin] = {}
            for role, kind in sides:
                where = mapping.line_of(role)
                connection = self.connection(mapping.get(role), label, role, where)
                if connection is None:
                    continue
                urls[connection.name] = connection.url
                plugin = self.scheme_plugin(kind, connection, label, where)
                if plugin is not None and (role, kind) in (("source", "capture"), ("target", "apply")):
                    plugins[kind] = plugin
            if mapping.get("source") is not None and mapping.get("source") == mapping.get("target"):
                self.problem(f"{label}: source and target are the same connection; a sync copies between two", mapping.line)
            for kind, plugin in plugins.items():
                options = mapping.get(kind)
                if options is None:
                    continue
                nested = self.mapping(options, f"{label}: {kind}", mapping.line_of(kind), "{option: value}")
                if nested is not None:
                    self.check(plugin.options, nested, f"{label}: {kind} ({plugin.name})", what="option")
                    if settings is not None:  # checked above against the plugin's own options, kept for the runtime
                        settings = msgspec.structs.replace(settings, **{kind: plain(nested)})
            if settings is not None and settings.partitions > 1 and connection_scheme(bus or "sqlite://") != "kafka":
                self.problem(partitions_problem(settings, partitioned=False), mapping.line_of("partitions"))
            if settings is not None:
                result.append(SyncSpec(settings, Origin(self.file, mapping.line, tuple(mapping.key_lines.items())), urls))
        return tuple(result)

    def url(self, kind: str, value: str | None, line: int | None) -> str:
        """A bus or state store URL, checked against its plugin's scheme and options."""
        if not value:
            return ""
        plugin_kind: PluginKind = "bus" if kind == "bus" else "state"
        label = "bus" if kind == "bus" else "state store"
        _, _, problems = url_plugin(plugin_kind, value, label=label, file=self.file, line=line)
        self.problems.extend(problems)
        return value

    def retry(self, raw: Any, line: int | None) -> RetrySpec:
        if raw is None:
            return RetrySpec()
        mapping = self.mapping(raw, "'retry'", line, "{attempts: 3, backoff_s: 0.5}")
        retry = self.check(RetrySpec, mapping, "retry") if mapping is not None else None
        return retry or RetrySpec()

    def lake(self, raw: Any, line: int | None) -> LakeSpec:
        if raw is None:
            return LakeSpec()
        if isinstance(raw, str) and "://" in raw:  # lake: s3://bucket/prefix?endpoint=...: the scheme picks the plugin
            plugin, _, problems = url_plugin("lake", raw, label="lake", file=self.file, line=line)
            if plugin is None or problems:
                self.problems.extend(problems)
                return LakeSpec()
            self.installed(plugin, "lake", line)
            query = dict(parse_qsl(urlsplit(raw).query, keep_blank_values=True))
            url_options, problems = convert_options(
                plugin.options,
                {**query, "url": raw.partition("?")[0]},
                label=f"lake {raw!r}",
                file=self.file,
                line=line,
                strict=False,
            )
            self.problems.extend(problems)
            return LakeSpec(plugin.name, url_options) if url_options is not None else LakeSpec()
        if isinstance(raw, str):
            raw_map = YamlMap(path=raw)
            raw_map.line, raw_map.key_lines, raw_map.duplicates = line, {}, []
            raw = raw_map
        mapping = self.mapping(raw, "'lake'", line, "{type: local, path: lake}")
        if mapping is None:
            return LakeSpec()
        kind = str(mapping.get("type", "local"))
        plugin = self.plugin("lake", kind, "lake: type", mapping.line_of("type"))
        if plugin is None:
            return LakeSpec()
        options = self.check(plugin.options, mapping, f"lake ({kind})", ignore=("type",), what="option")
        return LakeSpec(kind, options)

    def plugin(self, kind: Any, name: str, label: str, line: int | None) -> Plugin | None:
        try:
            plugin = registry().get(kind, name)
        except PluginError as exc:
            self.problem(f"{label}: {exc.message}", line)
            return None
        self.installed(plugin, label, line)
        return plugin

    def installed(self, plugin: Plugin, label: str, line: int | None) -> None:
        try:
            plugin.check_installed()
        except PluginError as exc:
            self.problem(f"{label}: {exc.message}", line)

    def stages(self, raw: Any, line: int | None) -> tuple[StageSpec, ...]:
        if raw is None:
            return DEFAULT_STAGES
        mapping = self.mapping(raw, "'stages'", line, "{ingest: {ids: 1000-1999}}")
        if mapping is None:
            return DEFAULT_STAGES
        self.problems.extend(duplicate_names(mapping, "stage", self.file))
        defaults = {stage.name: stage for stage in DEFAULT_STAGES}
        result = []
        lines: dict[str, int | None] = {}
        for name, settings in mapping.items():
            where = mapping.line_of(name)
            if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name):
                self.problem(f"bad stage name {name!r}: use lower-case letters, digits, '_' or '-'", where)
                continue
            if settings is None:
                settings = YamlMap()
                settings.line, settings.key_lines, settings.duplicates = where, {}, []
            stage_map = self.mapping(settings, f"stage '{name}'", where, "{ids: 1000-1999, concurrency: 4}")
            checked = self.check(StageSettings, stage_map, f"stage '{name}'") if stage_map is not None else None
            if checked is None:
                continue
            base = defaults.get(name, StageSpec(name, None, None, layer=name))
            ids_line = stage_map.line_of("ids") if stage_map else where
            lines[name] = ids_line
            low, high = self.id_range(checked.ids, name, ids_line, base)
            result.append(
                StageSpec(
                    name=name,
                    min_id=low,
                    max_id=high,
                    concurrency=checked.concurrency or base.concurrency,
                    layer=checked.layer or base.layer,
                    delay_s=base.delay_s if checked.delay_s is None else checked.delay_s,
                )
            )
        if result and all(stage.name in defaults for stage in result):
            given = {stage.name: stage for stage in result}
            stages = tuple(given.get(stage.name, stage) for stage in DEFAULT_STAGES)
        else:
            stages = tuple(result) or DEFAULT_STAGES
        self.check_ranges(stages, lines, line)
        return stages

    def check_ranges(self, stages: tuple[StageSpec, ...], lines: dict[str, int | None], line: int | None) -> None:
        """A reversed id range, or two stages whose ranges overlap (an id would silently go to the first)."""
        for index, stage in enumerate(stages):
            where = lines.get(stage.name, line)
            if stage.min_id is not None and stage.max_id is not None and stage.min_id > stage.max_id:
                self.problem(f"stage '{stage.name}': ids {stage.describe_ids()} are reversed; write low-high", where)
                continue
            for other in stages[:index]:
                low = max(stage.min_id if stage.min_id is not None else -1, other.min_id if other.min_id is not None else -1)
                highs = [h for h in (stage.max_id, other.max_id) if h is not None]
                if not highs or low <= min(highs):
                    self.problem(
                        f"stage '{stage.name}': ids {stage.describe_ids()} overlap stage '{other.name}' "
                        f"({other.describe_ids()}); an object id must belong to one stage",
                        where,
                    )

    def id_range(self, raw: Any, name: str, line: int | None, base: StageSpec) -> tuple[int | None, int | None]:
        if raw is None:
            return base.min_id, base.max_id
        if isinstance(raw, list):
            if len(raw) == 2:
                return raw[0], raw[1]
        else:
            text = str(raw).replace(" ", "")
            if match := re.fullmatch(r"(\d+)\+", text):
                return int(match.group(1)), None
            if match := re.fullmatch(r"(\d+)-(\d+)", text):
                return int(match.group(1)), int(match.group(2))
        self.problem(f"stage '{name}': ids must look like '1000-1999', '3000+' or [low, high], got {raw!r}", line)
        return base.min_id, base.max_id

    def read_connections(self, raw: Any, line: int | None) -> dict[str, ConnectionSpec]:
        if raw is None:
            return {}
        mapping = self.mapping(raw, "'connections'", line, "{warehouse: postgresql://me@127.0.0.1/dw}")
        if mapping is None:
            return {}
        self.problems.extend(duplicate_names(mapping, "connection", self.file))
        result = {}
        for name, value in mapping.items():
            where = mapping.line_of(name)
            url: str | None = value if isinstance(value, str) else None
            if isinstance(value, YamlMap):
                checked = self.check(ConnectionSettings, value, f"connection '{name}'")
                url, where = (checked.url if checked else None), value.line_of("url")
            if url is None:
                if not isinstance(value, YamlMap):
                    self.problem(f"connection '{name}' needs a URL such as postgresql://user@host/db, got {value!r}", where)
                continue
            if ":" not in url:
                self.problem(f"connection '{name}' needs a URL such as postgresql://user@host/db, got {url!r}", where)
                continue
            result[str(name)] = ConnectionSpec(str(name), url, Origin(self.file, where))
        return result

    def objects(self, raw: Any, stages: tuple[StageSpec, ...], line: int | None) -> dict[int, ObjectSpec]:
        if not isinstance(raw, list):
            self.problem("'objects' must be a list of object definitions", line)
            return {}
        result: dict[int, ObjectSpec] = {}
        for item in raw:
            obj = self.object(item, stages, line)
            if obj is None:
                continue
            if obj.id in result:
                self.problem(
                    f"object id {obj.id} is defined twice (also at line {result[obj.id].origin.line}); ids must be unique",
                    obj.origin.line,
                )
                continue
            result[obj.id] = obj
        return result

    def object(self, item: Any, stages: tuple[StageSpec, ...], line: int | None) -> ObjectSpec | None:
        if not isinstance(item, YamlMap):
            self.problem(f"each object must be a mapping with at least an 'id', got {plain(item)!r}", line)
            return None
        line = item.line
        raw_id = item.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, int):
            self.problem(f"malformed object id {raw_id!r}: ids must be integers", item.line_of("id"))
            return None
        name = item.get("name")
        label = f"object {raw_id} ({name})" if isinstance(name, str) and name else f"object {raw_id}"
        spec = self.check(ObjectSettings, item, label, ignore=("source", "destination", "checks"))
        raw_stage = item.get("stage")
        stage_name = spec.stage if spec else raw_stage if isinstance(raw_stage, str) else None
        if stage_name is None:
            stage = stage_for_id(raw_id, stages)
            if stage is None:
                ranges = ", ".join(f"{s.name} {s.describe_ids()}" for s in stages)
                self.problem(f"{label} matches no stage ({ranges}); set its 'stage' or change the stage id ranges", line)
                return None
            stage_name = stage.name
        work = [key for key in ("source", "sql", "python", "pyspark") if item.get(key) is not None]
        if len(work) > 1:
            self.problem(f"{label}: give only one of source, sql, python, pyspark (got {', '.join(work)})", line)
        engine = self.object_engine(spec, work, label, item.line_of("engine") or line) if spec is not None else None
        for key in ("sql", "python", "pyspark"):
            if key in item and spec is not None:
                self.engine(key, item, label, engine)
        if spec is None:
            return None
        if engine is not None and spec.partition_by:
            self.problem(
                f"{label}: partition_by is not supported on engine {engine} objects yet (Spark writes one parts folder); "
                "partition a child object run by DuckDB instead",
                item.line_of("partition_by"),
            )
        parents = spec.parents if isinstance(spec.parents, list) else [] if spec.parents is None else [spec.parents]
        if spec.streaming is not None:
            self.streaming_object(item, spec, label, engine)
        elif isinstance(item.get("source"), YamlMap) and item["source"].get("topics"):
            self.problem(
                f"{label}: a batch kafka source reads one topic ('topic'); 'topics' is for streaming objects "
                "(add streaming: {trigger: ...}) or give each topic an object of its own",
                item["source"].line_of("topics"),
            )
        return ObjectSpec(
            id=raw_id,
            name=spec.name or f"obj_{raw_id}",
            stage=stage_name,
            parents=tuple(dict.fromkeys(parents)),
            origin=Origin(
                self.file,
                line,
                tuple(
                    (key, item.key_lines[key])
                    for key in ("sql", "source", "python", "pyspark", "engine", "destination")
                    if key in item.key_lines
                ),
            ),
            source=self.source(item.get("source"), label, item.line_of("source")),
            sql=spec.sql,
            python=spec.python,
            destination=self.destination(item.get("destination"), label, item.line_of("destination")),
            lake=spec.lake,
            metadata=plain(spec.metadata),
            pyspark=spec.pyspark,
            chosen_engine=engine,
            partition_by=tuple(spec.partition_by),
            streaming=spec.streaming,
            checks=read_checks(self, item.get("checks"), label, item.line_of("checks")),
            tags=tuple(dict.fromkeys(spec.tags)),
            criticality=spec.criticality,
        )

    def streaming_object(self, item: YamlMap, spec: ObjectSettings, label: str, engine: str | None = None) -> None:
        """A streaming object reads a Kafka source and nothing else, into the lake (docs/streaming.md); on
        ``engine: spark`` its records' schema is declared (Spark parses with it, docs/engines.md)."""
        line = item.line_of("streaming")
        source = item.get("source")
        options = _flatten_options(source) if isinstance(source, YamlMap) else {}
        if options.get("type") != "kafka":
            self.problem(f"{label}: a streaming object needs a source of type kafka (source: {{type: kafka, topic: ...}})", line)
        elif engine == "spark" and not options.get("schema"):
            self.problem(
                f"{label}: engine: spark needs the records' schema declared (source: schema: {{column: type}}); "
                "drop engine: spark to infer it on Sluice's micro-batcher",
                item.line_of("engine") or line,
            )
        if engine == "spark":
            block = item.get("streaming")
            given = [f"streaming: {k}" for k in ("window", "max_batch_bytes") if isinstance(block, YamlMap) and k in block]
            given += ["source: group"] if "group" in options else []
            for key in given:
                self.problem(
                    f"{label}: {key} is not supported on engine: spark (Spark Structured Streaming); "
                    "drop it, or drop engine: spark to run the object on Sluice's micro-batcher (docs/engines.md)",
                    item.line_of("engine") or line,
                )
        for key in ("sql", "python", "pyspark", "parents", "partition_by"):
            if item.get(key):
                self.problem(
                    f"{label}: a streaming object takes no {key!r}"
                    + (" (write it under streaming: sql, run on each micro-batch)" if key == "sql" else ""),
                    item.line_of(key),
                )
        if not spec.lake:
            self.problem(f"{label}: a streaming object's micro-batches go to the lake; drop 'lake: false'", item.line_of("lake"))
        sql = spec.streaming.sql if spec.streaming is not None else None
        if sql:
            from sqlglot.errors import ParseError

            from sluice.project.checks import sql_tables, syntax_error
            from sluice.streaming.settings import BATCH_TABLE

            try:
                others = [t for t in sql_tables(sql) if t.lower() != BATCH_TABLE]
            except ParseError as exc:
                self.problem(f"{label}: streaming: sql: {syntax_error(exc)}", line)
                return
            if others:
                self.problem(
                    f"{label}: streaming: sql reads {others[0]!r}; it runs on each micro-batch, "
                    f"which it reads as the table {BATCH_TABLE!r}",
                    line,
                )

    def object_engine(self, spec: ObjectSettings, work: list[str], label: str, line: int | None) -> str | None:
        """The engine of an object (None: the default), from its ``engine:`` or the project's; wrong pairs reported."""
        explicit = spec.engine is not None
        engine = self.engine_name(spec.engine, label, line) if explicit else None
        if spec.streaming is not None:  # Sluice's micro-batcher (the default) or Spark Structured Streaming
            if engine not in (None, "spark"):
                why = f"a streaming object runs on Sluice's micro-batcher or on engine: spark, not {engine}"
                self.problem(f"{label}: {why}", line)
                return None
            return engine
        if explicit and not {"sql", "pyspark", "python"} & set(work):
            self.problem(f"{label}: 'engine' applies to sql and pyspark objects; this one has no sql or pyspark", line)
            return None
        if "python" in work:
            if engine is not None:
                self.problem(
                    f"{label}: a python function runs in Sluice on Arrow tables, not on {engine}; "
                    "for a PySpark function write pyspark: module:function",
                    line,
                )
            return None
        if "pyspark" in work:
            if explicit and engine is None:
                self.problem(f"{label}: pyspark runs on Spark, not on {spec.engine}; drop 'engine' or use python:", line)
            return engine or "spark"
        if "sql" not in work:
            return None
        return engine if explicit else self.default_engine

    def engine(self, key: str, item: YamlMap, label: str, engine: str | None = None) -> None:
        """Check an object's ``sql:``, ``python:`` or ``pyspark:`` against its engine plugin's options."""
        plugin = self.plugin("engine", engine or key, f"{label}: {key}", item.line_of(key))
        if plugin is not None:
            only = YamlMap({key: item[key]})
            only.line, only.key_lines, only.duplicates = item.line_of(key), {}, []
            self.check(plugin.options, only, label, what="option")

    def source(self, raw: Any, label: str, line: int | None) -> SourceSpec | None:
        if raw is None:
            return None
        mapping = self.mapping(raw, f"{label}: source", line, "{type: csv, path: data/x.csv}")
        if mapping is None:
            return None
        flat = _flatten_options(mapping)
        kind = flat.get("type")
        if kind is None:
            kind = _infer_source_kind(flat)
            if kind is None:
                self.problem(f"{label}: source needs a 'type' (csv, json, jsonl, parquet, faker, rest, kafka, sql)", mapping.line)
                return None
        plugin = self.source_plugin(str(kind), flat, label)
        if plugin is None:
            return None
        options = self.check(plugin.options, flat, f"{label}: {kind} source", ignore=("type",), what="option")
        return SourceSpec(str(kind), options) if options is not None else None

    def source_plugin(self, kind: str, flat: YamlMap, label: str) -> Plugin | None:
        if kind != SQL_KIND:
            try:
                plugin = source_plugin(kind, None, {})
            except PluginError as exc:
                self.problem(f"{label}: {exc.message}", flat.line_of("type"))
                return None
            self.installed(plugin, f"{label}: source", flat.line_of("type"))
            named = flat.get("connection")
            if isinstance(named, str):  # a source option 'connection' (rest, kafka) names one of the project's connections
                connection = self.connection(named, label, "source", flat.line_of("connection"))
                schemes: tuple[str, ...] = getattr(plugin.options, "connection_schemes", ())
                if connection is not None and schemes and connection_scheme(connection.url) not in schemes:
                    self.problem(
                        f"{label}: connection '{named}' is {connection_scheme(connection.url)}://; a {kind} source needs "
                        f"a {' or '.join(f'{s}://' for s in schemes)} connection",
                        flat.line_of("connection"),
                    )
            return plugin
        connection = self.connection(flat.get("connection"), label, "source", flat.line_of("connection"))
        if connection is None:
            return None
        return self.scheme_plugin("source", connection, label, flat.line_of("connection"))

    def connection(self, name: Any, label: str, role: str, line: int | None) -> ConnectionSpec | None:
        if not isinstance(name, str) or not name:
            self.problem(f"{label}: {role} needs a 'connection' name (one of the project's connections)", line)
            return None
        connection = self.connections.get(name)
        if connection is None:
            known = ", ".join(sorted(self.connections)) or "none defined"
            hint = did_you_mean(name, self.connections)
            self.problem(f"{label}: unknown connection '{name}' in {role} (connections: {known}).{hint}", line)
        return connection

    def scheme_plugin(self, kind: Any, connection: ConnectionSpec, label: str, line: int | None) -> Plugin | None:
        scheme = connection_scheme(connection.url)
        plugin = registry().find_scheme(kind, scheme)
        if plugin is None:
            known = ", ".join(f"{s}://" for s in registry().schemes(kind))
            self.problem(
                f"{label}: connection '{connection.name}' is {scheme}://, which cannot be a {kind} (use one of: {known})", line
            )
            return None
        self.installed(plugin, f"{label}: {kind}", line)
        return plugin

    def destination(self, raw: Any, label: str, line: int | None) -> DestinationSpec | None:
        if raw is None:
            return None
        mapping = self.mapping(raw, f"{label}: destination", line, "{connection: warehouse, table: users}")
        if mapping is None:
            return None
        if isinstance(mapping.get("key"), str):
            mapping["key"] = [mapping["key"]]
        connection = self.connection(mapping.get("connection"), label, "destination", mapping.line_of("connection"))
        plugin = self.scheme_plugin("destination", connection, label, mapping.line_of("connection")) if connection else None
        settings = plugin.options if plugin is not None else DestinationSpec
        if plugin is not None and connection is not None:
            mapping = self.others_options(mapping, plugin, f"{label}: destination", connection.name)
        options = self.check(settings, mapping, f"{label}: destination", what="option")
        if plugin is None or not isinstance(options, DestinationSpec):
            return None
        return options

    def others_options(self, mapping: YamlMap, plugin: Plugin, label: str, connection: str) -> YamlMap:
        """``mapping`` without the keys that are options of another destination plugin only, each reported
        as such (``partition_by`` on a DuckDB connection: a PostgreSQL destination's option)."""
        own = set(field_names(plugin.options))
        foreign: dict[str, str] = {}
        for other in registry().all():
            if other.kind == "destination" and other.options is not plugin.options:
                for key in field_names(other.options):
                    if key not in own:
                        foreign.setdefault(key, other.name)
        found = [key for key in mapping if key in foreign]
        if not found:
            return mapping
        for key in found:
            self.problem(
                f"{label}: option {key!r} is an option of {foreign[key]} destinations, but connection '{connection}' is "
                f"a {plugin.name} one; remove it, or publish to a {foreign[key]} connection",
                mapping.line_of(key),
            )
        kept = YamlMap({key: value for key, value in mapping.items() if key not in found})
        kept.line, kept.key_lines, kept.duplicates = mapping.line, mapping.key_lines, mapping.duplicates
        return kept


def _flatten_options(mapping: YamlMap) -> YamlMap:
    """A source mapping with a nested ``options:`` mapping merged in (each key keeps its own line)."""
    nested = mapping.get("options")
    if not isinstance(nested, YamlMap):
        return mapping
    flat = YamlMap({key: value for key, value in mapping.items() if key != "options"})
    flat.line = mapping.line
    flat.key_lines = {**mapping.key_lines, **nested.key_lines}
    flat.duplicates = [*mapping.duplicates, *nested.duplicates]
    for key, value in nested.items():
        if key in flat:
            flat.duplicates.append((str(key), nested.line_of(key) or 0))
        flat[key] = value
    return flat


def _infer_source_kind(options: YamlMap) -> str | None:
    if "faker" in options:
        options["schema"] = options.pop("faker")
        options.key_lines["schema"] = options.key_lines.get("faker", options.line or 0)
        return "faker"
    if "connection" in options:
        return SQL_KIND
    path = options.get("path")
    if isinstance(path, str):
        suffix = Path(path).suffix.lower().lstrip(".")
        return {"ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    return None


def read_yaml_project(path: Path) -> tuple[Project | None, list[ConfigError]]:
    """Parse a ``sluice.yaml``. Returns the project and the problems found (each with file and line)."""
    reader = _Reader(path)
    project = reader.read()
    return project, reader.problems


__all__ = ["read_yaml_project"]
