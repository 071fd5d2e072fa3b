"""Property-based fuzz of GraphQL from the API's own schema (hypothesis-graphql, by the authors of
schemathesis): valid and invalid documents, for the admin role and a restricted one, over real HTTP on
PostgreSQL and SQLite; no answer may be a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from api_support import ROLES, HeaderGate, served
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, mutations, nodes, queries

from sluice.api.http import mount_api
from sluice.api.service import DataApi
from sluice.api.settings import ApiSettings

SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "BigInt": st.integers(-(2**63), 2**63 - 1).map(str).map(nodes.String),
    "Numeric": st.decimals(allow_nan=False, allow_infinity=False, places=2).map(str).map(nodes.String),
    "DateTime": st.datetimes().map(lambda d: d.isoformat()).map(nodes.String),
    "Date": st.dates().map(lambda d: d.isoformat()).map(nodes.String),
    "Time": st.times().map(lambda t: t.isoformat()).map(nodes.String),
    "JSON": st.text(max_size=20).map(nodes.String),
}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DataApi, httpx.Client]]:
    from api_support import DDL, execute_all

    if request.param == "postgresql":
        request.applymarker(pytest.mark.postgres)
        from servers_fixtures import pg_database

        with pg_database(str(request.getfixturevalue("pg_url"))) as url:
            yield from _serve(url, DDL, execute_all)
    else:
        yield from _serve(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'hr.db'}", DDL, execute_all)


def _serve(url: str, ddl: list[str], execute_all: Any) -> Iterator[tuple[DataApi, httpx.Client]]:
    execute_all(url, ddl)
    settings_ = msgspec.convert({"sources": [{"connection": "hr", "tables": ["*"]}], "roles": ROLES}, ApiSettings)
    api = DataApi(settings_, {"hr": url}, None, HeaderGate(max_batch=3))
    api.start(watch=False)
    app = FastAPI()
    mount_api(app, api)
    try:
        with served(app) as client:
            yield api, client
    finally:
        api.close()


def _no_5xx(client: httpx.Client, document: str, role: str) -> None:
    answer = client.post("/graphql", json={"query": document}, headers={"x-role": role, "x-sub": "ann"})
    assert answer.status_code < 500, (document, answer.text)
    assert "SELECT" not in answer.text and "Traceback" not in answer.text, (document, answer.text)


@pytest.mark.parametrize("mode", [Mode.POSITIVE, Mode.NEGATIVE])
@pytest.mark.parametrize("role", ["admin", "reader"])
def test_queries_never_answer_5xx(fuzzed: tuple[DataApi, httpx.Client], mode: Mode, role: str) -> None:
    api, client = fuzzed

    @FUZZ
    @given(queries(api.state().schema, custom_scalars=SCALARS, mode=mode, allow_x00=True))
    def check(document: str) -> None:
        _no_5xx(client, document, role)

    check()


@pytest.mark.parametrize("role", ["admin", "reader"])
def test_mutations_never_answer_5xx(fuzzed: tuple[DataApi, httpx.Client], role: str) -> None:
    api, client = fuzzed

    @FUZZ
    @given(mutations(api.state().schema, custom_scalars=SCALARS))
    def check(document: str) -> None:
        _no_5xx(client, document, role)

    check()
