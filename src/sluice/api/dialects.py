"""The SQL each database needs to build a GraphQL answer as JSON inside one statement.

One :class:`Dialect` per engine. The compilers (:mod:`sluice.api.compile_select`, ``compile_where``,
``compile_mutation``) write the same shape everywhere: a JSON object of the requested fields whose related
rows are correlated scalar subqueries, lists aggregated into JSON arrays. What differs is spelled here:

- PostgreSQL: ``json_build_object`` / ``json_agg(... ORDER BY ...)`` over a derived table (PostGraphile and
  Hasura build their answers the same way); ``NULLS FIRST|LAST``.
- MariaDB: ``JSON_OBJECT`` / ``JSON_ARRAYAGG(... ORDER BY ... LIMIT ...)``. A derived table cannot see the
  outer query's columns, so a correlated list aggregates its rows directly with the aggregate's own ``ORDER
  BY`` and ``LIMIT``; nulls are ordered with ``(x IS NULL)``; booleans are made JSON booleans.
- SQLite: ``json_object`` / ``json_group_array`` over an ordered derived table; ``json()`` keeps nested values
  JSON; ``_like`` is case-sensitive through ``GLOB``.

BigInt and Numeric values leave the database as text (JSON strings), so no digit is lost in a JSON number.
Identifiers come from the catalog only and are always quoted; every value is a bind parameter.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any, ClassVar

from sluice.api.catalog import Column, Table

JSON_PAIRS_MAX = 50
"""Fields per ``json_build_object`` call (PostgreSQL functions take at most 100 arguments); more are merged."""

Order = tuple[str, str]
"""An ORDER BY item: (SQL expression, one of asc, desc, asc_nulls_first, asc_nulls_last, desc_nulls_first,
desc_nulls_last)."""


def normalize_direction(direction: str) -> tuple[str, bool]:
    """``asc`` / ``desc`` and whether nulls come first (PostgreSQL's defaults: last ascending, first descending)."""
    if direction.endswith("_nulls_first"):
        return direction.split("_", 1)[0], True
    if direction.endswith("_nulls_last"):
        return direction.split("_", 1)[0], False
    return direction, direction == "desc"


class Dialect:
    """How one engine spells the statement; see the module docstring."""

    name: ClassVar[str] = ""
    named_params: ClassVar[bool] = False
    """SQLite's ``:name``; the others' ``%(name)s`` (so a ``%`` in the statement must be doubled)."""
    quote_char: ClassVar[str] = '"'
    json_object_fn: ClassVar[str] = "json_build_object"
    empty_array: ClassVar[str] = "'[]'"
    true_sql: ClassVar[str] = "TRUE"
    false_sql: ClassVar[str] = "FALSE"
    returns_in_cte: ClassVar[bool] = False
    """Whether a write and its read fit in one statement (PostgreSQL's data-modifying CTE)."""

    def quote(self, name: str) -> str:
        text = self.quote_char + name.replace(self.quote_char, self.quote_char * 2) + self.quote_char
        return text if self.named_params else text.replace("%", "%%")

    def placeholder(self, name: str) -> str:
        """The bind parameter called ``name``."""
        return f":{name}" if self.named_params else f"%({name})s"

    def table_ref(self, table: Table) -> str:
        return f"{self.quote(table.schema)}.{self.quote(table.name)}"

    def literal(self, text: str) -> str:
        """A string literal of a name checked to be a GraphQL name (``[_A-Za-z][_0-9A-Za-z]*``)."""
        return "'" + text.replace("'", "''") + "'"

    def json_object(self, pairs: list[tuple[str, str]]) -> str:
        if not pairs:
            return f"{self.json_object_fn}()"
        parts = [pairs[i : i + JSON_PAIRS_MAX] for i in range(0, len(pairs), JSON_PAIRS_MAX)]
        objects = [f"{self.json_object_fn}({', '.join(f'{self.literal(k)}, {v}' for k, v in part)})" for part in parts]
        return objects[0] if len(objects) == 1 else self.merge_objects(objects)

    def merge_objects(self, objects: list[str]) -> str:
        return "(" + " || ".join(f"{o}::jsonb" for o in objects) + ")::json"

    def nested(self, expr: str) -> str:
        """A JSON value produced by a subquery, used inside a JSON object."""
        return expr

    def value_json(self, expr: str, scalar: str) -> str:
        """A column or aggregate as the JSON value of its GraphQL scalar."""
        if scalar in ("BigInt", "Numeric"):
            return f"({expr})::text"
        return expr

    def order_item(self, expr: str, direction: str) -> str:
        way, nulls_first = normalize_direction(direction)
        return f"{expr} {way.upper()} NULLS {'FIRST' if nulls_first else 'LAST'}"

    def order_sql(self, order: list[Order]) -> str:
        return ", ".join(self.order_item(expr, direction) for expr, direction in order)

    def limit_sql(self, limit: str | None, offset: str | None) -> str:
        text = f" LIMIT {limit}" if limit is not None else ""
        return text + (f" OFFSET {offset}" if offset is not None else "")

    def array(
        self, j: str, source: str, order: list[Order], limit: str | None, offset: str | None, *, correlated: bool, extra: str = ""
    ) -> str:
        """A JSON array of ``j`` (a JSON expression) over ``source`` (``FROM ... WHERE ...``), in ``order``;
        ``extra``: a second JSON value per row, kept beside ``j`` as ``[j, extra]`` pairs (cursor keys)."""
        value = f"json_build_array({j}, {extra})" if extra else j
        keys = "".join(f", {expr} AS o{i}" for i, (expr, _) in enumerate(order))
        inner = f"SELECT {value} AS j{keys} {source}"
        if order:
            inner += " ORDER BY " + self.order_sql(order)
        inner += self.limit_sql(limit, offset)
        outer_order = self.order_sql([(f"s.o{i}", direction) for i, (_, direction) in enumerate(order)])
        agg = f"json_agg(s.j ORDER BY {outer_order})" if order else "json_agg(s.j)"
        return f"(SELECT coalesce({agg}, '[]'::json) FROM ({inner}) s)"

    def row_array(self, values: list[str]) -> str:
        return f"json_build_array({', '.join(values)})"

    def like(self, expr: str, placeholder: str, insensitive: bool) -> str:
        return f"{expr} {'ILIKE' if insensitive else 'LIKE'} {placeholder}"

    def like_value(self, pattern: str, insensitive: bool) -> str:
        return pattern

    def bind(self, value: Any, column: Column | None) -> Any:
        """A Python value as the driver takes it for ``column`` (JSON as text, arrays as lists)."""
        if column is not None and column.scalar == "JSON" and not (column.array and isinstance(value, list)):
            return None if value is None else json.dumps(value)
        return value


class PostgresDialect(Dialect):
    name = "postgresql"
    returns_in_cte = True


class MysqlDialect(Dialect):
    name = "mysql"
    quote_char = "`"
    json_object_fn = "JSON_OBJECT"
    empty_array = "JSON_ARRAY()"

    def table_ref(self, table: Table) -> str:
        return self.quote(table.name)

    def merge_objects(self, objects: list[str]) -> str:
        return f"JSON_MERGE_PATCH({', '.join(objects)})"

    def value_json(self, expr: str, scalar: str) -> str:
        if scalar in ("BigInt", "Numeric"):
            return f"CAST({expr} AS CHAR)"
        if scalar == "Boolean":
            return f"JSON_EXTRACT(IF({expr} IS NULL, NULL, IF({expr}, 'true', 'false')), '$')"
        if scalar == "DateTime":
            return f"DATE_FORMAT({expr}, IF(MICROSECOND({expr}) = 0, '%%Y-%%m-%%dT%%H:%%i:%%s', '%%Y-%%m-%%dT%%H:%%i:%%s.%%f'))"
        if scalar == "JSON":
            return f"JSON_EXTRACT({expr}, '$')"
        return expr

    def order_item(self, expr: str, direction: str) -> str:
        way, nulls_first = normalize_direction(direction)
        return f"({expr} IS NULL) {'DESC' if nulls_first else 'ASC'}, {expr} {way.upper()}"

    def array(
        self, j: str, source: str, order: list[Order], limit: str | None, offset: str | None, *, correlated: bool, extra: str = ""
    ) -> str:
        value = f"JSON_ARRAY({j}, {extra})" if extra else j
        if correlated:
            inner_order = f" ORDER BY {self.order_sql(order)}" if order else ""
            if limit is not None or offset is not None:
                # MariaDB's aggregate LIMIT takes no bound value; the compiler passes integers it checked.
                inner_order += f" LIMIT {limit if limit is not None else '18446744073709551615'}"
                inner_order += f" OFFSET {offset}" if offset is not None else ""
            return f"(SELECT COALESCE(JSON_ARRAYAGG({value}{inner_order}), JSON_ARRAY()) {source})"
        keys = "".join(f", {expr} AS o{i}" for i, (expr, _) in enumerate(order))
        inner = f"SELECT {value} AS j{keys} {source}"
        if order:
            inner += " ORDER BY " + self.order_sql(order)
        if limit is not None or offset is not None:
            inner += f" LIMIT {limit if limit is not None else '18446744073709551615'}"
            inner += f" OFFSET {offset}" if offset is not None else ""
        outer = self.order_sql([(f"s.o{i}", direction) for i, (_, direction) in enumerate(order)])
        agg = f"JSON_ARRAYAGG(s.j ORDER BY {outer})" if order else "JSON_ARRAYAGG(s.j)"
        return f"(SELECT COALESCE({agg}, JSON_ARRAY()) FROM ({inner}) s)"

    def row_array(self, values: list[str]) -> str:
        return f"JSON_ARRAY({', '.join(values)})"

    def like(self, expr: str, placeholder: str, insensitive: bool) -> str:
        if insensitive:
            return f"LOWER({expr}) LIKE LOWER({placeholder})"
        return f"CAST({expr} AS BINARY) LIKE CAST({placeholder} AS BINARY)"


class SqliteDialect(Dialect):
    name = "sqlite"
    named_params = True
    json_object_fn = "json_object"
    empty_array = "json('[]')"
    true_sql = "1"
    false_sql = "0"

    def table_ref(self, table: Table) -> str:
        return self.quote(table.name)

    def merge_objects(self, objects: list[str]) -> str:
        merged = objects[0]
        for other in objects[1:]:
            merged = f"json_patch({merged}, {other})"
        return merged

    def nested(self, expr: str) -> str:
        return f"json({expr})"

    def value_json(self, expr: str, scalar: str) -> str:
        if scalar in ("BigInt", "Numeric"):
            return f"CAST({expr} AS TEXT)"
        if scalar == "Boolean":
            return f"CASE WHEN {expr} IS NULL THEN NULL WHEN {expr} THEN json('true') ELSE json('false') END"
        if scalar == "JSON":
            return f"json({expr})"
        return expr

    def array(
        self, j: str, source: str, order: list[Order], limit: str | None, offset: str | None, *, correlated: bool, extra: str = ""
    ) -> str:
        value = f"json_array({j}, {extra})" if extra else j
        inner = f"SELECT {value} AS j {source}"
        if order:
            inner += " ORDER BY " + self.order_sql(order)
        if limit is None and offset is not None:
            limit = "-1"
        inner += self.limit_sql(limit, offset)
        # SQLite aggregates the rows of an ordered subquery in that order (json_group_array has no ORDER BY
        # before 3.44); the result stays a JSON value through json().
        return f"(SELECT coalesce(json_group_array(json(s.j)), json('[]')) FROM ({inner}) s)"

    def row_array(self, values: list[str]) -> str:
        return f"json_array({', '.join(values)})"

    def like(self, expr: str, placeholder: str, insensitive: bool) -> str:
        return f"{expr} {'LIKE' if insensitive else 'GLOB'} {placeholder} " + ("ESCAPE '\\'" if insensitive else "")

    def like_value(self, pattern: str, insensitive: bool) -> str:
        if insensitive:
            return pattern
        return like_to_glob(pattern)

    def bind(self, value: Any, column: Column | None) -> Any:
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, (dt.datetime, dt.date, dt.time)):
            return value.isoformat()
        return super().bind(value, column)


def like_to_glob(pattern: str) -> str:
    """A LIKE pattern (``%``, ``_``, backslash escapes) as a case-sensitive SQLite GLOB pattern.

    >>> like_to_glob("a%b_c\\\\%[x]*")
    'a*b?c[%][[]x[]][*]'
    """
    out = []
    escaped = False
    for char in pattern:
        if escaped:
            out.append(f"[{char}]" if char in "*?[]" or char in "%_" else char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        elif char in "*?[]":
            out.append(f"[{char}]")
        else:
            out.append(char)
    return "".join(out)


def dialect_for(scheme: str) -> Dialect:
    """The dialect of a normalised connection scheme (``postgresql``, ``mysql``, ``sqlite``)."""
    dialects: dict[str, Dialect] = {"postgresql": PostgresDialect(), "mysql": MysqlDialect(), "sqlite": SqliteDialect()}
    return dialects[scheme]
