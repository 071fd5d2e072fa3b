"""The data API in the live monitoring stack of test_monitoring.py: a project serving GraphQL, REST and a
gateway route over SQLite, the route's upstream, and traffic that moves every series the *Sluice / API*
dashboard reads (answers by operation and role, a validation error, refused credentials, a 429, proxied
requests and a refused one).

The traffic is sent in rounds with the same label sets, a scrape between them: a counter seen for the
first time has no rate yet, so a single quick burst would leave the rate-based panels at 0 (and their
ratios and quantiles NaN)."""

from __future__ import annotations

import json
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

SECRET = "live-stack-secret-of-at-least-32-bytes"
RATE_PER_SUBJECT = 5  # per minute: each round's "burst-N" subject crosses it, the others stay under it
PROJECT = """\
name: shop-api
connections:
  shop: sqlite:///shop.db
api:
  sources:
    - {connection: shop, tables: [articles]}
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
  limits:
    rate: {per_subject: %(rate)d/minute}
  proxies:
    - {path: /svc/catalogue, upstream: "%(upstream)s", roles: [editor]}
"""


def write_project(folder: Path, upstream: str) -> Path:
    """A project in ``folder`` serving the table ``articles`` of a SQLite file, with ``upstream`` behind /svc/catalogue."""
    folder.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(folder / "shop.db") as db:
        db.execute("CREATE TABLE articles (id INTEGER PRIMARY KEY, titre VARCHAR(80) NOT NULL, author VARCHAR(20))")
        db.execute("INSERT INTO articles VALUES (1, 'Bonjour', 'ed'), (2, 'Au revoir', 'ann')")
    text = PROJECT % {"secret": SECRET, "rate": RATE_PER_SUBJECT, "upstream": upstream}
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


def bearer(claims: dict[str, object], audience: str = "shop") -> str:
    return jwt.encode({"aud": audience, "exp": time.time() + 600, **claims}, SECRET, "HS256")


@dataclass(frozen=True)
class Traffic:
    requests: int  # data API requests sent (GraphQL, REST, gateway)
    credentials: list[str]  # the tokens and keys sent: none may be logged


def drive(url: str, round_number: int) -> Traffic:
    """Send round ``round_number`` (0, 1, ...) of the traffic, asserting each answer's status. Every round has
    the same label sets (operations, roles, statuses, codes); subjects and inserted ids differ, so that the
    rate limit and the primary key answer each round alike."""
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
    return Traffic(len(expected), [editor, burst, stranger, key])
