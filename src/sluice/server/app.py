"""The HTTP API of ``sluice serve`` (contract: ``docs/api.md``; generated docs at ``/docs``).

``create_app(services)`` wires the routes to a :class:`~sluice.server.services.Services`; the app's
lifespan starts them (if not started yet) and stops them. Handlers that touch the bus or the state store
are plain ``def`` (FastAPI runs them in its thread pool) or hand their work to a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from fastapi import Body, Depends, FastAPI, Header, Query
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from sluice import events as ev
from sluice.api.metrics import request_lines
from sluice.bus import names
from sluice.bus.base import Bus, Message
from sluice.server import models
from sluice.server.backfills import backfill_routes
from sluice.server.control_auth import token_required
from sluice.server.errors import ApiError, CatchAll, NotFound, error_body, install_error_handlers, json_response
from sluice.server.fast_paths import FastPathApp
from sluice.server.http_metrics import HttpMetrics
from sluice.server.runs import find_run
from sluice.server.schedules import schedule_routes
from sluice.server.services import Services
from sluice.server.stream import EventFilter, event_stream
from sluice.server.streams import stream_routes
from sluice.server.syncs import sync_routes

STATIC = Path(__file__).with_name("static")
EVENT_TYPE_NAMES = tuple(t.__name__ for t in ev.EVENT_TYPES)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": models.Error, "description": "Bad request: the error names the field or value"},
    404: {"model": models.Error, "description": "Unknown id"},
}
UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": models.Error, "description": "The control token is set and the request lacks it (docs/api.md)"}
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
VARY = {"Vary": "Accept-Encoding"}
GZIP_MIN_BYTES = 4096
RECENT_EVENTS_MAX = 1000


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when the Accept-Encoding header allows gzip (``gzip`` or ``*``, without ``q=0``)."""
    for item in (accept_encoding or "").lower().split(","):
        name, _, params = item.strip().partition(";")
        if name.strip() in ("gzip", "*"):
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def create_app(services: Services) -> FastAPI:
    """The FastAPI app serving ``services``' project."""

    data_api = _data_api(services)
    live = _live(services, data_api)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with request_lines(data_api is None or data_api.settings.log_requests):
            async with _serving(app):
                yield

    @asynccontextmanager
    async def _serving(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(services.start)
        services.start_stream(asyncio.get_running_loop())
        if data_api is not None:
            await anyio.to_thread.run_sync(data_api.start)
        if live is not None:
            live.start(asyncio.get_running_loop())
            services.stream_closers.append(live.close_streams)
        try:
            yield
        finally:
            services.close_streams()
            if live is not None:
                await anyio.to_thread.run_sync(live.close)
            if data_api is not None:
                await data_api.close_async()
                await anyio.to_thread.run_sync(data_api.close)
            await anyio.to_thread.run_sync(services.stop)

    app = FastPathApp(
        title="Sluice",
        summary=f"Control and observe the runs of the project '{services.project.name}'.",
        version="1",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(CatchAll)
    app.add_middleware(HttpMetrics)
    _ui_routes(app)
    _run_routes(app, services)
    _object_routes(app, services)
    _event_routes(app, services)
    _health_routes(app, services)
    sync_routes(app, services.project)
    stream_routes(app, services.project, lambda: services.backends.lake, lambda: services.streams)
    backfill_routes(app, services.project.name, lambda: services.backends.state)
    schedule_routes(app, services.project, lambda: services.backends.state, lambda: services.scheduler)
    if data_api is not None:
        from sluice.api.http import mount_api
        from sluice.api.rest.adapt import mount_data_api_rest
        from sluice.api.subscriptions import mount_subscriptions

        mount_api(app, data_api, mount_subscriptions(app, data_api, live) if live is not None else None)
        mount_data_api_rest(app, data_api)
        if data_api.settings.proxies:
            from sluice.api.security.proxy import proxy_routes

            app.include_router(proxy_routes(data_api.settings, data_api.gate))
        if data_api.settings.cors is not None:  # added last: the outermost middleware, around the fast paths too
            from sluice.api.cors import DataApiCors

            app.add_middleware(DataApiCors, settings=data_api.settings)
            app.wrap_fast_paths(DataApiCors, settings=data_api.settings)
    app.openapi = _openapi_with_400(app)  # type: ignore[method-assign]
    return app


def _data_api(services: Services) -> Any:
    """The project's data API (``api:`` in sluice.yaml, docs/api), not started yet; None without one."""
    spec = services.project.api
    if spec is None:
        return None
    from sluice.api.security import build_gate
    from sluice.api.service import DataApi

    state_url = services.settings.state_url or services.project.resolve_state_url()
    gate = build_gate(spec.settings, services.project.root, state_url)
    api = DataApi(spec.settings, dict(spec.urls), services.project.root, gate)
    if spec.settings.sync_mutations:
        from sluice.api.sync_pass import SyncPasses

        api.sync_runner = SyncPasses(services.project)
    return api


def _live(services: Services, data_api: Any) -> Any:
    """The live subscriptions of the data API (docs/api/subscriptions.md), reading the change topics of the
    project's syncs on the server's bus; None without a data API."""
    if data_api is None:
        return None
    from sluice.api.subscriptions import project_hub

    return project_hub(data_api, services.project, lambda: services.backends.bus)


def _ui_routes(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = STATIC / "index.html"
        if not page.is_file():
            raise NotFound("the web UI is not installed (src/sluice/server/static/index.html is missing); the API is at /docs")
        return FileResponse(page)


def _run_routes(app: FastAPI, services: Services) -> None:
    @app.post(
        "/orchestrate",
        summary="Start a run",
        description="Plans the targets (default: the final objects) and starts the run. One run at a time: "
        "while one is active the answer is 409 with its id.",
        status_code=202,
        response_model=models.RunStarted,
        responses={**ERRORS, **UNAUTHORIZED, 409: {"model": models.Error, "description": "A run is active (`active_run_id`)"}},
        dependencies=[Depends(token_required(services.settings.control_token))],
    )
    def orchestrate(request: Annotated[models.OrchestrateRequest | None, Body()] = None) -> Response:
        request = request or models.OrchestrateRequest()
        run_id = services.runs.start(request.targets or None, request.force)
        return json_response({"run_id": run_id}, 202)

    @app.get("/runs", summary="Recent runs, most recent first", response_model=models.RunList, responses=ERRORS)
    def list_runs(limit: Annotated[int, Query(ge=1, le=1000, description="How many runs.")] = 50) -> Response:
        return json_response({"runs": services.run_views.summaries(limit)})

    @app.get(
        "/runs/{run_id}",
        summary="A run: status, timings, counts and every object's state",
        response_model=models.RunDetail,
        responses=ERRORS,
    )
    async def get_run(run_id: str, accept_encoding: Annotated[str | None, Header(include_in_schema=False)] = None) -> Response:
        views = services.run_views
        body = views.cached_detail(run_id)
        if body is None:
            body = await anyio.to_thread.run_sync(views.detail, run_id)
        if len(body.plain) >= GZIP_MIN_BYTES and accepts_gzip(accept_encoding):
            compressed = body.gzipped_ready or await anyio.to_thread.run_sync(body.gzipped)
            return Response(compressed, media_type="application/json", headers={"Content-Encoding": "gzip", **VARY})
        return Response(body.plain, media_type="application/json", headers=VARY)

    @app.post(
        "/runs/{run_id}/cancel",
        summary="Cancel the active run",
        description="Objects not started are skipped; the run ends as cancelled.",
        status_code=202,
        response_model=models.CancelAccepted,
        responses={**ERRORS, **UNAUTHORIZED, 409: {"model": models.Error, "description": "The run is not active"}},
        dependencies=[Depends(token_required(services.settings.control_token))],
    )
    def cancel_run(run_id: str) -> Response:
        services.runs.cancel(run_id)
        return json_response({"run_id": run_id, "status": "cancelling"}, 202)


def _object_routes(app: FastAPI, services: Services) -> None:
    @app.get("/objects", summary="The project's objects, with their last status", response_model=models.ObjectList)
    def list_objects() -> Response:
        return json_response(services.object_views.listing())

    @app.get(
        "/objects/{object_id}",
        summary="An object: definition, parents, children, last state and last output with a sample of rows",
        response_model=models.ObjectDetail,
        responses=ERRORS,
    )
    def get_object(object_id: int) -> Response:
        return json_response(services.object_views.detail(object_id))


def _event_routes(app: FastAPI, services: Services) -> None:
    @app.get("/events/last", summary="The latest event on the bus", response_model=models.LastEvent, responses=ERRORS)
    def last_event() -> Response:
        bus = services.backends.bus
        end = bus.end_offset(names.EVENTS_TOPIC)
        messages = bus.read(names.EVENTS_TOPIC, max(0, end - 1), 1) if end > 0 else []
        if not messages:
            raise NotFound("no event has been published yet; start a run with POST /orchestrate")
        return json_response({"id": messages[-1].offset, "event": msgspec.json.decode(messages[-1].value)})

    @app.get(
        "/events/recent",
        summary="The events just before an id (what a page reloaded mid-run shows in its feed)",
        response_model=models.RecentEvents,
        responses=ERRORS,
    )
    def recent_events(
        before: Annotated[int | None, Query(ge=0, description="Events before this id (default: up to the latest).")] = None,
        limit: Annotated[int, Query(ge=1, le=RECENT_EVENTS_MAX, description="At most this many events.")] = 200,
    ) -> Response:
        bus = services.backends.bus
        end = bus.end_offset(names.EVENTS_TOPIC) if before is None else before
        events = []
        for message in read_before(bus, names.EVENTS_TOPIC, end, limit):
            try:
                events.append({"id": message.offset, "event": msgspec.json.decode(message.value)})
            except msgspec.DecodeError:
                continue  # not an event (see sluice.dead-letters): the stream skips it too
        return json_response({"events": events})

    @app.get(
        "/events/stream",
        summary="Server-Sent Events: one per bus event",
        description="Frames are `id: <offset>`, `event: <type>`, `data: <event JSON>`. With `Last-Event-ID` (header) or "
        "`last_event_id`, every event after that id comes first, none twice; without, events from now on. "
        "`: keep-alive` comments while idle.",
        response_class=StreamingResponse,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}, "description": "The event stream"}},
    )
    async def stream(
        run_id: Annotated[str | None, Query(description="Only this run's events.")] = None,
        types: Annotated[list[str] | None, Query(alias="type", description="Only these event types (comma-separated).")] = None,
        last_event_id: Annotated[str | None, Query(description="Resume after this event id.")] = None,
        last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
        keepalive_s: Annotated[float | None, Query(gt=0, le=3600, description="Seconds between keep-alive comments.")] = None,
    ) -> StreamingResponse:
        wanted = EventFilter(run_id or None, _event_types(types))
        after = _last_event_id(last_event_id_header if last_event_id_header is not None else last_event_id)
        if wanted.run_id is not None:  # 404 for an unknown run
            await anyio.to_thread.run_sync(find_run, services.backends.state, services.project.name, wanted.run_id)
        body = event_stream(services.hub, wanted, after, keepalive_s or services.settings.keepalive_s)
        return StreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


def _event_types(values: list[str] | None) -> frozenset[str] | None:
    if not values:
        return None
    names = {name.strip() for value in values for name in value.split(",") if name.strip()}
    unknown = sorted(names - set(EVENT_TYPE_NAMES))
    if unknown:
        raise ApiError(f"unknown event type(s) {', '.join(unknown)}; known types: {', '.join(EVENT_TYPE_NAMES)}")
    return frozenset(names) or None


def _last_event_id(value: str | None) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        return max(-1, int(value.strip()))
    except ValueError:
        raise ApiError(f"Last-Event-ID must be an event id (an integer), got {value[:40]!r}") from None


def _health_routes(app: FastAPI, services: Services) -> None:
    @app.get(
        "/health",
        summary="Liveness, and whether the bus and the state store answer",
        response_model=models.Health,
        responses={503: {"model": models.Health, "description": "The bus or the state store does not answer"}},
    )
    async def health() -> Response:
        bus = await anyio.to_thread.run_sync(_check, services.backends.bus.ping)
        state = await anyio.to_thread.run_sync(_check, services.backends.state.ping)
        active = services.runs.active
        body: dict[str, Any] = {
            "status": "ok",
            "bus": bus,
            "state": state,
            "active_run_id": None if active is None else active.run_id,
        }
        checks = (("bus", bus), ("state store", state))
        failing = [f"the {name} does not answer: {result}" for name, result in checks if result != "ok"]
        if failing:
            body.update(error_body("; ".join(failing), status="unavailable"))
            return json_response(body, 503)
        return json_response(body)

    @app.get("/metrics", summary="Prometheus metrics (text format)", response_class=Response)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _check(ping: Callable[[], None]) -> str:
    try:
        ping()
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return "ok"


def _openapi_with_400(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document with validation errors as they are answered: 400 with an Error body (not 422)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    responses = operation.get("responses", {})
                    if responses.pop("422", None) is not None and "400" not in responses:
                        responses["400"] = {
                            "description": "Bad request: the error names the field or value",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                        }
            schema.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
            schema.get("components", {}).get("schemas", {}).pop("ValidationError", None)
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def read_before(bus: Bus, topic: str, end: int, limit: int) -> list[Message]:
    """The last ``limit`` messages of ``topic`` before offset ``end``, oldest first.

    Offsets need not be contiguous (the embedded bus numbers every topic's messages from one sequence),
    so the window looked at grows until it holds ``limit`` messages or reaches the start of the log.
    """
    window = limit
    while True:
        start = max(0, end - window)
        messages = [m for m in bus.read(topic, start, window) if m.offset < end] if end > 0 else []
        if len(messages) >= limit or start == 0:
            return messages[-limit:]
        window *= 4
