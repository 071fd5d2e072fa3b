"""PostgresApply against the throwaway PostgreSQL server: the shared cases of apply_cases.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdc.apply_cases import CASES, Target, case_dead_letters
from sluice.cdc.apply_base import SqlApply
from sluice.cdc.pg_apply import PostgresApply, quote
from sluice.cdc.plugins import ApplyOptions

pytestmark = pytest.mark.postgres


@pytest.fixture
def target(pg_url: str) -> Iterator[Target]:
    import psycopg

    suffix = uuid.uuid4().hex[:10]
    namespace, cdc_namespace = f"apply_{suffix}", f"apply_{suffix}_cdc"
    options = ApplyOptions(namespace=cdc_namespace)
    made: list[SqlApply] = []

    def make() -> SqlApply:
        apply = PostgresApply(pg_url, options, "employees", "warehouse")
        made.append(apply)
        return apply

    conn = psycopg.connect(pg_url, autocommit=True)

    def query(sql: str) -> list[tuple[Any, ...]]:
        return conn.execute(sql).fetchall()

    def execute(sql: str) -> None:
        conn.execute(sql)

    def kill(apply: SqlApply) -> None:
        pid = apply._conn.info.backend_pid  # type: ignore[attr-defined]
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))

    try:
        yield Target(make(), make, namespace, cdc_namespace, query, execute, kill, quote)
    finally:
        for apply in made:
            apply.close()
        conn.execute(f"DROP SCHEMA IF EXISTS {quote(namespace)} CASCADE")
        conn.execute(f"DROP SCHEMA IF EXISTS {quote(cdc_namespace)} CASCADE")
        conn.close()


@pytest.mark.parametrize("case", sorted(CASES))
def test_pg_apply(target: Target, case: str) -> None:
    CASES[case](target)


def test_pg_dead_letters_check_constraint(target: Target) -> None:
    name = f"{quote(target.namespace)}.{quote('t')}"
    case_dead_letters(target, f"ALTER TABLE {name} ADD CONSTRAINT qty_positive CHECK (qty >= 0)")


def test_pg_target_types(target: Target) -> None:
    from cdc.apply_cases import TYPES, ref

    table = ref(target, "types", TYPES, ["id"])
    target.apply.prepare([table])
    found = dict(
        target.query(
            "SELECT column_name, format_type(atttypid, atttypmod) FROM information_schema.columns c"
            " JOIN pg_attribute a ON a.attrelid = (quote_ident(c.table_schema) || '.' || quote_ident(c.table_name))::regclass"
            f" AND a.attname = c.column_name WHERE c.table_schema = '{target.namespace}' AND c.table_name = 'types'"
        )
    )
    assert found["u64"] == "numeric(20,0)" and found["dec"] == "numeric(65,30)"
    assert found["dt"] == "timestamp(6) without time zone" and found["ts"] == "timestamp(6) with time zone"
    assert found["tm"] == "interval" and found["j"] == "jsonb" and found["b"] == "bytea" and found["bt"] == "bit(10)"
    assert found["e"] == "text" and found["y"] == "smallint" and found["s"] == "character varying(64)"
