"""What a project's checks need from the rest of it, found by ``sluice validate``: a place to run, the columns they
name among those an object's SQL returns (when its text tells them), and the objects a ``relationships`` check
refers to, with an output in the same place."""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from sluice.checks.places import find_object, postgres_table, where
from sluice.checks.settings import CheckOptions, ExpressionOptions, PythonOptions, RelationshipsOptions
from sluice.errors import ConfigError, did_you_mean
from sluice.graph.dag import Graph
from sluice.project.checks import python_problem, sql_columns
from sluice.project.model import ObjectSpec, Project

PYTHON_HINT = "A python check is module:function, the module a .py file of the project folder or an installed package"


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
        appended = obj.destination is not None and obj.destination.mode == "append" and found.place != "postgres"
        if appended and any(spec.severity == "error" for spec in obj.checks):
            assert obj.destination is not None
            problems.append(
                ConfigError(
                    f"{label}: destination table '{obj.destination.table}' (mode append, connection "
                    f"'{obj.destination.connection}') commits its rows before the checks run (only PostgreSQL runs them "
                    "inside the load), so a failed error check would leave them there and a run made again would append "
                    "them twice; give the destination mode merge (with a key) or replace, or the checks severity: warn",
                    obj.origin.file,
                    obj.checks[0].line,
                )
            )
        if obj.streaming is not None:
            problems.append(
                ConfigError(
                    f"{label}: a streaming object's output has no write to check; check a batch child",
                    obj.origin.file,
                    obj.checks[0].line,
                )
            )
        known = output_columns(project, obj)
        for spec in obj.checks:
            if isinstance(spec.options, PythonOptions):
                why = python_problem(spec.options.function, project.root)
                if why:
                    problems.append(
                        ConfigError(
                            f"{label}: check {spec.name}: python {spec.options.function!r}: {why} {PYTHON_HINT}",
                            obj.origin.file,
                            spec.line,
                        )
                    )
            named = checked_columns(spec.options)
            if isinstance(spec.options, ExpressionOptions):
                named = expression_columns(spec.options.expression)
            missing = [c for c in named if known is not None and c.lower() not in map(str.lower, known)]
            if missing and known is not None:
                hint = did_you_mean(missing[0], known)
                problems.append(
                    ConfigError(
                        f"{label}: check {spec.name}: column {missing[0]!r} is not among the columns its output has "
                        f"({', '.join(known)}).{hint} Name one of them in the check, or select it in the object's SQL",
                        obj.origin.file,
                        spec.line,
                    )
                )
            if isinstance(spec.options, RelationshipsOptions):
                why = _reference_problem(project, obj, spec.options.to, found.connection) or _field_problem(project, spec.options)
                if why:
                    problems.append(ConfigError(f"{label}: check {spec.name}: {why}", obj.origin.file, spec.line))
    return problems


def checked_columns(options: CheckOptions) -> list[str]:
    """The output's columns a built-in check names (none for ``expression``, ``sql``, ``python``, ``row_count``)."""
    columns = getattr(options, "columns", None)
    column = getattr(options, "column", None)
    return [*(columns or []), *([column] if isinstance(column, str) else [])]


def output_columns(project: Project, obj: ObjectSpec, seen: frozenset[int] = frozenset()) -> list[str] | None:
    """The columns ``obj``'s output has, when its definition tells them, else None: those its SQL selects by name
    (``select *`` from one parent: that parent's, when known), or a Faker source's schema."""
    if obj.model is not None or obj.id in seen:
        return None
    if obj.sql is not None:
        named = sql_columns(obj.sql)
        return named if named is not None else _star_columns(project, obj, seen | {obj.id})
    if obj.source is not None and obj.source.kind == "faker":
        from sluice.connectors.faker_source import SCHEMAS

        schema = SCHEMAS.get(str(getattr(obj.source.options, "schema", "")))
        return list(schema.names) if schema is not None else None
    return None


def _star_columns(project: Project, obj: ObjectSpec, seen: frozenset[int]) -> list[str] | None:
    """``select *[, expr as name...] from parent [where ...]``: the parent's known columns and the named ones."""
    try:
        statements = sqlglot.parse(obj.sql or "", read="duckdb")
    except ParseError:
        return None
    query = statements[0] if len(statements) == 1 else None
    if not isinstance(query, exp.Select) or query.args.get("joins") or query.args.get("with_") or query.args.get("with"):
        return None
    source = query.args.get("from_") or query.args.get("from")
    table = source.this if isinstance(source, exp.From) else None
    if not isinstance(table, exp.Table) or table.db:
        return None
    parent = next(
        (project.objects[p] for p in obj.parents if p in project.objects and project.objects[p].name == table.name), None
    )
    stars = [select for select in query.selects if select.is_star]
    if parent is None or len(stars) != 1 or (isinstance(stars[0], exp.Column) and stars[0].table):
        return None
    inherited = output_columns(project, parent, seen)
    if inherited is None or any(not select.alias_or_name for select in query.selects if not select.is_star):
        return None
    return [*inherited, *(select.alias_or_name for select in query.selects if not select.is_star)]


def expression_columns(expression: str) -> list[str]:
    """The unqualified columns an ``expression`` check's condition names, in order (a lambda's parameters are not
    columns to sqlglot; a subquery's columns are its tables', not the output's).

    >>> expression_columns("amount > 0 and user_id in (select id from users)")
    ['amount', 'user_id']
    """
    try:
        tree = sqlglot.parse_one(expression, read="duckdb")
    except ParseError:
        return []
    names: dict[str, None] = {}
    for column in tree.find_all(exp.Column, bfs=False):
        if not column.table and column.name and column.find_ancestor(exp.Subquery, exp.Select) is None:
            names.setdefault(column.name, None)
    return list(names)


def _field_problem(project: Project, options: RelationshipsOptions) -> str:
    other = find_object(project, options.to)
    known = output_columns(project, other) if other is not None else None
    field = options.field or options.column
    if other is None or known is None or field.lower() in map(str.lower, known):
        return ""
    which = "field" if options.field else "column (the default field)"
    return (
        f"relationships to object {other.id} ({other.name}): its {which} {field!r} is not among the columns it returns "
        f"({', '.join(known)}).{did_you_mean(field, known)} Give its column as field"
    )


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
