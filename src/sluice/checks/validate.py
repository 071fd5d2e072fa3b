"""What a project's checks need from the rest of it, found by ``sluice validate``: a place to run, the columns they
name among those an object's SQL returns (when its text tells them), and the objects a ``relationships`` check
refers to, with an output in the same place."""

from __future__ import annotations

from sluice.checks.places import find_object, postgres_table, where
from sluice.checks.settings import CheckOptions, RelationshipsOptions
from sluice.errors import ConfigError, did_you_mean
from sluice.graph.dag import Graph
from sluice.project.checks import sql_columns
from sluice.project.model import ObjectSpec, Project


def check_problems(project: Project) -> list[ConfigError]:
    """Every problem of the checks of ``project``'s objects, each at its check's line."""
    problems: list[ConfigError] = []
    for obj in project.objects.values():
        if not obj.checks:
            continue
        label = f"object {obj.id} ({obj.name})"
        found = where(project, obj)
        if isinstance(found, str):
            problems.append(ConfigError(f"{label}: its checks cannot run: {found}", obj.origin.file, obj.checks[0].line))
            continue
        if obj.streaming is not None:
            problems.append(
                ConfigError(
                    f"{label}: a streaming object's output has no write to check; check a batch child",
                    obj.origin.file,
                    obj.checks[0].line,
                )
            )
        known = sql_columns(obj.sql) if obj.sql is not None and obj.model is None else None
        for spec in obj.checks:
            missing = [c for c in checked_columns(spec.options) if known is not None and c.lower() not in map(str.lower, known)]
            if missing and known is not None:
                hint = did_you_mean(missing[0], known)
                problems.append(
                    ConfigError(
                        f"{label}: check {spec.name}: column {missing[0]!r} is not among the columns its SQL returns "
                        f"({', '.join(known)}).{hint}",
                        obj.origin.file,
                        spec.line,
                    )
                )
            if isinstance(spec.options, RelationshipsOptions):
                why = _reference_problem(project, obj, spec.options.to, found.connection)
                if why:
                    problems.append(ConfigError(f"{label}: check {spec.name}: {why}", obj.origin.file, spec.line))
    return problems


def checked_columns(options: CheckOptions) -> list[str]:
    """The output's columns a built-in check names (none for ``expression``, ``sql``, ``python``, ``row_count``)."""
    columns = getattr(options, "columns", None)
    column = getattr(options, "column", None)
    return [*(columns or []), *([column] if isinstance(column, str) else [])]


def _reference_problem(project: Project, obj: ObjectSpec, target: int | str, connection: str | None) -> str:
    other = find_object(project, target)
    if other is None:
        names = [o.name for o in project.objects.values()]
        return f"relationships to {target!r}: no such object.{did_you_mean(str(target), names)} Give an object's id or name"
    if other.id not in Graph({o.id: o.parents for o in project.objects.values()}).ancestors([obj.id]):
        return (
            f"relationships to object {other.id} ({other.name}): it is not an ancestor, so its output may not be written "
            f"when the check runs; add {other.id} to parents"
        )
    if connection is not None:
        table = postgres_table(project, other)
        if table is None or table[0] != connection:
            return (
                f"relationships to object {other.id} ({other.name}): this object is checked in '{connection}' "
                f"(PostgreSQL), where {other.name} has no table; load it into '{connection}' too"
            )
    elif not other.lake:
        return f"relationships to object {other.id} ({other.name}): it keeps no lake copy to check against"
    return ""
