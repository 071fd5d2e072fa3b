"""Read ``sluice.yaml`` into a :class:`~sluice.project.model.Project`.

Every mapping of the file is checked against its typed structure (:mod:`sluice.project.settings` for
the file's own sections, the plugin's options for a source, destination or lake), so an unknown key
at any level, a wrong type, a value out of range or a missing option is reported at its own line,
with "Did you mean" for near misses. ``${VAR}`` and ``${VAR:-default}`` are expanded in every string
first. Problems are collected, not raised one by one, so a user sees every mistake at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec

from sluice.alerts.config import read_alerts
from sluice.alerts.model import AlertsSpec
from sluice.api.config import read_api
from sluice.cdc.config import SyncSettings, direction_problems, partitions_problem
from sluice.errors import ConfigError
from sluice.plugins import Plugin, PluginKind
from sluice.plugins.options import convert_options
from sluice.plugins.urls import url_plugin
from sluice.project.dbt_project import read_dbt
from sluice.project.model import ApiSpec, ConnectionSpec, LakeSpec, ObjectSpec, Origin, Project, RetrySpec, SyncSpec
from sluice.project.models import read_models
from sluice.project.objets_project import read_objets
from sluice.project.settings import NESTED_KEYS, ConnectionSettings, ProjectSettings
from sluice.project.yaml_objects import ObjectsReader
from sluice.project.yaml_stages import StagesReader
from sluice.project.yaml_tree import YamlMap, duplicate_names, expand_tree, load_yaml, path_lines, plain, read_text
from sluice.runtime.history_settings import HistorySettings
from sluice.scheduling.sensor_config import read_sensors
from sluice.scheduling.spec import read_schedules
from sluice.server.serve_settings import ServeSettings, ServeSpec
from sluice.transforms.plugins import SparkSettings
from sluice.urls import connection_scheme


class _Reader(ObjectsReader, StagesReader):
    """The whole file: its top-level sections, each read by its part (:mod:`sluice.project.yaml_reader`,
    :mod:`~sluice.project.yaml_stages`, :mod:`~sluice.project.yaml_sources`, :mod:`~sluice.project.yaml_objects`)."""

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
        raw_sensors = data.get("sensors")  # those with problems too: alerts may name them
        sensor_names = [str(name) for name in raw_sensors] if isinstance(raw_sensors, YamlMap) else []
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
            bus_line=data.line_of("bus"),
            state_url=state,
            lake=self.lake(data.get("lake"), data.line_of("lake")),
            lease_s=top.lease_s if top else 30.0,
            syncs=syncs,
            api=self.api(data.get("api"), data.line_of("api"), [s.settings.name for s in syncs]),
            left_out=objets.left_out if objets is not None else {},
            notes=objets.notes if objets is not None else (),
            spark=self.spark(data.get("spark"), data.line_of("spark")),
            alerts=self.alerts(data.get("alerts"), data.line_of("alerts"), objects, [s.name for s in schedules], sensor_names),
            history=self.history(data.get("history"), data.line_of("history")),
            sensors=sensors,
            schedules=schedules,
            serve=self.serve(data.get("serve"), data.line_of("serve")),
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

    def serve(self, raw: Any, line: int | None) -> ServeSpec | None:
        """The ``serve:`` section (where ``sluice serve`` reads its control token), checked key by key."""
        if raw is None:
            return None
        mapping = self.mapping(raw, "'serve'", line, "{control_token_env: SHOP_CONTROL_TOKEN}")
        settings = self.check(ServeSettings, mapping, "serve") if mapping is not None else None
        if mapping is None or settings is None:
            return None
        return ServeSpec(settings, Origin(self.file, mapping.line, tuple(mapping.key_lines.items())))

    def spark(self, raw: Any, line: int | None) -> SparkSettings:
        """The ``spark:`` section (master URL, conf), checked key by key."""
        if raw is None:
            return SparkSettings()
        mapping = self.mapping(raw, "'spark'", line, "{master: 'local[*]', conf: {spark.executor.memory: 4g}}")
        spark = self.check(SparkSettings, mapping, "spark") if mapping is not None else None
        return spark or SparkSettings()

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
        origin = Origin(self.file, line, keys, tuple(path_lines(raw).items()))
        return ApiSpec(settings, origin, {name: urls[name] for name in used if name in urls})

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
            found: dict[str, ConnectionSpec | None] = {}  # each side's connection, looked up (and reported) once
            for role, kind in sides:
                where = mapping.line_of(role)
                if role not in found:
                    found[role] = self.connection(mapping.get(role), label, role, where)
                connection = found[role]
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
            # With other options wrong (reported above), the keys these checks read are checked alone, so one
            # validate reports both kinds of problems.
            view = settings or _direction_view(mapping)
            for message, key in direction_problems(view, given=set(mapping)) if view is not None else ():
                self.problem(message, mapping.line_of(key))
            if settings is not None:
                keys, paths = tuple(mapping.key_lines.items()), tuple(path_lines(mapping).items())
                result.append(SyncSpec(settings, Origin(self.file, mapping.line, keys, paths), urls))
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


def read_yaml_project(path: Path) -> tuple[Project | None, list[ConfigError]]:
    """Parse a ``sluice.yaml``. Returns the project and the problems found (each with file and line)."""
    reader = _Reader(path)
    project = reader.read()
    return project, reader.problems


__all__ = ["read_yaml_project"]


_DIRECTION_KEYS = ("name", "source", "target", "tables", "direction", "conflicts", "columns")


def _direction_view(mapping: YamlMap) -> SyncSettings | None:
    """The sync's settings from only the keys :func:`~sluice.cdc.config.direction_problems` reads (the others left at
    their defaults), or None when those are not valid either (their own problems are reported)."""
    try:
        return msgspec.convert({key: plain(mapping[key]) for key in _DIRECTION_KEYS if key in mapping}, SyncSettings)
    except msgspec.ValidationError:
        return None
