"""Schema changes made while a sync is stopped, end to end (MariaDB -> PostgreSQL, PostgreSQL -> MariaDB): a column
renamed then keeps its values in the target (it used to be dropped and added again empty, silently), alone or with
a drop and a type change, with rows written after the rename; ``sluice sync verify`` then finds the tables equal."""

# ruff: noqa: F401, F811 - the tests take the fixtures my and pg imported from test_sync_e2e

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from tests.cdc.test_sync_e2e import (  # my, pg: the fixtures (two tables of 300 rows in MariaDB; PostgreSQL)
    embedded_bus,
    equal,
    my,
    pg,
    run_in_thread,
    settings,
    sync_name,
    wait_for,
)

from sluice.cdc.config import SyncSettings
from sluice.cdc.runtime import SyncRuntime
from sluice.cdc.verify import verify_table

pytestmark = [pytest.mark.mysql, pytest.mark.postgres]

STOPPED_DDL = {
    "rename": ["ALTER TABLE emp CHANGE name label VARCHAR(40)"],
    "rename_column": ["ALTER TABLE emp RENAME COLUMN name TO label"],
    "rename_drop_modify": ["ALTER TABLE emp CHANGE name label VARCHAR(40), DROP COLUMN n, MODIFY amount DECIMAL(12,2)"],
    "in_three_statements": [
        "ALTER TABLE emp CHANGE name label VARCHAR(40)",
        "ALTER TABLE emp DROP COLUMN n",
        "ALTER TABLE emp MODIFY amount DECIMAL(12,2)",
    ],
    # A row written under the old name before the rename: the stream publishes the schema its TABLE_MAP names first.
    "row_before_rename": ["UPDATE emp SET name = 'before' WHERE id = 3", "ALTER TABLE emp CHANGE name label VARCHAR(40)"],
    # Rows between the renames, written under the middle name, which no catalog read ever shows.
    "rows_in_a_chain": [
        "UPDATE emp SET name = 'first' WHERE id = 3",
        "ALTER TABLE emp CHANGE name label0 VARCHAR(40)",
        "UPDATE emp SET label0 = 'middle' WHERE id = 4",
        "ALTER TABLE emp RENAME COLUMN label0 TO label, DROP COLUMN n",
    ],
    # A chain with no row between: the first rename waits for the second, which names the column as the catalog has it.
    "chain": ["ALTER TABLE emp CHANGE name label0 VARCHAR(40)", "ALTER TABLE emp RENAME COLUMN label0 TO label"],
}


def my_rows(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(sql)
        return [tuple(r) for r in cur.fetchall()]


def assert_verified(rt: SyncRuntime, source_url: str, target_url: str) -> None:
    for ref in rt.directions[0].refs:
        verdict = verify_table(source_url, target_url, ref)
        assert verdict.equal, (ref.source.qualified, verdict)


@pytest.mark.parametrize("ddl", list(STOPPED_DDL))
def test_a_mariadb_rename_made_while_the_sync_was_stopped_keeps_the_values(
    ddl: str, my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """Snapshot and stream, stop; rename ``emp.name`` (with a drop and a widening in some cases, in a chain of two
    renames, with rows written under the old or the middle name), write rows by the new name, then ``--once``:
    every value is in the renamed target column (none were before the fix: the binlog's DDL was compared with the
    schema read at start, which already had the new name, so the rename was lost and the target's ``name`` was
    dropped and ``label`` added empty; a row written before the rename lost its value, a chain its column), and
    verify finds both tables equal."""
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    sync = settings(sync_name())
    with embedded_bus(sync, urls, tmp_path) as bus:
        rt = SyncRuntime(sync, urls, bus, tmp_path)
        thread, _ = run_in_thread(rt)
        try:
            with my.cursor() as cur:
                cur.execute("UPDATE emp SET name = 'streamed' WHERE id = 1")
            wait_for(lambda: equal(my, pg))
        finally:
            rt.stop()
            thread.join(30)
        assert not thread.is_alive()
        with my.cursor() as cur:
            for statement in STOPPED_DDL[ddl]:
                cur.execute(statement)
            cur.execute("INSERT INTO emp (id, label, amount) VALUES (7000, 'after the rename', 3.5)")
            cur.execute("UPDATE emp SET label = 'updated after' WHERE id = 2")
        rt = SyncRuntime(sync, urls, bus, tmp_path, once=True)
        status = rt.run()
        assert all(t.state == "streaming" for t in status.tables), status.tables
    source = my_rows(my, "SELECT id, label, amount FROM emp ORDER BY id")
    target = [tuple(r) for r in pg.execute("SELECT id, label, amount FROM public.emp ORDER BY id").fetchall()]
    assert target == source
    assert pg.execute("SELECT count(label) FROM public.emp").fetchone() == (301,)
    columns = [r[0] for r in pg.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'emp'"
                                        " AND table_schema = 'public' ORDER BY ordinal_position").fetchall()]  # fmt: skip
    dropped = "drop" in ddl or "three" in ddl or "rows_in" in ddl
    assert columns == (["id", "label", "amount"] if dropped else ["id", "label", "n", "amount"])
    assert_verified(rt, mysql_db_url, pg_db_url)


def test_a_postgresql_rename_made_while_the_sync_was_stopped_keeps_the_values(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """PostgreSQL's WAL carries no DDL: the rename is seen by the schema capture reads when it starts, which apply
    compares with the target's columns; the column gone and the one new at the same place with the same type are
    renamed, not dropped and added empty. A column dropped at the same time is dropped (``drop_columns: drop``)."""
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    pg.execute("CREATE TABLE public.src (id int PRIMARY KEY, name text, n int, amount numeric(10,2))")
    pg.execute("INSERT INTO public.src SELECT g, 'v' || g, g, g + 0.25 FROM generate_series(1, 200) g")
    raw = {"name": sync_name(), "source": "pg", "target": "my", "tables": ["src"], "capture": {"slot": sync_name()}}
    sync = msgspec.convert(raw, SyncSettings)
    with embedded_bus(sync, urls, tmp_path) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()  # the snapshot
        pg.execute("UPDATE public.src SET name = 'streamed' WHERE id = 1")
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
        assert my_rows(my, "SELECT name FROM src WHERE id = 1") == [("streamed",)]
        pg.execute("ALTER TABLE public.src RENAME COLUMN name TO label")
        pg.execute("ALTER TABLE public.src DROP COLUMN n")
        pg.execute("INSERT INTO public.src (id, label, amount) VALUES (7000, 'after the rename', 3.5)")
        pg.execute("UPDATE public.src SET label = 'updated after' WHERE id = 2")
        rt = SyncRuntime(sync, urls, bus, tmp_path, once=True)
        status = rt.run()
        assert all(t.state == "streaming" for t in status.tables), status.tables
    source = [tuple(r) for r in pg.execute("SELECT id, label, amount FROM public.src ORDER BY id").fetchall()]
    assert my_rows(my, "SELECT id, label, amount FROM src ORDER BY id") == source
    assert my_rows(my, "SELECT count(label) FROM src") == [(201,)]
    assert my_rows(my, "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE()"
                       " AND table_name = 'src' ORDER BY ordinal_position") == [("id",), ("label",), ("amount",)]  # fmt: skip
    assert_verified(rt, pg_db_url, mysql_db_url)


def test_with_drop_columns_keep_a_column_left_by_an_earlier_drop_is_not_taken_for_a_rename(
    my: Any, pg: psycopg.Connection[Any], mysql_db_url: str, pg_db_url: str, tmp_path: Path
) -> None:
    """PostgreSQL source: ``note`` dropped at the source (kept in the target, ``drop_columns: keep``), then ``memo`` of
    the same type added at its place while the sync is stopped. ``memo`` is new, empty but for what the source wrote
    in it: the old values of ``note`` must not fill it (matching a rename by place and type would)."""
    urls = {"my": mysql_db_url, "pg": pg_db_url}
    pg.execute("CREATE TABLE public.src (id int PRIMARY KEY, name text, note text)")
    pg.execute("INSERT INTO public.src SELECT g, 'v' || g, 'note ' || g FROM generate_series(1, 50) g")
    raw = {"name": sync_name(), "source": "pg", "target": "my", "tables": ["src"], "capture": {"slot": sync_name()}}
    sync = msgspec.convert({**raw, "drop_columns": "keep"}, SyncSettings)
    with embedded_bus(sync, urls, tmp_path) as bus:
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()  # the snapshot
        pg.execute("ALTER TABLE public.src DROP COLUMN note")
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()  # note kept in the target
        pg.execute("ALTER TABLE public.src ADD COLUMN memo text")
        pg.execute("UPDATE public.src SET memo = 'new' WHERE id = 1")
        SyncRuntime(sync, urls, bus, tmp_path, once=True).run()
    rows = my_rows(my, "SELECT id, memo, note FROM src WHERE id IN (1, 2) ORDER BY id")
    assert rows == [(1, "new", "note 1"), (2, None, "note 2")]  # note keeps its values, memo gets none of them
