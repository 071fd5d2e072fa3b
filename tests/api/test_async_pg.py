"""Cached plans run on the event loop (sluice.api.async_pg): a GraphQL POST on PostgreSQL whose plan is cached,
admitted without blocking, answers from the loop's own connections with the same rows, statement count,
permissions and errors as the thread path; anything else (credentials the gate must look up, SQLite) takes
the thread path; a catalog change on the way is answered from the new schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import pytest
from api_support import DDL, ROLES, HeaderGate, execute_all, served

from sluice.api.http import mount_api
from sluice.api.principal import Principal
from sluice.api.service import DataApi
from sluice.api.settings import ApiSettings
from sluice.server.fast_paths import FastPathApp

pytestmark = pytest.mark.postgres
BY_PK = "query One($id: Int!) { employes_by_pk(id: $id) { id nom } }"


class LoopGate(HeaderGate):
    """HeaderGate that admits on the loop unless the request says ``x-thread`` (as a key look-up would)."""

    def admit_nowait(self, headers: Mapping[str, str], address: str, operation: str) -> Principal | None:
        return None if "x-thread" in headers else self.admit(headers, address, operation)


@pytest.fixture
def api(pg_db_url: str) -> Iterator[DataApi]:
    execute_all(pg_db_url, DDL)
    settings = msgspec.convert({"sources": [{"connection": "hr", "tables": ["*"]}], "roles": ROLES}, ApiSettings)
    api = DataApi(settings, {"hr": pg_db_url}, None, LoopGate())
    api.start(watch=False)
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def http(api: DataApi) -> Iterator[httpx.Client]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        await api.close_async()

    app = FastPathApp(lifespan=lifespan)
    mount_api(app, api)
    with served(app) as client:
        client.headers["x-role"] = "admin"
        yield client


def post(http: httpx.Client, query: str, variables: dict[str, Any], **headers: str) -> tuple[int, Any]:
    answer = http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    return answer.status_code, answer.json()


def test_a_cached_plan_runs_on_the_loop(api: DataApi, http: httpx.Client) -> None:
    assert post(http, BY_PK, {"id": 1}) == (200, {"data": {"employes_by_pk": {"id": 1, "nom": "Ana"}}})
    assert not api.async_pools  # the first request compiled in a worker thread
    statements = api.databases["hr"].statements
    assert post(http, BY_PK, {"id": 3}) == (200, {"data": {"employes_by_pk": {"id": 3, "nom": "Cid"}}})
    assert post(http, BY_PK, {"id": 99}) == (200, {"data": {"employes_by_pk": None}})
    assert list(api.async_pools) == ["hr"]
    assert api.databases["hr"].statements == statements + 2  # one statement per request


def test_roles_and_the_thread_path_answer_alike(api: DataApi, http: httpx.Client) -> None:
    query = "query D($d: Int) { employes(where: {dept_id: {_eq: $d}}, order_by: {id: asc}) { id } }"
    for _ in range(2):
        assert post(http, query, {"d": 1}) == (200, {"data": {"employes": [{"id": 1}, {"id": 2}]}})
        assert post(http, query, {"d": 1}, **{"x-role": "reader"}) == (200, {"data": {"employes": [{"id": 1}]}})
        assert post(http, query, {"d": 1}, **{"x-role": "author", "x-sub": "u2"}) == (200, {"data": {"employes": [{"id": 2}]}})
        assert post(http, query, {"d": 1}, **{"x-thread": "1"}) == (200, {"data": {"employes": [{"id": 1}, {"id": 2}]}})
    status, body = post(http, query, {"d": 1}, **{"x-role": "nobody"})
    assert status == 403 and body["errors"][0]["extensions"]["code"] == "permission-denied"


def test_a_catalog_change_is_answered_from_the_new_schema(api: DataApi, http: httpx.Client, pg_db_url: str) -> None:
    query = "query One($id: Int!) { employes_by_pk(id: $id) { id author } }"
    for key in (1, 2):
        assert post(http, query, {"id": key})[0] == 200
    execute_all(pg_db_url, ["ALTER TABLE employes RENAME COLUMN author TO owner"])
    status, body = post(http, query, {"id": 3})
    assert status == 400 and body["errors"][0]["extensions"]["code"] == "validation-failed"
    renamed = "query One($id: Int!) { employes_by_pk(id: $id) { id owner } }"
    for key in (3, 3):
        assert post(http, renamed, {"id": key}) == (200, {"data": {"employes_by_pk": {"id": 3, "owner": "u1"}}})
