"""Helpers of the data-API tests: one small HR data set for PostgreSQL, MariaDB and SQLite, a started
:class:`~sluice.api.service.DataApi` over it whose statements are counted, a test gate, and an app served by
uvicorn on a loopback port."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import uvicorn

from helpers import wait_for
from servers_fixtures import mysql_connect
from sluice.api.execute import run_request
from sluice.api.gate import DataApiError
from sluice.api.principal import Principal
from sluice.api.service import DataApi
from sluice.api.settings import ApiSettings
from sluice.server.serve import bind, server_config, url_of

ENGINES = ("postgresql", "mysql", "sqlite")

DDL = [
    "CREATE TABLE dept (id INTEGER PRIMARY KEY, nom VARCHAR(40) NOT NULL)",
    "CREATE TABLE employes (id INTEGER PRIMARY KEY, nom VARCHAR(40) NOT NULL, salaire DECIMAL(10,2), actif BOOLEAN, "
    "dept_id INTEGER, embauche DATE, author VARCHAR(20), FOREIGN KEY (dept_id) REFERENCES dept (id))",
    "CREATE VIEW employes_actifs AS SELECT id, nom FROM employes WHERE actif",
    "CREATE TABLE journal (msg VARCHAR(40))",
    "INSERT INTO dept VALUES (1, 'R&D'), (2, 'Ventes'), (3, 'Vide')",
    "INSERT INTO employes VALUES (1, 'Ana', 5000.50, TRUE, 1, '2020-01-15', 'u1'), "
    "(2, 'Bob', 4000.00, FALSE, 1, '2021-03-01', 'u2'), "
    "(3, 'Cid', 4000.00, TRUE, 2, NULL, 'u1'), (4, 'Dan', NULL, NULL, NULL, '2019-07-30', 'u3'), "
    "(5, 'Eva', 3000.25, TRUE, 2, '2022-11-11', 'u2')",
    "INSERT INTO journal VALUES ('hello')",
]

ROLES = {
    "reader": {
        "employes": {"select": {"columns": ["id", "nom", "dept_id"], "filter": {"actif": {"_eq": True}}, "limit": 2}},
        "dept": {"select": {}},
    },
    "author": {
        "employes": {
            "select": {
                "columns": ["id", "nom", "dept_id", "author", "actif", "embauche"],
                "filter": {"author": {"_eq": {"claim": "sub"}}},
            },
            "insert": {
                "columns": ["id", "nom", "dept_id"],
                "set": {"author": {"claim": "sub"}},
                "check": {"dept_id": {"_neq": 3}},
            },
            "update": {"columns": ["nom", "salaire"], "filter": {"author": {"_eq": {"claim": "sub"}}}},
            "delete": {"filter": {"author": {"_eq": {"claim": "sub"}}}},
        },
        "dept": {"select": {"filter": {"id": {"_lt": 3}}}},
    },
}


def execute_all(url: str, statements: list[str]) -> None:
    """Run ``statements`` on the database of ``url`` (postgresql://, mysql://, sqlite:////abs/path)."""
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql.replace("%", "%%"))
    elif url.startswith("mysql"):
        conn = mysql_connect(url)
        try:
            with conn.cursor() as cur:
                for sql in statements:
                    cur.execute(sql)
        finally:
            conn.close()
    else:
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            for sql in statements:
                conn.execute(sql)


def fetch(url: str, sql: str) -> list[tuple[Any, ...]]:
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
    if url.startswith("mysql"):
        conn = mysql_connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()
    import sqlite3

    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


@dataclass
class Client:
    """A started API over one database: ``run`` answers a document as (status, JSON) and counts statements."""

    api: DataApi
    url: str
    last_statements: int = 0

    @property
    def dialect(self) -> str:
        return next(iter(self.api.databases.values())).scheme

    def run(self, query: str, variables: Mapping[str, Any] | None = None, role: str = "admin", **claims: Any) -> tuple[int, Any]:
        principal = Principal(role=role, subject=claims.get("sub"), claims=claims)
        before = sum(db.statements for db in self.api.databases.values())
        answer = run_request(self.api, {"query": query, "variables": dict(variables or {})}, principal)
        self.last_statements = sum(db.statements for db in self.api.databases.values()) - before
        return answer.status, json.loads(answer.body)

    def data(self, query: str, variables: Mapping[str, Any] | None = None, role: str = "admin", **claims: Any) -> Any:
        status, body = self.run(query, variables, role, **claims)
        assert status == 200, body
        return body["data"]

    def error(
        self, query: str, variables: Mapping[str, Any] | None = None, role: str = "admin", **claims: Any
    ) -> tuple[int, str]:
        status, body = self.run(query, variables, role, **claims)
        assert status != 200, body
        return status, body["errors"][0]["extensions"]["code"]


class HeaderGate:
    """A test gate: the role is the ``x-role`` header (``anon`` without), ``x-sub`` the subject claim."""

    def __init__(self, max_batch: int = 10) -> None:
        self.max_batch = max_batch

    def admit(self, headers: Mapping[str, str], address: str, operation: str) -> Principal:
        if headers.get("x-role") == "nobody":
            raise DataApiError("unknown role", status=403, code="permission-denied")
        sub = headers.get("x-sub")
        return Principal(role=headers.get("x-role", "anon"), subject=sub, claims={"sub": sub} if sub else {}, address=address)

    def graphql_rules(self) -> list[Any]:
        return []

    def check_batch(self, operations: int) -> None:
        if operations > self.max_batch:
            raise DataApiError("too many operations", code="batch-too-large")


def make_api(settings: dict[str, Any], connections: dict[str, str]) -> DataApi:
    api = DataApi(msgspec.convert(settings, ApiSettings), connections, None, HeaderGate())
    api.start(watch=False)
    return api


ClientFactory = Callable[[dict[str, Any]], Client]


@contextmanager
def served(app: Any, sock: socket.socket | None = None) -> Iterator[httpx.Client]:
    """``app`` served by uvicorn on ``sock`` (default: a free loopback port; lifespan included), and a client of it."""
    sock = sock or bind("127.0.0.1", 0)
    server = uvicorn.Server(server_config(app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 60, "the server to start")
        with httpx.Client(base_url=url_of(sock), timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()


@contextmanager
def served_api(
    settings: dict[str, Any], connections: dict[str, str], watch: bool = False
) -> Iterator[tuple[DataApi, httpx.Client]]:
    """A :class:`DataApi` of ``settings`` over ``connections`` (gate: :class:`HeaderGate`), started (``watch``: with
    its catalog watcher), its GraphQL and REST served by uvicorn, and a client sending ``x-role: admin``; closed after."""
    from fastapi import FastAPI

    from sluice.api.http import mount_api
    from sluice.api.rest.adapt import mount_data_api_rest

    api = DataApi(msgspec.convert(settings, ApiSettings), connections, None, HeaderGate())
    api.start(watch=watch)
    app = FastAPI()
    mount_api(app, api)
    mount_data_api_rest(app, api)
    try:
        with served(app) as client:
            client.headers["x-role"] = "admin"
            yield api, client
    finally:
        api.close()
