"""Cross-reference checks on a parsed project: parents, cycles, stages, names, destinations that clash.

Options of sources, destinations and engines are checked where they are read (each at its line);
what needs the whole project is checked here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from sqlglot.errors import ParseError

from sluice.checks.validate import check_problems
from sluice.connectors.plugins import FileOptions
from sluice.errors import ConfigError, did_you_mean
from sluice.graph.dag import Graph
from sluice.project.checks import java_problem, missing_file, python_problem, sql_columns, sql_tables, syntax_error
from sluice.project.model import ObjectSpec, Project, layer_of
from sluice.scheduling.templating import has_template, render_text, template_context
from sluice.server.serve_settings import control_token

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def object_label(obj: ObjectSpec) -> str:
    """How messages name ``obj``: ``object 1001 (orders)``, ``object 1001`` when it has no name of its own."""
    return f"object {obj.id} ({obj.name})" if obj.name != f"obj_{obj.id}" else f"object {obj.id}"


def object_problem(obj: ObjectSpec, message: str, key: str | None = None) -> ConfigError:
    """The problem ``message`` of ``obj``, named as messages name objects, at the line of its ``key`` (``source``...;
    None: the object's own line) in its definition file."""
    return ConfigError(
        f"{object_label(obj)}: {message}", obj.origin.file, obj.origin.line if key is None else obj.origin.line_of(key)
    )


def validate_project(project: Project) -> list[ConfigError]:
    """Every cross-reference problem in ``project``; an empty list means it can run."""
    problems: list[ConfigError] = []
    graph = Graph({obj.id: obj.parents for obj in project.objects.values()})
    for object_id, parent in graph.unknown_parents():
        obj = project.objects[object_id]
        problems.append(object_problem(obj, f"unknown parent {parent}; define object {parent} or remove it from the parents"))
    cycle = graph.find_cycle()
    if cycle is not None:
        first = project.objects[cycle[0]]
        if all(project.objects[node].model is not None for node in cycle):
            path = " -> ".join(f"{project.objects[node].name} ({project.objects[node].origin.file})" for node in cycle)
            problems.append(
                ConfigError(
                    f"dependency cycle among models: {path} (each is read by the next); remove one of these reads",
                    first.origin.file,
                )
            )
        else:
            path = " -> ".join(str(node) for node in cycle)
            problems.append(
                ConfigError(f"dependency cycle: {path}; remove one of these parent links", first.origin.file, first.origin.line)
            )
    names: dict[tuple[str, str], ObjectSpec] = {}
    for obj in project.objects.values():
        problems.extend(_object_problems(project, obj))
        other = names.setdefault((layer_of(project, obj), obj.name), obj)
        if other is not obj:
            problems.append(object_problem(obj, _name_clash(project, obj, other)))
    problems.extend(destination_clashes(project))
    problems.extend(lake_problems(project))
    problems.extend(check_problems(project))
    return problems


def lake_problems(project: Project) -> list[ConfigError]:
    """An S3 lake's ``layers`` that miss a layer the objects write (with no ``url`` to fall back on) or name a
    layer no stage or object has (a typo), and Spark objects on an S3 lake (Spark writes its parts only into the local
    lake, :meth:`~sluice.lake.base.Lake.stage`)."""
    if project.lake.kind != "s3" or project.lake.options is None:
        return []
    layers: dict[str, str] = dict(getattr(project.lake.options, "layers", {}) or {})
    url = str(getattr(project.lake.options, "url", "") or "")
    used = {layer_of(project, obj): obj for obj in sorted(project.objects.values(), key=lambda o: o.id)}
    file = str(project.source_file)
    problems = []
    known = sorted(set(used) | {stage.layer for stage in project.stages})
    for layer in sorted(set(layers) - set(known)):
        hint = did_you_mean(layer, [name for name in known if name not in layers])
        problems.append(
            ConfigError(f"lake: layers: {layer!r} is no stage's or object's layer.{hint} Layers: {', '.join(known)}", file)
        )
    if not url:
        for layer, obj in sorted(used.items()):
            if layer not in layers:
                why = f"writes lake layer {layer!r}, which 'lake: layers' does not map; map it to a bucket or give 'lake: url'"
                problems.append(object_problem(obj, why))
    for obj in sorted(project.objects.values(), key=lambda o: o.id):
        if obj.engine == "spark" and obj.streaming is None:  # streaming objects write through s3a (docs/engines.md)
            why = (
                "engine spark needs the local lake (Spark batch objects cannot write into the S3 lake yet; streaming "
                "objects can); use engine duckdb or a local lake"
            )
            problems.append(object_problem(obj, why, "engine"))
    return problems


def ahead_of_run(project: Project) -> list[ConfigError]:
    """What would fail only when an object runs: SQL that does not parse or reads a table that is not a
    parent (sqlglot), a Python transform whose module or function cannot be found, file sources whose
    file is missing now; a control token source named by ``serve:`` that gives no token (a variable unset, a file
    missing or empty: ``sluice serve`` refuses to start then).

    ``sluice validate`` reports these; a run does not refuse to start for them (DuckDB, not sqlglot, is
    the authority on SQL, and a file may appear before its object runs): such an object fails with a
    TerminalError when it runs. Spark objects with a local master and no Java are reported here too.
    """
    problems = []
    spark = [obj for obj in project.objects.values() if obj.engine == "spark"]
    if spark and project.spark.master.startswith("local"):
        why = java_problem()
        if why:
            first = min(spark, key=lambda obj: obj.id)
            problems.append(object_problem(first, why, "engine"))
    if project.serve is not None:
        try:
            control_token(project)
        except ConfigError as exc:
            problems.append(exc)
    sample = template_context(datetime.now(UTC))  # {{ ds }} and friends (docs/schedules.md): checked rendered
    for obj in project.objects.values():
        sql = obj.sql
        if sql is not None and obj.model is None and has_template(sql):
            try:
                sql = render_text(sql, sample, "sql", obj, "sql")
            except ConfigError as exc:
                problems.append(exc)
                sql = None
        if sql is not None:
            problems.extend(_sql_problems(project, obj, sql))
            problems.extend(_destination_columns(obj, sql))
        for key, ref in (("python", obj.python), ("pyspark", obj.pyspark)):
            why = python_problem(ref, project.root) if ref is not None else None
            if why:
                problems.append(object_problem(obj, f"{key} {ref!r}: {why}", key))
        # a file source's path (a REST source's `path` is an endpoint, not a file)
        options = obj.source.options if obj.source is not None else None
        path = options.path if isinstance(options, FileOptions) else None
        if isinstance(path, str) and path and not has_template(path):  # a templated path is known per run
            resolved = missing_file(path, project.root)
            if resolved is not None:
                what = "is a folder, not a file" if resolved.is_dir() else "does not exist"
                kind = obj.source.kind if obj.source else ""
                message = (
                    f"{kind} source path '{path}' {what} (looked for {resolved}); relative paths start at the project folder"
                )
                problems.append(object_problem(obj, message, "source"))
    return problems


def _destination_columns(obj: ObjectSpec, sql: str) -> list[ConfigError]:
    """Columns the destination's options name (partition_by, primary_key, indexes) that the SQL's result lacks."""
    declared = obj.destination.declared_columns() if obj.destination is not None else []
    columns = sql_columns(sql) if declared else None
    if columns is None:
        return []
    problems = []
    for option, column in declared:
        if column not in columns:
            problems.append(
                ConfigError(
                    f"{object_label(obj)}: destination {option} names column '{column}', which the SQL does not select "
                    f"(it selects: {', '.join(columns)}).{did_you_mean(column, columns)} Fix the {option} or the SQL",
                    obj.origin.file,
                    obj.origin.line_of("destination"),
                )
            )
    return problems


def _name_clash(project: Project, obj: ObjectSpec, other: ObjectSpec) -> str:
    """Two objects of one stage (or of two stages writing one lake layer) share a name."""
    where = f"in stage {obj.stage}"
    if other.stage != obj.stage:
        where = f"in stage {other.stage}, which writes the same lake layer '{layer_of(project, obj)}'"
    return f"name '{obj.name}' is also used by object {other.id} {where}; names must be unique within a stage, rename one"


def destination_clashes(project: Project) -> list[ConfigError]:
    """Objects whose writes to one table undo each other: ``replace`` with anything, ``merge`` on different keys.

    Two objects may append to the same table, or merge into it on the same key; any other pair is
    reported once, naming both objects.
    """
    writers: dict[tuple[str, str], list[ObjectSpec]] = {}
    for obj in sorted(project.objects.values(), key=lambda o: o.id):
        if obj.destination is not None:
            table = _unqualified(project, obj.destination.connection, obj.destination.table)
            writers.setdefault((obj.destination.connection, table), []).append(obj)
    problems = []
    for (connection, _), objs in writers.items():
        for index, second in enumerate(objs):
            for first in objs[:index]:
                why = _clash(first, second)
                if why:
                    table = second.destination.table if second.destination else ""
                    problems.append(
                        object_problem(
                            second,
                            f"writes table '{table}' on connection '{connection}' like {object_label(first)} "
                            f"(line {first.origin.line}), and {why}; give each its own table, or append/merge on the same key",
                        )
                    )
                    break
    return problems


DEFAULT_SCHEMAS = {"postgresql": "public.", "duckdb": "main.", "sqlite": "main."}


def _unqualified(project: Project, connection: str, table: str) -> str:
    """``table`` as the database sees it: lower case, without the connection's default schema (``public.``, ``main.``)."""
    name = table.lower()
    spec = project.connections.get(connection)
    default = DEFAULT_SCHEMAS.get(spec.scheme, "") if spec is not None else ""
    return name.removeprefix(default) if default else name


def _clash(first: ObjectSpec, second: ObjectSpec) -> str:
    a, b = first.destination, second.destination
    assert a is not None and b is not None
    if "replace" in (a.mode, b.mode):
        return "mode replace would drop the other object's rows"
    if a.mode == "merge" and b.mode == "merge" and tuple(a.key) != tuple(b.key):
        return f"they merge on different keys ({', '.join(a.key)} vs {', '.join(b.key)})"
    return ""


def _object_problems(project: Project, obj: ObjectSpec) -> list[ConfigError]:
    problems = []
    if obj.stage not in project.stage_names:
        hint = did_you_mean(obj.stage, project.stage_names)
        known = ", ".join(project.stage_names)
        problems.append(object_problem(obj, f"unknown stage '{obj.stage}' (stages: {known}).{hint}"))
    if not _IDENTIFIER.fullmatch(obj.name):
        problems.append(
            object_problem(obj, f"name '{obj.name}' must be an identifier (letters, digits, _) usable as a SQL table name")
        )
    if obj.destination is not None and has_template(obj.destination.table):
        problems.append(
            object_problem(
                obj,
                f"destination table '{obj.destination.table}' holds a template: {{{{ ds }}}} and friends are rendered in "
                "sql: and source options only (docs/schedules.md); give a plain table name and put the date in a column "
                "(mode append, or merge with a key holding it)",
            )
        )
    return problems


def _sql_problems(project: Project, obj: ObjectSpec, sql: str) -> list[ConfigError]:
    """A SQL syntax error, or the tables the SQL reads that are not among the object's parents."""
    try:
        tables = sql_tables(sql)
    except ParseError as exc:
        return [object_problem(obj, syntax_error(exc), "sql")]
    parents = [project.objects[parent].name for parent in obj.parents if parent in project.objects]
    known = {name.lower() for name in parents}
    problems = []
    for table in tables:
        if table.lower() not in known:
            readable = ", ".join(parents) if parents else "none: give the object parents"
            hint = did_you_mean(table, parents)
            why = f"the SQL reads '{table}', which is not one of its parents.{hint} It can read its parents, by name: {readable}"
            problems.append(object_problem(obj, why, "sql"))
    return problems
