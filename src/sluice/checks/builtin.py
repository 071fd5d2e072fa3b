"""The built-in check types: each returns the SQL (DuckDB's dialect) of its failing rows over ``context.this``.

A check plugin's target is a callable ``(options, context) -> str | Counted``: a query returning the failing
rows (compiled for the place and run there by :mod:`sluice.checks.compile`), or, for a check that counted
them itself (``python``), the count and the sample. The idea of "a test is a query returning its failing
rows" is dbt's (``dbt test``); the types follow dbt's generic tests and Soda's checks.
"""

from __future__ import annotations

from collections.abc import Callable
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


def _null_in(options: NotNullOptions) -> exp.Expr:
    return exp.or_(*(_col(c).is_(exp.null()) for c in options.columns))


def _not_null_rows(options: NotNullOptions, context: CheckContext) -> str:
    shown = _shown([], context) or [exp.Star()]
    return exp.select(*shown).from_(_table(context.this)).where(_null_in(options)).sql("duckdb")


def _unique_rows(options: UniqueOptions, context: CheckContext) -> str:
    columns = [_col(c) for c in options.columns]
    query = exp.select(*columns, exp.alias_(exp.Count(this=exp.Star()), "occurrences")).from_(_table(context.this))
    if len(columns) == 1:
        query = query.where(exp.not_(columns[0].is_(exp.null())))
    repeated = exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1))
    return query.group_by(*columns).having(repeated).sql("duckdb")


def _not_accepted(options: AcceptedValuesOptions) -> exp.Expr:
    column = _col(options.column)
    values = [exp.convert(value) for value in options.values]
    return exp.and_(exp.not_(column.is_(exp.null())), exp.not_(column.isin(*values)))


def _accepted_values_rows(options: AcceptedValuesOptions, context: CheckContext) -> str:
    query = exp.select(*_shown([options.column], context)).from_(_table(context.this))
    return query.where(_not_accepted(options)).sql("duckdb")


def _relationships_rows(options: RelationshipsOptions, context: CheckContext) -> str:
    field_name = options.field or options.column
    ref = context.ref(options.to)
    child, parent = _col(options.column, "c"), _col(field_name, "p")
    match = exp.select("1").from_(_table(ref, "p")).where(exp.EQ(this=parent, expression=child))
    condition = exp.and_(exp.not_(child.is_(exp.null())), exp.not_(exp.Exists(this=match)))
    shown = [_col(name, "c") for name in dict.fromkeys([*context.keys, options.column])]
    return exp.select(*shown).from_(_table(context.this, "c")).where(condition).sql("duckdb")


def _out_of_bounds(options: RowCountOptions) -> exp.Expr:
    count = exp.Count(this=exp.Star())
    bounds: list[exp.Expr] = []
    if options.min is not None:
        bounds.append(exp.LT(this=count.copy(), expression=exp.Literal.number(options.min)))
    if options.max is not None:
        bounds.append(exp.GT(this=count.copy(), expression=exp.Literal.number(options.max)))
    return exp.or_(*bounds)


def _row_count_rows(options: RowCountOptions, context: CheckContext) -> str:
    query = exp.select(exp.alias_(exp.Count(this=exp.Star()), "row_count")).from_(_table(context.this))
    return query.having(_out_of_bounds(options)).sql("duckdb")


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def age_seconds(text: str) -> float:
    """``90s``, ``15m``, ``1h``, ``2d`` in seconds.

    >>> age_seconds("1h"), age_seconds("1.5m")
    (3600.0, 90.0)
    """
    unit = "ms" if text.endswith("ms") else text[-1]
    return float(text[: -len(unit)]) * _UNITS[unit]


def _stale(options: FreshnessOptions, context: CheckContext) -> exp.Expr:
    cutoff = (context.now - timedelta(seconds=age_seconds(options.max_age))).strftime("%Y-%m-%d %H:%M:%S.%f")
    latest = exp.Max(this=_col(options.column))
    limit = exp.cast(exp.Literal.string(cutoff), exp.DataType.build("timestamp"))
    return exp.or_(latest.copy().is_(exp.null()), exp.LT(this=exp.cast(latest, "timestamp"), expression=limit))


def _freshness_rows(options: FreshnessOptions, context: CheckContext) -> str:
    latest = exp.alias_(exp.Max(this=_col(options.column)), "latest")
    return exp.select(latest).from_(_table(context.this)).having(_stale(options, context)).sql("duckdb")


def _false_rows(options: ExpressionOptions) -> exp.Expr:
    return exp.not_(exp.paren(sqlglot.parse_one(options.expression, read="duckdb")))


def _expression_rows(options: ExpressionOptions, context: CheckContext) -> str:
    return exp.select(exp.Star()).from_(_table(context.this)).where(_false_rows(options)).sql("duckdb")


def _count_where(condition: exp.Expr) -> str:
    """``COUNT(*) FILTER (WHERE condition)``: the failing rows of a row-wise check, as one aggregate."""
    return exp.Filter(this=exp.Count(this=exp.Star()), expression=exp.Where(this=condition)).sql("duckdb")


def _one_if(condition: exp.Expr) -> str:
    """``CASE WHEN condition THEN 1 ELSE 0 END``: a whole-output check (row count, freshness) as one aggregate."""
    return exp.case().when(condition, exp.Literal.number(1)).else_(exp.Literal.number(0)).sql("duckdb")


def _sql_rows(options: SqlOptions, context: CheckContext) -> str:
    return this_bound(options.sql, context.this)


def this_bound(text: str, this: str) -> str:
    """``text`` with ``{{ this }}`` (any spacing) replaced by the output's table name."""
    import re

    return re.sub(r"\{\{\s*this\s*\}\}", lambda _: this, text)


def _python_result(options: PythonOptions, context: CheckContext) -> str | Counted:
    """Call the project's ``module:function`` with the context; it returns failing-rows SQL (run like a ``sql``
    check, in the place's own dialect is not needed: DuckDB's, translated), a count, or (count, sample)."""
    from sluice.transforms.python import load_function

    function = load_function(options.function, context.root, object_label=f"check {options.function}")
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


@dataclass(frozen=True, slots=True)
class CheckType:
    """A check type's implementation (a ``check`` plugin's target).

    ``rows(options, context)``: the SQL of the failing rows (DuckDB's dialect, over ``context.this``) or a
    :class:`Counted`. ``aggregate(options, context)``, for checks that can share one scan of the output with others:
    one aggregate expression over ``this`` giving the count of failing rows (:mod:`sluice.checks.run` batches them;
    the failing rows' sample is then asked only of checks that failed). A third party may give a plain callable
    instead: it is ``rows``, run alone.
    """

    rows: Callable[[Any, CheckContext], str | Counted]
    aggregate: Callable[[Any, CheckContext], str] | None = None

    def __call__(self, options: Any, context: CheckContext) -> str | Counted:
        return self.rows(options, context)


not_null = CheckType(_not_null_rows, lambda o, c: _count_where(_null_in(o)))
unique = CheckType(_unique_rows)
accepted_values = CheckType(_accepted_values_rows, lambda o, c: _count_where(_not_accepted(o)))
relationships = CheckType(_relationships_rows)
row_count = CheckType(_row_count_rows, lambda o, c: _one_if(_out_of_bounds(o)))
freshness = CheckType(_freshness_rows, lambda o, c: _one_if(_stale(o, c)))
expression = CheckType(_expression_rows, lambda o, c: _count_where(_false_rows(o)))
sql = CheckType(_sql_rows)
python = CheckType(_python_result)

__all__ = ["CheckContext", "CheckOptions", "CheckType", "Counted"]
