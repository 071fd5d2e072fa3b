"""The schema a role sees when it introspects: only the tables, columns and operations ``api.roles`` grants it.

Requests are validated against the full schema, so a field the role may not use is refused with a 403
naming the role, table and column (:mod:`sluice.api.permissions`) rather than a bare "cannot query field".
Introspection (``__schema``, ``__type``: what GraphiQL's explorer and code generators read) is answered from
this narrower schema instead, so a role never learns the names of tables, columns or mutations it may not use.
Hasura does the same (a schema per role); the admin role sees everything.

How: the full schema is printed as SDL, each type's fields (enum values, input fields, arguments) are kept
by the role's permissions, types left empty or unreachable from the root types are dropped, and graphql-core
builds the result (``build_ast_schema``): introspection needs no resolvers. Built once per schema version and
role, then cached.

- Objects, ``_bool_exp``, ``_order_by``, ``_select_column``, ``_group_keys`` and the aggregate field types of a
  table: the columns of its ``select`` permission (and relationships to tables it may select).
- ``_insert_input``: the ``insert`` columns; ``_set_input`` and ``_update_column``: the ``update`` columns; the
  ``on_conflict`` argument (upsert) only with an ``update`` permission.
- Root fields: list, page and by-key with ``select``; aggregate with ``select`` and ``aggregate: true``;
  inserts, updates and deletes with their permission; a sync mutation when its ``roles`` list the role.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from graphql import GraphQLSchema, build_ast_schema, parse, print_schema
from graphql.language import (
    DefinitionNode,
    DocumentNode,
    EnumTypeDefinitionNode,
    FieldDefinitionNode,
    InputObjectTypeDefinitionNode,
    InputValueDefinitionNode,
    ListTypeNode,
    NamedTypeNode,
    Node,
    NonNullTypeNode,
    ObjectTypeDefinitionNode,
    TypeNode,
)

from sluice.api.gate import DataApiError
from sluice.api.model import ExposedTable, Model
from sluice.api.permissions import Permissions
from sluice.api.principal import Principal
from sluice.api.schema import RootField
from sluice.api.settings import ApiSettings

ROOTS = {"Query": "query", "Mutation": "mutation", "Subscription": "subscription"}
_QUERY_OPS = frozenset({"list", "page", "by_pk", "aggregate"})
_MUTATION_OPS = {
    "insert": "insert",
    "insert_one": "insert",
    "update": "update",
    "update_by_pk": "update",
    "delete": "delete",
    "delete_by_pk": "delete",
}
_LOGIC = {"_and", "_or", "_not"}
N = TypeVar("N", bound=Node)
_PLACEHOLDER = "_"  # the one value of an enum or field of a type for a table without columns

_cache: weakref.WeakKeyDictionary[GraphQLSchema, dict[str, GraphQLSchema]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@dataclass
class Grants:
    """What one role may use, by table base name: GraphQL field names of the columns per operation."""

    select: dict[str, set[str]] = field(default_factory=dict)
    aggregate: set[str] = field(default_factory=set)
    insert: dict[str, set[str]] = field(default_factory=dict)
    update: dict[str, set[str]] = field(default_factory=dict)
    delete: set[str] = field(default_factory=set)
    sync: set[str] = field(default_factory=set)


def role_schema(
    schema: GraphQLSchema,
    model: Model,
    roots: dict[tuple[str, str], RootField],
    permissions: Permissions,
    settings: ApiSettings,
    role: str,
) -> GraphQLSchema:
    """The part of ``schema`` (one version of the served schema, with its ``model``, ``roots`` and
    ``permissions``) that ``role`` may use, for introspection; ``schema`` itself for the admin role."""
    if role == permissions.admin_role:
        return schema
    with _lock:
        cached = _cache.setdefault(schema, {}).get(role)
    if cached is not None:
        return cached
    grants = role_grants(model, permissions, settings, role)
    narrowed = build_ast_schema(_narrow(parse(print_schema(schema)), model, roots, grants), assume_valid_sdl=True)
    with _lock:
        _cache.setdefault(schema, {})[role] = narrowed
    return narrowed


def role_grants(model: Model, permissions: Permissions, settings: ApiSettings, role: str) -> Grants:
    """``role``'s permissions on every table of ``model`` (a permission the server cannot apply counts as none)."""
    principal = Principal(role=role)
    grants = Grants()
    for table in model.tables.values():
        for operation in ("select", "insert", "update", "delete"):
            try:
                access = permissions.access(principal, table, operation)
            except DataApiError:
                continue
            columns = {name for name, column in table.fields.items() if access.allows(column.name)}
            if operation == "select":
                grants.select[table.base] = columns
                if access.aggregate:
                    grants.aggregate.add(table.base)
            elif operation == "insert":
                grants.insert[table.base] = columns
            elif operation == "update":
                grants.update[table.base] = columns
            else:
                grants.delete.add(table.base)
    grants.sync = {name for name, spec in settings.sync_mutations.items() if role in spec.roles}
    return grants


def _root_allowed(kind: str, name: str, roots: dict[tuple[str, str], RootField], grants: Grants) -> bool:
    root = roots.get((kind, name))
    if root is None:
        return name == "_empty"
    if root.op == "sync":
        return root.base in grants.sync
    if root.op in _QUERY_OPS:
        return root.base in (grants.aggregate if root.op == "aggregate" else grants.select)
    operation = _MUTATION_OPS.get(root.op)  # a Grants field: insert, update or delete
    return operation is not None and root.base in getattr(grants, operation)


def _type_rules(model: Model, grants: Grants) -> dict[str, Callable[[str], bool]]:
    """Per table type name: which of its fields (values, input fields) the role keeps."""
    rules: dict[str, Callable[[str], bool]] = {}
    for base, table in model.tables.items():
        readable = _readable(table, grants)
        insertable = grants.insert.get(base, set()) | {_PLACEHOLDER}
        updatable = grants.update.get(base, set()) | {_PLACEHOLDER}
        for name in (base, f"{base}_order_by"):
            rules[name] = readable.__contains__
        rules[f"{base}_bool_exp"] = (readable | _LOGIC).__contains__
        columns = grants.select.get(base, set()) | {_PLACEHOLDER}
        for suffix in ("select_column", "group_keys", "sum_fields", "avg_fields", "min_fields", "max_fields"):
            rules[f"{base}_{suffix}"] = columns.__contains__
        rules[f"{base}_insert_input"] = insertable.__contains__
        rules[f"{base}_set_input"] = updatable.__contains__
        rules[f"{base}_update_column"] = updatable.__contains__
    return rules


def _readable(table: ExposedTable, grants: Grants) -> set[str]:
    """A table's GraphQL fields the role may read: its selectable columns and relationships to selectable tables."""
    columns = set(grants.select.get(table.base, set()))
    return columns | {name for name, rel in table.relationships.items() if rel.target in grants.select}


def _narrow(document: DocumentNode, model: Model, roots: dict[tuple[str, str], RootField], grants: Grants) -> DocumentNode:
    rules = _type_rules(model, grants)
    kept: dict[str, DefinitionNode] = {}
    for definition in document.definitions:
        name = getattr(getattr(definition, "name", None), "value", None)
        if name is None:
            continue
        keep = _root_rule(ROOTS[name], roots, grants) if name in ROOTS else rules.get(name, _everything)
        kept[name] = _filtered(definition, keep, grants, roots, name)
    _prune(kept)
    if "Query" in kept and not _members(kept["Query"]):  # GraphQL needs a query field: say why there is none
        kept["Query"] = parse('type Query { "No table is readable by this role." _empty: String }').definitions[0]
    reached = _reachable(kept)
    return DocumentNode(definitions=tuple(d for n, d in kept.items() if n in reached))


def _everything(name: str) -> bool:
    return True


def _root_rule(kind: str, roots: dict[tuple[str, str], RootField], grants: Grants) -> Callable[[str], bool]:
    def keep(name: str) -> bool:
        return _root_allowed(kind, name, roots, grants)

    return keep


def _filtered(
    definition: DefinitionNode,
    keep: Callable[[str], bool],
    grants: Grants,
    roots: dict[tuple[str, str], RootField],
    type_name: str,
) -> DefinitionNode:
    if isinstance(definition, ObjectTypeDefinitionNode):
        fields = []
        for f in definition.fields or ():
            if not keep(f.name.value):
                continue
            if type_name == "Mutation":
                root = roots.get(("mutation", f.name.value))
                if root is not None and root.op in ("insert", "insert_one") and root.base not in grants.update:
                    f = _copy(f, arguments=tuple(a for a in f.arguments or () if a.name.value != "on_conflict"))
            fields.append(f)
        return _copy(definition, fields=tuple(fields))
    if isinstance(definition, InputObjectTypeDefinitionNode):
        return _copy(definition, fields=tuple(f for f in definition.fields or () if keep(f.name.value)))
    if isinstance(definition, EnumTypeDefinitionNode):
        return _copy(definition, values=tuple(v for v in definition.values or () if keep(v.name.value)))
    return definition


def _members(definition: DefinitionNode) -> tuple[Any, ...]:
    if isinstance(definition, (ObjectTypeDefinitionNode, InputObjectTypeDefinitionNode)):
        return tuple(definition.fields or ())
    if isinstance(definition, EnumTypeDefinitionNode):
        return tuple(definition.values or ())
    return ()


def _prune(kept: dict[str, DefinitionNode]) -> None:
    """Drop types left without fields (values), then the fields and arguments that named them, until none is left."""
    while True:
        empty = {
            name
            for name, d in kept.items()
            if isinstance(d, (ObjectTypeDefinitionNode, InputObjectTypeDefinitionNode, EnumTypeDefinitionNode))
            and not _members(d)
            and name != "Query"
        }
        if not empty:
            return
        for name in empty:
            del kept[name]
        for name, d in list(kept.items()):
            if isinstance(d, ObjectTypeDefinitionNode):
                fields = []
                for f in d.fields or ():
                    if _named(f.type) in empty or any(
                        _named(a.type) in empty and isinstance(a.type, NonNullTypeNode) for a in f.arguments or ()
                    ):
                        continue
                    fields.append(_copy(f, arguments=tuple(a for a in f.arguments or () if _named(a.type) not in empty)))
                kept[name] = _copy(d, fields=tuple(fields))
            elif isinstance(d, InputObjectTypeDefinitionNode):
                kept[name] = _copy(d, fields=tuple(f for f in d.fields or () if _named(f.type) not in empty))


def _reachable(kept: dict[str, DefinitionNode]) -> set[str]:
    """Type names reachable from the root types through fields, arguments and input fields (scalars included)."""
    seen: set[str] = set()
    todo = [name for name in ROOTS if name in kept]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for member in _members(kept[name]) if name in kept else ():
            if isinstance(member, (FieldDefinitionNode, InputValueDefinitionNode)):
                refs = [member.type, *(a.type for a in getattr(member, "arguments", None) or ())]
                todo += [_named(t) for t in refs if _named(t) in kept]
    return seen


def _named(node: TypeNode) -> str:
    while isinstance(node, (NonNullTypeNode, ListTypeNode)):
        node = node.type
    assert isinstance(node, NamedTypeNode)
    return node.name.value


def _copy(node: N, **changes: Any) -> N:
    """A copy of an AST node with some attributes replaced (graphql-core's nodes are plain objects)."""
    values = {key: getattr(node, key) for key in node.keys if key != "loc"}
    values.update(changes)
    return node.__class__(**values)
