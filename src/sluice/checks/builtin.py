"""The built-in check types: each returns the SQL (DuckDB's dialect) of its failing rows over ``context.this``.

A check plugin's target is a callable ``(options, context) -> str | Counted``: a query returning the failing
rows (compiled for the place and run there by :mod:`sluice.checks.compile`), or, for a check that counted
them itself (``python``), the count and the sample. The idea of "a test is a query returning its failing
rows" is dbt's (``dbt test``); the types follow dbt's generic tests and Soda's checks.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import sqlglot
from sqlglot import exp

from sluice.checks.settings import (
    AcceptedValuesOptions,
    CheckOptions,
    ExpressionOptions,
    FreshnessOptions,
    NotNullOptions,
    PythonOptions,
    RelationshipsOptions,
    RowCountOptions,
    SqlOptions,
    UniqueOptions,
)
from sluice.errors import TerminalError

THIS_PLACEHOLDER = "{{ this }}"


@dataclass(frozen=True, slots=True)
class Counted:
    """A check's result when it counted its failing rows itself: the count and up to ``sample`` keys as text."""

    failing_rows: int
    sample: list[str] = field(default_factory=list)


class CheckContext(Protocol):
    """What a check type gets besides its options.

    - ``this``: the output as a table name in SQL (a view in DuckDB and Spark, the table itself in PostgreSQL);
    - ``keys``: the output's key columns when known (a destination's ``key``, a model's ``unique_key``), else ();
    - ``now``: the check's time (UTC, tz-aware); ``place``: ``duckdb``, ``postgres`` or ``spark``;
    - ``connection``: the place's connection (a DuckDB connection, a psycopg connection, a Spark session);
    - ``root``: the project folder; :meth:`ref`: another object's output as a table name in the same place.
    """

    this: str
    keys: tuple[str, ...]
    now: datetime
    place: str
    connection: Any
    root: Path

    def ref(self, target: int | str) -> str:
        """The output of the object ``target`` (id or name) as a table name here; TerminalError when it has none here."""


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(exp.to_identifier(name, quoted=True), table=exp.to_identifier(table) if table else None)


def _table(name: str, alias: str | None = None) -> exp.Expr:
    """A table name as given by the context (``"analytics"."dim_users"`` or ``sluice_this``), parsed, aliased."""
    table = exp.to_table(name, dialect="duckdb")
    return exp.alias_(table, alias, table=True) if alias else table


def _shown(columns: list[str], context: CheckContext) -> list[exp.Expression]:
    """What a failing row shows in the sample: the output's keys and ``columns``, without repeats."""
    names = list(dict.fromkeys([*context.keys, *columns]))
    return [_col(name) for name in names]


def not_null(options: NotNullOptions, context: CheckContext) -> str:
    condition = exp.or_(*(_col(c).is_(exp.null()) for c in options.columns))
    shown = _shown([], context) or [exp.Star()]
    return exp.select(*shown).from_(_table(context.this)).where(condition).sql("duckdb")


def unique(options: UniqueOptions, context: CheckContext) -> str:
    columns = [_col(c) for c in options.columns]
    query = exp.select(*columns, exp.alias_(exp.Count(this=exp.Star()), "occurrences")).from_(_table(context.this))
    if len(columns) == 1:
        query = query.where(exp.not_(columns[0].is_(exp.null())))
    repeated = exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1))
    return query.group_by(*columns).having(repeated).sql("duckdb")


def accepted_values(options: AcceptedValuesOptions, context: CheckContext) -> str:
    column = _col(options.column)
    values = [exp.convert(value) for value in options.values]
    condition = exp.and_(exp.not_(column.is_(exp.null())), exp.not_(column.isin(*values)))
    return exp.select(*_shown([options.column], context)).from_(_table(context.this)).where(condition).sql("duckdb")


def relationships(options: RelationshipsOptions, context: CheckContext) -> str:
    field_name = options.field or options.column
    ref = context.ref(options.to)
    child, parent = _col(options.column, "c"), _col(field_name, "p")
    match = exp.select("1").from_(_table(ref, "p")).where(exp.EQ(this=parent, expression=child))
    condition = exp.and_(exp.not_(child.is_(exp.null())), exp.not_(exp.Exists(this=match)))
    shown = [_col(name, "c") for name in dict.fromkeys([*context.keys, options.column])]
    return exp.select(*shown).from_(_table(context.this, "c")).where(condition).sql("duckdb")


def row_count(options: RowCountOptions, context: CheckContext) -> str:
    count = exp.Count(this=exp.Star())
    bounds: list[exp.Expression] = []
    if options.min is not None:
        bounds.append(exp.LT(this=count.copy(), expression=exp.Literal.number(options.min)))
    if options.max is not None:
        bounds.append(exp.GT(this=count.copy(), expression=exp.Literal.number(options.max)))
    query = exp.select(exp.alias_(count, "row_count")).from_(_table(context.this))
    return query.having(exp.or_(*bounds)).sql("duckdb")


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def age_seconds(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``2d`` in seconds.

    >>> age_seconds("1h"), age_seconds("1.5m")
    (3600.0, 90.0)
    """
    unit = "ms" if text.endswith("ms") else text[-1]
    return float(text[: -len(unit)]) * _UNITS[unit]


def freshness(options: FreshnessOptions, context: CheckContext) -> str:
    cutoff = (context.now - timedelta(seconds=age_seconds(options.max_age))).strftime("%Y-%m-%d %H:%M:%S.%f")
    latest = exp.Max(this=_col(options.column))
    limit = exp.cast(exp.Literal.string(cutoff), exp.DataType.build("timestamp"))
    stale = exp.or_(latest.copy().is_(exp.null()), exp.LT(this=exp.cast(latest.copy(), "timestamp"), expression=limit))
    return exp.select(exp.alias_(latest, "latest")).from_(_table(context.this)).having(stale).sql("duckdb")


def expression(options: ExpressionOptions, context: CheckContext) -> str:
    condition = sqlglot.parse_one(options.expression, read="duckdb")
    return exp.select(exp.Star()).from_(_table(context.this)).where(exp.not_(exp.paren(condition))).sql("duckdb")


def sql(options: SqlOptions, context: CheckContext) -> str:
    return this_bound(options.sql, context.this)


def this_bound(text: str, this: str) -> str:
    """``text`` with ``{{ this }}`` (any spacing) replaced by the output's table name."""
    import re

    return re.sub(r"\{\{\s*this\s*\}\}", lambda _: this, text)


def python(options: PythonOptions, context: CheckContext) -> str | Counted:
    """Call the project's ``module:function`` with the context; it returns failing-rows SQL (run like a ``sql``
    check, in the place's own dialect is not needed: DuckDB's, translated), a count, or (count, sample)."""
    module_name, _, name = options.function.partition(":")
    root = str(context.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise TerminalError(f"check function {options.function}: {exc}") from exc
    result = function(context)
    if isinstance(result, str):
        return this_bound(result, context.this)
    if isinstance(result, bool) or not isinstance(result, (int, tuple)):
        raise TerminalError(
            f"check function {options.function} returned {type(result).__name__}; return failing-rows SQL (str), "
            "a count (int) or (count, [sample keys])"
        )
    if isinstance(result, int):
        return Counted(result)
    count, keys = result
    return Counted(int(count), [str(key) for key in keys])


__all__ = ["CheckContext", "CheckOptions", "Counted"]
