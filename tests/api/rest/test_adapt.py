"""REST on the data API core (apicore's DataApi): its catalog read from each database, its pooled
connections, its permissions; one statement per GET; the schema following an ALTER TABLE without restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from api_support import execute_all
from starlette.applications import Starlette

from rest.blog import MYSQL_DDL, PG_DDL, ROLES, SQLITE_DDL, HeaderGate, LiveApp, catalog
from sluice.api.rest.adapt import mount_data_api_rest
from sluice.api.service import DataApi
from sluice.api.settings import ApiSettings

SEED = [
    "INSERT INTO authors (id, name, email) VALUES (1, 'Ada', 'ada@x.org'), (2, 'Brice', NULL)",
    "INSERT INTO articles (id, titre, author_id, price) VALUES (1, 'Alpha', 1, 10.5), (2, 'Beta', 1, NULL), (3, 'Gamma', 2, 3)",
    "INSERT INTO comments (id, article_id, body) VALUES (1, 1, 'bien'), (2, 1, 'super')",
]


class Stack:
    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        settings = msgspec.convert({"sources": [{"connection": "db", "tables": ["*"]}], "roles": ROLES}, ApiSettings)
        self.api = DataApi(settings, {"db": url}, root, HeaderGate())
        self.api.start(watch=False)
        app = Starlette()
        self.rest = mount_data_api_rest(app, self.api)
        self.live = LiveApp(app)
        self.client = self.live.client

    def statements(self) -> int:
        return sum(db.statements for db in self.api.databases.values())

    def close(self) -> None:
        self.live.stop()
        self.api.close()


@pytest.fixture(
    params=[pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]
)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    if request.param == "postgresql":
        url, ddl = str(request.getfixturevalue("pg_db_url")), PG_DDL
    elif request.param == "mysql":
        url, ddl = str(request.getfixturevalue("mysql_db_url")), MYSQL_DDL
    else:
        url, ddl = f"sqlite:///{tmp_path / 'blog.db'}", SQLITE_DDL
    execute_all(url, [*ddl, *SEED])
    made = Stack(url, tmp_path)
    yield made
    made.close()


def test_catalog_read_from_the_database_matches_the_schema(stack: Stack) -> None:
    read = stack.rest.catalog()
    expected = catalog("postgresql")
    assert set(read.tables) == set(expected.tables)
    for name, table in expected.tables.items():
        got = read.tables[name]
        assert list(got.columns) == list(table.columns), name
        assert got.primary_key == table.primary_key, name
        assert {(fk.columns, fk.ref_table) for fk in got.foreign_keys} == {
            (fk.columns, fk.ref_table) for fk in table.foreign_keys
        }
        loose = ("published", "meta") if stack.rest.runners["db"].dialect.name == "sqlite" else ()  # TEXT there
        kinds = {c: k.kind for c, k in got.columns.items() if c not in loose}
        assert kinds == {c: k.kind for c, k in table.columns.items() if c not in loose}, name
    assert not read.tables["article_titles"].writable


def counted(operation: str, role: str, status: str) -> float:
    from prometheus_client import REGISTRY

    labels = {"api": "rest", "operation": operation, "role": role, "status": status}
    return REGISTRY.get_sample_value("sluice_api_requests_total", labels) or 0.0


def test_one_statement_per_get_with_embedding_and_exact_count(stack: Stack) -> None:
    partial, unknown = counted("GET articles", "admin", "206"), counted("GET -", "admin", "404")
    before = stack.statements()
    answer = stack.client.get(
        "/rest/articles?select=id,author(name),comments(body)&order=id&limit=2", headers={"Prefer": "count=exact"}
    )
    assert answer.status_code == 206, answer.text
    assert answer.headers["content-range"] == "0-1/3"
    assert answer.json()[0] == {"id": 1, "author": {"name": "Ada"}, "comments": [{"body": "bien"}, {"body": "super"}]}
    assert stack.statements() - before == 1
    assert stack.client.get("/rest/made_up_name").status_code == 404
    assert counted("GET articles", "admin", "206") == partial + 1
    assert counted("GET -", "admin", "404") == unknown + 1


def test_writes_and_their_statement_count(stack: Stack) -> None:
    before = stack.statements()
    made = stack.client.post(
        "/rest/authors?select=id,name", json={"id": 7, "name": "Zed"}, headers={"Prefer": "return=representation"}
    )
    assert made.status_code == 201 and made.json() == [{"id": 7, "name": "Zed"}]
    expected = 1 if stack.rest.runners["db"].dialect.name == "postgresql" else 2
    assert stack.statements() - before == expected
    duplicate = stack.client.post("/rest/authors", json={"id": 7, "name": "Zed"})
    assert duplicate.status_code == 409


def test_permissions_are_the_graphql_ones(stack: Stack) -> None:
    author: dict[str, Any] = {"X-Role": "author", "X-Sub": "2"}
    assert [r["id"] for r in stack.client.get("/rest/articles?select=id", headers=author).json()] == [3]
    missing = stack.client.get("/rest/articles?select=id", headers={"X-Role": "author"})
    assert missing.status_code == 403 and missing.json()["code"] == "claim-missing"
    reader = stack.client.get("/rest/articles", headers={"X-Role": "reader"}).json()
    assert set(reader[0]) == {"id", "titre", "author_id"} and len(reader) == 3
    assert stack.client.get("/rest/comments", headers={"X-Role": "reader"}).status_code == 403


def test_schema_follows_an_alter_table_without_restart(stack: Stack) -> None:
    assert stack.client.get("/rest/articles?select=id,slug").status_code == 400
    execute_all(stack.url, ["ALTER TABLE articles ADD COLUMN slug VARCHAR(40)"])
    stack.api.refresh(force=True)
    rows = stack.client.get("/rest/articles?select=id,slug&id=eq.1").json()
    assert rows == [{"id": 1, "slug": None}]
    assert "slug" in stack.client.get("/rest/openapi.json").json()["components"]["schemas"]["articles"]["properties"]
