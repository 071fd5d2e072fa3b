"""FastPathApp: a fast path answers the requests it accepts ahead of FastAPI; the rest (routes, lifespan,
middleware) go through FastAPI as before; without a FastPathApp the handler is an outermost middleware."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from sluice.server.fast_paths import FastPathApp, install


class Pong:
    """Answers GET /ping with "pong" (as a fast path, or as a middleware around ``app``)."""

    def __init__(self, app: ASGIApp | None = None) -> None:
        self.app = app
        self.calls = 0

    def accepts(self, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["method"] == "GET" and scope["path"] == "/ping"

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
        await send({"type": "http.response.body", "body": b"pong"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.accepts(scope):
            await self.handle(scope, receive, send)
        else:
            assert self.app is not None
            await self.app(scope, receive, send)


def routes(app: FastAPI) -> None:
    @app.get("/ping")
    def ping() -> Any:
        return "from the route"

    @app.get("/other")
    def other() -> Any:
        return "other"


def answers(app: Any, requests: list[tuple[str, str]]) -> list[tuple[int, str]]:
    async def run() -> list[tuple[int, str]]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return [((r := await client.request(method, path)).status_code, r.text) for method, path in requests]

    return asyncio.run(run())


def test_a_fast_path_answers_before_the_routes() -> None:
    app = FastPathApp()
    routes(app)
    pong = Pong()
    install(app, pong, Pong)
    got = answers(app, [("GET", "/ping"), ("GET", "/other"), ("POST", "/ping")])
    assert got == [(200, "pong"), (200, '"other"'), (405, '{"detail":"Method Not Allowed"}')]  # POST: FastAPI's answer
    assert pong.calls == 1


def test_without_a_fast_path_app_the_handler_is_a_middleware() -> None:
    app = FastAPI()
    routes(app)
    install(app, Pong(), Pong)
    assert answers(app, [("GET", "/ping"), ("GET", "/other")]) == [(200, "pong"), (200, '"other"')]
