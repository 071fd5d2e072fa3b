"""MysqlApply against the throwaway MariaDB server: the shared cases of apply_cases.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdc.apply_cases import CASES, TYPES, Target, case_dead_letters, ref
from cdc.apply_partition_cases import CASES as PARTITION_CASES
from cdc.apply_partition_cases import case_pkeys_old_positions_table_becomes_partition_0
from cdc.apply_snapshot_cases import CASES as SNAPSHOT_CASES
from servers_fixtures import mysql_connect
from sluice.cdc.apply_base import SqlApply
from sluice.cdc.mysql_apply import MysqlApply, quote
from sluice.cdc.plugins import ApplyOptions

pytestmark = pytest.mark.mysql


@pytest.fixture
def target(mysql_url: str) -> Iterator[Target]:
    suffix = uuid.uuid4().hex[:10]
    namespace, cdc_namespace = f"apply_{suffix}", f"apply_{suffix}_cdc"
    options = ApplyOptions(namespace=cdc_namespace)
    made: list[SqlApply] = []

    def make() -> SqlApply:
        apply = MysqlApply(mysql_url, options, "employees", "warehouse")
        made.append(apply)
        return apply

    conn = mysql_connect(mysql_url)

    def query(sql: str) -> list[tuple[Any, ...]]:
        with conn.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())

    def execute(sql: str) -> None:
        with conn.cursor() as cursor:
            cursor.execute(sql)

    def kill(apply: SqlApply) -> None:
        execute(f"KILL {apply._conn.thread_id()}")  # type: ignore[attr-defined]

    try:
        yield Target(make(), make, namespace, cdc_namespace, query, execute, kill, quote)
    finally:
        for apply in made:
            apply.close()
        execute(f"DROP DATABASE IF EXISTS {quote(namespace)}")
        execute(f"DROP DATABASE IF EXISTS {quote(cdc_namespace)}")
        conn.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_mysql_apply(target: Target, case: str) -> None:
    CASES[case](target)


@pytest.mark.parametrize("case", sorted(PARTITION_CASES))
def test_mysql_apply_partitions(target: Target, case: str) -> None:
    PARTITION_CASES[case](target)


def test_pkeys_mysql_old_positions_table(target: Target) -> None:
    ns = quote(target.cdc_namespace)
    case_pkeys_old_positions_table_becomes_partition_0(
        target,
        [
            f"CREATE DATABASE {ns} CHARACTER SET utf8mb4",
            f"CREATE TABLE {ns}.positions (sync VARCHAR(190) NOT NULL, side VARCHAR(190) NOT NULL,"
            " table_name VARCHAR(380) NOT NULL, position TEXT, snapshot_last_key LONGTEXT,"
            " snapshot_done BOOLEAN NOT NULL DEFAULT FALSE, updated_at DATETIME(6) NOT NULL,"
            " PRIMARY KEY (sync, side, table_name)) ENGINE=InnoDB",
        ],
    )


@pytest.mark.parametrize("case", sorted(SNAPSHOT_CASES))
def test_mysql_apply_snapshot_rows(target: Target, case: str) -> None:
    SNAPSHOT_CASES[case](target)


def test_mysql_dead_letters_check_constraint(target: Target) -> None:
    name = f"{quote(target.namespace)}.{quote('t')}"
    case_dead_letters(target, f"ALTER TABLE {name} ADD CONSTRAINT qty_positive CHECK (qty >= 0)")


def test_mysql_target_types(target: Target) -> None:
    table = ref(target, "types", TYPES, ["id"])
    target.apply.prepare([table])
    found = dict(
        target.query(
            "SELECT column_name, column_type FROM information_schema.columns"
            f" WHERE table_schema = '{target.namespace}' AND table_name = 'types'"
        )
    )
    assert found["u64"] == "bigint(20) unsigned" and found["dec"] == "decimal(65,30)"
    assert found["dt"] == "datetime(6)" and found["ts"] == "datetime(6)" and found["tm"] == "time(6)"
    assert found["e"] == "enum('small','large')" and found["st"] == "set('x','y','z')" and found["bt"] == "bit(10)"
    assert found["txt"] == "longtext" and found["b"] == "longblob" and found["s"] == "varchar(64)"


UNBOUNDED = ["1" + "0" * 40, "0.00000000000000000001", "-123456789012345678901234567890123456789.000000000000000000001", "NaN"]


@pytest.mark.postgres
def test_an_unbounded_postgresql_numeric_round_trips_exactly(target: Target, pg_url: str, mysql_url: str) -> None:
    """``numeric`` without precision (1e40, 1e-20: beyond DECIMAL(65,30)) lands in MariaDB as its exact text,
    not in the dead letters, and verify finds source and target equal."""
    import psycopg

    from cdc.apply_cases import event
    from sluice.cdc.base import TableRef
    from sluice.cdc.pg_catalog import read_tables
    from sluice.cdc.verify import verify_table

    schema_name = f"fixb_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as pg:
        try:
            pg.execute(f'CREATE SCHEMA "{schema_name}"')
            pg.execute(f'CREATE TABLE "{schema_name}".n (id int PRIMARY KEY, v numeric)')
            for i, text in enumerate(UNBOUNDED, 1):
                pg.execute(f'INSERT INTO "{schema_name}".n VALUES (%s, %s::numeric)', (i, text))
            (schema,) = read_tables(pg, schema_name, "n")
            assert schema.column("v").type == "decimal"  # type: ignore[union-attr]
            table = TableRef(schema, target.namespace, "n")
            target.apply.prepare([table])
            values = dict(pg.execute(f'SELECT id, v::text FROM "{schema_name}".n').fetchall())
            batch = [event("c", [i], {"id": i, "v": values[i]}, table=schema.qualified) for i in values]
            result = target.apply.apply_batch(table, batch)
            assert result.dead_letters == 0, result
            assert [tuple(r) for r in target.rows(table)] == [(i, text) for i, text in enumerate(UNBOUNDED, 1)]
            verdict = verify_table(pg_url, mysql_url, table)
            assert verdict.equal, verdict
        finally:
            pg.execute(f'DROP SCHEMA IF EXISTS "{schema_name}" CASCADE')
