"""Requests answered ahead of FastAPI: :class:`FastPathApp`, the app class of ``sluice serve``.

FastAPI's ``__call__`` wraps every request in its telemetry and body-limit layers, Starlette's
``ServerErrorMiddleware``, the app's middleware and the router; for the data API's hot requests (a GraphQL
POST, :mod:`sluice.api.http_fast`) that machinery cost more CPU than the answer. A :class:`FastPath` sees
each HTTP request first and answers those it accepts itself, with its own metrics and error answers.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send


class FastPath(Protocol):
    """A handler of some HTTP requests that needs none of FastAPI's machinery."""

    def accepts(self, scope: Scope) -> bool:
        """Whether this path answers the request of ``scope`` (an ASGI ``http`` scope)."""
        ...

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a request :meth:`accepts` accepted."""
        ...


class FastPathApp(FastAPI):
    """A FastAPI app whose :attr:`fast_paths` see each HTTP request first: the first that accepts it answers
    it, outside FastAPI's middleware stack; the others (and lifespan, WebSockets) go to FastAPI as usual."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_paths: list[FastPath] = []
        self._fast_entry: ASGIApp = self._dispatch
        self._wrapped = False

    def wrap_fast_paths(self, middleware: type[Any], **kwargs: Any) -> None:
        """Put ``middleware(app, **kwargs)`` (an ASGI middleware class) around the fast paths as well, outermost
        (e.g. CORS: its headers on every answer of the data API's paths); add it to the app too for the
        requests that go through FastAPI."""
        self._fast_entry = middleware(self._fast_entry, **kwargs)
        self._wrapped = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for path in self.fast_paths:
                if path.accepts(scope):
                    if not self._wrapped:  # this path answers it (accepts asked once)
                        await path.handle(scope, receive, send)
                    else:
                        await self._fast_entry(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        for path in self.fast_paths:
            if path.accepts(scope):
                await path.handle(scope, receive, send)
                return
        await super().__call__(scope, receive, send)  # a wrapper changed the request: FastAPI answers it


def install(app: Any, handler: FastPath, middleware: type[Any], **kwargs: Any) -> None:
    """``handler`` ahead of ``app``: in its :attr:`FastPathApp.fast_paths`, or else as the outermost middleware
    (``middleware(app, **kwargs)``, an ASGI middleware class around the same handler)."""
    if isinstance(app, FastPathApp):
        app.fast_paths.append(handler)
    else:
        app.add_middleware(middleware, **kwargs)
