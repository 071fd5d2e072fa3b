"""The REST routes under ``api.rest_path`` (default ``/rest``), as Starlette routes for ``sluice serve``'s app.

- ``{rest_path}/{table}`` GET, HEAD, POST, PATCH, DELETE (PostgREST's conventions, :mod:`.service`);
- ``{rest_path}/{table}/{id}`` GET, PATCH, PUT, DELETE by a single-column primary key (seed 001's routes);
- ``{rest_path}/openapi.json`` (and ``{rest_path}/``): the OpenAPI 3 document of the exposed tables;
- ``{rest_path}/openapi.html``: that document in Swagger UI, served from Sluice's own files (works offline).

Every request passes :meth:`Gate.admit` first (operation ``rest``); errors are JSON ``{"code", "message",
"details", "hint"}`` with the error's status and headers; an unexpected failure is a 500 whose body names no
internals (it is logged).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sluice.api.gate import DataApiError, Gate
from sluice.api.principal import Principal
from sluice.api.rest.errors import TABLE, error_body
from sluice.api.rest.openapi import openapi_document
from sluice.api.rest.service import Backend, Reply
from sluice.api.settings import ApiSettings

log = logging.getLogger("sluice.api.rest")
STATIC = Path(__file__).with_name("static")
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript", "LICENSE": "text/plain"}
METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
MAX_BODY = 64 * 1024 * 1024


class Service(Protocol):
    """What the routes serve: :class:`~sluice.api.rest.service.RestService` or the data API's
    :class:`~sluice.api.rest.adapt.DataApiRest`."""

    @property
    def settings(self) -> ApiSettings: ...

    @property
    def backend(self) -> Backend: ...

    def handle(
        self,
        method: str,
        name: str,
        key: str | None,
        params: Sequence[tuple[str, str]],
        headers: Mapping[str, str],
        body: bytes,
        principal: Principal,
        prefer_values: Sequence[str] = (),
    ) -> Reply: ...


def error_response(error: DataApiError) -> JSONResponse:
    """The JSON answer of a refused request."""
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers)


def rest_routes(
    service: Service, gate: Gate, *, on_request: Callable[[str, str, int, str | None, float], None] | None = None
) -> list[BaseRoute]:
    """The routes of ``service`` behind ``gate``; ``on_request(operation, role, status, code, seconds)`` is
    called after each table request (metrics; ``operation`` is ``"GET articles"``, ``"GET -"`` for an unknown
    table)."""
    base = service.settings.rest_path.rstrip("/")

    def client(request: Request) -> str:
        return request.client.host if request.client else ""

    async def table_endpoint(request: Request) -> Response:
        name = request.path_params["table"]
        key = request.path_params.get("key")
        body = await request.body()
        started = time.perf_counter()
        status, code, role = 500, None, "-"
        try:
            if len(body) > MAX_BODY:
                raise DataApiError("the body is too large", status=413, code="SLR413")
            headers = {k.lower(): v for k, v in request.headers.items()}
            prefer = request.headers.getlist("prefer")
            params = list(request.query_params.multi_items())
            address = client(request)

            def work() -> Reply:
                nonlocal role
                principal = gate.admit(headers, address, "rest")
                role = principal.role
                return service.handle(request.method, name, key, params, headers, body, principal, prefer)

            reply = await anyio.to_thread.run_sync(work)
            status = reply.status
            return Response(reply.body, status_code=reply.status, headers=reply.headers)
        except DataApiError as exc:
            status, code = exc.status, exc.code
            if exc.status >= 500:
                log.warning("REST %s %s: %s", request.method, request.url.path, exc)
            return error_response(exc)
        except Exception:
            code = "SLR500"
            log.exception("REST %s %s failed", request.method, request.url.path)
            return JSONResponse({"code": "SLR500", "message": "internal error", "details": None, "hint": None}, status_code=500)
        finally:
            if on_request is not None:
                # an unknown table is not a label value: clients could make up any number of them
                table = "-" if code in (TABLE, "SLR413") or status in (401, 429) else name
                on_request(f"{request.method} {table}", role, status, code, time.perf_counter() - started)

    async def openapi_endpoint(request: Request) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        address = client(request)
        try:
            principal = await anyio.to_thread.run_sync(lambda: gate.admit(headers, address, "rest"))
            document = await anyio.to_thread.run_sync(lambda: openapi_document(service, principal, server=base or "/"))
        except DataApiError as exc:
            return error_response(exc)
        return Response(json.dumps(document).encode(), media_type="application/openapi+json")

    async def docs_page(request: Request) -> Response:
        return HTMLResponse(DOCS_PAGE.replace("{base}", base))

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return JSONResponse({"code": "SLR205", "message": "no such file", "details": None, "hint": None}, status_code=404)
        return FileResponse(STATIC / name, media_type=ASSETS[name], headers={"Cache-Control": "max-age=86400"})

    return [
        Route(f"{base}/openapi.json", openapi_endpoint, methods=["GET", "HEAD"], include_in_schema=False),
        Route(f"{base}/", openapi_endpoint, methods=["GET", "HEAD"], include_in_schema=False),
        Route(f"{base}/openapi.html", docs_page, methods=["GET"], include_in_schema=False),
        Route(f"{base}/openapi.assets/{{name}}", asset, methods=["GET"], include_in_schema=False),
        Route(f"{base}/{{table}}", table_endpoint, methods=METHODS, include_in_schema=False),
        Route(f"{base}/{{table}}/{{key}}", table_endpoint, methods=METHODS, include_in_schema=False),
    ]


def mount_rest(app: Any, service: Service, gate: Gate, **kwargs: Any) -> None:
    """Add the REST routes to a Starlette / FastAPI ``app`` (before its catch-all routes)."""
    for route in rest_routes(service, gate, **kwargs):
        app.router.routes.append(route)


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Sluice REST API</title>
<link rel="stylesheet" href="{base}/openapi.assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{base}/openapi.assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "{base}/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
</script>
</body>
</html>
"""
