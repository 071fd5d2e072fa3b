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

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qsl

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from sluice.api.gate import DataApiError, Gate
from sluice.api.principal import Principal
from sluice.api.rest.errors import TABLE, error_body
from sluice.api.rest.openapi import openapi_document
from sluice.api.rest.service import Backend, Reply
from sluice.api.settings import ApiSettings
from sluice.observability import metrics

log = logging.getLogger("sluice.api.rest")
STATIC = Path(__file__).with_name("static")
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript", "LICENSE": "text/plain"}
METHODS = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE"]
MAX_BODY = 64 * 1024 * 1024
THREADS = 16
"""Threads answering table requests (the gate and the database work), per mounted REST API."""


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
    service: Service,
    gate: Gate,
    *,
    on_request: Callable[[str, str, int, str | None, float], None] | None = None,
    fast: RestFastPath | None = None,
) -> list[BaseRoute]:
    """The routes of ``service`` behind ``gate``; ``on_request(operation, role, status, code, seconds)`` is
    called after each table request (metrics; ``operation`` is ``"GET articles"``, ``"GET -"`` for an unknown
    table). ``fast``: a :class:`RestFastPath` to answer with the same handler."""
    base = service.settings.rest_path.rstrip("/")
    threads = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="sluice-rest")

    def client(request: Request) -> str:
        return request.client.host if request.client else ""

    async def table_reply(
        method: str,
        path: str,
        name: str,
        key: str | None,
        body: bytes,
        headers: dict[str, str],
        prefer: list[str],
        params: list[tuple[str, str]],
        address: str,
    ) -> Response:
        """The answer to one table request (the gate and the database in a worker thread: one hop)."""
        started = time.perf_counter()
        status, code, role = 500, None, "-"
        try:
            if len(body) > MAX_BODY:
                raise DataApiError("the body is too large", status=413, code="SLR413")

            def work() -> Reply:
                nonlocal role
                principal = gate.admit(headers, address, "rest")
                role = principal.role
                return service.handle(method, name, key, params, headers, body, principal, prefer)

            reply = await asyncio.get_running_loop().run_in_executor(threads, work)
            status = reply.status
            return Response(reply.body, status_code=reply.status, headers=reply.headers)
        except DataApiError as exc:
            status, code = exc.status, exc.code
            if exc.status >= 500:
                log.warning("REST %s %s: %s", method, path, exc)
            return error_response(exc)
        except Exception:
            code = "SLR500"
            log.exception("REST %s %s failed", method, path)
            return JSONResponse({"code": "SLR500", "message": "internal error", "details": None, "hint": None}, status_code=500)
        finally:
            if on_request is not None:
                # an unknown table is not a label value: clients could make up any number of them
                table = "-" if code in (TABLE, "SLR413") or status in (401, 429) else name
                on_request(f"{method} {table}", role, status, code, time.perf_counter() - started)

    async def table_endpoint(request: Request) -> Response:
        body = await request.body()
        return await table_reply(
            request.method,
            request.url.path,
            request.path_params["table"],
            request.path_params.get("key"),
            body,
            {k.lower(): v for k, v in request.headers.items()},
            request.headers.getlist("prefer"),
            list(request.query_params.multi_items()),
            client(request),
        )

    if fast is not None:
        fast.reply = table_reply

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
    """Add the REST routes to a Starlette / FastAPI ``app`` (before its catch-all routes), and their
    :class:`RestFastPath` ahead of the app when it is a :class:`~sluice.server.fast_paths.FastPathApp`."""
    from sluice.server.fast_paths import FastPathApp

    fast = RestFastPath(service.settings.rest_path.rstrip("/")) if isinstance(app, FastPathApp) else None
    for route in rest_routes(service, gate, fast=fast, **kwargs):
        app.router.routes.append(route)
    if fast is not None:
        app.fast_paths.append(fast)


class RestFastPath:
    """``GET {rest_path}/{table}`` and ``GET {rest_path}/{table}/{key}`` answered ahead of FastAPI (a
    :class:`~sluice.server.fast_paths.FastPath`): the same handler as the routes', without Starlette's routing,
    middleware and ``Request``; the HTTP metrics are recorded with the routes' templates, as
    :class:`~sluice.server.http_metrics.HttpMetrics` would. Other methods and paths go through the routes."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.prefix = base + "/"
        self.reply: Callable[..., Awaitable[Response]] | None = None

    def accepts(self, scope: Scope) -> bool:
        """A GET of a table or of a row (not the OpenAPI document, page or assets)."""
        if scope["method"] != "GET" or self.reply is None:
            return False
        path: str = scope["path"]
        if not path.startswith(self.prefix):
            return False
        parts = path[len(self.prefix) :].split("/")
        if len(parts) == 1:
            return bool(parts[0]) and parts[0] not in ("openapi.json", "openapi.html")
        return len(parts) == 2 and bool(parts[0]) and bool(parts[1]) and parts[0] != "openapi.assets"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one request :meth:`accepts` accepted (its body, if any, is read first)."""
        assert self.reply is not None
        started = time.perf_counter()
        status = 500
        path: str = scope["path"]
        parts = path[len(self.prefix) :].split("/")
        template = f"{self.base}/{{table}}" if len(parts) == 1 else f"{self.base}/{{table}}/{{key}}"
        try:
            chunks: list[bytes] = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            headers: dict[str, str] = {}
            prefer: list[str] = []
            for raw_name, raw_value in scope["headers"]:
                name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
                headers[name] = value
                if name == "prefer":
                    prefer.append(value)
            params = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            client = scope.get("client")
            address = str(client[0]) if client else ""
            response = await self.reply(
                "GET", path, parts[0], parts[1] if len(parts) == 2 else None, b"".join(chunks), headers, prefer, params, address
            )
            status = response.status_code
            _record(template, status, started)
            await response(scope, receive, send)
        except Exception:
            log.exception("unexpected error answering GET %s", path)
            if status == 500:
                _record(template, 500, started)
                await JSONResponse(
                    {"code": "SLR500", "message": "internal error", "details": None, "hint": None}, status_code=500
                )(scope, receive, send)


def _record(template: str, status: int, started: float) -> None:
    metrics.child(metrics.HTTP_REQUESTS, template, "GET", str(status)).inc()
    metrics.child(metrics.HTTP_DURATION, template, "GET").observe(time.perf_counter() - started)


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
