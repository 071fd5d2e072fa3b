"""The data API in the live monitoring stack of test_monitoring.py: a project serving GraphQL, REST and a
gateway route over SQLite, the route's upstream, a live table (``employes``, copied from MariaDB into
PostgreSQL by the project's sync ``emp``, which ``sluice serve --sync emp`` runs), and traffic that moves
every series the *Sluice / API* dashboard reads (answers by operation and role, a validation error, refused
credentials, a 429, proxied requests and a refused one; a WebSocket subscription open until the end, and
MariaDB inserts that reach it through the sync, the bus and a re-run of its live query).

The traffic is sent in rounds with the same label sets, a scrape between them: a counter seen for the
first time has no rate yet, so a single quick burst would leave the rate-based panels at 0 (and their
ratios and quantiles NaN)."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import psycopg
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from servers_fixtures import mysql_execute

SECRET = "live-stack-secret-of-at-least-32-bytes"
RATE_PER_SUBJECT = 5  # per minute: each round's "burst-N" subject crosses it, the others stay under it
PROJECT = """\
name: shop-api
connections:
  shop: sqlite:///shop.db
  hr: "%(hr)s"
  warehouse: "%(warehouse)s"
syncs:
  - {name: emp, source: hr, target: warehouse, tables: [employes], capture: {server_id: %(server_id)d}}
api:
  sources:
    - {connection: shop, tables: [articles]}
    - {connection: warehouse, tables: [employes]}
  operations:
    articles: {list: getArticles, by_pk: getArticle}
  auth:
    anon_role: anon
    jwt: {algorithms: [HS256], secret: "%(secret)s", audience: shop}
  roles:
    anon:
      articles: {select: {columns: [id, titre]}}
    editor:
      articles: {select: {}, insert: {}}
      employes: {select: {}}
  limits:
    rate: {per_subject: %(rate)d/minute}
  proxies:
    - {path: /svc/catalogue, upstream: "%(upstream)s", roles: [editor]}
"""


WATCHED = 'subscription { employes(where: {dept: {_eq: "R&D"}}, order_by: [{id: asc}]) { id nom } }'
STAFF = ((1, "Ana", "R&D"), (2, "Bob", "Ventes"))
"""The rows of ``employes`` in MariaDB when the server starts (the sync's snapshot copies them)."""
PUSH_TIMEOUT_S = 60.0  # waiting for a subscription result: generous for a loaded machine, never asserted on


def write_project(folder: Path, upstream: str, hr: str, warehouse: str) -> Path:
    """A project in ``folder`` serving the table ``articles`` of a SQLite file, with ``upstream`` behind /svc/catalogue,
    and ``employes`` of the PostgreSQL database ``warehouse``, where the sync ``emp`` copies it from the MariaDB
    database ``hr`` (created here with :data:`STAFF`; ``warehouse`` is empty until the sync runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(folder / "shop.db") as db:
        db.execute("CREATE TABLE articles (id INTEGER PRIMARY KEY, titre VARCHAR(80) NOT NULL, author VARCHAR(20))")
        db.execute("INSERT INTO articles VALUES (1, 'Bonjour', 'ed'), (2, 'Au revoir', 'ann')")
    mysql_execute(hr, "CREATE TABLE employes (id INT PRIMARY KEY, nom VARCHAR(40) NOT NULL, dept VARCHAR(20))")
    mysql_execute(hr, "INSERT INTO employes VALUES " + ", ".join(f"({i}, '{n}', '{d}')" for i, n, d in STAFF))
    values = {"secret": SECRET, "rate": RATE_PER_SUBJECT, "upstream": upstream, "hr": hr, "warehouse": warehouse}
    text = PROJECT % {**values, "server_id": replica_id()}
    (folder / "sluice.yaml").write_text(text, encoding="utf-8")
    return folder


class _Catalogue(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "role": self.headers.get("x-sluice-role")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def upstream() -> Iterator[str]:
    """An HTTP service on a free loopback port answering every GET with JSON; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Catalogue)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def replica_id() -> int:
    """A binlog replica id of this run alone. The default one derives from the sync's name and side
    (``emp/hr``), which other tests' syncs share; MariaDB disconnects a replica when another registers
    with the same id, so two runs at once on the same server would cut each other's capture."""
    return 2_000_000_000 + secrets.randbelow(2_000_000_000)


def warehouse_rows(warehouse: str) -> int:
    """Rows of ``employes`` in PostgreSQL (0 before the sync created it)."""
    try:
        with psycopg.connect(warehouse, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM public.employes").fetchone()
    except psycopg.errors.UndefinedTable:
        return 0
    return int(row[0]) if row else 0


def bearer(claims: dict[str, object], audience: str = "shop") -> str:
    return jwt.encode({"aud": audience, "exp": time.time() + 600, **claims}, SECRET, "HS256")


@dataclass(frozen=True)
class Traffic:
    requests: int  # data API requests sent (GraphQL, REST, gateway)
    credentials: list[str]  # the tokens and keys sent: none may be logged


class Watcher:
    """A subscription to the R&D employees over a WebSocket (graphql-transport-ws), as an editor (see
    :func:`watch`); :meth:`hire` inserts a row in MariaDB and waits for the result the sync brings.

    ``pushes``: results received; ``hires``: rows inserted (each one change message, one window, one re-run).
    Raises AssertionError when the server answers anything but the expected results, TimeoutError after
    :data:`PUSH_TIMEOUT_S` without one."""

    def __init__(self, ws: ClientConnection, token: str, hr: str) -> None:
        self.ws = ws
        self.token = token
        self.hr = hr
        self.pushes = 0
        self.hires = 0
        self._send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        assert self._recv() == {"type": "connection_ack"}
        self._send({"id": "1", "type": "subscribe", "payload": {"query": WATCHED}})
        self.names = self._next()
        assert self.names == [n for _, n, d in STAFF if d == "R&D"], self.names

    def _send(self, message: dict[str, object]) -> None:
        self.ws.send(json.dumps(message))

    def _recv(self) -> dict[str, object]:
        message: dict[str, object] = json.loads(self.ws.recv(timeout=PUSH_TIMEOUT_S))
        return message

    def _next(self) -> list[str]:
        message = self._recv()
        assert message.get("type") == "next" and message.get("id") == "1", message
        payload = message["payload"]
        assert isinstance(payload, dict) and "errors" not in payload, payload
        self.pushes += 1
        return [row["nom"] for row in payload["data"]["employes"]]

    def hire(self, round_number: int) -> None:
        """Insert an R&D employee in MariaDB and wait until the subscription's result shows them."""
        name = f"Recrue{round_number}"
        mysql_execute(self.hr, f"INSERT INTO employes VALUES ({100 + round_number}, '{name}', 'R&D')")
        self.hires += 1
        while name not in self.names:
            self.names = self._next()


@contextmanager
def watch(url: str, hr: str) -> Iterator[Watcher]:
    """A :class:`Watcher` on the server at ``url`` (its first result received), subscribed until the block ends."""
    ws_url = url.replace("http://", "ws://", 1) + "/graphql"
    with connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=PUSH_TIMEOUT_S) as ws:
        yield Watcher(ws, bearer({"role": "editor", "sub": "watcher"}), hr)


def drive(url: str, round_number: int, watcher: Watcher) -> Traffic:
    """Send round ``round_number`` (0, 1, ...) of the traffic, asserting each answer's status, then hire one
    employee under ``watcher``'s eyes. Every round has the same label sets (operations, roles, statuses, codes);
    subjects and inserted ids differ, so that the rate limit and the primary key answer each round alike."""
    editor = bearer({"role": "editor", "sub": f"ed-{round_number}"})
    burst = bearer({"role": "editor", "sub": f"burst-{round_number}"})
    stranger = bearer({"role": "editor", "sub": "ed"}, audience="elsewhere")
    key = f"sk_made-up-key-{round_number}-0123456789"
    as_editor = {"authorization": f"Bearer {editor}"}
    by_pk = {"query": "query($id: Int!) { getArticle(id: $id) { titre author } }", "variables": {"id": 1}}
    article = 3 + round_number
    insert = {"query": f'mutation {{ insert_articles_one(object: {{id: {article}, titre: "Nouveau", author: "ed"}}) {{ id }} }}'}
    expected = [
        ("POST", "/graphql", {"json": {"query": "{ getArticles { id titre } }"}}, 200),
        ("POST", "/graphql", {"json": by_pk, "headers": as_editor}, 200),
        ("POST", "/graphql", {"json": insert, "headers": as_editor}, 200),
        ("POST", "/graphql", {"json": {"query": "{ nope }"}}, 400),
        ("POST", "/graphql", {"json": by_pk, "headers": {"authorization": f"Bearer {stranger}"}}, 401),
        ("GET", "/rest/articles?select=id,titre", {}, 200),
        ("GET", "/rest/articles/1", {"headers": as_editor}, 200),
        ("POST", "/rest/articles", {"json": {"id": 9, "titre": "x"}}, 403),
        ("GET", "/rest/no_such_table", {}, 404),
        ("GET", "/rest/articles", {"headers": {"x-api-key": key}}, 401),
        ("GET", "/svc/catalogue/items?x=1", {"headers": as_editor}, 200),
        ("GET", "/svc/catalogue/items", {}, 403),
    ]
    expected += [("POST", "/graphql", {"json": by_pk, "headers": {"authorization": f"Bearer {burst}"}}, 200)] * RATE_PER_SUBJECT
    expected += [("POST", "/graphql", {"json": by_pk, "headers": {"authorization": f"Bearer {burst}"}}, 429)]
    with httpx.Client(base_url=url, timeout=30) as client:
        for method, path, options, status in expected:
            answer = client.request(method, path, **options)  # type: ignore[arg-type]
            assert answer.status_code == status, f"{method} {path}: {answer.status_code} {answer.text}"
    watcher.hire(round_number)
    return Traffic(len(expected), [editor, burst, stranger, key, watcher.token])
