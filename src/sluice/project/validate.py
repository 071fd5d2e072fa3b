"""Cross-reference checks on a parsed project: parents, cycles, connections, stages, names."""

from __future__ import annotations

import re

from sluice.errors import ConfigError, did_you_mean
from sluice.graph.dag import Graph
from sluice.project.model import ObjectSpec, Project

SOURCE_SCHEMES = ("postgresql", "mysql", "sqlite", "duckdb")
DESTINATION_SCHEMES = ("postgresql", "sqlite", "duckdb")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PYTHON_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def _label(obj: ObjectSpec) -> str:
    return f"object {obj.id} ({obj.name})" if obj.name != f"obj_{obj.id}" else f"object {obj.id}"


def _problem(obj: ObjectSpec, message: str) -> ConfigError:
    return ConfigError(f"{_label(obj)}: {message}", obj.origin.file, obj.origin.line)


def validate_project(project: Project) -> list[ConfigError]:
    """Every cross-reference problem in ``project``; an empty list means it can run."""
    problems: list[ConfigError] = []
    graph = Graph({obj.id: obj.parents for obj in project.objects.values()})
    for object_id, parent in graph.unknown_parents():
        obj = project.objects[object_id]
        problems.append(_problem(obj, f"unknown parent {parent}; define object {parent} or remove it from the parents"))
    cycle = graph.find_cycle()
    if cycle is not None:
        first = project.objects[cycle[0]]
        path = " -> ".join(str(node) for node in cycle)
        problems.append(
            ConfigError(f"dependency cycle: {path}; remove one of these parent links", first.origin.file, first.origin.line)
        )
    names: dict[str, ObjectSpec] = {}
    for obj in project.objects.values():
        problems.extend(_object_problems(project, obj))
        other = names.setdefault(obj.name, obj)
        if other is not obj:
            problems.append(_problem(obj, f"name '{obj.name}' is also used by object {other.id}; names must be unique"))
    return problems


def _object_problems(project: Project, obj: ObjectSpec) -> list[ConfigError]:
    problems = []
    if obj.stage not in project.stage_names:
        hint = did_you_mean(obj.stage, project.stage_names)
        known = ", ".join(project.stage_names)
        problems.append(_problem(obj, f"unknown stage '{obj.stage}' (stages: {known}).{hint}"))
    if not _IDENTIFIER.fullmatch(obj.name):
        problems.append(_problem(obj, f"name '{obj.name}' must be an identifier (letters, digits, _) usable as a SQL table name"))
    if obj.python is not None and not _PYTHON_REF.fullmatch(obj.python):
        problems.append(_problem(obj, f"python must be 'module:function', got '{obj.python}'"))
    if obj.source is not None and obj.source.kind == "sql":
        problems.extend(_connection_problems(project, obj, obj.source.get("connection"), SOURCE_SCHEMES, "source"))
    if obj.destination is not None:
        problems.extend(_connection_problems(project, obj, obj.destination.connection, DESTINATION_SCHEMES, "destination"))
    return problems


def _connection_problems(
    project: Project, obj: ObjectSpec, name: object, schemes: tuple[str, ...], role: str
) -> list[ConfigError]:
    if not isinstance(name, str) or not name:
        return [_problem(obj, f"{role} needs a 'connection' name (one of the project's connections)")]
    connection = project.connections.get(name)
    if connection is None:
        known = ", ".join(sorted(project.connections)) or "none defined"
        hint = did_you_mean(name, project.connections)
        return [_problem(obj, f"unknown connection '{name}' in {role} (connections: {known}).{hint}")]
    if connection.scheme not in schemes:
        return [
            _problem(
                obj, f"connection '{name}' is {connection.scheme}, which cannot be a {role} (use one of: {', '.join(schemes)})"
            )
        ]
    return []
