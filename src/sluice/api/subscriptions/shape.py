"""What a GraphQL operation is, and which tables a subscription reads (the tables whose changes re-run it).

A subscription reads its root field's table, the tables of the relationships it selects (at any depth), of
the relationships its ``where`` arguments go through, and of those the role's row filters go through
(:mod:`sluice.api.permissions`): a change to any of them may change its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLObjectType,
    OperationType,
    get_named_type,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.utilities import get_operation_ast

from sluice.api.gate import DataApiError
from sluice.api.principal import Principal
from sluice.api.service import SchemaState


@dataclass(frozen=True, slots=True)
class Shape:
    """A subscription operation: its root field's name and table (``base``), and every table it reads."""

    field: str
    base: str
    tables: frozenset[str]


def operation_kind(document: DocumentNode, name: str | None) -> OperationType:
    """``query``, ``mutation`` or ``subscription``; :class:`DataApiError` 400 when ``name`` picks nothing."""
    operation = get_operation_ast(document, name)
    if operation is None:
        raise DataApiError(
            "name the operation to run with 'operationName'" if name is None else f"no operation named {name!r}",
            code="bad-request",
        )
    return operation.operation


def subscription_shape(
    state: SchemaState, document: DocumentNode, name: str | None, variables: dict[str, Any], principal: Principal
) -> Shape:
    """The :class:`Shape` of the subscription operation ``name`` of a validated ``document``.

    Raises :class:`DataApiError` 400 for variables of the wrong type."""
    operation = get_operation_ast(document, name)
    schema = state.schema
    assert operation is not None and schema.subscription_type is not None
    coerced = get_variable_values(schema, operation.variable_definitions, variables)
    if isinstance(coerced, list):
        raise DataApiError(coerced[0].message, code="validation-failed")
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    walker = _Walker(state, fragments, coerced, principal)
    grouped = collect_fields(schema, fragments, coerced, schema.subscription_type, operation.selection_set)
    roots = [(key, nodes) for key, nodes in grouped.items() if not nodes[0].name.value.startswith("__")]
    if len(roots) != 1:
        raise DataApiError("a subscription selects exactly one root field", code="validation-failed")
    nodes = roots[0][1]
    field_name = nodes[0].name.value
    root = state.roots[("subscription", field_name)]
    definition = schema.subscription_type.fields[field_name]
    walker.where(root.base, get_argument_values(definition, nodes[0], coerced).get("where"))
    walker.tables.add(root.base)
    if get_named_type(definition.type).name == root.base:
        walker.selection(root.base, list(nodes))
    walker.row_filters()
    return Shape(field_name, root.base, frozenset(walker.tables))


class _Walker:
    def __init__(
        self, state: SchemaState, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any], principal: Principal
    ) -> None:
        self.state = state
        self.fragments = fragments
        self.variables = variables
        self.principal = principal
        self.tables: set[str] = set()

    def selection(self, base: str, nodes: list[FieldNode]) -> None:
        object_type = self.state.schema.get_type(base)
        assert isinstance(object_type, GraphQLObjectType)
        table = self.state.model.tables[base]
        grouped = collect_sub_fields(self.state.schema, self.fragments, self.variables, object_type, nodes)
        for field_nodes in grouped.values():
            relationship = table.relationships.get(field_nodes[0].name.value)
            if relationship is None:
                continue
            self.tables.add(relationship.target)
            arguments = get_argument_values(object_type.fields[relationship.name], field_nodes[0], self.variables)
            self.where(relationship.target, arguments.get("where"))
            self.selection(relationship.target, list(field_nodes))

    def where(self, base: str, expression: Any) -> None:
        """The tables a boolean expression on ``base`` goes through (``_and``, ``_or``, ``_not``, relationships)."""
        if not isinstance(expression, dict):
            return
        relationships = self.state.model.tables[base].relationships
        for key, value in expression.items():
            if key in ("_and", "_or") and isinstance(value, list):
                for item in value:
                    self.where(base, item)
            elif key == "_not":
                self.where(base, value)
            elif key in relationships:
                target = relationships[key].target
                self.tables.add(target)
                self.where(target, value)

    def row_filters(self) -> None:
        """Add the tables the role's row filters on the tables read go through, until nothing new comes."""
        seen: set[str] = set()
        while self.tables - seen:
            base = next(iter(self.tables - seen))
            seen.add(base)
            try:
                access = self.state.permissions.access(self.principal, self.state.model.tables[base], "select")
            except DataApiError:
                continue  # the run refuses it with the role's error
            self.where(base, access.filter)
