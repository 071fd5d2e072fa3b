"""Queries as SQL: lists, pages, rows by key, aggregates, and relationships nested in them.

Each root field becomes one JSON-valued scalar subquery; the request's root fields on one database are one
``SELECT json_object(...)`` (:func:`statement`). Related rows are correlated subqueries (``WHERE
child.fk = parent.pk``), so a request is never N+1 round trips.

Cursor pagination (``T_page``) orders by the requested columns and then by the primary key (every column
when there is none), so rows that tie on the requested order still come in one fixed order. The cursor is
opaque (base64 of JSON: the order and the last row's values); the next page starts strictly after that row
(keyset pagination, with nulls placed as the order says), so rows inserted meanwhile neither repeat nor
shift a page as ``offset`` would.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLField, GraphQLObjectType

from sluice.api.catalog import Table
from sluice.api.compiler import Compiler, Fields
from sluice.api.dialects import Order, normalize_direction
from sluice.api.gate import DataApiError
from sluice.api.model import ExposedTable
from sluice.api.permissions import Access
from sluice.api.schema import RootField


@dataclass(slots=True)
class PagePlan:
    """How to finish a page field in Python: the rows come as ``[node, keys]`` pairs, one more than ``first``."""

    key: str
    type_name: str
    first: int
    order: list[tuple[str, str]]
    fields: list[Fields]
    page_info_fields: dict[str, list[Fields]]


def field_definition(compiler: Compiler, type_name: str, name: str) -> GraphQLField:
    object_type = compiler.schema.get_type(type_name)
    assert isinstance(object_type, GraphQLObjectType)
    definition: GraphQLField = object_type.fields[name]
    return definition


def json_fields(
    c: Compiler, t: ExposedTable, alias: str, fields: list[Fields], access: Access, writer: Table | None = None
) -> str:
    """The JSON object of ``fields`` for the row ``alias`` of ``t``; ``writer``: the rows are those of a
    mutation routed to another connection's table (columns by name, no relationships)."""
    pairs: list[tuple[str, str]] = []
    for f in fields:
        name = f.name
        if name == "__typename":
            pairs.append((f.key, c.dialect.literal(t.base)))
        elif name in t.fields:
            column = t.fields[name]
            c.permissions.require_column(c.principal, t, access, column.name, "read")
            if writer is not None and writer.column(column.name) is None:
                raise DataApiError(f"{name} is not a column of the table {t.base}'s mutations write", code="validation-failed")
            pairs.append((f.key, c.dialect.value_json(c.col(alias, column.name), column.scalar)))
        elif name in t.relationships:
            if writer is not None:
                raise DataApiError(
                    f"{t.base}'s mutations write another connection: its returning has no relationship ({name})",
                    code="validation-failed",
                )
            pairs.append((f.key, c.dialect.nested(relation(c, t, alias, name, f))))
    return c.dialect.json_object(pairs)


def relation(c: Compiler, t: ExposedTable, alias: str, name: str, f: Fields) -> str:
    rel = t.relationships[name]
    target = c.model.tables[rel.target]
    access = c.permissions.access(c.principal, target, "select")
    inner = c.alias()
    joins = [f"{c.col(inner, remote)} = {c.col(alias, local)}" for local, remote in rel.pairs]
    if rel.kind == "object":
        j = json_fields(c, target, inner, c.sub_fields(target.base, f.nodes), access)
        conditions = [*joins, c.where(target, inner, access.filter, trusted=True)]
        return f"(SELECT {j} FROM {c.dialect.table_ref(target.table)} {inner} WHERE {' AND '.join(conditions)} LIMIT 1)"
    args = c.arguments(field_definition(c, t.base, name), f.nodes[0])
    return list_sql(c, target, inner, f, args, access, joins, correlated=True)


def order_items(c: Compiler, t: ExposedTable, alias: str, order_by: list[dict[str, str]] | None, access: Access) -> list[Order]:
    items: list[Order] = []
    for item in order_by or []:
        for key, direction in item.items():
            if direction is None or key not in t.fields:
                continue
            column = t.fields[key]
            c.permissions.require_column(c.principal, t, access, column.name, "order by")
            items.append((c.col(alias, column.name), direction))
    return items


def limit_text(c: Compiler, value: int | None, correlated: bool) -> str | None:
    if value is None:
        return None
    if correlated and c.dialect.name == "mysql":
        return str(int(value))  # MariaDB's JSON_ARRAYAGG(... LIMIT n) takes a literal; value is a checked int
    return c.param(int(value))


def list_sql(
    c: Compiler,
    t: ExposedTable,
    alias: str,
    f: Fields,
    args: dict[str, Any],
    access: Access,
    conditions: list[str],
    *,
    correlated: bool,
) -> str:
    j = json_fields(c, t, alias, c.sub_fields(t.base, f.nodes), access)
    where = [*conditions, c.where(t, alias, access.filter, trusted=True), c.where(t, alias, args.get("where"), trusted=False)]
    order = order_items(c, t, alias, args.get("order_by"), access)
    limit = c.limit(args.get("limit"), access)
    offset = args.get("offset")
    if offset is not None and offset < 0:
        raise DataApiError("offset must be zero or more", code="validation-failed")
    source = f"FROM {c.dialect.table_ref(t.table)} {alias} WHERE {' AND '.join(where)}"
    return c.dialect.array(
        j, source, order, limit_text(c, limit, correlated), limit_text(c, offset or None, correlated), correlated=correlated
    )


def root_sql(c: Compiler, root: RootField, f: Fields, definition: GraphQLField, pages: list[PagePlan]) -> str:
    """The JSON-valued SQL of one query root field (a page field adds its :class:`PagePlan` to ``pages``)."""
    t = c.model.tables[root.base]
    access = c.permissions.access(c.principal, t, "select")
    args = c.arguments(definition, f.nodes[0])
    alias = c.alias()
    if root.op == "list":
        return list_sql(c, t, alias, f, args, access, [], correlated=False)
    if root.op == "by_pk":
        conditions = []
        for name in t.table.primary_key:
            column = t.table.column_map[name]
            conditions.append(f"{c.col(alias, name)} = {c.param(args[t.field_of.get(name, name)], column)}")
        j = json_fields(c, t, alias, c.sub_fields(t.base, f.nodes), access)
        conditions.append(c.where(t, alias, access.filter, trusted=True))
        return f"(SELECT {j} FROM {c.dialect.table_ref(t.table)} {alias} WHERE {' AND '.join(conditions)} LIMIT 1)"
    if root.op == "aggregate":
        return aggregate_sql(c, t, alias, f, args, access)
    return page_sql(c, t, alias, f, args, access, pages)


def aggregate_sql(c: Compiler, t: ExposedTable, alias: str, f: Fields, args: dict[str, Any], access: Access) -> str:
    if not access.aggregate:
        raise DataApiError(f"role '{c.principal.role}' may not aggregate {t.base}", status=403, code="permission-denied")
    group = [t.fields[name].name for name in args.get("group_by") or [] if name in t.fields]
    for name in group:
        c.permissions.require_column(c.principal, t, access, name, "group by")
    pairs: list[tuple[str, str]] = []
    for sub in c.sub_fields(f"{t.base}_aggregate_group", f.nodes):
        if sub.name == "__typename":
            pairs.append((sub.key, c.dialect.literal(f"{t.base}_aggregate_group")))
        elif sub.name == "count":
            pairs.append((sub.key, "COUNT(*)"))
        else:
            inner: list[tuple[str, str]] = []
            type_name = f"{t.base}_group_keys" if sub.name == "keys" else f"{t.base}_{sub.name}_fields"
            for leaf in c.sub_fields(type_name, sub.nodes):
                if leaf.name == "__typename":
                    inner.append((leaf.key, c.dialect.literal(type_name)))
                    continue
                column = t.fields[leaf.name]
                c.permissions.require_column(c.principal, t, access, column.name, "aggregate")
                expr = c.col(alias, column.name)
                if sub.name == "keys":
                    inner.append((leaf.key, c.dialect.value_json(expr, column.scalar) if column.name in group else "NULL"))
                else:
                    scalar = column.scalar if sub.name in ("min", "max") else ("Float" if column.scalar == "Float" else "Numeric")
                    inner.append((leaf.key, c.dialect.value_json(f"{sub.name.upper()}({expr})", scalar)))
            pairs.append((sub.key, c.dialect.json_object(inner)))
    where = [c.where(t, alias, access.filter, trusted=True), c.where(t, alias, args.get("where"), trusted=False)]
    source = f"FROM {c.dialect.table_ref(t.table)} {alias} WHERE {' AND '.join(where)}"
    exprs = [c.col(alias, name) for name in group]
    if exprs:
        source += " GROUP BY " + ", ".join(exprs)
    order: list[Order] = [(expr, "asc") for expr in exprs]
    return c.dialect.array(c.dialect.json_object(pairs), source, order, c.param(c.max_rows), None, correlated=False)


def page_sql(
    c: Compiler, t: ExposedTable, alias: str, f: Fields, args: dict[str, Any], access: Access, pages: list[PagePlan]
) -> str:
    order = order_items(c, t, alias, args.get("order_by"), access)
    named: list[tuple[str, str]] = []
    for item in args.get("order_by") or []:
        named += [(t.fields[k].name, d) for k, d in item.items() if d is not None and k in t.fields]
    ties = list(t.table.primary_key) or [col.name for col in t.table.columns if col.scalar not in ("JSON",)]
    for name in ties:
        if name not in [n for n, _ in named]:
            named.append((name, "asc"))
            order.append((c.col(alias, name), "asc"))
    first = c.limit(args.get("first"), access)
    where = [c.where(t, alias, access.filter, trusted=True), c.where(t, alias, args.get("where"), trusted=False)]
    if args.get("after"):
        where.append(keyset(c, t, alias, named, decode_cursor(args["after"], named)))
    info: dict[str, list[Fields]] = {}
    plan_fields = c.sub_fields(f"{t.base}_page", f.nodes)
    nodes: list[tuple[str, str]] = []
    for sub in plan_fields:
        if sub.name == "nodes":
            nodes.append((sub.key, json_fields(c, t, alias, c.sub_fields(t.base, sub.nodes), access)))
        elif sub.name == "page_info":
            info[sub.key] = c.sub_fields("page_info", sub.nodes)
    j = c.dialect.json_object(nodes)
    keys = c.dialect.row_array([c.dialect.value_json(c.col(alias, name), t.table.column_map[name].scalar) for name, _ in named])
    source = f"FROM {c.dialect.table_ref(t.table)} {alias} WHERE {' AND '.join(where)}"
    pages.append(PagePlan(f.key, f"{t.base}_page", first, named, plan_fields, info))
    return c.dialect.array(j, source, order, c.param(first + 1), None, correlated=False, extra=keys)


def keyset(c: Compiler, t: ExposedTable, alias: str, order: list[tuple[str, str]], values: list[Any]) -> str:
    """Rows strictly after ``values`` in ``order`` (each item: column, direction), nulls placed as ordered."""
    disjuncts: list[str] = []
    for i, (name, direction) in enumerate(order):
        column = t.table.column_map[name]
        equal = []
        for (prev, _), value in zip(order[:i], values[:i], strict=True):
            expr = c.col(alias, prev)
            equal.append(f"{expr} IS NULL" if value is None else f"{expr} = {c.param(value, t.table.column_map[prev])}")
        expr = c.col(alias, name)
        way, nulls_first = normalize_direction(direction)
        value = values[i]
        if value is None:
            if nulls_first:
                after = f"{expr} IS NOT NULL"
            else:
                continue
        else:
            comparison = f"{expr} {'>' if way == 'asc' else '<'} {c.param(value, column)}"
            after = comparison if nulls_first else f"({comparison} OR {expr} IS NULL)"
        disjuncts.append("(" + " AND ".join([*equal, after]) + ")")
    return "(" + " OR ".join(disjuncts) + ")" if disjuncts else c.dialect.false_sql


def encode_cursor(order: list[tuple[str, str]], values: list[Any]) -> str:
    raw = json.dumps({"o": order, "v": values}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order: list[tuple[str, str]]) -> list[Any]:
    """The values of a cursor made for ``order``; 400 ``invalid-cursor`` for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        values = data["v"]
        same = [list(item) for item in order] == data["o"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        same, values = False, []
    if not same or not isinstance(values, list) or len(values) != len(order):
        raise DataApiError("after: this cursor was not made by this field with this order_by", code="invalid-cursor")
    if any(isinstance(v, (dict, list)) for v in values):
        raise DataApiError("after: malformed cursor", code="invalid-cursor")
    return values


def finish_page(plan: PagePlan, rows: list[Any]) -> dict[str, Any]:
    """The page object of ``plan`` from its ``[node, keys]`` rows."""
    has_next = len(rows) > plan.first
    rows = rows[: plan.first]
    end = encode_cursor(plan.order, rows[-1][1]) if rows else None
    result: dict[str, Any] = {}
    for sub in plan.fields:
        if sub.name == "__typename":
            result[sub.key] = plan.type_name
        elif sub.name == "nodes":
            result[sub.key] = [row[0][sub.key] for row in rows]
        elif sub.name == "page_info":
            info: dict[str, Any] = {}
            for leaf in plan.page_info_fields.get(sub.key, []):
                info[leaf.key] = {"end_cursor": end, "has_next_page": has_next, "__typename": "page_info"}[leaf.name]
            result[sub.key] = info
    return result
