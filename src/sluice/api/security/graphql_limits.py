"""GraphQL document limits as graphql-core validation rules: depth, cost and an allow-list of persisted queries.

Run them with graphql-core's own rules (``validate(schema, document, [*specified_rules, *gate.graphql_rules()])``)
once per new document; a refused document gets a :class:`graphql.GraphQLError` whose ``extensions.code`` is
``query-too-deep``, ``query-too-costly`` or ``query-not-allowed``, and nothing runs.

- **Depth**: the deepest nesting of fields of one operation, the root fields at depth 1 (``{ a { b } }`` is 2),
  fragments followed. Introspection's ``ofType`` chains do not count (GraphiQL's introspection query nests
  ``ofType`` seven times to unwrap types; it is bounded by the schema, not by the client).
- **Cost**: one point per field, where a field of list type multiplies the cost of what it selects by its
  literal ``limit`` (or ``first``/``last``) argument, capped by ``max_rows``, and by ``max_rows`` when the
  argument is missing or a variable (variables are not known when a document is validated and cached).
  ``{ employes(limit: 20) { id nom } }`` costs 1 + 20 × 2 = 41. The idea is GitHub's GraphQL resource
  limits (nodes counted from ``first``/``last``); introspection fields count one point each, not multiplied.
- **Persisted queries**: when ``persisted_queries_file`` is set (a JSON object ``{id: document}``, ids
  usually the SHA-256 of the document), only documents equal to one of them run; equality is on the
  printed syntax tree, so whitespace and comments do not matter. :meth:`PersistedQueries.document` looks up
  a document by id for handlers that accept ids (Apollo's ``extensions.persistedQuery.sha256Hash``).

The limits rule reports at most one depth and one cost error per operation; a fragment reached many times is measured once
(memoised), so a "fragment bomb" costs the validator linear time, and fragment cycles (reported by
graphql-core's ``NoFragmentCyclesRule``) measure as empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
    get_nullable_type,
    is_list_type,
    parse,
    print_ast,
)
from graphql.type import SchemaMetaFieldDef, TypeMetaFieldDef, TypeNameMetaFieldDef
from graphql.validation import ValidationContext

from sluice.api.security.jwt_tokens import read_json
from sluice.errors import ConfigError

LIST_SIZE_ARGUMENTS = ("limit", "first", "last")


class Measure:
    """Depth and cost of the operations of one document (see the module's docstring for the rules)."""

    def __init__(self, context: ValidationContext, max_rows: int) -> None:
        self.context = context
        self.schema: GraphQLSchema = context.schema
        self.max_rows = max_rows
        self._fragments: dict[str, tuple[int, int]] = {}
        self._visiting: set[str] = set()

    def operation(self, node: OperationDefinitionNode) -> tuple[int, int]:
        """``(depth, cost)`` of one operation."""
        root = {
            OperationType.QUERY: self.schema.query_type,
            OperationType.MUTATION: self.schema.mutation_type,
            OperationType.SUBSCRIPTION: self.schema.subscription_type,
        }[node.operation]
        if root is None:
            return 0, 0
        return self.selections(node.selection_set, root)

    def selections(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None) -> tuple[int, int]:
        depth, cost = 0, 0
        if selection_set is None:
            return depth, cost
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                sub_depth, sub_cost = self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = self.schema.get_type(selection.type_condition.name.value) if selection.type_condition else parent
                sub_depth, sub_cost = self.selections(selection.selection_set, condition)
            elif isinstance(selection, FragmentSpreadNode):
                sub_depth, sub_cost = self.fragment(selection.name.value)
            else:  # pragma: no cover - the three kinds of selection
                continue
            depth, cost = max(depth, sub_depth), cost + sub_cost
        return depth, cost

    def fragment(self, name: str) -> tuple[int, int]:
        if name in self._fragments:
            return self._fragments[name]
        definition = self.context.get_fragment(name)
        if definition is None or name in self._visiting:
            return 0, 0
        self._visiting.add(name)
        measured = self.selections(definition.selection_set, self.schema.get_type(definition.type_condition.name.value))
        self._visiting.discard(name)
        self._fragments[name] = measured
        return measured

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> tuple[int, int]:
        name = node.name.value
        field_type = self._field_type(parent, name)
        if field_type is None:  # unknown field: FieldsOnCorrectTypeRule reports it
            return 1, 1
        sub_depth, sub_cost = self.selections(node.selection_set, get_named_type(field_type))
        introspection = name.startswith("__") or (parent is not None and parent.name.startswith("__"))
        if introspection:
            return (sub_depth if name == "ofType" else 1 + sub_depth), 1 + sub_cost
        return 1 + sub_depth, 1 + self._rows(node, field_type) * sub_cost

    def _rows(self, node: FieldNode, field_type: GraphQLOutputType) -> int:
        if not is_list_type(get_nullable_type(field_type)):  # type: ignore[arg-type]
            return 1
        for argument in node.arguments:
            if argument.name.value in LIST_SIZE_ARGUMENTS and isinstance(argument.value, IntValueNode):
                return max(0, min(int(argument.value.value), self.max_rows))
        return self.max_rows

    def _field_type(self, parent: GraphQLNamedType | None, name: str) -> GraphQLOutputType | None:
        if name == "__typename":
            return TypeNameMetaFieldDef.type
        if parent is self.schema.query_type and name == "__schema":
            return SchemaMetaFieldDef.type
        if parent is self.schema.query_type and name == "__type":
            return TypeMetaFieldDef.type
        if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            definition = parent.fields.get(name)
            return None if definition is None else definition.type
        return None


def limits_rule(max_depth: int, max_cost: int, max_rows: int) -> type[ValidationRule]:
    """A rule refusing operations nested deeper than ``max_depth`` (``query-too-deep``) or costing more than
    ``max_cost`` points (``query-too-costly``); each operation is measured once for both."""

    class DocumentLimitsRule(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: Any) -> None:
            measure = Measure(self.context, max_rows)
            for definition in node.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                depth, cost = measure.operation(definition)
                name = _name(definition)
                if depth > max_depth:
                    message = f"{name} is nested {depth} levels deep; the most allowed is {max_depth}"
                    self.report_error(GraphQLError(message, definition, extensions={"code": "query-too-deep"}))
                if cost > max_cost:
                    message = (
                        f"{name} costs {cost} points; the most allowed is {max_cost} "
                        "(one per field, lists times their `limit` argument, else times the row maximum)"
                    )
                    extensions = {"code": "query-too-costly", "cost": cost, "max_cost": max_cost}
                    self.report_error(GraphQLError(message, definition, extensions=extensions))

    return DocumentLimitsRule


class PersistedQueries:
    """The allow-list of one ``persisted_queries_file``. Raises ConfigError (file and id) when it cannot be read."""

    def __init__(self, path: Path) -> None:
        where = f"api.limits.graphql.persisted_queries_file: {path}"
        data = read_json(path, "api.limits.graphql.persisted_queries_file")
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            raise ConfigError(f"{where} must be a JSON object of {{id: document}} strings")
        self.by_id: dict[str, str] = data
        self.printed: set[str] = set()
        for query_id, document in data.items():
            try:
                self.printed.add(print_ast(parse(document, no_location=True)))
            except GraphQLSyntaxError as exc:
                raise ConfigError(f"{where}: the document {query_id!r} does not parse: {exc.message}") from None

    def document(self, query_id: str) -> str | None:
        """The document persisted under ``query_id``, or None."""
        return self.by_id.get(query_id)

    def allows(self, document: DocumentNode) -> bool:
        """Whether ``document`` is one of the persisted documents (compared as printed syntax trees)."""
        return print_ast(document) in self.printed

    def rule(self) -> type[ValidationRule]:
        """A rule refusing every other document (``query-not-allowed``)."""
        allowed = self

        class PersistedQueryRule(ValidationRule):
            def enter_document(self, node: DocumentNode, *_: Any) -> None:
                if not allowed.allows(node):
                    self.report_error(
                        GraphQLError(
                            "only persisted queries are allowed here, and this document is not one of them",
                            node,
                            extensions={"code": "query-not-allowed"},
                        )
                    )

        return PersistedQueryRule


def _name(operation: OperationDefinitionNode) -> str:
    kind = operation.operation.value
    return f"the {kind} {operation.name.value}" if operation.name else f"the {kind}"
