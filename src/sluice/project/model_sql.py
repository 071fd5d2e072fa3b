"""Read one model file: its template rendered (:mod:`sluice.project.model_jinja`, Jinja2) and the tables its SQL reads.

>>> text = "{{ config(materialized='table') }}\\nselect * from {{ ref('users') }}"
>>> parsed = parse_model_text(text, "models/u.sql")
>>> parsed.config, parsed.full_sql.strip()
({'materialized': 'table'}, 'select * from users')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from sluice.errors import ConfigError
from sluice.project.model_jinja import THIS, render

__all__ = ["THIS", "ParsedModel", "TableRef", "parse_model_text", "read_tables", "render", "sql_error_line"]


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


def parse_model_text(text: str, file: str, dialect: str | None = None, variables: Mapping[str, Any] | None = None) -> ParsedModel:
    """Render ``text`` (a model file's content; ``variables`` for ``var()``) and read its tables in ``dialect``
    (default: the config's ``dialect``, else ``duckdb``). Raises ConfigError at the file's line on a problem."""
    full, incremental, config, config_line = render(text, file, variables)
    chosen = dialect or str(config.get("dialect") or "duckdb")
    tables = read_tables(full, chosen, file)
    if incremental is not None:
        seen = {t.text for t in tables}
        tables += [t for t in read_tables(incremental, chosen, file) if t.text not in seen]
    return ParsedModel(full, incremental, config, config_line, tuple(tables))
