"""Column defaults across a live ``ADD COLUMN ... NOT NULL DEFAULT 5``: capture carries the default (MariaDB's
``information_schema.COLUMNS.COLUMN_DEFAULT``, PostgreSQL's ``pg_attrdef``), apply adds the column with it, so
the target's existing rows get the value the source's existing rows got (no row change is logged for them)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdc.apply_cases import event
from servers_fixtures import mysql_connect, with_database
from sluice.cdc.base import TableRef
from sluice.cdc.events import SchemaChange, constant_default
from sluice.cdc.mysql_capture import MysqlCapture
from sluice.cdc.pg_apply import PostgresApply
from sluice.cdc.pg_catalog import read_tables
from sluice.cdc.plugins import ApplyOptions, MysqlCaptureOptions


@pytest.mark.parametrize(
    ("logical", "literal", "value"),
    [
        ("int32", "5", 5),
        ("int32", "'-1'::integer", -1),
        ("string", "'it''s'::character varying", "it's"),
        ("string", "current_timestamp()", None),
        ("string", "NULL", None),
        ("bool", "true", True),
        ("bool", "0", False),
        ("decimal(8,2)", "1.50", "1.50"),
        ("float64", "1e10", 1e10),
        ("bit(3)", "b'101'", None),
        ("datetime(6)", "'2024-01-01 00:00:00'", "2024-01-01 00:00:00"),
        ("timestamp(6)", "'2024-01-01 00:00:00'", None),
        ("int64", "nextval('t_id_seq'::regclass)", None),
        ("int64", None, None),
    ],
)
def test_a_constant_default_becomes_its_canonical_value(logical: str, literal: str | None, value: Any) -> None:
    assert constant_default(logical, literal) == value


@pytest.fixture
def fixb_mysql(mysql_url: str) -> Iterator[str]:
    name = f"fixb_{uuid.uuid4().hex[:10]}"
    conn = mysql_connect(mysql_url)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    yield with_database(mysql_url, name)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    conn.close()


@pytest.fixture
def fixb_pg(pg_url: str) -> Iterator[str]:
    import psycopg

    name = f"fixb_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}_cdc" CASCADE')


def _mysql(url: str, statement: str) -> None:
    conn = mysql_connect(url)
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


@pytest.mark.mysql
@pytest.mark.postgres
def test_a_live_add_column_with_a_default_fills_the_targets_existing_rows(fixb_mysql: str, fixb_pg: str, pg_url: str) -> None:
    import psycopg

    _mysql(fixb_mysql, "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20))")
    _mysql(fixb_mysql, "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    cap = MysqlCapture(fixb_mysql, MysqlCaptureOptions(), f"fixb{uuid.uuid4().hex[:6]}", "src", None)
    apply = PostgresApply(pg_url, ApplyOptions(namespace=f"{fixb_pg}_cdc"), "fixb", "warehouse")
    try:
        (schema,) = cap.list_tables()
        table = TableRef(schema, fixb_pg, "t")
        apply.prepare([table])
        qualified = schema.qualified
        apply.apply_batch(table, [event("c", [i], {"id": i, "name": n}, table=qualified) for i, n in ((1, "a"), (2, "b"))])
        start, _ = cap.current_position()
        stream = cap.stream(start, [schema], 0.3)
        _mysql(fixb_mysql, "ALTER TABLE t ADD COLUMN prio INT NOT NULL DEFAULT 5")
        change = None
        for _ in range(50):
            batch = next(stream)
            change = next((e for e in batch.events if isinstance(e, SchemaChange)), None)
            if change is not None:
                break
        stream.close()
        assert change is not None and change.change == "add_column"
        prio = change.schema.column("prio")
        assert prio is not None and prio.default == 5 and not prio.nullable
        apply.apply_schema(table, change)
    finally:
        apply.close()
        cap.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute(f'SELECT id, prio FROM "{fixb_pg}".t ORDER BY id').fetchall() == [(1, 5), (2, 5)]
        nullable = conn.execute(
            "SELECT is_nullable FROM information_schema.columns WHERE table_schema = %s AND column_name = 'prio'", (fixb_pg,)
        ).fetchone()
        assert nullable == ("NO",)


@pytest.mark.postgres
def test_the_postgresql_catalog_carries_constant_defaults(fixb_pg: str, pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{fixb_pg}"')
        conn.execute(f'CREATE TABLE "{fixb_pg}".t (id serial PRIMARY KEY, at timestamptz DEFAULT now())')
        conn.execute(f"""ALTER TABLE "{fixb_pg}".t ADD COLUMN prio int NOT NULL DEFAULT 5,
            ADD COLUMN tag varchar(10) DEFAULT 'it''s', ADD COLUMN neg numeric(6,2) DEFAULT -1.5,
            ADD COLUMN ok bool DEFAULT true""")
        (schema,) = read_tables(conn, fixb_pg, "t")
    defaults = {column.name: column.default for column in schema.columns}
    assert defaults == {"id": None, "at": None, "prio": 5, "tag": "it's", "neg": "-1.5", "ok": True}
