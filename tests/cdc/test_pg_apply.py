"""PostgresApply against the throwaway PostgreSQL server: the shared cases of apply_cases.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from cdc.apply_cases import CASES, Target, case_dead_letters, event, row, simple
from cdc.apply_partition_cases import CASES as PARTITION_CASES
from cdc.apply_partition_cases import case_pkeys_old_positions_table_becomes_partition_0
from cdc.apply_snapshot_cases import CASES as SNAPSHOT_CASES
from sluice.cdc.apply_base import SqlApply
from sluice.cdc.base import Conflict, SyncError
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


@pytest.mark.parametrize("case", sorted(SNAPSHOT_CASES))
def test_pg_apply_snapshot_rows(target: Target, case: str) -> None:
    SNAPSHOT_CASES[case](target)


@pytest.mark.parametrize("case", sorted(PARTITION_CASES))
def test_pg_apply_partitions(target: Target, case: str) -> None:
    PARTITION_CASES[case](target)


def test_pkeys_pg_old_positions_table(target: Target) -> None:
    ns = quote(target.cdc_namespace)
    case_pkeys_old_positions_table_becomes_partition_0(
        target,
        [
            f"CREATE SCHEMA {ns}",
            f"CREATE TABLE {ns}.positions (sync text NOT NULL, side text NOT NULL, table_name text NOT NULL,"
            " position text, snapshot_last_key text, snapshot_done boolean NOT NULL DEFAULT false,"
            " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sync, side, table_name))",
        ],
    )


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


def test_pg_merge_key_inserted_concurrently(target: Target) -> None:
    """A key another transaction inserts while the batch's MERGE runs ends as the batch's row (upsert), as with
    ``INSERT ... ON CONFLICT``: MERGE meets a unique violation and the batch runs again as ON CONFLICT, whole
    (no bisection, which would also get there, one statement per half)."""
    import threading
    import time

    import psycopg

    from cdc.apply_cases import event, row, simple

    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1))])
    name = f"{quote(target.namespace)}.{quote('t')}"
    pid = target.apply._conn.info.backend_pid  # type: ignore[attr-defined]
    other = psycopg.connect(target.apply._conn.info.dsn)  # type: ignore[attr-defined]
    try:
        other.execute(f"INSERT INTO {name} (id, name, qty) VALUES (5, 'other', 1)")  # left uncommitted
        outcome: list[Any] = []
        bisections: list[int] = []
        rollback_savepoint = target.apply._rollback_savepoint
        target.apply._rollback_savepoint = lambda: (bisections.append(1), rollback_savepoint())  # type: ignore[method-assign]
        batch = [event("c", [5], row(5, "mine", 2)), event("c", [6], row(6)), event("u", [1], row(1, "u", 3), row(1))]
        worker = threading.Thread(target=lambda: outcome.append(target.apply.apply_batch(table, batch)))
        worker.start()
        for _ in range(600):  # until the batch waits for the other transaction's row lock (at most 60 s)
            waiting = target.query(f"SELECT wait_event_type FROM pg_stat_activity WHERE pid = {pid}")
            if waiting and waiting[0][0] == "Lock":
                break
            time.sleep(0.1)
        other.commit()
        worker.join(60)
        assert not worker.is_alive()
    finally:
        other.close()
    assert outcome and outcome[0].dead_letters == 0 and outcome[0].applied == {"c": 2, "u": 1}
    assert not bisections
    assert target.rows(table) == [(1, "u1", 3), (5, "mine5", 2), (6, "n6", 0)]


def test_pg_missing_column_stages_null(target: Target) -> None:
    from cdc.apply_cases import event, row, simple

    table = simple(target)
    batch = [event("c", [1], row(1, qty=4)), event("c", [2], {"id": 2, "name": "short"}), event("d", [3], None, row(3))]
    result = target.apply.apply_batch(table, batch)
    assert result.applied == {"c": 2, "d": 1}
    assert target.rows(table) == [(1, "n1", 4), (2, "short", None)]


def test_pg_table_with_rules_upserts(target: Target) -> None:
    """PostgreSQL refuses MERGE on a table with rules; the batch goes through ``INSERT ... ON CONFLICT``."""
    from cdc.apply_cases import event, row, simple

    table = simple(target)
    name = f"{quote(target.namespace)}.{quote('t')}"
    target.execute(f"CREATE RULE aperf_keep_deletes AS ON DELETE TO {name} DO ALSO NOTIFY aperf_deleted")
    first = target.apply.apply_batch(table, [event("c", [1], row(1)), event("c", [2], row(2))])
    second = target.apply.apply_batch(table, [event("u", [1], row(1, "u", 5), row(1)), event("c", [3], row(3))])
    assert first.applied == {"c": 2} and second.applied == {"u": 1, "c": 1} and not second.dead_letters
    assert target.rows(table) == [(1, "u1", 5), (2, "n2", 0), (3, "n3", 0)]


def test_a_key_inserted_while_a_conflict_batch_runs_fails_it_for_a_retry_instead_of_being_overwritten(target: Target) -> None:
    """Both ways, a batch deciding conflicts runs in repeatable read: a key absent when it read the current rows
    (PostgreSQL cannot lock an absent key) and inserted by someone else before its write makes the write fail,
    a transient error, so apply runs the batch again and meets that row instead of overwriting it unseen."""
    table = simple(target)
    target.apply.apply_batch(table, [event("c", [1], row(1))])
    target.execute(f"UPDATE {quote(target.namespace)}.t SET qty = 50 WHERE id = 1")  # key 1: a conflict
    name = f"{quote(target.namespace)}.t"

    def resolver(conflicts: list[Conflict]) -> list[bool]:  # runs inside the batch's transaction
        target.execute(f"INSERT INTO {name} VALUES (9, 'local', 7)")  # not blocked: key 9 was absent
        return [True for _ in conflicts]

    batch = [event("u", [1], row(1, "a", 1), row(1)), event("c", [9], row(9, "incoming", 1))]
    with pytest.raises(SyncError) as raised:
        target.apply.apply_batch(table, batch, resolver)
    assert raised.value.transient and raised.value.table == "src.t"
    assert "restart the sync" in str(raised.value)
    assert target.rows(table) == [(1, "n1", 50), (9, "local", 7)]  # the batch rolled back, nothing overwritten
