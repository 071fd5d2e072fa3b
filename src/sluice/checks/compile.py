"""One query per check, in the dialect of the place it runs in (sqlglot): the failing rows counted and sampled.

The check's failing-rows query ``q`` (DuckDB's dialect, as every SQL of a Sluice project) becomes::

    SELECT f.*, COUNT(*) OVER () AS sluice_failing_rows FROM (q) AS f LIMIT <sample or 1>

so the place scans once and returns at most ``sample`` rows, each carrying the total: nothing else leaves the
database. No row back means no failing row.

>>> print(check_query("SELECT id FROM t WHERE x IS NULL", 5, "postgres"))
SELECT f.*, COUNT(*) OVER () AS sluice_failing_rows FROM (SELECT id FROM t WHERE x IS NULL) AS f LIMIT 5
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError

from sluice.errors import TerminalError

COUNT_COLUMN = "sluice_failing_rows"
DIALECTS = {"duckdb": "duckdb", "postgres": "postgres", "spark": "spark"}


def parse_query(sql: str) -> exp.Query:
    """``sql`` as one query (DuckDB's dialect). Raises ParseError, or TerminalError when it is not one SELECT."""
    statements = [statement for statement in sqlglot.parse(sql, read="duckdb") if statement is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Query):
        raise TerminalError("a check's SQL must be one query (SELECT ...) returning the failing rows")
    return statements[0]


def check_query(failing_sql: str, sample: int, place: str) -> str:
    """The query that counts and samples ``failing_sql``'s rows, for ``place`` (``duckdb``, ``postgres``, ``spark``).

    Raises TerminalError when the SQL does not parse or cannot be written in that dialect.
    """
    try:
        inner = parse_query(failing_sql)
        count = exp.alias_(exp.Window(this=exp.Count(this=exp.Star())), COUNT_COLUMN)
        star = exp.Column(this=exp.Star(), table=exp.to_identifier("f"))
        query = exp.select(star, count).from_(exp.alias_(exp.Subquery(this=inner), "f", table=True)).limit(max(sample, 1))
        return query.sql(DIALECTS[place])
    except (ParseError, SqlglotError) as exc:
        raise TerminalError(f"the check's SQL cannot be compiled for {place}: {str(exc).splitlines()[0]}") from exc


def batch_query(aggregates: list[str], this: str, place: str) -> str:
    """One scan of ``this`` computing each aggregate (DuckDB's dialect) as ``c0``, ``c1``..., for ``place``.

    >>> batch_query(["COUNT(*) FILTER(WHERE a IS NULL)", "COUNT(*)"], "t", "spark")
    'SELECT COUNT(*) FILTER(WHERE a IS NULL) AS c0, COUNT(*) AS c1 FROM t'
    """
    columns = [exp.alias_(sqlglot.parse_one(text, read="duckdb"), f"c{i}") for i, text in enumerate(aggregates)]
    return exp.select(*columns).from_(exp.to_table(this, dialect="duckdb")).sql(DIALECTS[place])


def sample_query(failing_sql: str, sample: int, place: str) -> str:
    """The first ``sample`` failing rows only (the count known already): the place may stop early."""
    inner = parse_query(failing_sql)
    return exp.select(exp.Star()).from_(exp.alias_(exp.Subquery(this=inner), "f", table=True)).limit(sample).sql(DIALECTS[place])


def sample_texts(columns: list[str], rows: list[tuple[object, ...]], sample: int) -> list[str]:
    """Up to ``sample`` rows as ``col=value, ...`` text (at most 200 characters each; SQL's NULL as ``null``)."""
    return [
        ", ".join(f"{c}={'null' if v is None else v}" for c, v in zip(columns, row, strict=False))[:200] for row in rows[:sample]
    ]


def read_result(columns: list[str], rows: list[tuple[object, ...]], sample: int) -> tuple[int, list[str]]:
    """The failing-row count and up to ``sample`` rows as ``col=value, ...`` text, from :func:`check_query`'s result.

    >>> read_result(["id", COUNT_COLUMN], [(7, 12), (9, 12)], 5)
    (12, ['id=7', 'id=9'])
    """
    if not rows:
        return 0, []
    index = columns.index(COUNT_COLUMN) if COUNT_COLUMN in columns else len(columns) - 1
    shown = [i for i in range(len(columns)) if i != index]
    texts = sample_texts([columns[i] for i in shown], [tuple(row[i] for i in shown) for row in rows], sample)
    return int(rows[0][index]), texts  # type: ignore[call-overload]
