"""The OpenAPI 3.0 document of the REST API, generated from the exposed tables at each request (so it follows
the catalog), as PostgREST serves its own at its root.

Per table: ``/{table}`` with the operations the caller's role may use (GET with ``select``, ``order``,
``limit``, ``offset``, one filter parameter per readable column, ``Range``/``Range-Unit``/``Prefer``; POST,
PATCH, DELETE on writable tables), and ``/{table}/{id}`` for a single-column primary key. Schemas come from the
column types (``integer`` int64, ``number``, ``boolean``, ``string`` with ``date``/``date-time``/``uuid``
formats, JSON columns as any value); ``nullable`` from the catalog. Security schemes: an API key in
``X-API-Key`` and a bearer JWT.
"""

from __future__ import annotations

from typing import Any

from sluice.api.gate import DataApiError
from sluice.api.principal import Principal
from sluice.api.rest.model import Column, Table

KIND_SCHEMA: dict[str, dict[str, Any]] = {
    "integer": {"type": "integer", "format": "int64"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "string": {"type": "string"},
    "json": {},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "time": {"type": "string"},
    "uuid": {"type": "string", "format": "uuid"},
    "bytes": {"type": "string"},
}
ERROR_CODES = {
    "400": "Bad request: a parameter, value or body the API cannot use",
    "401": "Missing or bad credentials",
    "403": "The role may not do this",
    "404": "No such table or row",
    "406": "The Accept header asks for a media type not served, or one object and several rows matched",
    "409": "A unique or foreign key refused the change",
    "416": "The range starts past the last row",
    "429": "Over a rate limit",
}


def column_schema(column: Column) -> dict[str, Any]:
    schema = dict(KIND_SCHEMA.get(column.kind, {"type": "string"}))
    if column.nullable and schema:
        schema["nullable"] = True
    schema["description"] = column.type
    return schema


def _allowed(service: Any, principal: Principal, table: Table, operation: Any) -> dict[str, Column] | None:
    try:
        return dict(service.backend.allowed(principal, table, operation).columns)
    except DataApiError:
        return None


def _param(name: str, where: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": False, "description": description, "schema": schema or {"type": "string"}}


def _responses(ok: dict[str, Any]) -> dict[str, Any]:
    out = dict(ok)
    for code, text in ERROR_CODES.items():
        out[code] = {"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return out


def _op(table: Table, summary: str, parameters: list[Any], ok: dict[str, tuple[str, Any]], body: Any = None) -> dict[str, Any]:
    """One operation: ``ok`` maps a status to (description, JSON schema or ``None`` for no body)."""
    responses = {
        status: {"description": text, **({"content": {"application/json": {"schema": schema}}} if schema is not None else {})}
        for status, (text, schema) in ok.items()
    }
    operation: dict[str, Any] = {
        "tags": [table.name],
        "summary": summary,
        "parameters": parameters,
        "responses": _responses(responses),
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    return operation


def _object(columns: dict[str, Column], required: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {c.name: column_schema(c) for c in columns.values()}}
    if required:
        schema["required"] = [c.name for c in columns.values() if not c.nullable and not c.has_default]
    return schema


def _table_paths(service: Any, principal: Principal, table: Table, readable: dict[str, Column]) -> dict[str, Any]:
    """The path items of ``table`` for the role (``/{table}`` and, with a one-column key, ``/{table}/{id}``)."""
    ref = {"$ref": f"#/components/schemas/{table.name}"}
    rows = {"type": "array", "items": ref}
    prefer = _param("Prefer", "header", "count=exact|planned|estimated, return=representation|minimal, resolution=...")
    returned = _param("select", "query", "columns and embedded relations returned")
    filters = [
        _param(c.name, "query", f"filter: {c.name}=op.value (eq, neq, gt, gte, lt, lte, like, ilike, in, is, not.op)")
        for c in readable.values()
    ]
    reading = [
        _param("select", "query", "columns and embedded relations: id,alias:col,relation(col)"),
        _param("order", "query", "col.asc|desc.nullsfirst|nullslast,..."),
        _param("limit", "query", "rows at most", {"type": "integer", "minimum": 0}),
        _param("offset", "query", "rows skipped", {"type": "integer", "minimum": 0}),
        _param("or", "query", "(col.op.value,and(...))"),
        _param("Range", "header", "first-last, in items"),
        _param("Range-Unit", "header", "items"),
    ]
    listed = {
        "description": "The rows",
        "content": {"application/json": {"schema": rows}, "text/csv": {"schema": {"type": "string"}}},
    }
    get = _op(table, f"Read {table.name}", [*reading, *filters, prefer], {})
    get["responses"].update({"200": listed, "206": listed})
    item: dict[str, Any] = {"get": get}
    insert = _allowed(service, principal, table, "insert") if table.writable else None
    update = _allowed(service, principal, table, "update") if table.writable else None
    delete = table.writable and _allowed(service, principal, table, "delete") is not None
    if insert is not None:
        new = _object(insert, required=True)
        body = {
            "application/json": {"schema": {"oneOf": [new, {"type": "array", "items": new}]}},
            "text/csv": {"schema": {"type": "string"}},
        }
        conflict = [
            _param("columns", "query", "the columns to insert: col,col"),
            _param("on_conflict", "query", "the unique key of an upsert"),
        ]
        item["post"] = _op(
            table,
            f"Insert into {table.name} (upsert with Prefer: resolution=...)",
            [*conflict, returned, prefer],
            {"201": ("Inserted", rows)},
            body,
        )
    changes = {"application/json": {"schema": _object(update)}} if update is not None else None
    if changes is not None:
        item["patch"] = _op(
            table,
            f"Update the {table.name} rows the filters select",
            [returned, *filters, prefer],
            {"200": ("Updated rows", rows), "204": ("Updated", None)},
            changes,
        )
    if delete:
        item["delete"] = _op(
            table,
            f"Delete the {table.name} rows the filters select",
            [returned, *filters, prefer],
            {"200": ("Deleted rows", rows), "204": ("Deleted", None)},
        )
    paths = {f"/{table.name}": item}
    if len(table.primary_key) == 1:
        key = table.columns[table.primary_key[0]]
        key_schema = dict(KIND_SCHEMA.get(key.kind, {})) or {"type": "string"}
        by_key = {"name": "id", "in": "path", "required": True, "description": f"the {key.name}", "schema": key_schema}
        one = {"get": _op(table, f"One {table.name} row by {key.name}", [by_key, returned], {"200": ("The row", ref)})}
        if changes is not None:
            for method in ("patch", "put"):
                one[method] = _op(
                    table,
                    f"Update one {table.name} row",
                    [by_key, returned, prefer],
                    {"200": ("The updated row", ref), "204": ("Updated", None)},
                    changes,
                )
        if delete:
            one["delete"] = _op(
                table,
                f"Delete one {table.name} row",
                [by_key, prefer],
                {"204": ("Deleted", None), "200": ("The deleted row", ref)},
            )
        paths[f"/{table.name}/{{id}}"] = one
    return paths


def openapi_document(service: Any, principal: Principal, *, server: str = "/rest") -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of what ``principal``'s role may use (``server``: the REST base path)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "string", "nullable": True},
                "hint": {"type": "string", "nullable": True},
            },
            "required": ["code", "message"],
        }
    }
    catalog = service.backend.catalog()
    for table in sorted(catalog.tables.values(), key=lambda t: t.name):
        readable = _allowed(service, principal, table, "select")
        if readable is None:
            continue
        kind = "view" if table.is_view else "table"
        schemas[table.name] = {**_object(readable), "description": table.comment or f"{kind} {table.name}"}
        paths.update(_table_paths(service, principal, table, readable))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Sluice REST API",
            "version": str(catalog.version),
            "description": "Generated from the exposed tables; PostgREST's conventions (docs/api/rest.md).",
        },
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
        "security": [{}, {"apiKey": []}, {"bearer": []}],
    }
