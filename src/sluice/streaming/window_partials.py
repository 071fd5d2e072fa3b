"""Aggregates that can be kept as partial aggregates per open window instead of the window's raw records.

>>> plan = partial_plan({"n": "count(*)", "mean": "avg(amount)", "spread": "max(amount) - min(amount)"}, [])
>>> plan.partials
['COUNT(*)', 'SUM(amount)', 'COUNT(amount)', 'MAX(amount)', 'MIN(amount)']
>>> plan.combines
['SUM(__sluice_p0)', 'SUM(__sluice_p1)', 'SUM(__sluice_p2)', 'MAX(__sluice_p3)', 'MIN(__sluice_p4)']
>>> plan.finals["mean"]
'CASE WHEN __sluice_p2 = 0 THEN NULL ELSE CAST(__sluice_p1 AS DOUBLE) / __sluice_p2 END'
>>> partial_plan({"users": "count(DISTINCT user_id)"}, []) is None   # needs the records
True

``count``, ``sum``, ``min``, ``max`` and ``avg`` (without DISTINCT, FILTER or ORDER BY), and any expression over
them and the group_by columns, are *decomposable*: a window's value is computed from the partial aggregates of
its micro-batches (the classic partial/final split of parallel aggregation, as Spark's ``partial_sum``/
``merge`` and Flink's ``AggregateFunction.merge``). A window then costs one row per group in the state whatever
the record rate. Any other aggregate (``count(DISTINCT u)``, ``quantile_cont``, ``list``...) needs the records.
The expressions are rewritten with sqlglot's DuckDB dialect.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

PARTIAL = "__sluice_p"


@dataclass(slots=True)
class PartialPlan:
    """How to keep decomposable aggregates: per micro-batch, how to merge, and the output from the merged values.

    - ``partials``: SQL aggregates over records, one per partial column ``__sluice_p<i>`` (in order).
    - ``combines``: SQL merging partial columns of several micro-batches, same order.
    - ``finals``: output column -> SQL expression over the merged partial columns and the group_by columns.
    """

    partials: list[str] = field(default_factory=list)
    combines: list[str] = field(default_factory=list)
    finals: dict[str, str] = field(default_factory=dict)

    def add(self, partial: exp.Expression, combine: Callable[[str], str]) -> str:
        """A new partial column computing ``partial``, merged by ``combine(column)``; returns the column's name."""
        name = f"{PARTIAL}{len(self.partials)}"
        self.partials.append(partial.sql(dialect="duckdb"))
        self.combines.append(combine(name))
        return name


class _NotDecomposable(Exception):
    pass


def partial_plan(aggregates: dict[str, str], group_by: list[str]) -> PartialPlan | None:
    """The partial aggregates of ``aggregates`` (output name -> SQL), or None when one of them needs the records."""
    plan = PartialPlan()
    allowed = {column.lower() for column in group_by}
    for name, sql in aggregates.items():
        tree = sqlglot.parse_one(sql, dialect="duckdb")
        if tree.find(exp.Window, exp.Filter, exp.Subquery, exp.Order) is not None:
            return None
        try:
            final = tree.transform(lambda node: _rewrite(node, plan))
        except _NotDecomposable:
            return None
        for column in final.find_all(exp.Column):
            if not column.name.startswith(PARTIAL) and column.name.lower() not in allowed:
                return None  # a column outside an aggregate it knows (an aggregate sqlglot does not know)
        plan.finals[name] = final.sql(dialect="duckdb")
    return plan


def _rewrite(node: exp.Expression, plan: PartialPlan) -> exp.Expression:
    if not isinstance(node, exp.AggFunc):
        return node
    argument = node.this
    if (
        isinstance(argument, exp.Distinct)
        or node.expressions
        or any(key not in ("this", "expressions", "big_int") and value for key, value in node.args.items())
    ):
        raise _NotDecomposable
    if isinstance(node, exp.Count):
        column = plan.add(node, lambda p: f"SUM({p})")
        return sqlglot.parse_one(f"CAST({column} AS BIGINT)", dialect="duckdb")
    if isinstance(node, exp.Sum):
        return exp.column(plan.add(node, lambda p: f"SUM({p})"))
    if isinstance(node, exp.Min | exp.Max):
        function = "MIN" if isinstance(node, exp.Min) else "MAX"
        return exp.column(plan.add(node, lambda p: f"{function}({p})"))
    if isinstance(node, exp.Avg) and argument is not None:
        total = plan.add(exp.Sum(this=argument.copy()), lambda p: f"SUM({p})")
        count = plan.add(exp.Count(this=argument.copy()), lambda p: f"SUM({p})")
        return sqlglot.parse_one(f"CASE WHEN {count} = 0 THEN NULL ELSE CAST({total} AS DOUBLE) / {count} END", dialect="duckdb")
    raise _NotDecomposable
