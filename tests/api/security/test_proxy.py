"""Gateway routes: forwarding to a local upstream (uvicorn), headers, streaming, roles, 504 and 502."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sluice.api.security import build_gate
from sluice.api.security.proxy import proxy_routes

from .conftest import ThreadServer, bearer, closed_port_url, token
from .support import api_settings


async def echo(request: Request) -> Response:
    body = await request.body()
    answer = JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": [[name, value] for name, value in request.headers.items()],
            "body": body.decode(),
        },
        headers={"X-Upstream": "yes", "Connection": "X-Hop", "X-Hop": "1", "Keep-Alive": "timeout=5"},
    )
    answer.raw_headers.append((b"set-cookie", b"a=1"))
    answer.raw_headers.append((b"set-cookie", b"b=2"))
    return answer


async def slow(request: Request) -> Response:
    await asyncio.sleep(2)
    return Response("late")


async def chunks(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for number in range(5):
            yield f"part {number}\n".encode()

    return StreamingResponse(parts(), status_code=201, media_type="text/plain")


UPSTREAM = FastAPI(
    routes=[
        Route("/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    ]
)
UPSTREAM.router.routes.insert(0, Route("/slow", slow))
UPSTREAM.router.routes.insert(0, Route("/chunks", chunks))


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with ThreadServer(UPSTREAM) as server:
        yield server.url


@pytest.fixture
def client(upstream: str, project_dir: Path) -> Iterator[httpx.Client]:
    settings = api_settings(
        proxies=[
            {"path": "/svc/catalogue", "upstream": f"{upstream}/api", "roles": ["editor"]},
            {"path": "/svc/open", "upstream": upstream},
            {"path": "/svc/slow", "upstream": f"{upstream}/slow", "timeout_s": 0.3},
            {"path": "/svc/down", "upstream": closed_port_url()},
        ],
        auth={"anon_role": "anon", "jwt": {"algorithms": ["HS256"], "secret": "a-test-secret-of-at-least-32-bytes-long!"}},
    )
    gate = build_gate(settings, project_dir, f"sqlite:///{project_dir / 'state.db'}")
    app = FastAPI()
    app.include_router(proxy_routes(settings, gate))
    with ThreadServer(app, lifespan="on") as server, httpx.Client(base_url=server.url, timeout=30) as test_client:
        yield test_client


EDITOR = bearer(token({"sub": "ed", "role": "editor"}))


def test_forwards_method_path_query_and_body(client: httpx.Client) -> None:
    answer = client.post("/svc/catalogue/items/7?x=1&y=2", headers=EDITOR, content=b'{"name": "chair"}')
    assert answer.status_code == 200, answer.text
    seen = answer.json()
    assert (seen["method"], seen["path"], seen["query"], seen["body"]) == ("POST", "/api/items/7", "x=1&y=2", '{"name": "chair"}')
    assert client.get("/svc/catalogue", headers=EDITOR).json()["path"] == "/api"


def test_request_headers_forwarded_dropped_and_added(client: httpx.Client) -> None:
    headers = {
        **EDITOR,
        "X-Forwarded-For": "203.0.113.9",
        "X-Sluice-Role": "admin",
        "Connection": "X-Secret-Hop",
        "X-Secret-Hop": "1",
        "X-Custom": "kept",
    }
    seen = dict(client.get("/svc/catalogue/x", headers=headers).json()["headers"])
    assert seen["x-custom"] == "kept"
    assert seen["authorization"] == EDITOR["authorization"]  # a bearer token is passed on
    # uvicorn trusts 127.0.0.1 as a proxy: the client is 203.0.113.9, which already ends the chain.
    assert seen["x-forwarded-for"] == "203.0.113.9"
    direct = dict(client.get("/svc/catalogue/x", headers=EDITOR).json()["headers"])
    assert direct["x-forwarded-for"] == "127.0.0.1"
    assert seen["x-forwarded-proto"] == "http" and seen["x-forwarded-host"] == client.base_url.netloc.decode()
    assert (seen["x-sluice-role"], seen["x-sluice-subject"]) == ("editor", "ed")  # the client's X-Sluice-Role was dropped
    assert "x-secret-hop" not in seen
    assert seen["host"] != client.base_url.netloc.decode()


def test_an_api_key_is_not_passed_to_the_upstream(client: httpx.Client, project_dir: Path) -> None:
    from sluice.api.security.keys import open_key_store

    store = open_key_store(f"sqlite:///{project_dir / 'state.db'}")
    try:
        _record, key = store.create("editor", "erin")
    finally:
        store.close()
    for headers in ({"X-API-Key": key}, {"Authorization": f"ApiKey {key}"}):
        answer = client.get("/svc/catalogue/x", headers=headers)
        assert answer.status_code == 200, answer.text
        seen = dict(answer.json()["headers"])
        assert "x-api-key" not in seen and "authorization" not in seen
        assert seen["x-sluice-subject"] == "erin"


def test_response_headers_without_hop_by_hop_and_with_repeated_fields(client: httpx.Client) -> None:
    answer = client.get("/svc/open/anything")
    assert answer.headers["x-upstream"] == "yes"
    assert "x-hop" not in answer.headers and "keep-alive" not in answer.headers
    assert answer.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_a_streamed_upstream_body_arrives_whole_with_its_status(client: httpx.Client) -> None:
    with client.stream("GET", "/svc/open/chunks") as answer:
        assert answer.status_code == 201
        assert b"".join(answer.iter_bytes()) == b"".join(f"part {n}\n".encode() for n in range(5))


def test_roles_restriction_and_authentication_refusals(client: httpx.Client) -> None:
    anonymous = client.get("/svc/catalogue/x")
    assert anonymous.status_code == 403
    assert anonymous.json() == {
        "errors": [{"message": "the role 'anon' may not use /svc/catalogue", "extensions": {"code": "forbidden-role"}}]
    }
    assert client.get("/svc/open/x").status_code == 200  # no roles: anyone the gate admits
    bad = client.get("/svc/open/x", headers=bearer("nonsense"))
    assert bad.status_code == 401
    assert bad.json()["errors"][0]["extensions"]["code"] == "invalid-token"
    assert bad.headers["www-authenticate"].startswith('Bearer realm="sluice", error="invalid_token"')


def test_upstream_timeout_is_504_json(client: httpx.Client) -> None:
    answer = client.get("/svc/slow")
    assert answer.status_code == 504
    assert answer.json()["errors"][0]["extensions"]["code"] == "upstream-timeout"
    assert "0.3s" in answer.json()["errors"][0]["message"]


def test_upstream_down_is_502_json(client: httpx.Client) -> None:
    from prometheus_client import REGISTRY

    def count() -> float:
        return (
            REGISTRY.get_sample_value("sluice_api_proxy_requests_total", {"route": "/svc/down", "outcome": "unreachable"}) or 0.0
        )

    before = count()
    answer = client.get("/svc/down/x")
    assert answer.status_code == 502
    body = answer.json()
    assert body["errors"][0]["extensions"]["code"] == "upstream-unreachable"
    assert ":" not in body["errors"][0]["message"]  # the upstream's address is not shown to clients
    assert count() == before + 1
