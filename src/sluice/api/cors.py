"""CORS for the data API: browsers on the origins of ``api: cors:`` may call GraphQL, REST and the proxy routes.

The protocol (preflight ``OPTIONS``, ``Access-Control-*`` headers) is the Fetch standard's
(https://fetch.spec.whatwg.org/#http-cors-protocol), implemented by Starlette's ``CORSMiddleware``; this module
only limits it to the data API's paths, so the control API (runs, syncs, metrics) stays same-origin. It wraps
the whole app, outside the GraphQL fast path, so every answer of those paths carries the headers, errors and
429s included.
"""

from __future__ import annotations

import re

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from sluice.api.config import under_path
from sluice.api.settings import ApiSettings

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
"""Methods a browser may use cross-origin (those GraphQL, REST and the proxies answer)."""


def origin_pattern(origin: str) -> str:
    """The regular expression of ``https://*.example.com``: that scheme, one or more subdomain labels, then the host
    (``https://example.com`` itself is not included: list it too)."""
    scheme, _, host = origin.partition("://*.")
    return f"{re.escape(scheme)}://(?:[A-Za-z0-9-]+\\.)+{re.escape(host)}"


class DataApiCors:
    """ASGI middleware: requests under the data API's paths go through CORS, others straight to ``app``."""

    def __init__(self, app: ASGIApp, settings: ApiSettings) -> None:
        cors = settings.cors
        assert cors is not None
        self.app = app
        exact = [origin for origin in cors.allow_origins if "*." not in origin]
        wildcards = [origin_pattern(origin) for origin in cors.allow_origins if "*." in origin]
        self.cors = CORSMiddleware(
            app,
            allow_origins=exact,
            allow_origin_regex="|".join(wildcards) or None,
            allow_methods=METHODS,
            allow_headers=cors.allow_headers,
            allow_credentials=cors.allow_credentials,
            expose_headers=cors.expose_headers,
            max_age=cors.max_age_s,
        )
        self.prefixes = (settings.graphql_path, settings.rest_path, *(r.path for r in settings.proxies))

    def covers(self, path: str) -> bool:
        """Whether ``path`` is one of the data API's (the GraphQL or REST path, a proxy route, or below one)."""
        return any(under_path(path, prefix) for prefix in self.prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.covers(scope["path"]):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
