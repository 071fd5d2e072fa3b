"""One GraphQL request, from its JSON body to the answer's bytes (GraphQL over HTTP).

A query's root fields are grouped by database and each group becomes **one** SQL statement whose single
value is the JSON of the group's fields; when the whole answer comes from one statement (the usual case) its
text is the answer's ``data`` as is, never decoded in Python. Pages (cursors), introspection (run by
graphql-core) and several databases are merged in Python. Mutation fields run one after another
(:mod:`sluice.api.compile_mutation`).

Answers: 200 with ``data``; otherwise ``{"errors": [{"message", "extensions": {"code"}}]}`` with the
:class:`~sluice.api.gate.DataApiError`'s status: 400 for a document that does not parse or validate, for
variables of the wrong type, broken constraints and bad values, 403 for permissions, 405 for a mutation over
GET. A database that cannot be reached is a 503; only a bug is a 500, and no answer carries SQL text.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    execute,
)
from graphql.execution.collect_fields import collect_fields
from graphql.execution.values import get_variable_values
from graphql.utilities import get_operation_ast

from sluice.api import metrics
from sluice.api.compile_mutation import run_mutation
from sluice.api.compile_select import PagePlan, finish_page, root_sql
from sluice.api.compiler import Compiler, Fields
from sluice.api.databases import StaleCatalog
from sluice.api.dialects import Dialect
from sluice.api.gate import DataApiError
from sluice.api.nesting import check_variables, too_deep
from sluice.api.plans import Plan, Probe, plan_key, positional, tagged
from sluice.api.principal import Principal
from sluice.api.role_schema import role_schema
from sluice.api.service import DataApi, SchemaState
from sluice.api.sync_fields import run_sync_field

log = logging.getLogger("sluice.api")
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
LIVE = "LIVE"
"""The ``method`` of a subscription's runs (:func:`run_live`): the only one under which subscriptions execute."""


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status, JSON body bytes, extra headers."""

    status: int
    body: bytes
    headers: dict[str, str]


def error_body(message: str, code: str) -> dict[str, Any]:
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


def answer_error(exc: DataApiError) -> Answer:
    return Answer(exc.status, _ENCODE(error_body(str(exc), exc.code)).encode(), dict(exc.headers))


def run_live(api: DataApi, query: str, variables: dict[str, Any], name: str | None, principal: Principal) -> bytes:
    """One run of a subscription operation (its one root field, run as the query of the same name: one
    statement): the ``data`` JSON bytes. Raises :class:`DataApiError` as a query would."""
    return _operation(api, query, variables, name, principal, LIVE, started=time.monotonic())[1]


def run_request(api: DataApi, body: Any, principal: Principal, method: str = "POST") -> Answer:
    """Answer a request body: one operation (a JSON object) or a batch (a JSON list, checked by the gate)."""
    if isinstance(body, list):
        started = time.perf_counter()
        try:
            api.gate.check_batch(len(body))
        except DataApiError as exc:
            metrics.observe(api.name, metrics.UNKNOWN, principal.role, exc.status, exc.code, time.perf_counter() - started)
            return answer_error(exc)
        answers = [_one(api, item, principal, method) for item in body]
        return Answer(200, b"[" + b",".join(a.body for a in answers) + b"]", {})
    return _one(api, body, principal, method)


def _one(api: DataApi, body: Any, principal: Principal, method: str) -> Answer:
    started = time.perf_counter()
    operation = metrics.UNKNOWN
    try:
        query, variables, name = request_parts(body)
        status, data, operation = _operation(api, query, variables, name, principal, method, started=time.monotonic())
        answer = Answer(status, b'{"data":' + data + b"}", {})
        code = None
    except DataApiError as exc:
        answer, code = answer_error(exc), exc.code
    except RecursionError:  # a last resort: sluice.api.nesting's bounds should keep every recursion off it
        log.warning("data API: a request nested too deep for Python's recursion limit was refused")
        answer, code = answer_error(too_deep("request")), "query-too-deep"
    metrics.observe(api.name, operation, principal.role, answer.status, code, time.perf_counter() - started)
    return answer


def request_parts(body: Any) -> tuple[str, dict[str, Any], str | None]:
    """``query``, ``variables`` and ``operationName`` of a request body (GraphQL over HTTP's JSON object);
    :class:`DataApiError` 400 ``bad-request`` when one is missing or of the wrong type."""
    if not isinstance(body, dict):
        raise DataApiError("the request must be a JSON object with a 'query' (or a list of them)", code="bad-request")
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise DataApiError("the request has no 'query' string", code="bad-request")
    variables = body.get("variables") or {}
    if isinstance(variables, str):
        try:
            variables = json.loads(variables)
        except ValueError:
            raise DataApiError("'variables' is not JSON", code="bad-request") from None
        except RecursionError:
            raise too_deep("variables") from None
    if not isinstance(variables, dict):
        raise DataApiError("'variables' must be a JSON object", code="bad-request")
    check_variables(variables)
    name = body.get("operationName")
    if name is not None and not isinstance(name, str):
        raise DataApiError("'operationName' must be a string", code="bad-request")
    return query, variables, name


def _operation(
    api: DataApi, query: str, variables: dict[str, Any], name: str | None, principal: Principal, method: str, *, started: float
) -> tuple[int, bytes, str]:
    """Run the operation; on a stale catalog refresh it and run once more."""
    for attempt in (1, 2):
        state = api.state()
        parsed = api.parsed(query, state)
        if parsed.errors and parsed.document is not None and attempt == 1:
            fresh = api.refresh(force=True, since=started)
            if fresh.version != state.version:
                continue
        if parsed.errors or parsed.document is None:
            first = parsed.errors[0]
            if parsed.document is None:
                raise DataApiError(first.message, code="parse-failed")
            code = (first.extensions or {}).get("code")  # the gate's rules: query-too-costly, query-too-deep, ...
            raise DataApiError(first.message, code=code if isinstance(code, str) else "validation-failed")
        try:
            return _execute(api, state, parsed.document, variables, name, principal, method, query)
        except StaleCatalog:
            if attempt == 2:
                break
            api.refresh(force=True)
    raise DataApiError("the database's tables are changing; try again", status=503, code="schema-changing")


def _execute(
    api: DataApi,
    state: SchemaState,
    document: DocumentNode,
    variables: dict[str, Any],
    name: str | None,
    principal: Principal,
    method: str,
    query: str = "",
) -> tuple[int, bytes, str]:
    operation = get_operation_ast(document, name)
    if operation is None:
        raise DataApiError(
            "name the operation to run with 'operationName'" if name is None else f"no operation named {name!r}",
            code="bad-request",
        )
    is_live = operation.operation == OperationType.SUBSCRIPTION
    if is_live and method != LIVE:
        raise DataApiError(
            "a subscription is served over WebSocket (graphql-transport-ws) or as Server-Sent Events "
            "(Accept: text/event-stream), not as one HTTP answer",
            code="bad-request",
        )
    if operation.operation == OperationType.MUTATION and method != "POST":
        raise DataApiError("mutations must be sent with POST", status=405, code="method-not-allowed", headers={"Allow": "POST"})
    coerced = get_variable_values(state.schema, operation.variable_definitions, variables)
    if isinstance(coerced, list):
        raise DataApiError(coerced[0].message, code="validation-failed")
    planning: tuple[tuple[Any, ...], Probe] | None = None
    if operation.operation == OperationType.QUERY and query:
        key = plan_key(query, name, state.version, principal, coerced)
        plan = api.plans.get(key)
        if plan is not None:
            return 200, _run_plan(api, plan, coerced), plan.label
        planning = (key, Probe())
        coerced = tagged(coerced, planning[1])
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    is_mutation = operation.operation == OperationType.MUTATION
    schema = state.schema
    root_type = schema.mutation_type if is_mutation else schema.subscription_type if is_live else schema.query_type
    assert root_type is not None
    grouped = collect_fields(state.schema, fragments, coerced, root_type, operation.selection_set)
    fields = [Fields(key, list(nodes)) for key, nodes in grouped.items()]
    label = next((f.name for f in fields if not f.name.startswith("__")), fields[0].name if fields else "-")
    label = "__schema" if label.startswith("__") else label
    max_rows = api.settings.limits.graphql.max_rows

    def compiler(dialect: Dialect) -> Compiler:
        return Compiler(state.schema, state.model, dialect, principal, state.permissions, coerced, fragments, max_rows)

    if is_mutation:
        result: dict[str, Any] = {}
        for f in fields:
            if f.name == "__typename":
                result[f.key] = "Mutation"
                continue
            root = state.roots[("mutation", f.name)]
            if root.op == "sync":
                definition = root_type.fields[f.name]
                result[f.key] = run_sync_field(
                    api.settings, api.sync_runner, state.schema, definition, f.name, f.nodes, principal, coerced, fragments
                )
                continue
            writer = state.model.tables[root.base].writer
            assert writer is not None
            result[f.key] = run_mutation(compiler, api.databases[writer.connection], root, f, root_type.fields[f.name])
        return 200, _ENCODE(result).encode(), label
    kind = "subscription" if is_live else "query"
    answer = _query(
        api, state, document, operation, fields, root_type, compiler, variables, kind, principal.role, planning, label
    )
    return 200, answer, label


def _run_plan(api: DataApi, plan: Plan, variables: dict[str, Any]) -> bytes:
    """The ``data`` bytes of a cached :class:`~sluice.api.plans.Plan` run with ``variables`` (coerced)."""
    db = api.databases[plan.connection]
    params = plan.params(db.dialect, variables)
    with db.connection() as conn:
        rows = db.execute(conn, plan.sql, params)
    text = rows[0][0]
    return text.encode() if isinstance(text, str) else bytes(text)


def _query(
    api: DataApi,
    state: SchemaState,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    fields: list[Fields],
    root_type: GraphQLObjectType,
    compiler: Any,
    variables: dict[str, Any],
    kind: str = "query",
    role: str = "",
    planning: tuple[tuple[Any, ...], Probe] | None = None,
    label: str = "-",
) -> bytes:
    by_database: dict[str, list[Fields]] = {}
    special: list[Fields] = []
    for f in fields:
        if f.name.startswith("__"):
            special.append(f)
        else:
            base = state.roots[(kind, f.name)].base
            by_database.setdefault(state.model.tables[base].connection, []).append(f)
    texts: dict[str, tuple[str, list[PagePlan]]] = {}
    for connection, group in by_database.items():
        db = api.databases[connection]
        c: Compiler = compiler(db.dialect)
        pages: list[PagePlan] = []
        pairs = [
            (f.key, c.dialect.nested(root_sql(c, state.roots[(kind, f.name)], f, root_type.fields[f.name], pages))) for f in group
        ]
        sql = f"SELECT {c.dialect.json_object(pairs)}"
        if c.dialect.name == "postgresql":
            sql = f"SELECT ({c.dialect.json_object(pairs)})::text"
        if planning is not None and _plannable(planning[1], special, by_database, pages, state, kind, group):
            bound = {name for name, _, _ in c.bindings}
            constants = {name: value for name, value in c.params.items() if name not in bound}
            bindings = tuple(c.bindings)
            form = positional(sql, constants, bindings) if db.scheme == "postgresql" else None
            api.plans.put(planning[0], Plan(connection, sql, constants, bindings, label, form))
        with db.connection() as conn:
            rows = db.execute(conn, sql, c.params)
        texts[connection] = (rows[0][0], pages)
    if not special and len(texts) == 1:
        text, pages = next(iter(texts.values()))
        if not pages:
            return text.encode() if isinstance(text, str) else bytes(text)
    merged: dict[str, Any] = {}
    for text, pages in texts.values():
        value = json.loads(text)
        for plan in pages:
            value[plan.key] = finish_page(plan, value[plan.key])
        merged.update(value)
    if special:
        merged.update(_introspection(api, state, document, operation, special, variables, role))
    return _ENCODE({f.key: merged.get(f.key) for f in fields}).encode()


def _plannable(
    probe: Probe,
    special: list[Fields],
    by_database: dict[str, list[Fields]],
    pages: list[PagePlan],
    state: SchemaState,
    kind: str,
    group: list[Fields],
) -> bool:
    """Whether a compiled query may be cached as a plan: one database, lists and primary keys only (no
    introspection, no cursor page), and no variable used other than as a bound parameter."""
    if probe.tainted or special or pages or len(by_database) != 1:
        return False
    return all(state.roots[(kind, f.name)].op in ("list", "by_pk") for f in group)


def _introspection(
    api: DataApi,
    state: SchemaState,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    special: list[Fields],
    variables: dict[str, Any],
    role: str,
) -> dict[str, Any]:
    """``__schema``, ``__type`` and ``__typename`` at the root, answered by graphql-core from the part of the
    schema ``role`` may use (:mod:`sluice.api.role_schema`)."""
    nodes: list[FieldNode] = [node for f in special for node in f.nodes]
    only = OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        variable_definitions=operation.variable_definitions,
        directives=operation.directives,
        selection_set=SelectionSetNode(selections=tuple(nodes)),
    )
    fragments = [d for d in document.definitions if isinstance(d, FragmentDefinitionNode)]
    schema = role_schema(state.schema, state.model, state.roots, state.permissions, api.settings, role)
    result = execute(schema, DocumentNode(definitions=(only, *fragments)), variable_values=variables)
    if result.errors or result.data is None:  # type: ignore[union-attr]
        raise DataApiError("introspection failed", status=500, code="internal")
    return dict(result.data)  # type: ignore[union-attr]
