"""Fixtures: the blog schema of :mod:`rest.blog` served by the REST routes on PostgreSQL, SQLite and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rest.blog import MYSQL_DDL, PG_DDL, SQLITE_DDL, Served, open_runner, seed


def _pg_served(pg_url: str) -> Iterator[Served]:
    import uuid

    import psycopg
    from psycopg import sql

    name = f"apirest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    from servers_fixtures import with_database

    url = with_database(pg_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        for ddl in PG_DDL:
            conn.execute(ddl)
    db = open_runner(url)
    served = Served(db, "postgresql")
    try:
        yield served
    finally:
        served.stop()
        db.database.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def pg_served(pg_url: str) -> Iterator[Served]:
    yield from _pg_served(pg_url)


@pytest.fixture(scope="module")
def sqlite_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import sqlite3

    path = tmp_path_factory.mktemp("apirest") / "blog.db"
    conn = sqlite3.connect(path)
    for ddl in SQLITE_DDL:
        conn.execute(ddl)
    conn.commit()
    conn.close()
    db = open_runner(f"sqlite:////{path}")
    served = Served(db, "sqlite")
    try:
        yield served
    finally:
        served.stop()
        db.database.close()


@pytest.fixture(scope="module")
def mysql_served(mysql_url: str) -> Iterator[Served]:
    import uuid

    from servers_fixtures import mysql_connect, with_database

    name = f"apirest_{uuid.uuid4().hex[:10]}"
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    conn.close()
    url = with_database(mysql_url, name)
    conn = mysql_connect(url)
    with conn.cursor() as cur:
        for ddl in MYSQL_DDL:
            cur.execute(ddl)
    conn.close()
    db = open_runner(url)
    served = Served(db, "mysql")
    try:
        yield served
    finally:
        served.stop()
        db.database.close()
        conn = mysql_connect(mysql_url)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@pytest.fixture(
    params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]
)
def served(request: pytest.FixtureRequest) -> Served:
    """The blog schema, freshly seeded, on each database."""
    fixture = {"postgres": "pg_served", "sqlite": "sqlite_served", "mysql": "mysql_served"}[request.param]
    result: Served = request.getfixturevalue(fixture)
    seed(result.db)
    return result
