"""What every compiler shares: bind parameters, table aliases, the selection of a GraphQL field (fragments and
``@skip``/``@include`` applied), its arguments, and boolean expressions (``where``, permission filters) as SQL.

Boolean expressions follow Hasura's shape: ``{_and: [...], _or: [...], _not: {...}, column: {_eq: v, ...},
relationship: {...}}``; a relationship condition is an ``EXISTS`` over the related table (with the role's
filter on it). Identifiers only ever come from the catalog; values only ever become bind parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import FieldNode, FragmentDefinitionNode, GraphQLField, GraphQLSchema, SelectionSetNode
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.values import get_argument_values

from sluice.api.catalog import Column
from sluice.api.dialects import Dialect
from sluice.api.gate import DataApiError
from sluice.api.model import ExposedTable, Model
from sluice.api.permissions import Access, Permissions, compared_value
from sluice.api.plans import is_tagged, untag
from sluice.api.principal import Principal

_COMPARISONS = {"_eq": "=", "_neq": "<>", "_gt": ">", "_gte": ">=", "_lt": "<", "_lte": "<="}


@dataclass(slots=True)
class Fields:
    """The fields of one response key: the nodes merged under it (GraphQL merges same-named fields)."""

    key: str
    nodes: list[FieldNode]

    @property
    def name(self) -> str:
        return self.nodes[0].name.value


class Compiler:
    """Builds one statement for one database; ``params`` holds its bind parameters by name."""

    def __init__(
        self,
        schema: GraphQLSchema,
        model: Model,
        dialect: Dialect,
        principal: Principal,
        permissions: Permissions,
        variables: dict[str, Any],
        fragments: dict[str, FragmentDefinitionNode],
        max_rows: int,
    ) -> None:
        self.schema = schema
        self.model = model
        self.dialect = dialect
        self.principal = principal
        self.permissions = permissions
        self.variables = variables
        self.fragments = fragments
        self.max_rows = max_rows
        self.params: dict[str, Any] = {}
        self.bindings: list[tuple[str, str, Column | None]] = []
        """The parameters bound to a tagged variable unchanged (name, variable, column): :mod:`sluice.api.plans`."""
        self._aliases = 0

    # Names and values.

    def param(self, value: Any, column: Column | None = None) -> str:
        name = f"p{len(self.params)}"
        if is_tagged(value):
            variable, value = untag(value)
            self.bindings.append((name, variable, column))
        self.params[name] = self.dialect.bind(value, column)
        return self.dialect.placeholder(name)

    def alias(self) -> str:
        self._aliases += 1
        return f"t{self._aliases}"

    def col(self, alias: str, column: str) -> str:
        return f"{alias}.{self.dialect.quote(column)}"

    # The request.

    def sub_fields(self, type_name: str, nodes: list[FieldNode]) -> list[Fields]:
        """The selection under ``nodes`` (of the object type ``type_name``), grouped by response key."""
        object_type = self.schema.get_type(type_name)
        grouped = collect_sub_fields(self.schema, self.fragments, self.variables, object_type, nodes)  # type: ignore[arg-type]
        return [Fields(key, list(field_nodes)) for key, field_nodes in grouped.items()]

    def selection(self, type_name: str, selection_set: SelectionSetNode | None) -> list[Fields]:
        if selection_set is None:
            return []
        object_type = self.schema.get_type(type_name)
        grouped = collect_fields(self.schema, self.fragments, self.variables, object_type, selection_set)  # type: ignore[arg-type]
        return [Fields(key, list(field_nodes)) for key, field_nodes in grouped.items()]

    def arguments(self, definition: GraphQLField, node: FieldNode) -> dict[str, Any]:
        return get_argument_values(definition, node, self.variables)

    def limit(self, requested: int | None, access: Access) -> int:
        """The rows a list may return: the request's ``limit``, the role's and ``max_rows``, whichever is least."""
        if requested is not None and requested < 0:
            raise DataApiError("limit must be zero or more", code="validation-failed")
        limits = [self.max_rows] + [x for x in (requested, access.limit) if x is not None]
        return min(limits)

    # Boolean expressions.

    def where(self, table: ExposedTable, alias: str, expression: dict[str, Any] | None, *, trusted: bool) -> str:
        """``expression`` on ``table`` (aliased ``alias``) as SQL; ``trusted``: from ``api.roles`` (claims allowed)."""
        if not expression:
            return self.dialect.true_sql
        parts: list[str] = []
        for key, value in expression.items():
            if value is None:
                continue
            if key == "_and":
                parts.append(self._join([self.where(table, alias, e, trusted=trusted) for e in value], "AND"))
            elif key == "_or":
                parts.append(self._join([self.where(table, alias, e, trusted=trusted) for e in value], "OR"))
            elif key == "_not":
                parts.append(f"NOT ({self.where(table, alias, value, trusted=trusted)})")
            elif key in table.relationships:
                parts.append(self._exists(table, alias, key, value, trusted=trusted))
            else:
                column = table.column(key)
                if column is None or not isinstance(value, dict):
                    raise DataApiError(f"unknown column {key!r} of {table.base} in a filter", status=500, code="bad-permission")
                if not trusted:
                    self._may_read(table, column.name)
                parts.append(self._compare(self.col(alias, column.name), column, value, trusted=trusted))
        return self._join(parts, "AND") if parts else self.dialect.true_sql

    def _join(self, parts: list[str], operator: str) -> str:
        if not parts:
            return self.dialect.true_sql if operator == "AND" else self.dialect.false_sql
        return "(" + f" {operator} ".join(f"({p})" for p in parts) + ")"

    def _may_read(self, table: ExposedTable, column: str) -> None:
        access = self.permissions.access(self.principal, table, "select")
        self.permissions.require_column(self.principal, table, access, column, "filter on")

    def _exists(self, table: ExposedTable, alias: str, name: str, value: dict[str, Any], *, trusted: bool) -> str:
        rel = table.relationships[name]
        target = self.model.tables[rel.target]
        inner = self.alias()
        joins = [f"{self.col(inner, remote)} = {self.col(alias, local)}" for local, remote in rel.pairs]
        access = self.permissions.access(self.principal, target, "select")
        conditions = [
            *joins,
            self.where(target, inner, access.filter, trusted=True),
            self.where(target, inner, value, trusted=trusted),
        ]
        return f"EXISTS (SELECT 1 FROM {self.dialect.table_ref(target.table)} {inner} WHERE {' AND '.join(conditions)})"

    def _compare(self, expr: str, column: Column, ops: dict[str, Any], *, trusted: bool) -> str:
        parts: list[str] = []
        json_pg = column.scalar == "JSON" and self.dialect.name == "postgresql" and not column.array
        target = f"({expr})::jsonb" if json_pg else expr
        for op, raw in ops.items():
            value = compared_value(self.principal, raw, op, column.scalar) if trusted else raw
            if op in _COMPARISONS:
                if value is None:
                    parts.append(self.dialect.false_sql)
                    continue
                placeholder = self.param(value, column) + ("::jsonb" if json_pg else "")
                parts.append(f"{target} {_COMPARISONS[op]} {placeholder}")
            elif op in ("_in", "_nin"):
                values = [v for v in (value or []) if v is not None]
                if not values:
                    parts.append(self.dialect.false_sql if op == "_in" else self.dialect.true_sql)
                    continue
                listed = ", ".join(self.param(v, column) for v in values)
                parts.append(f"{expr} {'IN' if op == '_in' else 'NOT IN'} ({listed})")
            elif op in ("_like", "_ilike"):
                if value is None:
                    parts.append(self.dialect.false_sql)
                    continue
                insensitive = op == "_ilike"
                pattern = self.param(self.dialect.like_value(str(value), insensitive))
                parts.append(self.dialect.like(expr, pattern, insensitive))
            elif op == "_is_null":
                if value is not None:
                    parts.append(f"{expr} IS NULL" if value else f"{expr} IS NOT NULL")
            else:
                raise DataApiError(f"unknown operator {op!r} in a filter", status=500, code="bad-permission")
        return self._join(parts, "AND") if parts else self.dialect.true_sql
