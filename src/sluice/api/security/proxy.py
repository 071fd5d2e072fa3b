"""Gateway routes (seed 001's "WSO2 API Gateway" part): requests under a ``ProxyRoute.path`` are forwarded to
its ``upstream`` behind the same :class:`~sluice.api.gate.Gate` as the data API.

``proxy_routes(settings, gate)`` returns a FastAPI router with, per route, ``{path}`` and ``{path}/{rest}``
for every method; ``GET /svc/catalogue/items?x=1`` goes to ``<upstream>/items?x=1``. Per request:

1. ``gate.admit(headers, address, "proxy")`` (authentication and rate limits; its refusals as JSON with their
   headers), then the route's ``roles`` (403 ``forbidden-role`` for another role).
2. The request is sent with httpx (async), its body streamed through, without the hop-by-hop fields of
   RFC 9110 §7.6.1 (``Connection`` and the fields it names, ``Keep-Alive``, ``Proxy-*``, ``TE``,
   ``Trailer``, ``Transfer-Encoding``, ``Upgrade``) and ``Host``, without Sluice's own credentials (an
   API key: ``X-API-Key`` or ``Authorization: ApiKey``; a ``Bearer`` token is passed on for the upstream
   to check if it wants), with ``X-Forwarded-For`` (the client address appended unless it already ends the
   chain, as when uvicorn read it from a trusted local proxy's field), ``X-Forwarded-Proto``,
   ``X-Forwarded-Host``, and ``X-Sluice-Role`` / ``X-Sluice-Subject`` (any such field the client sent is
   dropped first, so an upstream reachable only through Sluice can trust them).
3. The upstream's status, headers (hop-by-hop removed) and body are streamed back as they come.
   No response within ``timeout_s`` (connect, each read, write): 504 ``upstream-timeout``; connection
   refused or broken before the response: 502 ``upstream-unreachable``; both as JSON errors.

Redirects are passed to the client, not followed; environment proxy settings are ignored.
Metrics: ``sluice_api_proxy_requests_total{route,outcome}`` and ``sluice_api_proxy_upstream_seconds{route}``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio.to_thread
import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from sluice.api.gate import DataApiError, Gate
from sluice.api.security import metrics
from sluice.api.settings import ApiSettings, ProxyRoute

log = logging.getLogger("sluice.api")

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te", "trailer",
     "transfer-encoding", "upgrade"}
)  # fmt: skip
DROPPED_REQUEST = frozenset({"host", "x-api-key", "x-sluice-role", "x-sluice-subject"})


def error_response(exc: DataApiError) -> JSONResponse:
    """``{"errors": [{"message": ..., "extensions": {"code": ...}}]}`` with the error's status and headers."""
    body = {"errors": [{"message": str(exc), "extensions": {"code": exc.code}}]}
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def _hop_by_hop(connection: list[str]) -> frozenset[str]:
    """The hop-by-hop fields, with those the ``Connection`` field values name."""
    return HOP_BY_HOP | {token.strip().lower() for value in connection for token in value.split(",")}


class _Clients:
    """One httpx.AsyncClient per event loop (a client's connections belong to the loop that opened them)."""

    def __init__(self) -> None:
        self._clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
            self._clients[loop] = client
        return client

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()


def proxy_routes(settings: ApiSettings, gate: Gate) -> APIRouter:
    """A router serving every ``settings.proxies`` route behind ``gate`` (its lifespan closes the upstream client)."""
    clients = _Clients()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await clients.close()

    router = APIRouter(lifespan=lifespan)
    for route in settings.proxies:
        handler = _handler(route, gate, clients)
        prefix = route.path.rstrip("/")
        router.add_api_route(prefix or "/", handler, methods=METHODS, include_in_schema=False)
        router.add_api_route(f"{prefix}/{{rest:path}}", handler, methods=METHODS, include_in_schema=False)
    return router


def _handler(route: ProxyRoute, gate: Gate, clients: _Clients) -> Callable[[Request], Awaitable[Response]]:
    base = route.upstream.rstrip("/")
    timeout = httpx.Timeout(route.timeout_s)

    async def forward(request: Request) -> Response:
        address = request.client.host if request.client else ""
        headers = {name.lower(): value for name, value in request.headers.items()}
        try:
            principal = await anyio.to_thread.run_sync(functools.partial(gate.admit, headers, address, "proxy"))
            if route.roles is not None and principal.role not in route.roles:
                metrics.AUTH_FAILURES.labels("proxy", "forbidden-role").inc()
                raise DataApiError(f"the role '{principal.role}' may not use {route.path}", status=403, code="forbidden-role")
        except DataApiError as exc:
            return error_response(exc)
        rest = request.path_params.get("rest")
        url = f"{base}/{rest}" if rest is not None else base
        if request.url.query:
            url = f"{url}?{request.url.query}"
        outgoing = _request_headers(request, address, principal.role, principal.subject)
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        upstream_request = clients.get().build_request(
            request.method, url, headers=outgoing, content=request.stream() if has_body else None, timeout=timeout
        )
        started = time.perf_counter()
        try:
            upstream = await clients.get().send(upstream_request, stream=True)
        except httpx.TimeoutException:
            return _failed(
                route,
                "timeout",
                504,
                "upstream-timeout",
                f"the upstream of {route.path} did not answer within {route.timeout_s:g}s",
            )
        except httpx.TransportError as exc:
            log.warning("proxy %s: upstream %s failed: %s", route.path, base, type(exc).__name__)
            return _failed(route, "unreachable", 502, "upstream-unreachable", f"the upstream of {route.path} cannot be reached")
        metrics.PROXY_DURATION.labels(route.path).observe(time.perf_counter() - started)
        metrics.PROXY_REQUESTS.labels(route.path, "ok").inc()
        response = StreamingResponse(
            _body(upstream, route), status_code=upstream.status_code, background=BackgroundTask(upstream.aclose)
        )
        dropped = _hop_by_hop(upstream.headers.get_list("connection"))
        response.raw_headers = [
            (name, value) for name, value in upstream.headers.raw if name.decode("latin-1").lower() not in dropped
        ]
        return response

    return forward


async def _body(upstream: httpx.Response, route: ProxyRoute) -> AsyncIterator[bytes]:
    """The upstream's body as it arrives (still encoded: ``Content-Encoding`` is passed on as is)."""
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    except httpx.TransportError as exc:  # the status is already sent: the client sees a truncated body
        log.warning("proxy %s: upstream body broken off: %s", route.path, type(exc).__name__)


def _failed(route: ProxyRoute, outcome: str, status: int, code: str, message: str) -> Response:
    metrics.PROXY_REQUESTS.labels(route.path, outcome).inc()
    return error_response(DataApiError(message, status=status, code=code))


def _request_headers(request: Request, address: str, role: str, subject: str | None) -> list[tuple[str, str]]:
    dropped = _hop_by_hop(request.headers.getlist("connection")) | DROPPED_REQUEST
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    for name, value in request.headers.items():
        lower = name.lower()
        if lower in dropped:
            continue
        if lower == "authorization" and value.strip().lower().startswith("apikey"):
            continue
        if lower == "x-forwarded-for":
            forwarded_for.append(value)
            continue
        if lower in ("x-forwarded-proto", "x-forwarded-host"):
            continue
        out.append((name, value))
    chain = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    if address and (not chain or chain[-1] != address):
        # uvicorn (proxy_headers, trusting 127.0.0.1 by default) already took the client from the chain when
        # a local reverse proxy sent it: then the client is its last entry and is not appended twice.
        chain.append(address)
    if chain:
        out.append(("x-forwarded-for", ", ".join(chain)))
    out.append(("x-forwarded-proto", request.url.scheme))
    if "host" in request.headers:
        out.append(("x-forwarded-host", request.headers["host"]))
    out.append(("x-sluice-role", role))
    if subject is not None:
        out.append(("x-sluice-subject", subject))
    return out
