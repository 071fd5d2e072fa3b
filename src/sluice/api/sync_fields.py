"""Sync mutations in GraphQL (``api.sync_mutations``): a mutation field per entry that runs one pass of a sync
of the project's ``syncs:`` and answers what it applied (seed 000's ``sync_employes``).

Schema, for an entry ``sync_employes: {sync: employees, roles: [editor], resync: true}``::

    sync_employes(resync: Boolean = false, tables: [String!]): SyncPass!

    type SyncPass { sync mode state error seconds resynced applied: SyncRowCounts tables: [SyncPassTable!]! }
    type SyncPassTable { source_table target_table direction state error position lag_s applied: SyncRowCounts }
    type SyncRowCounts { snapshot insert update delete truncate total }

``resync: true`` copies the sync's tables again first (only ``tables`` when given; refused with 403
``resync-not-allowed`` unless the entry says ``resync: true``). Only the entry's ``roles`` and
``api.admin_role`` may call the field (else 403 ``permission-denied``). The work is done by a
:class:`SyncRunner` (:class:`sluice.api.sync_pass.SyncPasses` in ``sluice serve``); without one the field
answers 503 ``sync-unavailable``. The answer is a plain value shaped here by the request's selection
(aliases, fragments, ``@skip``/``@include``, ``__typename``); no SQL is involved.
"""

from __future__ import annotations

from typing import Any, Protocol

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    GraphQLArgument,
    GraphQLBoolean,
    GraphQLField,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLString,
)
from graphql.execution.collect_fields import collect_sub_fields
from graphql.execution.values import get_argument_values

from sluice.api.gate import DataApiError
from sluice.api.principal import Principal
from sluice.api.settings import ApiSettings, SyncMutation

MAX_ITEMS = "sluice_max_items"
"""Bounds a list field's rows for the cost limit (the key :mod:`sluice.api.security.graphql_limits` reads)."""

MAX_TABLES = 100
"""The tables a sync's answer is costed at by the GraphQL cost limit (``limits.graphql.max_cost``)."""
COUNTS = ("snapshot", "insert", "update", "delete", "truncate")
"""Operations counted in a :class:`SyncRowCounts` (the sync status' names, :data:`sluice.cdc.events.OPERATION_NAMES`)."""


class SyncRunner(Protocol):
    """Runs passes of the project's syncs for the sync mutation fields."""

    def run(self, sync: str, resync: bool, tables: list[str] | None, timeout_s: float) -> dict[str, Any]:
        """One pass of ``sync`` (after copying ``tables``, or every table, again when ``resync``), waiting at
        most ``timeout_s`` seconds; the answer as a ``SyncPass`` value (a dict of the type's fields).
        Raises :class:`DataApiError` for a request that cannot run (unknown table 400, busy 409)."""
        ...


def _nn(t: Any) -> Any:
    return GraphQLNonNull(t)


def sync_mutation_fields(settings: ApiSettings) -> dict[str, GraphQLField]:
    """The GraphQL fields of ``settings.sync_mutations`` (types built anew for each schema)."""
    if not settings.sync_mutations:
        return {}
    counts = GraphQLObjectType(
        "SyncRowCounts",
        {**{op: GraphQLField(_nn(GraphQLInt)) for op in COUNTS}, "total": GraphQLField(_nn(GraphQLInt))},
        description="Rows applied to the target, by operation (a snapshot's rows count as `snapshot`).",
    )
    table = GraphQLObjectType(
        "SyncPassTable",
        {
            "source_table": GraphQLField(_nn(GraphQLString)),
            "target_table": GraphQLField(_nn(GraphQLString)),
            "direction": GraphQLField(_nn(GraphQLString), description="`<source connection> -> <target connection>`."),
            "state": GraphQLField(_nn(GraphQLString), description="waiting, snapshotting, streaming, stopped or error."),
            "error": GraphQLField(GraphQLString),
            "position": GraphQLField(GraphQLString, description="The last applied source position, as the database shows it."),
            "lag_s": GraphQLField(GraphQLFloat, description="Seconds from source commit to applied, at the end of the call."),
            "applied": GraphQLField(_nn(counts), description="Rows applied to this table during the call."),
        },
    )
    result = GraphQLObjectType(
        "SyncPass",
        {
            "sync": GraphQLField(_nn(GraphQLString)),
            "mode": GraphQLField(
                _nn(GraphQLString),
                description="`pass`: the call ran a pass (as `sluice sync --once`); `hosted`: the server runs the "
                "sync (`sluice serve --sync`) and the call waited until it had applied what the source held at the call.",
            ),
            "state": GraphQLField(
                _nn(GraphQLString), description="`done`, `timeout` (the pass goes on in the background or stopped) or `error`."
            ),
            "error": GraphQLField(GraphQLString),
            "seconds": GraphQLField(_nn(GraphQLFloat), description="How long the call took."),
            "resynced": GraphQLField(
                _nn(GraphQLList(_nn(GraphQLString))),
                description="Source tables copied again.",
                extensions={MAX_ITEMS: MAX_TABLES},
            ),
            "applied": GraphQLField(_nn(counts), description="Rows applied during the call, all tables."),
            "tables": GraphQLField(_nn(GraphQLList(_nn(table))), extensions={MAX_ITEMS: MAX_TABLES}),
        },
        description="What one call of a sync mutation did (docs/api/graphql.md, Sync mutations).",
    )
    fields: dict[str, GraphQLField] = {}
    for name, entry in settings.sync_mutations.items():
        args = {
            "resync": GraphQLArgument(
                GraphQLBoolean,
                default_value=False,
                description="Copy the tables again first (allowed when the API's configuration says `resync: true`).",
            ),
            "tables": GraphQLArgument(
                GraphQLList(_nn(GraphQLString)),
                description="With `resync`: only these source tables (`name` or `schema.name`); default: all.",
            ),
        }
        fields[name] = GraphQLField(
            _nn(result), args=args, description=f"Run one pass of the sync '{entry.sync}' and answer what it applied."
        )
    return fields


def run_sync_field(
    settings: ApiSettings,
    runner: SyncRunner | None,
    schema: GraphQLSchema,
    definition: GraphQLField,
    name: str,
    nodes: list[FieldNode],
    principal: Principal,
    variables: dict[str, Any],
    fragments: dict[str, FragmentDefinitionNode],
) -> Any:
    """Answer the sync mutation field ``name`` (its merged ``nodes``) for ``principal``: the pass's result
    shaped by the selection. Raises :class:`DataApiError` 403 (role, resync), 503 (no runner)."""
    entry: SyncMutation = settings.sync_mutations[name]
    if principal.role != settings.admin_role and principal.role not in entry.roles:
        raise DataApiError(f"role '{principal.role}' may not run {name}", status=403, code="permission-denied")
    args = get_argument_values(definition, nodes[0], variables)
    resync = bool(args.get("resync"))
    tables = args.get("tables")
    if resync and not entry.resync:
        raise DataApiError(
            f"{name} runs passes only: its configuration does not allow resync", status=403, code="resync-not-allowed"
        )
    if tables is not None and not resync:
        raise DataApiError("'tables' names the tables to copy again: give it with resync: true", code="validation-failed")
    if runner is None:
        raise DataApiError("this server cannot run syncs (no project)", status=503, code="sync-unavailable")
    value = runner.run(entry.sync, resync, list(tables) if tables is not None else None, entry.timeout_s)
    return shape(schema, fragments, variables, definition.type, nodes, value)


def shape(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    type_: GraphQLOutputType,
    nodes: list[FieldNode],
    value: Any,
) -> Any:
    """``value`` (dicts, lists, scalars ready for JSON) cut to the selection of ``nodes`` on ``type_``."""
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    if value is None:
        return None
    if isinstance(type_, GraphQLList):
        return [shape(schema, fragments, variables, type_.of_type, nodes, item) for item in value]
    if isinstance(type_, GraphQLObjectType):
        out: dict[str, Any] = {}
        for key, field_nodes in collect_sub_fields(schema, fragments, variables, type_, nodes).items():
            field_name = field_nodes[0].name.value
            if field_name == "__typename":
                out[key] = type_.name
                continue
            out[key] = shape(
                schema, fragments, variables, type_.fields[field_name].type, list(field_nodes), value.get(field_name)
            )
        return out
    return value
