"""``POST <graphql path>`` answered before FastAPI's routing: a pure ASGI handler ahead of the app's middleware.

The answer is the one :mod:`sluice.api.http`'s route gives (same gate, same body rules, same statuses, bodies
and headers); what it skips is the work around a route that a GraphQL POST does not need (Starlette's
exception and routing middleware, FastAPI's dependency solving, the ``Request`` object, anyio's capacity
limiter), which at thousands of requests per second was a third of the server's CPU. In ``sluice serve`` the
app is a :class:`FastPathApp`, which hands a request its fast paths accept to them before FastAPI's own
``__call__`` (so also before Starlette's ``ServerErrorMiddleware`` and FastAPI's telemetry and body-limit
wrappers, about a sixth of the CPU of a primary-key query); any other FastAPI app gets the fast path as its
outermost middleware. The blocking part (gate and database) runs in a thread pool of its own
(:data:`THREADS`), one hop per request.

What those layers did for this route is done here:
the HTTP metrics (``sluice_http_requests_total`` / ``sluice_http_request_duration_seconds`` with the route's
path, as :class:`~sluice.server.http_metrics.HttpMetrics` labels it) and the 500 answer of an unexpected
error, in the data API's own shape (code ``internal``, logged with its traceback, as :mod:`sluice.api.http` does).

Everything else goes to the app unchanged: other paths and methods, WebSockets, and a POST that asks for
``Accept: text/event-stream`` (a subscription over SSE).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from sluice.api import metrics as api_metrics
from sluice.api.async_pg import answer_planned
from sluice.api.databases import POOL_SIZE
from sluice.api.execute import Answer, answer_error, run_request
from sluice.api.gate import DataApiError
from sluice.api.http import INTERNAL, MAX_BODY_BYTES, admit_and_run
from sluice.api.nesting import too_deep
from sluice.api.service import DataApi
from sluice.observability import metrics

log = logging.getLogger("sluice.server")
http_log = logging.getLogger("sluice.server.http")
THREADS = 2 * POOL_SIZE
"""Threads answering GraphQL POSTs (the gate and the database work); twice the connections of a database's pool,
so that the gate and the Python around a statement overlap with statements in flight."""
_INTERNAL = answer_error(DataApiError(INTERNAL, status=500, code="internal")).body


class GraphQLFastPath:
    """Answers ``POST path`` of ``api``'s GraphQL (not asking for ``text/event-stream``); as an ASGI middleware,
    any other request goes to ``app`` (None when used as a :class:`FastPath`)."""

    def __init__(self, app: ASGIApp | None, api: DataApi, path: str) -> None:
        self.app = app
        self.api = api
        self.path = path
        self._threads = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="sluice-graphql")
        self._children: dict[int, tuple[Any, Any]] = {}
        """The HTTP metrics' series of this path by status."""

    def accepts(self, scope: Scope) -> bool:
        """``POST path`` without ``Accept: text/event-stream`` (ASGI header names are lower-case)."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            return False
        return not any(name == b"accept" and b"text/event-stream" in value for name, value in scope["headers"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.accepts(scope):
            assert self.app is not None
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one GraphQL POST (:meth:`accepts` said yes)."""
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        started = time.perf_counter()
        status = 500
        try:
            answer = await self._answer(scope, receive, headers, started)
            if answer is None:  # the client left before its body arrived
                return
            status = answer.status
            out = [(b"content-type", b"application/json"), (b"content-length", str(len(answer.body)).encode())]
            out += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers.items()]
            self._record(status, started)
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": answer.body})
        except Exception:
            log.exception("unexpected error answering POST %s", self.path)
            if status != 500:
                return  # the answer had started: the connection just ends
            self._record(500, started)
            head = [(b"content-type", b"application/json"), (b"content-length", str(len(_INTERNAL)).encode())]
            await send({"type": "http.response.start", "status": 500, "headers": head})
            await send({"type": "http.response.body", "body": _INTERNAL})

    async def _answer(self, scope: Scope, receive: Receive, headers: dict[str, str], started: float) -> Answer | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if size > MAX_BODY_BYTES:
            return self._refused(DataApiError("the request body is larger than 1 MiB", status=413, code="too-large"), started)
        raw = b"".join(chunks)
        if headers.get("content-type", "").startswith("application/graphql"):
            body: Any = {"query": raw.decode("utf-8", "replace")}
        else:
            try:
                body = json.loads(raw)
            except ValueError:
                return self._refused(DataApiError("the body is not JSON", code="bad-request"), started)
            except RecursionError:
                return self._refused(too_deep("request body"), started)
        client = scope.get("client")
        address = str(client[0]) if client else ""
        nowait = getattr(self.api.gate, "admit_nowait", None)
        principal = None
        if nowait is not None:
            try:
                principal = nowait(headers, address, "graphql")
            except DataApiError as exc:
                return self._refused(exc, started)
        if principal is not None:
            planned = await answer_planned(self.api, body, principal)
            if planned is not None:
                return planned
            loop = asyncio.get_running_loop()
            answer: Answer = await loop.run_in_executor(self._threads, run_request, self.api, body, principal, "POST")
            return answer
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self._threads, admit_and_run, self.api, headers, address, body, "POST", started)
        return answer

    def _refused(self, exc: DataApiError, started: float) -> Answer:
        api_metrics.observe(
            self.api.name, api_metrics.UNKNOWN, api_metrics.UNKNOWN, exc.status, exc.code, time.perf_counter() - started
        )
        return answer_error(exc)

    def _record(self, status: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        children = self._children.get(status)
        if children is None:  # the labelled series, looked up once per status (labels() takes a lock)
            children = (
                metrics.child(metrics.HTTP_REQUESTS, self.path, "POST", str(status)),
                metrics.child(metrics.HTTP_DURATION, self.path, "POST"),
            )
            self._children[status] = children
        children[0].inc()
        children[1].observe(elapsed)
        if http_log.isEnabledFor(logging.DEBUG):
            http_log.debug("POST %s -> %d in %.1f ms", self.path, status, elapsed * 1000)
