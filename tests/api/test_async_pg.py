"""Cached plans run on the event loop (sluice.api.async_pg): a GraphQL POST on PostgreSQL whose plan is cached,
admitted without blocking, answers from the loop's own connections with the same rows, statement count,
permissions and errors as the thread path; anything else (credentials the gate must look up, SQLite) takes
the thread path; a catalog change on the way is answered from the new schema."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import msgspec
import pytest
from api_support import DDL, ROLES, HeaderGate, execute_all, served

from sluice.api import async_pg
from sluice.api.async_pg import AsyncPool, asyncpg_arguments
from sluice.api.databases import Database
from sluice.api.gate import DataApiError
from sluice.api.http import mount_api
from sluice.api.plans import positional
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
    with http_of(api) as client:
        yield client


@contextmanager
def http_of(api: DataApi) -> Iterator[httpx.Client]:
    """A client of ``api`` served on a FastPathApp, as role admin."""

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


# --- asyncpg: the same answers as psycopg, or psycopg runs the request -------------------------------------


@pytest.fixture
def loop_runs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The results of AsyncPool.execute (rows, or None when the request went on to the thread path)."""
    runs: list[Any] = []
    original = AsyncPool.execute

    async def spy(self: AsyncPool, sql: str, args: list[Any]) -> Any:
        result = await original(self, sql, args)
        runs.append(result)
        return result

    monkeypatch.setattr(AsyncPool, "execute", spy)
    return runs


def test_answers_equal_the_thread_paths(api: DataApi, http: httpx.Client, loop_runs: list[Any]) -> None:
    cases = [
        ("query($n: String!) { employes(where: {nom: {_eq: $n}}) { id nom } }", [{"n": "Bob"}, {"n": "Nobody"}]),
        ("query($a: Boolean) { employes(where: {actif: {_eq: $a}}, order_by: {id: asc}) { id } }", [{"a": False}]),
        ("query($d: Int, $m: Int!) { employes(where: {dept_id: {_eq: $d}, id: {_gte: $m}}) { id } }", [{"d": 2, "m": 4}]),
        ("query($id: Int!) { employes_by_pk(id: $id) { id nom salaire embauche dept { nom } } }", [{"id": 1}, {"id": 4}]),
    ]
    for query, variable_sets in cases:
        post(http, query, variable_sets[0])  # compiles and caches the plan (thread path; a bool is part of its key)
        for variables in variable_sets:
            runs = len(loop_runs)
            on_loop = post(http, query, variables)
            assert len(loop_runs) == runs + 1 and loop_runs[-1] is not None  # answered by asyncpg
            assert on_loop == post(http, query, variables, **{"x-thread": "1"})
            assert on_loop[0] == 200


def test_values_asyncpg_might_bind_apart_go_to_psycopg(
    api: DataApi, http: httpx.Client, loop_runs: list[Any], pg_db_url: str
) -> None:
    execute_all(pg_db_url, ["CREATE TABLE grand (id BIGINT PRIMARY KEY, nom TEXT)", "INSERT INTO grand VALUES (1, 'un')"])
    api.refresh(force=True)
    by_pk = "query One($id: BigInt!) { grand_by_pk(id: $id) { id nom } }"
    decimal_query = "query($s: Numeric) { employes(where: {id: {_lte: 2}, salaire: {_gt: $s}}) { id } }"
    nul_query = "query($n: String!) { employes(where: {nom: {_eq: $n}}) { id } }"
    for query, first, other in [(by_pk, {"id": 1}, {"id": 2**63}), (nul_query, {"n": "Bob"}, {"n": "a\u0000b"})]:
        post(http, query, first)
        statements = api.databases["hr"].statements
        runs = len(loop_runs)
        # an int beyond int8 (asyncpg refuses to encode it), a NUL (psycopg refuses it with its own message)
        assert post(http, query, other) == post(http, query, other, **{"x-thread": "1"})
        assert loop_runs[runs:] in ([None], [])  # not run by asyncpg
        assert api.databases["hr"].statements - statements in (1, 2)  # psycopg ran them (or refused the NUL)
    assert post(http, by_pk, {"id": 2**63}) == (200, {"data": {"grand_by_pk": None}})
    post(http, decimal_query, {"s": "4000.00"})
    runs = len(loop_runs)
    assert post(http, decimal_query, {"s": "4000.00"}) == (200, {"data": {"employes": [{"id": 1}]}})
    assert loop_runs[runs:] == []  # a Decimal (as a float or a date) keeps psycopg


def test_a_time_out_on_the_loop_is_answered_as_on_the_thread_path(pg_db_url: str, loop_runs: list[Any]) -> None:
    execute_all(pg_db_url, [*DDL, "CREATE VIEW lent AS SELECT id, nom FROM employes WHERE pg_sleep(0.1 * id) IS NOT NULL"])
    settings = msgspec.convert(
        {"sources": [{"connection": "hr", "tables": ["*"]}], "roles": ROLES, "limits": {"graphql": {"timeout_s": 0.25}}},
        ApiSettings,
    )
    api = DataApi(settings, {"hr": pg_db_url}, None, LoopGate())
    api.start(watch=False)
    try:
        with http_of(api) as http:
            query = "query($id: Int!) { lent(where: {id: {_eq: $id}}) { id } }"
            assert post(http, query, {"id": 1}) == (200, {"data": {"lent": [{"id": 1}]}})
            assert post(http, query, {"id": 2}) == (200, {"data": {"lent": [{"id": 2}]}})
            assert loop_runs and loop_runs[-1] is not None
            on_loop = post(http, query, {"id": 5})
            assert on_loop == post(http, query, {"id": 5}, **{"x-thread": "1"})
            assert on_loop[0] == 400 and on_loop[1]["errors"][0]["extensions"]["code"] == "timeout"
    finally:
        api.close()


def run_pool(database: Database, work: Callable[[AsyncPool], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        arguments = asyncpg_arguments(database)
        assert arguments is not None
        pool = AsyncPool(database, arguments)
        try:
            return await work(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


@pytest.fixture
def database(api: DataApi) -> Database:
    return api.databases["hr"]


def test_the_pool_translates_errors(database: Database) -> None:
    async def work(pool: AsyncPool) -> list[str]:
        codes = []
        for sql, args in [("SELECT (1 / $1)::text", [0]), ("SELECT ('x' || $1)::int::text", ["y"])]:
            with pytest.raises(DataApiError) as caught:
                await pool.execute(sql, args)
            codes.append(caught.value.code)
        assert await pool.execute("SELECT (1 / $1)::text", [1]) == [("1",)]
        return codes

    assert run_pool(database, work) == ["invalid-value", "invalid-value"]


def test_statements_asyncpg_cannot_take_go_to_psycopg(database: Database) -> None:
    async def work(pool: AsyncPool) -> None:
        statements = database.statements
        assert await pool.execute("SELECT nom::text FROM nowhere WHERE id = $1", [1]) is None  # stale: not remembered
        assert "SELECT nom::text FROM nowhere WHERE id = $1" not in pool.refused
        assert await pool.execute("SELECT ($1 IS NULL)::text", [None]) is None  # PostgreSQL cannot type $1
        assert pool.refused == {"SELECT ($1 IS NULL)::text"}
        assert await pool.execute("SELECT nom::text FROM employes WHERE id = $1", [2**40]) is None  # beyond int4
        assert database.statements == statements  # psycopg counts them when it runs them
        assert await pool.execute("SELECT nom::text FROM employes WHERE id = $1", [2]) == [("Bob",)]
        assert database.statements == statements + 1

    run_pool(database, work)


def test_a_statement_over_the_timeout_is_refused(pg_db_url: str) -> None:
    database = Database("hr", pg_db_url, None, timeout_s=0.2)

    async def work(pool: AsyncPool) -> str | None:
        with pytest.raises(DataApiError) as caught:
            await pool.execute("SELECT pg_sleep($1)::text", [2])
        return caught.value.code

    assert run_pool(database, work) == "timeout"


def test_a_busy_pool_is_a_503_after_the_timeout(pg_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(async_pg, "POOL_SIZE", 1)
    database = Database("hr", pg_db_url, None, timeout_s=0.2)

    async def work(pool: AsyncPool) -> tuple[int, str | None, Any]:
        held = await pool._take()  # the only connection, in use
        with pytest.raises(DataApiError) as caught:
            await pool.execute("SELECT 'x'::text", [])
        pool._give(held, True)
        return caught.value.status, caught.value.code, await pool.execute("SELECT 'x'::text", [])

    assert run_pool(database, work) == (503, "database-busy", [("x",)])


def test_a_lost_connection_is_a_503_and_is_replaced(database: Database, pg_db_url: str) -> None:
    async def work(pool: AsyncPool) -> tuple[int, str | None, Any]:
        rows = await pool.execute("SELECT pg_backend_pid()::text", [])
        assert rows is not None
        execute_all(pg_db_url, [f"SELECT pg_terminate_backend({int(rows[0][0])})"])
        with pytest.raises(DataApiError) as caught:
            await pool.execute("SELECT 'x'::text", [])
        return caught.value.status, caught.value.code, await pool.execute("SELECT 'x'::text", [])

    assert run_pool(database, work) == (503, "database-unavailable", [("x",)])


def test_urls_with_parameters_asyncpg_reads_otherwise_keep_psycopg(pg_db_url: str) -> None:
    sep = "&" if "?" in pg_db_url else "?"
    assert asyncpg_arguments(Database("hr", pg_db_url + f"{sep}sslmode=disable", None, 5.0)) is not None
    assert asyncpg_arguments(Database("hr", pg_db_url + f"{sep}connect_timeout=3", None, 5.0)) is None


def test_libpq_environment_asyncpg_ignores_keeps_psycopg(pg_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert asyncpg_arguments(Database("hr", pg_db_url, None, 5.0)) is not None
    monkeypatch.setenv("PGTZ", "Asia/Tokyo")  # libpq sets the session's time zone from it; asyncpg does not
    assert asyncpg_arguments(Database("hr", pg_db_url, None, 5.0)) is None


def test_positional_form() -> None:
    form = positional("SELECT %(p1)s, %(p0)s, %(p1)s, '100%%' LIKE 'x'", {"p0": "c"}, (("p1", "id", None),))
    assert form.sql == "SELECT $1, $2, $1, '100%' LIKE 'x'"
    assert form.slots == (("id", None, None), (None, "c", None)) and form.neutral
    assert not positional("SELECT %(p0)s", {"p0": 1.5}, ()).neutral


def test_a_cancelled_statement_leaves_a_working_pool(database: Database) -> None:
    async def work(pool: AsyncPool) -> Any:
        task = asyncio.ensure_future(pool.execute("SELECT pg_sleep($1)::text", [5]))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await pool.execute("SELECT 'x'::text", [])

    assert run_pool(database, work) == [("x",)]
