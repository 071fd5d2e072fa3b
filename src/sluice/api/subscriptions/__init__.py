"""Live GraphQL subscriptions pushed from the syncs' change events (docs/api/subscriptions.md).

- :mod:`.sources`: which change topics of the project's syncs cover a served table;
- :mod:`.feeds`: one bus consumer per topic, batching changes in ~50 ms windows and waiting for a sync's apply;
- :mod:`.shape`: the tables a subscription reads;
- :mod:`.live`: :class:`~.live.SubscriptionHub`, live queries re-run after changes, results pushed when they change;
- :mod:`.ws` (graphql-transport-ws) and :mod:`.sse` (graphql-sse, distinct connections): the transports;
- :mod:`.metrics`: Prometheus series.

:func:`project_hub` builds the hub of a project's ``api:`` and :func:`mount_subscriptions` adds the WebSocket
route; ``sluice serve`` (:mod:`sluice.server.app`) does both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from sluice.api.model import ExposedTable
from sluice.api.service import DataApi
from sluice.api.subscriptions.live import SubscriptionHub
from sluice.api.subscriptions.sources import Feed, SyncSource, feeds_for
from sluice.api.subscriptions.sse import sse_answer
from sluice.api.subscriptions.ws import graphql_ws
from sluice.bus.base import Bus
from sluice.project.model import Project

SseHandler = Callable[[Request, Any], Any]
"""``await handler(request, body)``: the SSE answer of a GraphQL request (:func:`sluice.api.subscriptions.sse.sse_answer`)."""


def project_hub(api: DataApi, project: Project, bus: Bus | Callable[[], Bus]) -> SubscriptionHub:
    """The subscription hub of ``project``'s served ``api``: feeds from its syncs' topics on ``bus``."""
    syncs = [SyncSource(spec.settings, spec.urls) for spec in project.syncs]
    urls = dict(project.api.urls) if project.api is not None else {}
    work_dir = project.work_dir

    def resolve(table: ExposedTable) -> list[Feed]:
        url = urls.get(table.connection, "")
        return feeds_for(syncs, table.connection, url, table.table.schema, table.table.name, work_dir)

    return SubscriptionHub(api, resolve, bus, sync_names=[s.settings.name for s in syncs])


def mount_subscriptions(app: FastAPI, api: DataApi, hub: SubscriptionHub) -> SseHandler:
    """Add the graphql-transport-ws route at the GraphQL path; returns the SSE handler the HTTP routes call
    for ``Accept: text/event-stream`` (:func:`sluice.api.http.mount_api`'s ``events``)."""
    path = api.settings.graphql_path.rstrip("/") or "/graphql"

    async def websocket(ws: WebSocket) -> None:
        await graphql_ws(ws, api, hub)

    app.add_api_websocket_route(path, websocket)

    async def events(request: Request, body: Any) -> Response:
        return await sse_answer(request, api, hub, body)

    return events
