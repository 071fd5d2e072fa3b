"""The GraphQL schema generated from the exposed tables (graphql-core types; nothing resolves through it:
requests are compiled to SQL by :mod:`sluice.api.compile_select` and :mod:`sluice.api.compile_mutation`).

Per table ``T`` (names after Hasura's, which most GraphQL clients of SQL databases know):

- queries ``T(where, order_by, limit, offset): [T!]!``, ``T_page(where, order_by, first, after): T_page!``
  (cursor pagination, ``page_info { end_cursor has_next_page }``), ``T_by_pk(<key columns>): T``,
  ``T_aggregate(where, group_by): [T_aggregate_group!]!`` (``keys``, ``count``, ``sum``, ``avg``, ``min``, ``max``);
- mutations ``insert_T(objects, on_conflict)``, ``insert_T_one(object, on_conflict)``, ``update_T(where, _set)``,
  ``update_T_by_pk(pk_columns, _set)``, ``delete_T(where)``, ``delete_T_by_pk(<key columns>)``; the
  many-row ones answer ``T_mutation_response { affected_rows returning }``;
- ``T_bool_exp`` (``_and``, ``_or``, ``_not``, a ``<Scalar>_comparison_exp`` per column, a ``T2_bool_exp`` per
  relationship), ``T_order_by``, ``T_select_column``.

:func:`build_schema` returns the schema and :class:`RootField` entries telling the compilers what each
root field does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLEnumValue,
    GraphQLField,
    GraphQLFloat,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
)

from sluice.api.catalog import NUMERIC, ORDERABLE, Column
from sluice.api.model import ExposedTable, Model, graphql_name
from sluice.api.scalars import SCALARS

log = logging.getLogger("sluice.api")
DIRECTIONS = ("asc", "desc", "asc_nulls_first", "asc_nulls_last", "desc_nulls_first", "desc_nulls_last")


@dataclass(frozen=True, slots=True)
class RootField:
    """What a root field does: ``op`` (one of :data:`sluice.api.model.OPERATIONS`) on table ``base``."""

    op: str
    base: str


def _nn(t: Any) -> Any:
    return GraphQLNonNull(t)


def _list(t: Any) -> Any:
    return GraphQLList(GraphQLNonNull(t))


class _Builder:
    def __init__(self, model: Model) -> None:
        self.model = model
        self.objects: dict[str, GraphQLObjectType] = {}
        self.bool_exps: dict[str, GraphQLInputObjectType] = {}
        self.order_bys: dict[str, GraphQLInputObjectType] = {}
        self.comparisons: dict[str, GraphQLInputObjectType] = {}
        self.order_enum = GraphQLEnumType(
            "order_by", {d: GraphQLEnumValue(d) for d in DIRECTIONS}, description="Sort direction and where nulls go."
        )
        self.page_info = GraphQLObjectType(
            "page_info",
            {
                "end_cursor": GraphQLField(GraphQLString, description="Pass as `after` for the next page."),
                "has_next_page": GraphQLField(_nn(GraphQLBoolean)),
            },
        )
        self.roots: dict[tuple[str, str], RootField] = {}

    def scalar(self, column: Column) -> GraphQLScalarType:
        return SCALARS[column.scalar]

    def comparison(self, scalar: str) -> GraphQLInputObjectType:
        if scalar not in self.comparisons:
            t = SCALARS[scalar]
            fields: dict[str, GraphQLInputField] = {}
            ops = ("_eq", "_neq") if scalar == "JSON" else ("_eq", "_neq", "_gt", "_gte", "_lt", "_lte")
            for op in ops:
                fields[op] = GraphQLInputField(t)
            if scalar != "JSON":
                fields["_in"] = GraphQLInputField(_list(t))
                fields["_nin"] = GraphQLInputField(_list(t))
            if scalar == "String":
                fields["_like"] = GraphQLInputField(GraphQLString, description="SQL LIKE, case-sensitive (% and _).")
                fields["_ilike"] = GraphQLInputField(GraphQLString, description="SQL LIKE, case-insensitive.")
            fields["_is_null"] = GraphQLInputField(GraphQLBoolean)
            self.comparisons[scalar] = GraphQLInputObjectType(f"{scalar}_comparison_exp", fields)
        return self.comparisons[scalar]

    def obj(self, base: str) -> GraphQLObjectType:
        if base not in self.objects:
            t = self.model.tables[base]

            def fields(t: ExposedTable = t) -> dict[str, GraphQLField]:
                return self.object_fields(t)

            self.objects[base] = GraphQLObjectType(
                base, fields, description=f"{t.table.kind} {t.table.qualified} of '{t.connection}'"
            )
        return self.objects[base]

    def object_fields(self, t: ExposedTable) -> dict[str, GraphQLField]:
        fields: dict[str, GraphQLField] = {}
        for name, column in t.fields.items():
            scalar: GraphQLOutputType = self.scalar(column)
            fields[name] = GraphQLField(
                scalar if column.nullable else _nn(scalar), description=f"column {column.name} ({column.type})"
            )
        for name, rel in t.relationships.items():
            target = self.obj(rel.target)
            if rel.kind == "object":
                fields[name] = GraphQLField(target)
            else:
                fields[name] = GraphQLField(_nn(_list(target)), args=self.list_args(rel.target))
        return fields

    def bool_exp(self, base: str) -> GraphQLInputObjectType:
        if base not in self.bool_exps:
            t = self.model.tables[base]

            def fields(t: ExposedTable = t) -> dict[str, GraphQLInputField]:
                exp = self.bool_exps[t.base]
                result = {
                    "_and": GraphQLInputField(_list(exp)),
                    "_or": GraphQLInputField(_list(exp)),
                    "_not": GraphQLInputField(exp),
                }
                result.update({n: GraphQLInputField(self.comparison(c.scalar)) for n, c in t.fields.items()})
                result.update({n: GraphQLInputField(self.bool_exp(r.target)) for n, r in t.relationships.items()})
                return result

            self.bool_exps[base] = GraphQLInputObjectType(f"{base}_bool_exp", fields)
        return self.bool_exps[base]

    def order_by(self, base: str) -> GraphQLInputObjectType:
        if base not in self.order_bys:
            t = self.model.tables[base]
            fields = {n: GraphQLInputField(self.order_enum) for n, c in t.fields.items() if c.scalar in ORDERABLE}
            self.order_bys[base] = GraphQLInputObjectType(f"{base}_order_by", fields or {"_": GraphQLInputField(self.order_enum)})
        return self.order_bys[base]

    def list_args(self, base: str) -> dict[str, GraphQLArgument]:
        return {
            "where": GraphQLArgument(self.bool_exp(base)),
            "order_by": GraphQLArgument(_list(self.order_by(base))),
            "limit": GraphQLArgument(GraphQLInt),
            "offset": GraphQLArgument(GraphQLInt),
        }

    def add_root(self, fields: dict[str, GraphQLField], name: str, field: GraphQLField, op: str, base: str) -> None:
        if name in fields:
            log.warning("data API: %s of %s is left out: the field name %s is taken", op, base, name)
            return
        fields[name] = field
        kind = "query" if op in ("list", "page", "by_pk", "aggregate") else "mutation"
        self.roots[(kind, name)] = RootField(op, base)

    def query_fields(self) -> dict[str, GraphQLField]:
        fields: dict[str, GraphQLField] = {}
        for t in self.model.tables.values():
            names = t.names
            self.add_root(
                fields, names["list"], GraphQLField(_nn(_list(self.obj(t.base))), args=self.list_args(t.base)), "list", t.base
            )
            page = GraphQLObjectType(
                f"{t.base}_page",
                {"nodes": GraphQLField(_nn(_list(self.obj(t.base)))), "page_info": GraphQLField(_nn(self.page_info))},
            )
            page_args = {
                "where": GraphQLArgument(self.bool_exp(t.base)),
                "order_by": GraphQLArgument(_list(self.order_by(t.base))),
                "first": GraphQLArgument(GraphQLInt),
                "after": GraphQLArgument(GraphQLString, description="The `end_cursor` of the previous page."),
            }
            self.add_root(fields, names["page"], GraphQLField(_nn(page), args=page_args), "page", t.base)
            if t.table.primary_key:
                self.add_root(fields, names["by_pk"], GraphQLField(self.obj(t.base), args=self.pk_args(t)), "by_pk", t.base)
            self.add_root(fields, names["aggregate"], self.aggregate_field(t), "aggregate", t.base)
        return fields

    def pk_args(self, t: ExposedTable) -> dict[str, GraphQLArgument]:
        table = t.table
        return {graphql_name(c): GraphQLArgument(_nn(SCALARS[table.column_map[c].scalar])) for c in table.primary_key}

    def aggregate_field(self, t: ExposedTable) -> GraphQLField:
        columns = GraphQLEnumType(
            f"{t.base}_select_column", {n: GraphQLEnumValue(n) for n in t.fields} or {"_": GraphQLEnumValue("_")}
        )
        fields: dict[str, GraphQLField] = {
            "keys": GraphQLField(
                GraphQLObjectType(
                    f"{t.base}_group_keys",
                    {n: GraphQLField(self.scalar(c)) for n, c in t.fields.items()} or {"_": GraphQLField(GraphQLString)},
                ),
                description="The group-by columns' values of this group (others are null).",
            ),
            "count": GraphQLField(_nn(GraphQLInt)),
        }
        numeric = {n: c for n, c in t.fields.items() if c.scalar in NUMERIC}
        orderable = {n: c for n, c in t.fields.items() if c.scalar in ORDERABLE and c.scalar != "Boolean"}
        if numeric:
            for op in ("sum", "avg"):
                kinds = {n: GraphQLField(GraphQLFloat if c.scalar == "Float" else SCALARS["Numeric"]) for n, c in numeric.items()}
                fields[op] = GraphQLField(GraphQLObjectType(f"{t.base}_{op}_fields", kinds))
        if orderable:
            for op in ("min", "max"):
                fields[op] = GraphQLField(
                    GraphQLObjectType(f"{t.base}_{op}_fields", {n: GraphQLField(self.scalar(c)) for n, c in orderable.items()})
                )
        group = GraphQLObjectType(
            f"{t.base}_aggregate_group", fields, description="One group (the whole selection without group_by)."
        )
        return GraphQLField(
            _nn(_list(group)),
            args={"where": GraphQLArgument(self.bool_exp(t.base)), "group_by": GraphQLArgument(_list(columns))},
        )

    def mutation_fields(self) -> dict[str, GraphQLField]:
        fields: dict[str, GraphQLField] = {}
        for t in self.model.tables.values():
            if t.writer is None:
                continue
            table, names, base = t.writer.table, t.names, t.base
            writable = {graphql_name(c.name): c for c in table.columns if not c.generated}
            if not writable:
                continue
            insert_input = GraphQLInputObjectType(
                f"{base}_insert_input", {n: GraphQLInputField(SCALARS[c.scalar]) for n, c in writable.items()}
            )
            set_input = GraphQLInputObjectType(
                f"{base}_set_input", {n: GraphQLInputField(SCALARS[c.scalar]) for n, c in writable.items()}
            )
            update_column = GraphQLEnumType(f"{base}_update_column", {n: GraphQLEnumValue(n) for n in writable})
            on_conflict = GraphQLInputObjectType(
                f"{base}_on_conflict",
                {
                    "update_columns": GraphQLInputField(
                        _nn(_list(update_column)), description="Columns to overwrite ([]: do nothing)."
                    ),
                    "where": GraphQLInputField(self.bool_exp(base), description="Only rows matching this are updated."),
                },
                description="Upsert on the primary key.",
            )
            pk_input = GraphQLInputObjectType(
                f"{base}_pk_columns_input",
                {graphql_name(c): GraphQLInputField(_nn(SCALARS[table.column_map[c].scalar])) for c in table.primary_key},
            )
            response = GraphQLObjectType(
                f"{base}_mutation_response",
                {"affected_rows": GraphQLField(_nn(GraphQLInt)), "returning": GraphQLField(_nn(_list(self.obj(base))))},
            )
            obj = self.obj(base)
            pk_args = {graphql_name(c): GraphQLArgument(_nn(SCALARS[table.column_map[c].scalar])) for c in table.primary_key}
            conflict = GraphQLArgument(on_conflict)
            self.add_root(
                fields,
                names["insert"],
                GraphQLField(response, args={"objects": GraphQLArgument(_nn(_list(insert_input))), "on_conflict": conflict}),
                "insert",
                base,
            )
            self.add_root(
                fields,
                names["insert_one"],
                GraphQLField(obj, args={"object": GraphQLArgument(_nn(insert_input)), "on_conflict": conflict}),
                "insert_one",
                base,
            )
            self.add_root(
                fields,
                names["update"],
                GraphQLField(
                    response, args={"where": GraphQLArgument(_nn(self.bool_exp(base))), "_set": GraphQLArgument(set_input)}
                ),
                "update",
                base,
            )
            self.add_root(
                fields,
                names["update_by_pk"],
                GraphQLField(obj, args={"pk_columns": GraphQLArgument(_nn(pk_input)), "_set": GraphQLArgument(set_input)}),
                "update_by_pk",
                base,
            )
            self.add_root(
                fields,
                names["delete"],
                GraphQLField(response, args={"where": GraphQLArgument(_nn(self.bool_exp(base)))}),
                "delete",
                base,
            )
            self.add_root(fields, names["delete_by_pk"], GraphQLField(obj, args=pk_args), "delete_by_pk", base)
        return fields


def build_schema(model: Model) -> tuple[GraphQLSchema, dict[tuple[str, str], RootField]]:
    """The GraphQL schema of ``model`` and what each root field does, by (``query`` or ``mutation``, name)."""
    builder = _Builder(model)
    query = builder.query_fields()
    if not query:
        query = {"_empty": GraphQLField(GraphQLString, description="No table is exposed (see api.sources).")}
    mutation = builder.mutation_fields()
    schema = GraphQLSchema(
        query=GraphQLObjectType("Query", query),
        mutation=GraphQLObjectType("Mutation", mutation) if mutation else None,
        types=list(SCALARS.values()),
    )
    return schema, builder.roots
