"""Read ``sluice.yaml`` into a :class:`~sluice.project.model.Project`.

Mappings keep the line they start on (key ``__line__``) so that later checks can point at it.
Shape problems are collected, not raised one by one, so a user sees every mistake at once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from sluice.errors import ConfigError
from sluice.project.model import (
    DEFAULT_STAGES,
    FILE_SOURCE_KINDS,
    SOURCE_KINDS,
    WRITE_MODES,
    ConnectionSpec,
    DestinationSpec,
    ObjectSpec,
    Origin,
    Project,
    RetrySpec,
    SourceSpec,
    StageSpec,
    WriteMode,
    stage_for_id,
)

LINE_KEY = "__line__"
TOP_LEVEL_KEYS = ("name", "bus", "state", "lake", "lease_s", "retry", "stages", "connections", "objects")
OBJECT_KEYS = ("id", "name", "stage", "parents", "source", "sql", "python", "destination", "lake", "metadata")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _LineLoader(yaml.SafeLoader):
    """A safe loader whose mappings remember their first line."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[LINE_KEY] = node.start_mark.line + 1
    return mapping  # type: ignore[return-value]


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def expand_env(text: str, where: str) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` with environment values."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is not None:
            return value
        if default is not None:
            return default
        raise ConfigError(
            f"{where} uses ${{{name}}} but that environment variable is not set; set it or write ${{{name}:-default}}"
        )

    return _ENV.sub(repl, text)


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = str(path)
        self.problems: list[ConfigError] = []

    def problem(self, message: str, line: int | None) -> None:
        self.problems.append(ConfigError(message, self.file, line))

    def read(self) -> Project:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the file: {exc.strerror}", self.file) from exc
        try:
            data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - _LineLoader derives from SafeLoader
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            raise ConfigError(f"malformed YAML: {exc.problem or exc.context}", self.file, line) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"malformed YAML: {exc}", self.file) from exc
        if not isinstance(data, dict):
            raise ConfigError("the top level must be a mapping with an 'objects' list", self.file, 1)
        return self.project(data)

    def project(self, data: dict[str, Any]) -> Project:
        for key in data:
            if key != LINE_KEY and key not in TOP_LEVEL_KEYS:
                self.problem(f"unknown top-level key '{key}' (expected one of: {', '.join(TOP_LEVEL_KEYS)})", None)
        stages = self.stages(data.get("stages"))
        connections = self.connections(data.get("connections") or {})
        objects = self.objects(data.get("objects"), stages)
        retry = self.retry(data.get("retry") or {})
        lake = data.get("lake", "")
        if isinstance(lake, dict):
            lake = lake.get("path", "")
        return Project(
            name=str(data.get("name") or self.path.parent.name),
            root=self.path.parent.resolve(),
            source_file=self.path.resolve(),
            objects=objects,
            connections=connections,
            stages=stages,
            retry=retry,
            bus_url=self.url(data.get("bus"), "bus"),
            state_url=self.url(data.get("state"), "state"),
            lake_path=str(lake or ""),
            lease_s=self.number(data.get("lease_s", 30.0), "lease_s", None, minimum=0.1),
        )

    def url(self, value: Any, where: str) -> str:
        if value is None or value == "":
            return ""
        try:
            return expand_env(str(value), where)
        except ConfigError as exc:
            self.problem(exc.message, None)
            return ""

    def number(self, value: Any, what: str, line: int | None, minimum: float = 0.0) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            self.problem(f"{what} must be a number >= {minimum}, got {value!r}", line)
            return minimum
        return float(value)

    def stages(self, raw: Any) -> tuple[StageSpec, ...]:
        if raw is None:
            return DEFAULT_STAGES
        if not isinstance(raw, dict):
            self.problem("'stages' must be a mapping of stage name to settings", None)
            return DEFAULT_STAGES
        defaults = {stage.name: stage for stage in DEFAULT_STAGES}
        result = []
        for name, settings in raw.items():
            if name == LINE_KEY:
                continue
            line = raw.get(LINE_KEY)
            if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
                self.problem(f"bad stage name {name!r}: use lower-case letters, digits, '_' or '-'", line)
                continue
            settings = settings or {}
            if not isinstance(settings, dict):
                self.problem(f"stage '{name}' must be a mapping (ids, concurrency, layer, delay_s)", line)
                continue
            line = settings.get(LINE_KEY, line)
            base = defaults.get(name, StageSpec(name, None, None, layer=name))
            low, high = self.id_range(settings.get("ids"), name, line, base)
            concurrency = settings.get("concurrency", base.concurrency)
            if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
                self.problem(f"stage '{name}': concurrency must be an integer >= 1, got {concurrency!r}", line)
                concurrency = 1
            result.append(
                StageSpec(
                    name=name,
                    min_id=low,
                    max_id=high,
                    concurrency=concurrency,
                    layer=str(settings.get("layer", base.layer)),
                    delay_s=self.number(settings.get("delay_s", base.delay_s), f"stage '{name}': delay_s", line),
                )
            )
        if result and all(stage.name in defaults for stage in result):
            given = {stage.name: stage for stage in result}
            return tuple(given.get(stage.name, stage) for stage in DEFAULT_STAGES)
        return tuple(result) or DEFAULT_STAGES

    def id_range(self, raw: Any, name: str, line: int | None, base: StageSpec) -> tuple[int | None, int | None]:
        if raw is None:
            return base.min_id, base.max_id
        text = str(raw).replace(" ", "")
        if isinstance(raw, list) and len(raw) == 2:
            low, high = raw
            if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (low, high)):
                return low, high
        elif match := re.fullmatch(r"(\d+)\+", text):
            return int(match.group(1)), None
        elif match := re.fullmatch(r"(\d+)-(\d+)", text):
            return int(match.group(1)), int(match.group(2))
        self.problem(f"stage '{name}': ids must look like '1000-1999', '3000+' or [low, high], got {raw!r}", line)
        return base.min_id, base.max_id

    def connections(self, raw: Any) -> dict[str, ConnectionSpec]:
        if not isinstance(raw, dict):
            self.problem("'connections' must be a mapping of name to URL", None)
            return {}
        result = {}
        for name, value in raw.items():
            if name == LINE_KEY:
                continue
            line = raw.get(LINE_KEY)
            if isinstance(value, dict):
                line = value.get(LINE_KEY, line)
                value = value.get("url")
            reported = len(self.problems)
            url = self.url(value, f"connection '{name}'") if isinstance(value, str) else ""
            if len(self.problems) > reported:
                continue
            if ":" not in url:
                self.problem(f"connection '{name}' needs a URL such as postgresql://user@host/db, got {value!r}", line)
                continue
            result[str(name)] = ConnectionSpec(str(name), url, Origin(self.file, line))
        return result

    def retry(self, raw: Any) -> RetrySpec:
        if not isinstance(raw, dict):
            self.problem("'retry' must be a mapping (attempts, backoff_s, max_backoff_s)", None)
            return RetrySpec()
        line = raw.get(LINE_KEY)
        attempts = raw.get("attempts", 3)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            self.problem(f"retry.attempts must be an integer >= 1, got {attempts!r}", line)
            attempts = 1
        return RetrySpec(
            attempts=attempts,
            backoff_s=self.number(raw.get("backoff_s", 0.5), "retry.backoff_s", line),
            max_backoff_s=self.number(raw.get("max_backoff_s", 30.0), "retry.max_backoff_s", line),
        )

    def objects(self, raw: Any, stages: tuple[StageSpec, ...]) -> dict[int, ObjectSpec]:
        if not isinstance(raw, list):
            self.problem("'objects' must be a list of object definitions", None)
            return {}
        result: dict[int, ObjectSpec] = {}
        for item in raw:
            obj = self.object(item, stages)
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

    def object(self, item: Any, stages: tuple[StageSpec, ...]) -> ObjectSpec | None:
        if not isinstance(item, dict):
            self.problem(f"each object must be a mapping with at least an 'id', got {item!r}", None)
            return None
        line = item.get(LINE_KEY)
        raw_id = item.get("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, int):
            self.problem(f"malformed object id {raw_id!r}: ids must be integers", line)
            return None
        label = f"object {raw_id}"
        for key in item:
            if key != LINE_KEY and key not in OBJECT_KEYS:
                self.problem(f"{label}: unknown key '{key}' (expected one of: {', '.join(OBJECT_KEYS)})", line)
        parents = self.parents(item.get("parents"), label, line)
        stage_name = item.get("stage")
        if stage_name is None:
            stage = stage_for_id(raw_id, stages)
            if stage is None:
                ranges = ", ".join(f"{s.name} {s.describe_ids()}" for s in stages)
                self.problem(f"{label} matches no stage ({ranges}); set its 'stage' or change the stage id ranges", line)
                return None
            stage_name = stage.name
        work = [key for key in ("source", "sql", "python") if item.get(key) is not None]
        if len(work) > 1:
            self.problem(f"{label}: give only one of source, sql, python (got {', '.join(work)})", line)
        lake = item.get("lake", True)
        metadata = item.get("metadata") or {}
        return ObjectSpec(
            id=raw_id,
            name=str(item.get("name") or f"obj_{raw_id}"),
            stage=str(stage_name),
            parents=parents,
            origin=Origin(self.file, line),
            source=self.source(item.get("source"), label, line),
            sql=self.text(item.get("sql"), f"{label}: sql", line),
            python=self.text(item.get("python"), f"{label}: python", line),
            destination=self.destination(item.get("destination"), label, line),
            lake=bool(lake),
            metadata=_without_lines(metadata) if isinstance(metadata, dict) else {},
        )

    def text(self, value: Any, what: str, line: int | None) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{what} must be a non-empty string", line)
            return None
        return value

    def parents(self, raw: Any, label: str, line: int | None) -> tuple[int, ...]:
        if raw is None:
            return ()
        values = raw if isinstance(raw, list) else [raw]
        result = []
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int):
                self.problem(f"{label}: malformed parent id {value!r}: parent ids must be integers", line)
                continue
            if value not in result:
                result.append(value)
        return tuple(result)

    def source(self, raw: Any, label: str, line: int | None) -> SourceSpec | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.problem(f"{label}: source must be a mapping such as {{type: csv, path: data/x.csv}}", line)
            return None
        line = raw.get(LINE_KEY, line)
        options = {k: _without_lines(v) for k, v in raw.items() if k not in (LINE_KEY, "type")}
        kind = raw.get("type") or _infer_source_kind(options)
        if kind not in SOURCE_KINDS:
            self.problem(f"{label}: unknown source type {kind!r} (expected one of: {', '.join(SOURCE_KINDS)})", line)
            return None
        if kind in FILE_SOURCE_KINDS and not isinstance(options.get("path"), str):
            self.problem(f"{label}: a {kind} source needs a 'path'", line)
        if kind == "sql" and not (options.get("table") or options.get("query")):
            self.problem(f"{label}: a sql source needs a 'connection' and a 'table' or a 'query'", line)
        if kind == "faker" and not isinstance(options.get("schema"), str):
            self.problem(f"{label}: a faker source needs a 'schema' (users, transactions, products)", line)
        return SourceSpec(kind=str(kind), options=options)

    def destination(self, raw: Any, label: str, line: int | None) -> DestinationSpec | None:
        if raw is None:
            return None
        if not isinstance(raw, dict) or not raw.get("connection") or not raw.get("table"):
            self.problem(f"{label}: destination needs 'connection' and 'table' (and optional mode, key)", line)
            return None
        line = raw.get(LINE_KEY, line)
        mode = raw.get("mode", "replace")
        if mode not in WRITE_MODES:
            self.problem(f"{label}: destination mode must be one of {', '.join(WRITE_MODES)}, got {mode!r}", line)
            mode = "replace"
        key = raw.get("key") or []
        key = [key] if isinstance(key, str) else key
        if mode == "merge" and not key:
            self.problem(f"{label}: merge needs 'key' columns, e.g. key: [id]", line)
        mode_value: WriteMode = mode
        return DestinationSpec(str(raw["connection"]), str(raw["table"]), mode_value, tuple(str(k) for k in key))


def _without_lines(value: Any) -> Any:
    """``value`` with the loader's line markers removed from every nested mapping."""
    if isinstance(value, dict):
        return {k: _without_lines(v) for k, v in value.items() if k != LINE_KEY}
    if isinstance(value, list):
        return [_without_lines(v) for v in value]
    return value


def _infer_source_kind(options: dict[str, Any]) -> str | None:
    if "faker" in options:
        options["schema"] = options.pop("faker")
        return "faker"
    if "connection" in options:
        return "sql"
    path = options.get("path")
    if isinstance(path, str):
        suffix = Path(path).suffix.lower().lstrip(".")
        return {"ndjson": "jsonl", "pq": "parquet"}.get(suffix, suffix)
    return None


def read_yaml_project(path: Path) -> tuple[Project | None, list[ConfigError]]:
    """Parse a ``sluice.yaml``. Returns the project (None if shape problems) and the problems found."""
    reader = _Reader(path)
    project = reader.read()
    return project, reader.problems
