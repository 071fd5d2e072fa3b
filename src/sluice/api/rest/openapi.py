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


def openapi_document(service: Any, principal: Principal, *, server: str = "/rest") -> dict[str, Any]:
    """The OpenAPI 3.0.3 document of what ``principal``'s role may use."""
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
    common = [
        _param(
            "Prefer",
            "header",
            "count=exact|planned|estimated, return=representation|minimal, resolution=merge-duplicates|ignore-duplicates",
        ),
    ]
    for table in sorted(service.backend.catalog().tables.values(), key=lambda t: t.name):
        readable = _allowed(service, principal, table, "select")
        if readable is None:
            continue
        ref = {"$ref": f"#/components/schemas/{table.name}"}
        schemas[table.name] = {
            "type": "object",
            "description": table.comment or f"{'view' if table.is_view else 'table'} {table.name}",
            "properties": {c.name: column_schema(c) for c in readable.values()},
        }
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
        rows = {"type": "array", "items": ref}
        ok_rows = {
            "description": "The rows",
            "content": {"application/json": {"schema": rows}, "text/csv": {"schema": {"type": "string"}}},
        }
        item: dict[str, Any] = {
            "get": {
                "tags": [table.name],
                "summary": f"Read {table.name}",
                "parameters": [*reading, *filters, *common],
                "responses": _responses({"200": ok_rows, "206": ok_rows}),
            }
        }
        writable_insert = _allowed(service, principal, table, "insert") if table.writable else None
        writable_update = _allowed(service, principal, table, "update") if table.writable else None
        may_delete = table.writable and _allowed(service, principal, table, "delete") is not None
        if writable_insert is not None:
            body_schema = {
                "type": "object",
                "properties": {c.name: column_schema(c) for c in writable_insert.values()},
                "required": [c.name for c in writable_insert.values() if not c.nullable and not c.has_default],
            }
            item["post"] = {
                "tags": [table.name],
                "summary": f"Insert into {table.name} (one object or an array; upsert with Prefer: resolution=...)",
                "parameters": [
                    _param("columns", "query", "the columns to insert: col,col"),
                    _param("on_conflict", "query", "the unique key of an upsert: col,col"),
                    _param("select", "query", "columns returned with Prefer: return=representation"),
                    *common,
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"oneOf": [body_schema, {"type": "array", "items": body_schema}]}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                "responses": _responses({"201": {"description": "Inserted", "content": {"application/json": {"schema": rows}}}}),
            }
        if writable_update is not None:
            item["patch"] = {
                "tags": [table.name],
                "summary": f"Update the {table.name} rows the filters select",
                "parameters": [_param("select", "query", "columns returned"), *filters, *common],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {c.name: column_schema(c) for c in writable_update.values()},
                            }
                        }
                    },
                },
                "responses": _responses(
                    {
                        "200": {"description": "Updated rows", "content": {"application/json": {"schema": rows}}},
                        "204": {"description": "Updated"},
                    }
                ),
            }
        if may_delete:
            item["delete"] = {
                "tags": [table.name],
                "summary": f"Delete the {table.name} rows the filters select",
                "parameters": [_param("select", "query", "columns returned"), *filters, *common],
                "responses": _responses(
                    {
                        "200": {"description": "Deleted rows", "content": {"application/json": {"schema": rows}}},
                        "204": {"description": "Deleted"},
                    }
                ),
            }
        paths[f"/{table.name}"] = item
        if len(table.primary_key) == 1:
            key = table.columns[table.primary_key[0]]
            key_param = {
                "name": "id",
                "in": "path",
                "required": True,
                "description": f"the {key.name}",
                "schema": dict(KIND_SCHEMA.get(key.kind, {"type": "string"})) or {"type": "string"},
            }
            one: dict[str, Any] = {
                "get": {
                    "tags": [table.name],
                    "summary": f"One {table.name} row by {key.name}",
                    "parameters": [key_param, _param("select", "query", "columns and embedded relations")],
                    "responses": _responses(
                        {"200": {"description": "The row", "content": {"application/json": {"schema": ref}}}}
                    ),
                }
            }
            if writable_update is not None:
                for method in ("patch", "put"):
                    one[method] = {
                        "tags": [table.name],
                        "summary": f"Update one {table.name} row",
                        "parameters": [key_param, *common],
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "properties": {c.name: column_schema(c) for c in writable_update.values()},
                                    }
                                }
                            },
                        },
                        "responses": _responses(
                            {
                                "200": {"description": "The updated row", "content": {"application/json": {"schema": ref}}},
                                "204": {"description": "Updated"},
                            }
                        ),
                    }
            if may_delete:
                one["delete"] = {
                    "tags": [table.name],
                    "summary": f"Delete one {table.name} row",
                    "parameters": [key_param, *common],
                    "responses": _responses(
                        {
                            "204": {"description": "Deleted"},
                            "200": {"description": "The deleted row", "content": {"application/json": {"schema": ref}}},
                        }
                    ),
                }
            paths[f"/{table.name}/{{id}}"] = one
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Sluice REST API",
            "version": str(service.backend.catalog().version),
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
