"""Read the project's ``models/`` folder: each ``.sql`` file becomes an object named after the file.

Ids, stages, configuration and parents (docs/models.md):

- **name**: the file's stem (``models/analytics/dim_users.sql`` -> ``dim_users``), unique across folders;
- **id**: ``id`` in its configuration, else derived from the name (BLAKE2b of the name modulo the size of
  ``models.ids``, default 1000000-1999999): stable across runs and machines. An id another object or
  model already has is an error naming both; set ``id`` for one;
- **stage**: ``stage`` in its configuration, else the project's last stage;
- **parents**: the tables its SQL reads (sqlglot), each a model (by name), an object (by name, or
  ``<stage>.<name>`` / ``<layer>.<name>``, or the table of its destination), or a declared source
  (``models.sources``). An unknown table is an error at its line with "did you mean"; so is a model reading its
  own name (it would read itself: the object of that name is read as ``<layer>.<name>``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sluice.checks.read import read_checks
from sluice.errors import ConfigError, did_you_mean
from sluice.plugins import PluginError, Settings, registry
from sluice.project.model import ConnectionSpec, DestinationSpec, ObjectSpec, Origin, StageSpec, layer_of_stage
from sluice.project.model_parents import ModelFile, ParentChecks
from sluice.project.model_settings import ModelConfig, ModelsSettings, merged
from sluice.project.model_spec import ModelSpec
from sluice.project.model_sql import TableRef, parse_model_text, render
from sluice.project.yaml_tree import YamlMap, plain, read_text

S = TypeVar("S", bound=Settings)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ENGINE_DIALECTS = {"warehouse": "postgres", "spark": "spark"}


class Checker(Protocol):
    """What the sluice.yaml reader lends: typed checks at a line, and destinations checked like an object's."""

    file: str
    problems: list[ConfigError]

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
        """``raw`` as ``settings``, problems recorded (at ``file``, default the project file)."""

    def destination(self, raw: Any, label: str, line: int | None) -> DestinationSpec | None:
        """An object's ``destination:`` mapping, checked."""


def _yaml(value: dict[str, Any], line: int | None) -> YamlMap:
    mapping = YamlMap(value)
    mapping.line, mapping.key_lines, mapping.duplicates = line, {}, []
    return mapping


def derived_id(name: str, low: int, high: int) -> int:
    """The id of model ``name`` in ``low``-``high``: BLAKE2b of the name modulo the range's size."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return low + int.from_bytes(digest, "big") % (high - low + 1)


class ModelsReader(ParentChecks):
    """Reads ``models:`` and the model files for the sluice.yaml reader; problems go to ``checker.problems``."""

    def __init__(
        self,
        checker: Checker,
        root: Path,
        stages: tuple[StageSpec, ...],
        connections: Mapping[str, ConnectionSpec],
        objects: Mapping[int, ObjectSpec],
    ) -> None:
        self.checker, self.root, self.stages = checker, root, stages
        self.connections, self.objects = connections, objects
        self.file = checker.file
        self.variables: dict[str, Any] = {}

    def problem(self, message: str, file: str | None = None, line: int | None = None) -> None:
        self.checker.problems.append(ConfigError(message, file or self.file, line))

    def read(self, raw: Any, line: int | None) -> dict[int, ObjectSpec]:
        """The model objects: ``raw`` is the ``models:`` mapping (None: defaults, and no folder is no models)."""
        if raw is None:
            raw = _yaml({}, line)
        if not isinstance(raw, YamlMap):
            self.problem("'models' must be a mapping such as {path: models}", line=line)
            return {}
        settings = self.checker.check(ModelsSettings, raw, "models", ignore=("config", "vars"))
        self.variables = plain(raw.get("vars")) if isinstance(raw.get("vars"), YamlMap) else {}
        if raw.get("vars") is not None and not isinstance(raw.get("vars"), YamlMap):
            self.problem("models: vars must map names to values, e.g. {start_date: '2026-01-01'}", line=raw.line_of("vars"))
        configs = self._configs(raw.get("config"), raw.line_of("config"))
        if settings is None:
            return {}
        folder = (self.root / settings.path).resolve()
        if not folder.is_dir():
            if "path" in raw:
                self.problem(f"models: path '{settings.path}' is not a folder ({folder}); create it", line=raw.line_of("path"))
            return {}
        models = self._files(folder, settings, configs, raw)
        self._ids(models, settings, raw.line_of("ids"))
        by_name = {m.name.lower(): m for m in models}
        sources = {
            f"{name.lower()}.{table.lower()}": f"{source.schema or name}.{table}"
            for name, source in settings.sources.items()
            for table in source.tables
        }
        for model in models:
            model.parents = self._bind(model, by_name, sources)
        result: dict[int, ObjectSpec] = {}
        for model in models:
            obj = self._object(model, by_name, sources)
            if obj is not None:
                result[obj.id] = obj
        # a model left out for a problem already reported is not also an "unknown parent" of the models reading it
        failed = {model.id for model in models} - set(result)
        return {
            oid: replace(obj, parents=tuple(p for p in obj.parents if p not in failed)) if failed & set(obj.parents) else obj
            for oid, obj in result.items()
        }

    def _configs(self, raw: Any, line: int | None) -> dict[str, ModelConfig]:
        if raw is None:
            return {}
        if not isinstance(raw, YamlMap):
            self.problem("models: config must map folders ('staging/') or model names to settings", line=line)
            return {}
        result = {}
        for key, value in raw.items():
            mapping = value if isinstance(value, YamlMap) else _yaml({}, raw.line_of(key))
            checked = self.checker.check(ModelConfig, mapping, f"models: config '{key}'")
            if checked is not None:
                result[str(key).strip("/")] = checked
        return result

    def _files(self, folder: Path, settings: ModelsSettings, configs: dict[str, ModelConfig], raw: YamlMap) -> list[ModelFile]:
        models: list[ModelFile] = []
        seen: dict[str, ModelFile] = {}
        used: set[str] = set()
        for path in sorted(folder.rglob("*.sql")):
            rel = path.relative_to(folder).as_posix()
            name = path.stem
            if not _IDENTIFIER.fullmatch(name):
                self.problem(f"model file name '{path.name}' must be an identifier (letters, digits, _)", str(path), 1)
                continue
            if name.lower() in seen:
                other = seen[name.lower()]
                self.problem(f"model '{name}' is also {other.path}; model names must be unique, rename one", str(path), 1)
                continue
            try:
                text = read_text(path)
                _, _, header, header_line = render(text, str(path), self.variables)
                layers: list[ModelConfig | None] = [settings]
                folders = rel.split("/")[:-1]
                for depth in range(1, len(folders) + 1):
                    key = "/".join(folders[:depth])
                    layers.append(configs.get(key))
                    used.add(key)
                layers.append(configs.get(name))
                used.add(name)
                header_map = _yaml(header, header_line or 1)
                file_config = self.checker.check(ModelConfig, header_map, f"model {name}: config()", file=str(path))
                config = merged(*layers, file_config)
                engine = str(config.get("engine") or "duckdb")
                dialect = str(config.get("dialect") or ENGINE_DIALECTS.get(engine, "duckdb"))
                parsed = parse_model_text(text, str(path), dialect=dialect, variables=self.variables)
            except ConfigError as exc:
                self.checker.problems.append(ConfigError(f"model {name}: {exc.message}", exc.source, exc.line))
                continue
            model = ModelFile(name, path, (Path(settings.path) / rel).as_posix(), parsed, config)
            seen[name.lower()] = model
            models.append(model)
        for key in configs:
            if key not in used:
                known = sorted({m.name for m in models} | {"/".join(m.rel.split("/")[1:-1]) for m in models} - {""})
                self.problem(
                    f"models: config '{key}' is no model or folder of {settings.path}/.{did_you_mean(key, known)}",
                    line=raw.line_of("config"),
                )
        return models

    def _ids(self, models: list[ModelFile], settings: ModelsSettings, line: int | None) -> None:
        match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", settings.ids)
        if match is None or int(match.group(1)) > int(match.group(2)):
            self.problem(f"models: ids must look like '1000000-1999999' (low-high), got {settings.ids!r}", line=line)
            return
        low, high = int(match.group(1)), int(match.group(2))
        taken: dict[int, str] = {
            obj_id: f"object {obj_id} ({obj.name}, line {obj.origin.line})" for obj_id, obj in self.objects.items()
        }
        last = self.stages[-1].name if self.stages else "application"
        for model in models:
            given = model.config.get("id")
            model.id = int(given) if given is not None else derived_id(model.name, low, high)
            model.stage = str(model.config.get("stage") or last)
            other = taken.get(model.id)
            if other is not None:
                how = "set in its config" if given is not None else f"derived from its name in models.ids {low}-{high}"
                self.problem(
                    f"model {model.name}: its id {model.id} ({how}) is also {other}; give it another with "
                    f"{{{{ config(id=...) }}}} or models: config: {model.name}: {{id: ...}}",
                    str(model.path),
                    1,
                )
                model.id = 0
                continue
            taken[model.id] = f"model {model.name} ({model.path})"

    def _bind(self, model: ModelFile, by_name: dict[str, ModelFile], sources: dict[str, str]) -> dict[str, int]:
        """Each table the model reads -> parent id (sources are bound later); unknown tables are problems."""
        names: dict[str, list[int]] = {}
        for obj in self.objects.values():
            keys = {
                obj.name.lower(),
                f"{obj.stage}.{obj.name}".lower(),
                f"{layer_of_stage(self.stages, obj.stage)}.{obj.name}".lower(),
            }
            if obj.destination is not None:
                keys.add(obj.destination.table.lower())
            for key in keys:
                names.setdefault(key, []).append(obj.id)
        bound: dict[str, int] = {}
        for ref in model.parsed.tables:
            other = by_name.get(ref.name) if ref.schema is None else None
            if other is model:
                self._own_name(model, ref, names)
                continue
            if other is not None:
                if other.id:
                    bound[ref.text] = other.id
                continue
            ids = sorted(set(names.get(ref.text, [])))
            if len(ids) == 1:
                bound[ref.text] = ids[0]
            elif len(ids) > 1:
                choices = ", ".join(f"{self.objects[i].stage}.{self.objects[i].name}" for i in ids)
                self.problem(
                    f"model {model.name}: '{ref.text}' names several objects ({choices}); qualify it", str(model.path), ref.line
                )
            elif ref.text not in sources:
                self._unknown(model, ref, [*names, *(m.name for m in by_name.values()), *sources])
        return bound

    def _own_name(self, model: ModelFile, ref: TableRef, names: dict[str, list[int]]) -> None:
        """A model reads its own name: a name is a model before an object (docs/models.md), so this would be a read of
        itself, not of the object of that name; the problem says how to read the object, or the model's previous output."""
        hints = []
        for oid in sorted(set(names.get(ref.name, []))):
            obj = self.objects[oid]
            layer, stage = f"{layer_of_stage(self.stages, obj.stage)}.{obj.name}", f"{obj.stage}.{obj.name}"
            written = f"'{layer}' or '{stage}'" if layer != stage else f"'{layer}'"
            hints.append(f"object {oid} ({obj.name}) as {written}")
        read = f"read {'; '.join(hints)} (<layer>.<name> or <stage>.<name>), or rename the model file; " if hints else ""
        self.problem(
            f"model {model.name} reads '{ref.text}', its own name: a name is a model before an object, so this reads "
            f"the model itself; {read}for the model's own previous output use {{{{ this }}}}",
            str(model.path),
            ref.line,
        )

    def _unknown(self, model: ModelFile, ref: TableRef, known: list[str]) -> None:
        self.problem(
            f"model {model.name}: the SQL reads '{ref.text}', which is no model, object or declared source."
            f"{did_you_mean(ref.text, known)} Add it, or declare it under models: sources",
            str(model.path),
            ref.line,
        )

    def _object(self, model: ModelFile, by_name: dict[str, ModelFile], sources: dict[str, str]) -> ObjectSpec | None:
        config, file = model.config, str(model.path)
        label = f"model {model.name}"
        engine = str(config.get("engine") or "duckdb")
        materialized = str(config.get("materialized") or "table")
        key = config.get("unique_key")
        unique_key = tuple([key] if isinstance(key, str) else key or [])
        line = model.parsed.config_line or 1
        ok = self._engine(label, engine, file, line)
        if materialized == "incremental" and not unique_key:
            self.problem(f"{label}: materialized incremental needs a unique_key, e.g. config(unique_key='id')", file, line)
            ok = False
        connection, target = None, None
        used_sources: dict[str, str] = {}
        for ref in model.parsed.tables:
            if ref.text in sources and ref.text not in (model.parents or {}):
                used_sources[ref.text] = sources[ref.text]
        if engine == "warehouse":
            connection = self._connection(label, config.get("connection"), file, line)
            table = str(config.get("alias") or model.name)
            target = f"{config['schema']}.{table}" if config.get("schema") else table
            ok = ok and connection is not None and self._warehouse_parents(model, by_name, connection)
        else:
            ok = self._lake_parents(model, by_name, used_sources) and ok
        destination = None
        if config.get("destination") is not None:
            if engine == "warehouse" or materialized == "view":
                self.problem(f"{label}: destination is for duckdb table and incremental models; remove it", file, line)
                ok = False
            else:
                destination = self.checker.destination(_yaml(config["destination"], line), label, line)
        if not ok or not model.id:
            return None
        parents = model.parents or {}
        spec = ModelSpec(
            path=model.rel,
            text=model.path.read_text(encoding="utf-8-sig"),
            full_sql=model.parsed.full_sql,
            incremental_sql=model.parsed.incremental_sql,
            dialect=str(config.get("dialect") or ENGINE_DIALECTS.get(engine, "duckdb")),
            materialized=materialized,  # type: ignore[arg-type]
            unique_key=unique_key,
            engine=engine,
            connection=connection,
            target=target,
            parents=tuple(sorted(parents.items())),
            sources=tuple(sorted(used_sources.items())),
            views=tuple(self._views(model, by_name)) if engine != "warehouse" else (),
            config={k: v for k, v in config.items() if k not in ("id", "checks")},  # checks are not in the fingerprint
        )
        all_parents = dict.fromkeys([*parents.values(), *self._view_parents(model, by_name)])
        return ObjectSpec(
            id=model.id,
            name=model.name,
            stage=model.stage,
            parents=tuple(all_parents),
            origin=Origin(file, 1, (("sql", 1),)),
            destination=destination,
            lake=engine != "warehouse" and materialized != "view",
            model=spec,
            checks=read_checks(self.checker, config.get("checks"), label, None),
        )

    def _engine(self, label: str, engine: str, file: str, line: int) -> bool:
        if engine in ("sql", "python", "dbt"):
            why = "runs the nodes of a dbt: project, not model files" if engine == "dbt" else "does not run models"
            self.problem(f"{label}: engine '{engine}' {why}; use duckdb, warehouse or spark", file, line)
            return False
        try:
            plugin = registry().get("engine", engine)
            plugin.check_installed()
        except PluginError as exc:
            self.problem(f"{label}: engine '{engine}' is not available: {exc.message}; or use duckdb or warehouse", file, line)
            return False
        return True

    def _connection(self, label: str, name: Any, file: str, line: int) -> str | None:
        postgres = sorted(n for n, c in self.connections.items() if c.scheme == "postgresql")
        if name is None:
            if len(postgres) == 1:
                return postgres[0]
            self.problem(
                f"{label}: engine warehouse needs a connection: set connection to one of the project's postgresql "
                f"connections ({', '.join(postgres) or 'none defined'})",
                file,
                line,
            )
            return None
        if str(name) not in postgres:
            self.problem(
                f"{label}: connection '{name}' is not a postgresql connection of the project (postgresql ones: "
                f"{', '.join(postgres) or 'none'}).{did_you_mean(str(name), postgres)}",
                file,
                line,
            )
            return None
        return str(name)


def read_models(
    checker: Checker,
    raw: Any,
    line: int | None,
    root: Path,
    stages: tuple[StageSpec, ...],
    connections: Mapping[str, ConnectionSpec],
    objects: Mapping[int, ObjectSpec],
) -> dict[int, ObjectSpec]:
    """The model objects of the ``models:`` section ``raw`` (at ``line``) and its folder; problems to ``checker``."""
    return ModelsReader(checker, root, stages, connections, objects).read(raw, line)


__all__ = ["ModelsReader", "derived_id", "read_models"]
