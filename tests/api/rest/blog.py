"""A small blog schema (authors, articles, comments, a view) served by the REST routes, on each database.

The catalog is described by hand here so these tests check the REST layer alone; ``test_catalog.py`` checks
the catalog that the data API reads from the database gives the same tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import msgspec
import uvicorn
from starlette.applications import Starlette

from sluice.api.databases import Database
from sluice.api.gate import DataApiError
from sluice.api.principal import Principal
from sluice.api.rest.backend import Runner
from sluice.api.rest.model import Catalog, Column, ForeignKey, Table
from sluice.api.rest.routes import rest_routes
from sluice.api.rest.service import Backend, RestService
from sluice.api.settings import ApiSettings

PG_DDL = [
    "CREATE TABLE authors (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, active boolean DEFAULT true)",
    """CREATE TABLE articles (id serial PRIMARY KEY, titre text NOT NULL, contenu text,
        author_id int REFERENCES authors(id), reviewer_id int REFERENCES authors(id),
        price numeric(10,2), published date, meta jsonb, CONSTRAINT price_positive CHECK (price >= 0))""",
    "CREATE TABLE comments (id serial PRIMARY KEY, article_id int NOT NULL REFERENCES articles(id) ON DELETE CASCADE,"
    " body text NOT NULL)",
    "CREATE VIEW article_titles AS SELECT id, titre FROM articles",
]
SQLITE_DDL = [
    "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, active BOOLEAN DEFAULT 1)",
    """CREATE TABLE articles (id INTEGER PRIMARY KEY, titre TEXT NOT NULL, contenu TEXT,
        author_id INTEGER REFERENCES authors(id), reviewer_id INTEGER REFERENCES authors(id),
        price NUMERIC CHECK (price >= 0), published TEXT, meta TEXT)""",
    "CREATE TABLE comments (id INTEGER PRIMARY KEY, article_id INTEGER NOT NULL REFERENCES articles(id) ON DELETE CASCADE,"
    " body TEXT NOT NULL)",
    "CREATE VIEW article_titles AS SELECT id, titre FROM articles",
]
MYSQL_DDL = [
    "CREATE TABLE authors (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200) NOT NULL, email VARCHAR(200) UNIQUE,"
    " active BOOLEAN DEFAULT TRUE)",
    """CREATE TABLE articles (id INT AUTO_INCREMENT PRIMARY KEY, titre VARCHAR(200) NOT NULL, contenu TEXT,
        author_id INT, reviewer_id INT, price DECIMAL(10,2) CHECK (price >= 0), published DATE, meta JSON,
        FOREIGN KEY (author_id) REFERENCES authors(id), FOREIGN KEY (reviewer_id) REFERENCES authors(id))""",
    "CREATE TABLE comments (id INT AUTO_INCREMENT PRIMARY KEY, article_id INT NOT NULL, body TEXT NOT NULL,"
    " FOREIGN KEY (article_id) REFERENCES articles(id) ON DELETE CASCADE)",
    "CREATE VIEW article_titles AS SELECT id, titre FROM articles",
]
SEED: list[tuple[str, list[str], list[tuple[Any, ...]]]] = [
    (
        "authors",
        ["id", "name", "email", "active"],
        [(1, "Ada", "ada@x.org", True), (2, "Brice", "brice@x.org", False), (3, "Chloé", None, True)],
    ),
    (
        "articles",
        ["id", "titre", "contenu", "author_id", "reviewer_id", "price", "published", "meta"],
        [
            (1, "Alpha", "premier", 1, 2, "10.50", "2024-01-05", '{"lang": "fr"}'),
            (2, "Beta", "deuxième", 1, None, "0.00", "2024-02-10", None),
            (3, "Gamma", None, 2, 1, None, None, '{"lang": "en"}'),
            (4, "delta", "quatrième", 3, None, "99.99", "2024-03-15", None),
            (5, "Epsilon%", "cinq", None, None, "5.00", "2024-04-01", None),
        ],
    ),
    ("comments", ["id", "article_id", "body"], [(1, 1, "bien"), (2, 1, "super"), (3, 2, "bof")]),
]

ROLES = {
    "reader": {
        "articles": {"select": {"columns": ["id", "titre", "author_id"], "limit": 3}},
        "authors": {"select": {"columns": ["id", "name"]}},
    },
    "author": {
        "articles": {
            "select": {"filter": {"author_id": {"_eq": {"claim": "sub"}}}},
            "insert": {"columns": ["titre", "contenu", "price"], "set": {"author_id": {"claim": "sub"}}},
            "update": {
                "columns": ["titre", "contenu"],
                "filter": {"author_id": {"_eq": {"claim": "sub"}}},
                "check": {"titre": {"_neq": "forbidden"}},
            },
            "delete": {"filter": {"author_id": {"_eq": {"claim": "sub"}}}},
        },
        "authors": {"select": {}},
    },
}


def catalog(dialect: str) -> Catalog:
    """The blog schema as the catalog reader would describe it."""
    integer, text = ("integer", "text")

    def col(name: str, type_: str, kind: Any = "string", nullable: bool = True, default: bool = False) -> Column:
        return Column(name, type_, kind, nullable, default)

    authors = Table(
        "authors",
        "authors",
        {
            c.name: c
            for c in [
                col("id", integer, "integer", False, True),
                col("name", text, nullable=False),
                col("email", text),
                col("active", "boolean", "boolean", default=True),
            ]
        },
        primary_key=("id",),
        unique=(("email",),),
        dialect=dialect,  # type: ignore[arg-type]
    )
    articles = Table(
        "articles",
        "articles",
        {
            c.name: c
            for c in [
                col("id", integer, "integer", False, True),
                col("titre", text, nullable=False),
                col("contenu", text),
                col("author_id", integer, "integer"),
                col("reviewer_id", integer, "integer"),
                col("price", "numeric", "number"),
                col("published", "date", "date"),
                col("meta", "jsonb", "json"),
            ]
        },
        primary_key=("id",),
        foreign_keys=(
            ForeignKey("articles_author_id_fkey", ("author_id",), "authors", ("id",)),
            ForeignKey("articles_reviewer_id_fkey", ("reviewer_id",), "authors", ("id",)),
        ),
        dialect=dialect,  # type: ignore[arg-type]
    )
    comments = Table(
        "comments",
        "comments",
        {
            c.name: c
            for c in [
                col("id", integer, "integer", False, True),
                col("article_id", integer, "integer", False),
                col("body", text, nullable=False),
            ]
        },
        primary_key=("id",),
        foreign_keys=(ForeignKey("comments_article_id_fkey", ("article_id",), "articles", ("id",)),),
        dialect=dialect,  # type: ignore[arg-type]
    )
    view = Table(
        "article_titles",
        "article_titles",
        {c.name: c for c in [col("id", integer, "integer"), col("titre", text)]},
        is_view=True,
        writable=False,
        dialect=dialect,  # type: ignore[arg-type]
    )
    return Catalog({t.name: t for t in (authors, articles, comments, view)})


class HeaderGate:
    """A stand-in for the security gate: ``X-Role`` and ``X-Sub`` headers name the role and the ``sub`` claim."""

    def admit(self, headers: Mapping[str, str], address: str, operation: str) -> Principal:
        role = headers.get("x-role", "admin")
        if role == "nobody":
            raise DataApiError("no credentials", status=401, code="unauthenticated")
        sub = headers.get("x-sub")
        claims: dict[str, Any] = {"sub": int(sub)} if sub and sub.isdigit() else {}
        return Principal(role, subject=sub, claims=claims)

    def graphql_rules(self) -> list[Any]:
        return []

    def check_batch(self, operations: int) -> None:
        return None


def settings(**extra: Any) -> ApiSettings:
    raw = {"sources": [{"connection": "db", "tables": ["*"]}], "roles": ROLES, **extra}
    return msgspec.convert(raw, ApiSettings)


def seed(db: Runner) -> None:
    """Empty the tables and insert the seed rows again."""
    q = db.dialect.quote
    with db.transaction() as cur:
        from sluice.api.rest.sql import Frag

        for name, _, _ in reversed(SEED):
            cur.run(Frag(f"DELETE FROM {q(name)}"))
        for name, columns, rows in SEED:
            for row in rows:
                values = list(row)
                if db.dialect.name == "mysql" and name == "authors":
                    values[3] = int(values[3])
                marks = ", ".join("%s" for _ in columns)
                cur.run(Frag(f"INSERT INTO {q(name)} ({', '.join(q(c) for c in columns)}) VALUES ({marks})", values))
        if db.dialect.name == "postgresql":
            for name in ("authors", "articles", "comments"):
                cur.run(Frag(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), 100)"))


def open_runner(url: str) -> Runner:
    """A :class:`Runner` over the data API's :class:`Database` of ``url`` (10 s statement time-out)."""
    return Runner(Database("db", url, None, 10.0))


class LiveApp:
    """``app`` served by uvicorn on a free loopback port in a thread, with an httpx ``client``."""

    def __init__(self, app: Any) -> None:
        import threading

        from helpers import wait_for
        from sluice.server.serve import bind, url_of

        sock = bind("127.0.0.1", 0)
        self.url = url_of(sock)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 30, "the REST test server to start")
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)


class Served:
    """A database with the blog schema, the REST routes over it served by uvicorn on a free loopback port
    (in a thread), and an httpx ``client`` of that server."""

    def __init__(self, db: Runner, dialect: str, **extra: Any) -> None:
        self.db = db
        self.catalog = catalog(dialect)
        self.service = RestService(Backend(settings(**extra), lambda: self.catalog, lambda table, write: db))
        self.live = LiveApp(Starlette(routes=rest_routes(self.service, HeaderGate())))
        self.url = self.live.url
        self.client = self.live.client

    def stop(self) -> None:
        self.live.stop()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        from sluice.api.rest.sql import Frag

        with self.db.transaction() as cur:
            return cur.run(Frag(sql))
