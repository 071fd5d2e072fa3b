"""Checks that need more than the definition file: the tables a SQL transform reads, the files sources read.

They find at ``sluice validate`` what would otherwise fail only when the object runs. SQL is parsed
with sqlglot (DuckDB dialect); nothing here imports the runtime.

>>> sql_tables("with a as (select * from users) select * from a join read_parquet('x.parquet') on true")
['users']
"""

from __future__ import annotations

from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError


def sql_tables(sql: str) -> list[str]:
    """The tables ``sql`` reads, in order, without CTE names, table functions or schema-qualified names.

    Raises sqlglot's ParseError for SQL that does not parse.
    """
    statements = [statement for statement in sqlglot.parse(sql, read="duckdb") if statement is not None]
    ctes = {cte.alias_or_name.lower() for statement in statements for cte in statement.find_all(exp.CTE)}
    names: dict[str, None] = {}
    for statement in statements:
        for table in statement.find_all(exp.Table):
            if isinstance(table.this, exp.Identifier) and not table.db and table.name.lower() not in ctes:
                names.setdefault(table.name, None)
    return list(names)


def syntax_error(error: ParseError) -> str:
    """sqlglot's error in one line: what it expected and where (line and column of the SQL)."""
    detail = error.errors[0] if error.errors else {}
    description = str(detail.get("description") or str(error).splitlines()[0]).rstrip(".")
    line, col = detail.get("line"), detail.get("col")
    near = str(detail.get("highlight") or "").strip()
    where = f" at line {line}, column {col} of the SQL" if line and col else ""
    return f"SQL syntax error{where}{f' near {near!r}' if near else ''}: {description}"


def missing_file(configured: str, root: Path) -> Path | None:
    """The resolved path of a file source's ``path`` when no file is there, else None."""
    path = Path(configured).expanduser()
    resolved = path if path.is_absolute() else (root / path).resolve()
    return None if resolved.is_file() else resolved
