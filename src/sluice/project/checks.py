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


def sql_columns(sql: str) -> list[str] | None:
    """The names of the columns ``sql``'s result has, or None when they cannot be told from the text.

    None for a ``*``, an expression without an alias, several statements, or SQL that does not parse.

    >>> sql_columns("select id, order_date as day, count(*) as n from orders group by 1, 2")
    ['id', 'day', 'n']
    """
    try:
        statements = [statement for statement in sqlglot.parse(sql, read="duckdb") if statement is not None]
    except ParseError:
        return None
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        return None
    query = statements[0]
    selects = query.selects
    names = query.named_selects
    if any(select.is_star for select in selects) or len(names) != len(selects) or not all(names):
        return None
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


def python_problem(ref: str, root: Path) -> str | None:
    """Why ``module:function`` cannot be found, or None: a module neither in the project folder nor
    installed, or a module file of the project that defines (or imports) no such name.

    The module is read, never imported: user code does not run at validation.
    """
    import ast
    import importlib.util

    from sluice.errors import did_you_mean

    module, _, function = ref.partition(":")
    parts = module.split(".")
    base = root.joinpath(*parts)
    file = next((f for f in (base.with_suffix(".py"), base / "__init__.py") if f.is_file()), None)
    if file is None:
        if (root / parts[0]).exists() or (root / f"{parts[0]}.py").exists():
            return f"module {module!r} is not in the project folder ({base}.py); check the name"
        try:
            installed = importlib.util.find_spec(parts[0]) is not None
        except (ImportError, ValueError):
            installed = False
        if installed:
            return None
        local = sorted(p.stem for p in root.glob("*.py")) + sorted(
            p.name for p in root.iterdir() if (p / "__init__.py").is_file()
        )
        return f"no module {module!r} in the project folder or installed.{did_you_mean(parts[0], local)}"
    try:
        tree = ast.parse(file.read_bytes(), filename=str(file))
    except (SyntaxError, ValueError):
        return None  # the run reports the syntax error with its line
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    if function in names or "*" in names or any(isinstance(n, (ast.If, ast.Try)) for n in tree.body):
        return None  # defined, or perhaps defined conditionally: the run decides
    defined = sorted(n for n in names if not n.startswith("_"))
    return f"module {module!r} ({file}) defines no {function!r}.{did_you_mean(function, defined)}"


def java_problem() -> str | None:
    """Why Spark cannot start a JVM here (no ``java`` in ``$JAVA_HOME/bin`` nor on ``PATH``), or None."""
    import os
    import shutil

    home = os.environ.get("JAVA_HOME")
    if home and os.access(os.path.join(home, "bin", "java"), os.X_OK):
        return None
    if shutil.which("java"):
        return None
    return (
        "Spark needs Java 17 or 21, which is not installed or not on PATH: install a JDK or JRE "
        "(e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    )
