"""Prometheus metrics of HTTP requests, labelled by route template (``/runs/{run_id}``), method and status.

A pure ASGI middleware (Starlette's ``BaseHTTPMiddleware`` would buffer streams): the request counts and
its duration is observed when the response starts, which for a Server-Sent Events stream is when the
stream opens. Requests that match no route are labelled ``<unmatched>``.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sluice.observability import metrics

log = logging.getLogger("sluice.server.http")
UNMATCHED = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The path template of the route that handled ``scope`` (set by the router), or ``<unmatched>``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class HttpMetrics:
    """Counts requests and times them to the first byte of the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = str(scope.get("method", ""))
        responded = False

        def record(status: int) -> None:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            metrics.child(metrics.HTTP_REQUESTS, route, method, str(status)).inc()
            metrics.child(metrics.HTTP_DURATION, route, method).observe(elapsed)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s %s -> %d in %.1f ms", method, scope.get("path", ""), status, elapsed * 1000)

        async def timed_send(message: Message) -> None:
            nonlocal responded
            if message["type"] == "http.response.start" and not responded:
                responded = True
                record(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            if not responded:
                responded = True
                record(500)
            raise
