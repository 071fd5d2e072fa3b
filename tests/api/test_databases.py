"""The data API's connection pool: at most POOL_SIZE connections, waited for rather than opened beyond it,
kept after a statement error that leaves them usable, closed when left inside a transaction; and a
PostgreSQL of the test's own stopped or frozen under a served API (GraphQL on both the thread and the event-loop
paths, REST): requests are answered 503 naming the connection instead of hanging, and served again once the
server is back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import DDL, ROLES, execute_all, served_api

from helpers import wait_for
from servers_fixtures import OwnPostgres
from sluice.api import databases
from sluice.api.databases import Database
from sluice.api.gate import DataApiError


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Database:
    monkeypatch.setattr(databases, "POOL_SIZE", 2)
    database = Database("hr", f"sqlite:///{tmp_path / 'hr.db'}", None, timeout_s=5.0)
    opened: list[Any] = []
    connect = database.connect

    def counted() -> Any:
        conn = connect()
        opened.append(conn)
        return conn

    monkeypatch.setattr(database, "connect", counted)
    database.opened = opened  # type: ignore[attr-defined]
    with database.connection() as conn:
        database.execute(conn, "CREATE TABLE t (id INTEGER PRIMARY KEY)", {})
    return database


def test_a_busy_pool_is_waited_for_not_grown(db: Database) -> None:
    got: list[Any] = []
    with db.connection() as first, db.connection() as second:
        assert first is not second

        def third() -> None:
            with db.connection() as conn:
                got.append(conn)

        waiter = threading.Thread(target=third)
        waiter.start()
        time.sleep(0.2)
        assert got == []  # still waiting: both connections are busy
    waiter.join(timeout=5)
    assert len(got) == 1 and got[0] in (first, second)
    assert len(db.opened) == 2  # type: ignore[attr-defined]


def test_a_pool_busy_longer_than_the_timeout_is_a_503(db: Database) -> None:
    db.timeout_s = 0.1
    with db.connection(), db.connection(), pytest.raises(DataApiError) as caught, db.connection():
        pass
    assert caught.value.status == 503
    assert caught.value.code == "database-busy"


def test_a_statement_error_keeps_the_connection_unless_a_transaction_is_left_open(db: Database) -> None:
    with db.connection() as conn:
        db.execute(conn, "INSERT INTO t (id) VALUES (1)", {})
    with pytest.raises(DataApiError), db.connection() as conn:
        db.execute(conn, "INSERT INTO t (id) VALUES (1)", {})  # a unique key broken: a 400, the connection is fine
    with db.connection() as again:
        assert again is conn
    with pytest.raises(RuntimeError), db.connection() as conn:
        db.execute(conn, "BEGIN", {})
        raise RuntimeError("left inside a transaction")
    with db.connection() as fresh:
        assert fresh is not conn
        assert db.execute(fresh, "SELECT count(*) FROM t", {}) == [(1,)]
    assert len(db.opened) == 2  # type: ignore[attr-defined]


BY_PK = {"query": "query($id: Int!) { employes_by_pk(id: $id) { nom } }", "variables": {"id": 1}}
"""Asked twice its plan is cached: later requests run on the event loop (asyncpg, ``api/async_pg.py``)."""
LIST = {"query": "{ dept(order_by: {id: asc}) { nom } }"}


@pytest.fixture
def outage(own_pg: OwnPostgres) -> Iterator[tuple[OwnPostgres, httpx.Client]]:
    """GraphQL and REST served over a PostgreSQL the test may stop and freeze (statement time-out 1 s)."""
    execute_all(own_pg.url, DDL)
    settings = {"sources": [{"connection": "hr", "tables": ["*"]}], "roles": ROLES, "limits": {"graphql": {"timeout_s": 1}}}
    with served_api(settings, {"hr": own_pg.url}, watch=True) as (_, client):
        yield own_pg, client


def _asks(client: httpx.Client) -> list[httpx.Response]:
    """One request of each path: GraphQL on the event loop (a cached plan), GraphQL in a thread, REST."""
    return [client.post("/graphql", json=BY_PK), client.post("/graphql", json=LIST), client.get("/rest/dept?order=id")]


def _served(client: httpx.Client) -> bool:
    return all(answer.status_code == 200 for answer in _asks(client))


def _assert_unavailable(answers: list[httpx.Response]) -> None:
    for answer in answers:
        assert answer.status_code == 503, answer.text
        body = answer.json()
        if "errors" in body:  # GraphQL
            assert body["errors"][0]["extensions"]["code"] == "database-unavailable", body
            assert "'hr' cannot be reached" in body["errors"][0]["message"], body
        else:  # REST: SLR503 for a lost statement, the pool's own code when no connection could be opened
            assert body["code"] in ("SLR503", "database-unavailable"), body
            assert "'hr' cannot be reached" in body["message"], body


def test_a_stopped_postgresql_is_a_503_naming_it_and_a_restarted_one_is_used_again(
    outage: tuple[OwnPostgres, httpx.Client],
) -> None:
    server, client = outage
    for _ in range(2):  # the second by_pk runs its cached plan on the event loop
        assert _served(client)
    assert client.post("/graphql", json=BY_PK).json() == {"data": {"employes_by_pk": {"nom": "Ana"}}}
    server.stop()
    _assert_unavailable(_asks(client))  # the pooled connections the server closed, then refused connections
    _assert_unavailable(_asks(client))
    server.start()
    wait_for(lambda: _served(client), 30, "the API to serve again once PostgreSQL is back")
    for _ in range(3):  # no connection of before the restart is left in a pool to fail a later request
        assert _served(client)
    assert client.post("/graphql", json=LIST).json() == {"data": {"dept": [{"nom": "R&D"}, {"nom": "Ventes"}, {"nom": "Vide"}]}}


def test_a_postgresql_that_stops_answering_is_a_503_not_a_hang(outage: tuple[OwnPostgres, httpx.Client]) -> None:
    server, client = outage
    for _ in range(2):
        assert _served(client)
    server.freeze()  # connections stay open, nothing answers: the server's own statement time-out never comes
    try:
        # Each answered (the client would raise after its 30 s) with a 503: the statement's connection cut after
        # the allowance, new connections given up after the connect time-out, or refused at once meanwhile.
        _assert_unavailable(_asks(client))
        _assert_unavailable(_asks(client))
    finally:
        server.thaw()
    wait_for(lambda: _served(client), 30, "the API to serve again once PostgreSQL answers")
    for _ in range(3):
        assert _served(client)
