"""Subscriptions end to end, as ``sluice serve --sync emp`` runs them: a project whose sync copies MariaDB's
``employes`` into PostgreSQL (embedded bus) and whose ``api:`` serves the PostgreSQL copy with JWT auth. A row
written in MariaDB reaches PostgreSQL through the sync, and subscribers (WebSocket and SSE) get the new
result; a row outside their filter pushes nothing; credentials and permissions are checked."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import psycopg
import pytest
from subscription_clients import SseReader, metric, ws_client

from helpers import wait_for, write_yaml
from servers_fixtures import mysql_database, mysql_execute, pg_database
from sluice.project.load import load_project
from sluice.server.app import create_app
from sluice.server.serve import SluiceServer, bind, server_config, url_of
from sluice.server.services import ServerSettings, Services

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]
SECRET = "apisub-test-secret-of-at-least-32-bytes"
LIST = 'subscription { employes(where: {dept: {_eq: "R&D"}}, order_by: [{id: asc}]) { id nom } }'
PROJECT = """\
name: apisub_live
connections:
  hr: {hr}
  warehouse: {warehouse}
syncs:
  - name: emp
    source: hr
    target: warehouse
    tables: [employes]
api:
  sources:
    - connection: warehouse
      tables: ["*"]
  auth:
    anon_role: null
    jwt: {{algorithms: [HS256], secret: "{secret}"}}
  roles:
    reader:
      employes: {{select: {{columns: [id, nom, dept]}}}}
    guest: {{}}
"""


def token(role: str, secret: str = SECRET) -> str:
    return jwt.encode({"sub": "u1", "role": role}, secret, algorithm="HS256")


@dataclass
class Served:
    base_url: str
    mysql_url: str
    pg_url: str

    def mariadb(self, statement: str) -> None:
        mysql_execute(self.mysql_url, statement)

    def warehouse_rows(self) -> int:
        try:
            with psycopg.connect(self.pg_url, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM public.employes").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def databases(mysql_url: str, pg_url: str) -> Iterator[tuple[str, str]]:
    """A MariaDB database holding ``employes`` and an empty PostgreSQL database, dropped afterwards."""
    name = f"apisub_{uuid.uuid4().hex[:10]}"
    with mysql_database(mysql_url, name) as my_url, pg_database(pg_url, name) as pg_url_of_test:
        served = Served("", my_url, pg_url_of_test)
        served.mariadb("CREATE TABLE employes (id INT PRIMARY KEY, nom VARCHAR(40) NOT NULL, dept VARCHAR(20))")
        served.mariadb("INSERT INTO employes VALUES (1, 'Ana', 'R&D'), (2, 'Bob', 'Ventes'), (3, 'Cid', 'R&D')")
        yield my_url, pg_url_of_test


@pytest.fixture(scope="module")
def served(databases: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The project served as ``sluice serve --sync emp`` serves it, once the snapshot reached PostgreSQL."""
    my_url, pg_url = databases
    folder = tmp_path_factory.mktemp("apisub_project")
    project = load_project(write_yaml(folder, PROJECT.format(hr=my_url, warehouse=pg_url, secret=SECRET)))
    services = Services(project, ServerSettings(syncs=("emp",), workers=False, resume=False))
    sock = bind("127.0.0.1", 0)
    server = SluiceServer(server_config(create_app(services)), services)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 60, "the server to start")
        assert server.started, "the server did not start"
        live = Served(url_of(sock), my_url, pg_url)
        wait_for(lambda: live.warehouse_rows() == 3, 60, "the sync's snapshot in PostgreSQL")
        yield live
    finally:
        server.should_exit = True
        thread.join(60)
        sock.close()
        services.stop()


def names(payload: dict[str, Any]) -> list[str]:
    return [row["nom"] for row in payload["data"]["employes"]]


def test_a_mariadb_insert_reaches_the_websocket_subscriber_through_the_sync(served: Served) -> None:
    with ws_client(served.base_url) as ws:
        ws.init({"Authorization": f"Bearer {token('reader')}"})
        ws.subscribe("1", LIST)
        assert names(ws.next_payload("1")) == ["Ana", "Cid"]
        assert metric("sluice_api_subscriptions_active", table="employes", role="reader") == 1
        same = metric("sluice_api_subscription_runs_total", table="employes", outcome="same")
        served.mariadb("INSERT INTO employes VALUES (4, 'Dan', 'Ventes')")  # outside the filter
        wait_for(lambda: metric("sluice_api_subscription_runs_total", table="employes", outcome="same") > same, 30, "a re-run")
        assert served.warehouse_rows() == 4  # the re-run came after apply wrote the row
        served.mariadb("INSERT INTO employes VALUES (5, 'Eve', 'R&D')")
        assert names(ws.next_payload("1")) == ["Ana", "Cid", "Eve"]  # the first message after both inserts


def test_sse_receives_the_same_changes(served: Served) -> None:
    headers = {"accept": "text/event-stream", "authorization": f"Bearer {token('reader')}"}
    with (
        httpx.Client(base_url=served.base_url, timeout=30) as http,
        http.stream("POST", "/graphql", json={"query": LIST}, headers=headers) as response,
    ):
        assert response.status_code == 200
        events = SseReader(response)
        before = names(events.next_payload())
        assert before[:2] == ["Ana", "Cid"]
        served.mariadb("UPDATE employes SET nom = 'Anna' WHERE id = 1")
        assert names(events.next_payload()) == ["Anna", *before[1:]]


def test_credentials_are_checked_on_connection_init(served: Served) -> None:
    with ws_client(served.base_url) as ws:
        ws.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token('reader', 'x' * 40)}"}})
        assert ws.closed_with()[0] == 4401
    with ws_client(served.base_url) as ws:
        ws.send({"type": "connection_init", "payload": {}})  # anon_role: null
        assert ws.closed_with()[0] == 4401
    with ws_client(served.base_url) as ws:
        ws.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token('nobody')}"}})
        assert ws.closed_with()[0] == 4403


def test_a_role_without_permission_gets_an_error(served: Served) -> None:
    with ws_client(served.base_url) as ws:
        ws.init({"Authorization": f"Bearer {token('guest')}"})
        ws.subscribe("1", LIST)
        error = ws.recv()
        assert error["id"] == "1" and error["type"] == "error"
        assert error["payload"][0]["extensions"]["code"] == "permission-denied"
