"""``dbt:`` in sluice.yaml: each node of an existing dbt project becomes an object run by dbt-core (docs/models.md).

The nodes are read from dbt's own manifest (:func:`sluice.project.dbt_cli.manifest`):

- **which**: the project's models (and its seeds and snapshots when ``resources`` names them), narrowed
  by ``select`` (dbt's selection syntax, through ``dbt ls``);
- **name**: the node's name; **id**: derived from the name like a SQL model's (``ids``, default
  1000000-1999999); **stage**: ``stage``, else the project's last;
- **parents**: the nodes of ``depends_on.nodes`` that are objects too, and, for each dbt *source* it
  reads, the Sluice object whose destination table is that source's table (``schema.identifier``, case
  insensitive; an unqualified destination is in schema ``public``), so a Sluice extract feeds the dbt models;
- **definition**: the node's file checksum and configuration from the manifest, so an unchanged model
  whose parents did not run is fresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from sluice.errors import ConfigError
from sluice.plugins.base import Settings
from sluice.project.dbt_cli import DbtError, DbtInvocation, find_executable, manifest
from sluice.project.model import ObjectSpec, Origin, StageSpec
from sluice.project.model_settings import DEFAULT_IDS
from sluice.project.model_spec import Materialized, ModelSpec
from sluice.project.models import Checker, derived_id
from sluice.project.yaml_tree import YamlMap

RESOURCES = ("model", "seed", "snapshot")
_COMMANDS = {"model": "run", "seed": "seed", "snapshot": "snapshot"}


class DbtProjectSettings(Settings):
    """One dbt project whose nodes become objects: ``dbt: {project: transform/, profiles_dir: transform/}``."""

    project: Annotated[str, Meta(description="The dbt project's folder (holding dbt_project.yml), relative to sluice.yaml.")]
    profiles_dir: Annotated[
        str | None, Meta(description="Folder of profiles.yml, relative to sluice.yaml (default: dbt's, ~/.dbt).")
    ] = None
    target: Annotated[str | None, Meta(description="The profile's target (default: the profile's own default).")] = None
    select: Annotated[
        str | None, Meta(description="dbt selection (e.g. 'tag:daily staging.*'): only these nodes become objects.")
    ] = None
    resources: Annotated[list[str], Meta(description="Node kinds that become objects: model (default), seed, snapshot.")] = (
        msgspec.field(default_factory=lambda: ["model"])
    )
    stage: Annotated[str | None, Meta(description="The stage the nodes run in (default: the project's last stage).")] = None
    ids: Annotated[str, Meta(description="Range of the ids derived from node names: 'low-high'.")] = DEFAULT_IDS
    executable: Annotated[
        str | None, Meta(description="The dbt executable (default: $SLUICE_DBT, then dbt on PATH; scripts/dbt-venv.sh).")
    ] = None


def _materialized(value: Any) -> Materialized:
    return "view" if value == "view" else "incremental" if value == "incremental" else "table"


def source_tables(objects: Mapping[int, ObjectSpec]) -> dict[str, int]:
    """Each object's destination table as a dbt source would name it (``schema.table``, lower case) -> object id."""
    tables: dict[str, int] = {}
    for obj in objects.values():
        if obj.destination is not None and obj.model is None:
            table = obj.destination.table.lower()
            tables[table if "." in table else f"public.{table}"] = obj.id
    return tables


class DbtReader:
    """Reads one ``dbt:`` entry into objects; problems go to ``checker.problems`` at the entry's line."""

    def __init__(self, checker: Checker, root: Path, stages: tuple[StageSpec, ...], objects: Mapping[int, ObjectSpec]) -> None:
        self.checker, self.root, self.stages, self.objects = checker, root, stages, objects

    def problem(self, message: str, line: int | None, file: str | None = None) -> None:
        self.checker.problems.append(ConfigError(message, file or self.checker.file, line))

    def read(self, raw: YamlMap, taken: dict[int, str]) -> dict[int, ObjectSpec]:
        """The objects of the dbt project ``raw`` describes; ``taken`` (id -> what has it) grows with them."""
        settings = self.checker.check(DbtProjectSettings, raw, "dbt")
        if settings is None:
            return {}
        line = raw.line
        folder = (self.root / settings.project).resolve()
        if not (folder / "dbt_project.yml").is_file():
            self.problem(
                f"dbt: project '{settings.project}' has no dbt_project.yml ({folder}); point it at a dbt project",
                raw.line_of("project"),
            )
            return {}
        unknown = sorted(set(settings.resources) - set(RESOURCES))
        if unknown:
            self.problem(f"dbt: resources {unknown} are not among {list(RESOURCES)}", raw.line_of("resources"))
            return {}
        bounds = settings.ids.split("-")
        if len(bounds) != 2 or not all(b.strip().isdigit() for b in bounds) or int(bounds[0]) > int(bounds[1]):
            self.problem(f"dbt: ids must look like '1000000-1999999' (low-high), got {settings.ids!r}", raw.line_of("ids"))
            return {}
        try:
            invocation = DbtInvocation(
                find_executable(settings.executable, self.root),
                folder,
                (self.root / settings.profiles_dir).resolve() if settings.profiles_dir else None,
                settings.target,
            )
            data, selected = manifest(invocation, settings.select)
        except DbtError as exc:
            self.problem(f"dbt project '{settings.project}': {exc}", line)
            return {}
        return self._objects(settings, invocation, data, selected, taken, (int(bounds[0]), int(bounds[1])), line)

    def _objects(
        self,
        settings: DbtProjectSettings,
        invocation: DbtInvocation,
        data: dict[str, Any],
        selected: set[str] | None,
        taken: dict[int, str],
        bounds: tuple[int, int],
        line: int | None,
    ) -> dict[int, ObjectSpec]:
        raw_nodes = data.get("nodes") if isinstance(data.get("nodes"), dict) else {}
        nodes: dict[str, dict[str, Any]] = {
            str(uid): node
            for uid, node in (raw_nodes or {}).items()
            if isinstance(node, dict)
            and node.get("resource_type") in settings.resources
            and (selected is None or uid in selected)
            and node.get("package_name") == data.get("metadata", {}).get("project_name", node.get("package_name"))
        }
        sources = {str(uid): src for uid, src in (data.get("sources") or {}).items() if isinstance(src, dict)}
        tables = source_tables(self.objects)
        stage = settings.stage or (self.stages[-1].name if self.stages else "application")
        ids: dict[str, int] = {}
        for uid, node in sorted(nodes.items()):
            name = str(node.get("name"))
            node_id = derived_id(name, *bounds)
            other = taken.get(node_id)
            if other is not None:
                self.problem(
                    f"dbt model {name}: its id {node_id} (derived from its name in dbt ids {settings.ids}) is also {other}; "
                    "set another dbt: ids range",
                    line,
                )
                continue
            taken[node_id] = f"dbt model {name} ({node.get('original_file_path')})"
            ids[uid] = node_id
        project_path = Path(settings.project).as_posix()
        result: dict[int, ObjectSpec] = {}
        for uid, node_id in ids.items():
            node = nodes[uid]
            depends = [str(d) for d in (node.get("depends_on") or {}).get("nodes") or []]
            parents = {d: ids[d] for d in depends if d in ids}
            fed: dict[str, str] = {}
            for dep in depends:
                src = sources.get(dep)
                if src is None:
                    continue
                table = f"{src.get('schema')}.{src.get('identifier') or src.get('name')}"
                if table.lower() in tables:
                    parents[dep] = tables[table.lower()]
                else:
                    fed[dep] = table
            config: dict[str, Any] = node["config"] if isinstance(node.get("config"), dict) else {}
            schema, alias = node.get("schema"), node.get("alias") or node.get("name")
            file = str(node.get("original_file_path") or "")
            spec = ModelSpec(
                path=f"{project_path}/{file}",
                text=str((node.get("checksum") or {}).get("checksum", "")),
                full_sql=str(node.get("raw_code") or ""),
                incremental_sql=None,
                dialect="postgres",
                materialized=_materialized(config.get("materialized")),
                unique_key=(),
                engine="dbt",
                target=f"{schema}.{alias}" if schema else str(alias),
                parents=tuple(sorted(parents.items())),
                sources=tuple(sorted(fed.items())),
                config={
                    "dbt_project": project_path,
                    "profiles_dir": settings.profiles_dir,
                    "target": settings.target,
                    "executable": settings.executable,
                    "command": _COMMANDS[str(node.get("resource_type"))],
                    "unique_id": uid,
                    "node_config": _plain(config),
                },
            )
            result[node_id] = ObjectSpec(
                id=node_id,
                name=str(node.get("name")),
                stage=stage,
                parents=tuple(dict.fromkeys(parents.values())),
                origin=Origin(str(invocation.project_dir / file), 1, (("sql", 1),)),
                lake=False,
                model=spec,
            )
        return result


def _plain(value: Any) -> Any:
    """``value`` with only JSON's types (the node's configuration, hashed into the definition)."""
    return msgspec.json.decode(msgspec.json.encode(value)) if value is not None else None


def read_dbt(
    checker: Checker, raw: Any, line: int | None, root: Path, stages: tuple[StageSpec, ...], objects: Mapping[int, ObjectSpec]
) -> dict[int, ObjectSpec]:
    """The objects of the ``dbt:`` section ``raw`` (one mapping or a list of them, at ``line``); problems to ``checker``."""
    if raw is None:
        return {}
    entries = raw if isinstance(raw, list) else [raw]
    taken: dict[int, str] = {
        obj_id: f"object {obj_id} ({obj.name}, {obj.origin.file}:{obj.origin.line})" for obj_id, obj in objects.items()
    }
    reader = DbtReader(checker, root, stages, objects)
    result: dict[int, ObjectSpec] = {}
    for entry in entries:
        if not isinstance(entry, YamlMap):
            checker.problems.append(
                ConfigError("dbt must be a mapping such as {project: transform/} or a list of them", checker.file, line)
            )
            continue
        result.update(reader.read(entry, taken))
    return result


__all__ = ["DbtProjectSettings", "read_dbt", "source_tables"]
