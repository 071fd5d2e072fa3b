"""Read one model file: dbt's template tags (the subset Sluice understands) and the tables its SQL reads.

A model file is SQL with, optionally, the dbt tags that existing model files use (dbt's Jinja context,
https://docs.getdbt.com/reference/dbt-jinja-functions):

- ``{{ config(materialized='incremental', unique_key='id') }}``: the model's configuration, keyword
  arguments whose values are Python literals (strings, numbers, booleans, lists, dicts);
- ``{{ ref('dim_users') }}`` (or ``ref('package', 'dim_users')``, the package ignored): another model or
  object of the project, by name; rendered as that name;
- ``{{ source('crm', 'customers') }}``: a table declared as a source; rendered as ``crm.customers``;
- ``{{ this }}``: the model's own table (its previous output), rendered as :data:`THIS`;
- ``{% if is_incremental() %} ... {% else %} ... {% endif %}``: the first part only in an incremental run
  (the model's table exists already), the ``else`` part only in a full one; not nested;
- ``{# comments #}``.

Any other tag is a :class:`~sluice.errors.ConfigError` at its line: Sluice does not run Jinja (no macros,
loops or variables). Rendering keeps every line where it was, so a line of the rendered SQL is a line of
the file, and sqlglot's line numbers point into the file.

>>> text = "{{ config(materialized='table') }}\\nselect * from {{ ref('users') }}"
>>> parsed = parse_model_text(text, "models/u.sql")
>>> parsed.config, parsed.full_sql.strip()
({'materialized': 'table'}, 'select * from users')
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from sluice.errors import ConfigError

THIS = "_sluice_this"
"""What ``{{ this }}`` renders as: a table name the engine binds to the model's own previous output."""

_TAG = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}|\{%-?\s*(.*?)\s*-?%\}|\{#.*?#\}", re.DOTALL)
_STRING_ARGS = re.compile(r"""(ref|source)\s*\(\s*(.*?)\s*\)\s*$""", re.DOTALL)
_IF_INCREMENTAL = re.compile(r"if\s+is_incremental\s*\(\s*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class TableRef:
    """A table the SQL reads: as written (``name`` or ``schema.name``, lower case) and its 1-based line in the file."""

    schema: str | None
    name: str
    line: int

    @property
    def text(self) -> str:
        """The reference as written and matched: ``name`` or ``schema.name`` (lower case)."""
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True, slots=True)
class ParsedModel:
    """A model file rendered both ways, its ``config()`` arguments and the tables it reads."""

    full_sql: str
    """The SQL of a full run (``is_incremental()`` false)."""
    incremental_sql: str | None
    """The SQL of an incremental run, or None when the file has no ``is_incremental()`` block."""
    config: dict[str, Any] = field(default_factory=dict)
    config_line: int | None = None
    tables: tuple[TableRef, ...] = ()


def _lines(text: str) -> str:
    """Blank text with the newlines of ``text``: what a removed tag leaves, so later lines keep their numbers."""
    return "\n" * text.count("\n")


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _string_args(inner: str, file: str, line: int) -> list[str]:
    try:
        call = ast.parse(inner.strip(), mode="eval").body
    except SyntaxError:
        call = None
    if (
        not isinstance(call, ast.Call)
        or call.keywords
        or not all(isinstance(arg, ast.Constant) and isinstance(arg.value, str) for arg in call.args)
    ):
        raise ConfigError(f"'{{{{ {inner} }}}}' must name tables with quoted strings, e.g. {{{{ ref('users') }}}}", file, line)
    return [arg.value for arg in call.args if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]


def _config(inner: str, file: str, line: int) -> dict[str, Any]:
    try:
        call = ast.parse(inner.strip(), mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            raise ValueError
        return {str(kw.arg): ast.literal_eval(kw.value) for kw in call.keywords if kw.arg is not None}
    except (SyntaxError, ValueError):
        raise ConfigError(
            f"'{{{{ {' '.join(inner.split())} }}}}': config() takes keyword arguments with literal values, "
            "e.g. {{ config(materialized='incremental', unique_key='id') }}",
            file,
            line,
        ) from None


def _expression(inner: str, file: str, line: int) -> str:
    """What ``{{ inner }}`` renders as."""
    if inner == "this":
        return THIS
    match = _STRING_ARGS.match(inner)
    if match is None:
        raise ConfigError(
            f"unsupported template expression '{{{{ {inner} }}}}'; model files may use ref(), source(), this, config() "
            "and is_incremental() only (docs/models.md)",
            file,
            line,
        )
    args = _string_args(inner, file, line)
    if match.group(1) == "ref":
        if len(args) not in (1, 2):
            raise ConfigError(f"'{{{{ {inner} }}}}': ref() takes a model name (and optionally a package first)", file, line)
        return _name(args[-1])
    if len(args) != 2:
        raise ConfigError(f"'{{{{ {inner} }}}}': source() takes a source name and a table name", file, line)
    return f"{_name(args[0])}.{_name(args[1])}"


def _name(name: str) -> str:
    return name if _IDENTIFIER.fullmatch(name) else '"' + name.replace('"', '""') + '"'


def render(text: str, file: str) -> tuple[str, str | None, dict[str, Any], int | None]:
    """``text`` rendered for a full and an incremental run, its ``config()`` arguments and their line.

    Raises ConfigError (file and line) for a tag Sluice does not support or a malformed one.
    """
    full: list[str] = []
    incremental: list[str] = []
    config: dict[str, Any] = {}
    config_line: int | None = None
    block: str | None = None  # None outside an is_incremental() block, "if" or "else" inside
    block_line = 0
    seen_block = False
    position = 0
    for match in _TAG.finditer(text):
        line = _line_at(text, match.start())
        plain = text[position : match.start()]
        full.append(plain if block != "if" else _lines(plain))
        incremental.append(plain if block != "else" else _lines(plain))
        position = match.end()
        raw = match.group(0)
        expression, statement = match.group(1), match.group(2)
        rendered = _lines(raw)
        if expression is not None:
            if re.match(r"config\s*\(", expression):
                config.update(_config(expression, file, line))
                config_line = config_line or line
            else:
                rendered = _expression(" ".join(expression.split()), file, line) + _lines(raw)
        elif statement is not None:
            words = " ".join(statement.split())
            if _IF_INCREMENTAL.fullmatch(words) and block is None:
                block, block_line, seen_block = "if", line, True
            elif words == "else" and block == "if":
                block = "else"
            elif words == "endif" and block is not None:
                block = None
            else:
                raise ConfigError(
                    f"unsupported template tag '{{% {words} %}}'; model files may use "
                    "{% if is_incremental() %} ... {% else %} ... {% endif %} (not nested) only (docs/models.md)",
                    file,
                    line,
                )
        full.append(rendered if block != "if" else _lines(raw))
        incremental.append(rendered if block != "else" else _lines(raw))
    if block is not None:
        raise ConfigError("{% if is_incremental() %} has no {% endif %}; close the block", file, block_line)
    rest = text[position:]
    full.append(rest)
    incremental.append(rest)
    return "".join(full), ("".join(incremental) if seen_block else None), config, config_line


def sql_error_line(error: ParseError) -> int | None:
    """The 1-based line of the SQL (so of the model file, rendering keeps lines) sqlglot's error points at."""
    detail = error.errors[0] if error.errors else {}
    line = detail.get("line")
    return int(line) if isinstance(line, int) else None


def read_tables(sql: str, dialect: str, file: str) -> list[TableRef]:
    """The tables ``sql`` reads (not CTE names, not table functions, not :data:`THIS`), each once, in order.

    ``dialect`` is sqlglot's name for the SQL's dialect (``duckdb``, ``postgres``...). Raises ConfigError
    with the file's line for SQL that does not parse or is not a query.
    """
    from sluice.project.checks import syntax_error

    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as exc:
        raise ConfigError(syntax_error(exc).replace(" of the SQL", ""), file, sql_error_line(exc)) from None
    except (SqlglotError, ValueError) as exc:
        known = "duckdb, postgres, spark, bigquery, snowflake... (sqlglot's dialect names)"
        why = " ".join(str(exc).split()).rstrip(".")
        raise ConfigError(f"SQL cannot be read as {dialect!r}: {why}; dialect is one of {known}", file) from None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise ConfigError("a model's SQL must be one query (SELECT ... or WITH ... SELECT ...)", file)
    ctes = {cte.alias_or_name.lower() for cte in statements[0].find_all(exp.CTE)}
    found: dict[str, TableRef] = {}
    for table in statements[0].find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue
        name, schema = table.name.lower(), (table.db.lower() or None)
        if name == THIS or (schema is None and name in ctes):
            continue
        line = table.this.meta.get("line")
        ref = TableRef(schema, name, int(line) if isinstance(line, int) else 1)
        found.setdefault(ref.text, ref)
    return sorted(found.values(), key=lambda ref: ref.line)


def parse_model_text(text: str, file: str, dialect: str | None = None) -> ParsedModel:
    """Render ``text`` (a model file's content) and read its tables in ``dialect`` (default: the config's
    ``dialect``, else ``duckdb``). Raises ConfigError at the file's line on a problem."""
    full, incremental, config, config_line = render(text, file)
    chosen = dialect or str(config.get("dialect") or "duckdb")
    tables = read_tables(full, chosen, file)
    if incremental is not None:
        seen = {t.text for t in tables}
        tables += [t for t in read_tables(incremental, chosen, file) if t.text not in seen]
    return ParsedModel(full, incremental, config, config_line, tuple(tables))
