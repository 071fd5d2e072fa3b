"""The PostgreSQL warehouse options against the real server: schemas, date-range partitions, keys, indexes, ANALYZE."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pyarrow as pa
import pytest

from sluice.destinations.postgres import PostgresDestination
from sluice.destinations.registry import open_destination
from sluice.destinations.warehouse_options import PostgresDestinationSpec
from sluice.errors import TerminalError
from sluice.project.load import parse_project
from sluice.project.model import ConnectionSpec, Origin

pytestmark = pytest.mark.postgres


@pytest.fixture
def destination(pg_db_url: str) -> Iterator[Callable[[], PostgresDestination]]:
    """Opens destinations on the test database (as the registry does) and closes them after the test."""
    opened: list[PostgresDestination] = []

    def open_one() -> PostgresDestination:
        dest = open_destination(ConnectionSpec("dw", pg_db_url, Origin("sluice.yaml")), root=Path("."))
        assert isinstance(dest, PostgresDestination)
        opened.append(dest)
        return dest

    yield open_one
    for dest in opened:
        dest.close()


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params or None)
        return cur.fetchall() if cur.description else []


def spec(table: str, **options: Any) -> PostgresDestinationSpec:
    """The destination options as sluice.yaml gives them (converted and checked the same way)."""
    return msgspec.convert({"connection": "dw", "table": table, **options}, PostgresDestinationSpec)


def orders(ids: list[int], days: list[str], amount: float = 1.0) -> pa.Table:
    return pa.table(
        {
            "order_id": pa.array(ids, pa.int64()),
            "order_date": pa.array([dt.date.fromisoformat(d) for d in days], pa.date32()),
            "customer_id": pa.array([i % 3 for i in ids], pa.int64()),
            "amount": pa.array([amount] * len(ids), pa.float64()),
        }
    )


def batches(*tables: pa.Table) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(tables[0].schema, [t.to_batches()[0] for t in tables])


def partitions(url: str, table: str) -> list[tuple[str, str]]:
    """Each partition of ``table`` (schema-qualified) with its bounds, in order."""
    return query(
        url,
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        table,
    )


def write(
    dest: PostgresDestination, options: PostgresDestinationSpec, data: pa.Table | pa.RecordBatchReader, load_id: str
) -> int:
    reader = data if isinstance(data, pa.RecordBatchReader) else data.to_reader()
    return dest.write(options.table, reader, options.mode, options.key, load_id, options=options)


# -- schemas -------------------------------------------------------------------------------------------------


def test_staging_analytics_and_metrics_schemas_are_created_when_missing(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    dest = destination()
    for table in ("staging.orders", "analytics.fact_orders", "metrics.daily_revenue"):
        write(dest, spec(table, mode="append"), orders([1], ["2026-01-05"]), f"l-{table}")
    names = query(pg_db_url, "SELECT nspname FROM pg_namespace WHERE nspname IN ('staging', 'analytics', 'metrics') ORDER BY 1")
    assert names == [("analytics",), ("metrics",), ("staging",)]


def test_loads_creating_one_schema_at_once_all_succeed(pg_db_url: str, destination: Callable[[], PostgresDestination]) -> None:
    dests = [destination() for _ in range(4)]
    start = threading.Barrier(len(dests))
    errors: list[BaseException] = []

    def load(i: int) -> None:
        try:
            start.wait()
            write(dests[i], spec(f"metrics.m{i}", mode="append"), orders([i], ["2026-01-05"]), f"l{i}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(dests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert query(pg_db_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'metrics'") == [(4,)]


# -- partitions ----------------------------------------------------------------------------------------------


def test_monthly_partitions_are_created_as_data_arrives(pg_db_url: str, destination: Callable[[], PostgresDestination]) -> None:
    options = spec("analytics.fact_orders", mode="append", partition_by={"column": "order_date", "interval": "month"})
    dest = destination()
    first = batches(orders([1, 2], ["2026-01-05", "2026-01-31"]), orders([3, 4], ["2026-02-01", "2026-03-15"]))
    assert write(dest, options, first, "l1") == 4
    assert query(pg_db_url, "SELECT relkind FROM pg_class WHERE oid = 'analytics.fact_orders'::regclass") == [("p",)]
    assert partitions(pg_db_url, "analytics.fact_orders") == [
        ("fact_orders_p2026_01", "FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')"),
        ("fact_orders_p2026_02", "FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')"),
        ("fact_orders_p2026_03", "FOR VALUES FROM ('2026-03-01') TO ('2026-04-01')"),
    ]
    # A second load adds the months it brings (December rolls over to the next year) and reuses the others.
    assert write(dest, options, orders([5, 6, 7], ["2026-03-20", "2026-12-31", "2027-01-01"]), "l2") == 3
    assert [name for name, _ in partitions(pg_db_url, "analytics.fact_orders")] == [
        "fact_orders_p2026_01",
        "fact_orders_p2026_02",
        "fact_orders_p2026_03",
        "fact_orders_p2026_12",
        "fact_orders_p2027_01",
    ]
    routed = query(
        pg_db_url, "SELECT order_id, tableoid::regclass::text FROM analytics.fact_orders WHERE order_id IN (4, 6, 7) ORDER BY 1"
    )
    assert routed == [
        (4, "analytics.fact_orders_p2026_03"),
        (6, "analytics.fact_orders_p2026_12"),
        (7, "analytics.fact_orders_p2027_01"),
    ]


def test_daily_and_yearly_partitions_of_timestamps(pg_db_url: str, destination: Callable[[], PostgresDestination]) -> None:
    utc = dt.UTC
    stamps = [dt.datetime(2026, 11, 29, 23, 59, tzinfo=utc), dt.datetime(2026, 11, 30, 0, 0, tzinfo=utc)]
    events = pa.table({"id": [1, 2], "at": pa.array(stamps, pa.timestamp("us", tz="UTC"))})
    dest = destination()
    write(dest, spec("staging.events", mode="append", partition_by={"column": "at", "interval": "day"}), events, "l1")
    assert partitions(pg_db_url, "staging.events") == [
        ("events_p2026_11_29", "FOR VALUES FROM ('2026-11-29 00:00:00+00') TO ('2026-11-30 00:00:00+00')"),
        ("events_p2026_11_30", "FOR VALUES FROM ('2026-11-30 00:00:00+00') TO ('2026-12-01 00:00:00+00')"),
    ]
    naive = pa.table({"id": [1], "at": pa.array([dt.datetime(2025, 6, 1, 12)], pa.timestamp("ms"))})
    write(dest, spec("staging.yearly", mode="replace", partition_by={"column": "at", "interval": "year"}), naive, "l2")
    assert partitions(pg_db_url, "staging.yearly") == [
        ("yearly_p2025", "FOR VALUES FROM ('2025-01-01 00:00:00') TO ('2026-01-01 00:00:00')")
    ]


def test_partitioned_merge_updates_rows_across_partitions(pg_db_url: str, destination: Callable[[], PostgresDestination]) -> None:
    options = spec(
        "analytics.fact_orders",
        mode="merge",
        key=["order_id", "order_date"],
        partition_by={"column": "order_date", "interval": "month"},
        primary_key=["order_id", "order_date"],
    )
    dest = destination()
    write(dest, options, orders([1, 2], ["2026-01-05", "2026-02-05"]), "l1")
    changed = orders([2, 3], ["2026-02-05", "2026-04-01"], amount=9.0)
    assert write(dest, options, changed, "l2") == 2
    rows = query(pg_db_url, "SELECT order_id, amount, tableoid::regclass::text FROM analytics.fact_orders ORDER BY 1")
    assert rows == [
        (1, 1.0, "analytics.fact_orders_p2026_01"),
        (2, 9.0, "analytics.fact_orders_p2026_02"),
        (3, 9.0, "analytics.fact_orders_p2026_04"),
    ]
    # The same merge again changes nothing and creates nothing.
    write(dest, options, changed, "l3")
    assert query(pg_db_url, "SELECT count(*) FROM analytics.fact_orders") == [(3,)]
    assert len(partitions(pg_db_url, "analytics.fact_orders")) == 3


def test_replace_recreates_an_unpartitioned_table_and_append_refuses_it(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    dest = destination()
    write(dest, spec("sales", mode="append"), orders([1], ["2026-01-05"]), "l1")
    options = spec("sales", mode="append", partition_by={"column": "order_date"})
    with pytest.raises(TerminalError, match=r"table 'sales' exists and is not partitioned.*partition_by column 'order_date'"):
        write(dest, options, orders([2], ["2026-01-06"]), "l2")
    replace = spec("sales", mode="replace", partition_by={"column": "order_date"})
    write(dest, replace, orders([3], ["2026-01-07"]), "l3")
    assert query(pg_db_url, "SELECT relkind FROM pg_class WHERE oid = 'sales'::regclass") == [("p",)]
    assert query(pg_db_url, "SELECT order_id FROM sales") == [(3,)]


def test_merge_key_without_the_partition_column_is_refused_before_anything_runs(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(
        "connections: {dw: 'postgresql://u@127.0.0.1/db'}\n"
        "objects:\n"
        "  - id: 3001\n"
        "    name: fact_orders\n"
        "    destination:\n"
        "      {connection: dw, table: analytics.fact_orders, mode: merge, key: [order_id],\n"
        "       partition_by: {column: order_date}}\n",
        encoding="utf-8",
    )
    _, problems = parse_project(path)
    assert [str(p) for p in problems] == [
        f"{path}:6: object 3001 (fact_orders): destination: mode merge into a table partitioned by 'order_date' needs "
        "'order_date' in key (key: order_id), so a row's key decides its partition; add it, e.g. key: [order_id, order_date]"
    ]


def test_unknown_columns_are_refused_before_the_database_is_touched(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    dest = destination()
    data = orders([1], ["2026-01-05"])
    with pytest.raises(TerminalError, match=r"table 'analytics.f': partition_by names column 'order_dt', .*'order_date'\?"):
        write(dest, spec("analytics.f", mode="append", partition_by={"column": "order_dt"}), data, "l1")
    with pytest.raises(TerminalError, match=r"table 'analytics.f': indexes names column 'customer'"):
        write(dest, spec("analytics.f", mode="append", indexes=[["customer"]]), data, "l1")
    with pytest.raises(TerminalError, match=r"partition_by column 'amount' is double, .*date or timestamp"):
        write(dest, spec("analytics.f", mode="append", partition_by={"column": "amount"}), data, "l1")
    assert query(pg_db_url, "SELECT count(*) FROM pg_namespace WHERE nspname = 'analytics'") == [(0,)]


# -- a failed load writes nothing ----------------------------------------------------------------------------


def failing(*tables: pa.Table) -> pa.RecordBatchReader:
    """The tables' batches, then an error from the source."""

    def gen() -> Iterator[pa.RecordBatch]:
        for table in tables:
            yield from table.to_batches()
        raise OSError("source went away")

    return pa.RecordBatchReader.from_batches(tables[0].schema, gen())


@pytest.mark.parametrize("mode", ["append", "merge", "replace"])
def test_a_failure_mid_load_leaves_the_table_and_its_partitions_as_they_were(
    mode: str, pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    options = spec(
        "analytics.fact_orders",
        mode=mode,
        key=["order_id", "order_date"] if mode == "merge" else [],
        partition_by={"column": "order_date", "interval": "month"},
        indexes=[["customer_id"]],
    )
    dest = destination()
    write(dest, options, orders([1, 2], ["2026-01-05", "2026-02-05"]), "l1")
    before = query(pg_db_url, "SELECT * FROM analytics.fact_orders ORDER BY order_id")
    # New months in the first batches (their partitions are created), then the source fails.
    data = failing(orders([2, 3], ["2026-02-05", "2026-05-01"], 7.0), orders([4], ["2026-06-01"], 7.0))
    with pytest.raises(OSError, match="source went away"):
        write(dest, options, data, "l2")
    assert query(pg_db_url, "SELECT * FROM analytics.fact_orders ORDER BY order_id") == before
    assert [name for name, _ in partitions(pg_db_url, "analytics.fact_orders")] == [
        "fact_orders_p2026_01",
        "fact_orders_p2026_02",
    ]
    # A null date in a later batch fails the load the same way, naming the column (merge: a null key).
    nulls = pa.table({"order_id": [9], "order_date": pa.array([None], pa.date32()), "customer_id": [1], "amount": [1.0]})
    named = r"1 rows have a null key" if mode == "merge" else r"column 'order_date' \(partition_by\) has 1 null"
    with pytest.raises(TerminalError, match=rf"table 'analytics.fact_orders'.*{named}"):
        write(dest, options, batches(orders([8], ["2026-09-01"]), nulls), "l3")
    assert query(pg_db_url, "SELECT * FROM analytics.fact_orders ORDER BY order_id") == before
    assert len(partitions(pg_db_url, "analytics.fact_orders")) == 2


# -- primary keys and indexes --------------------------------------------------------------------------------


def indexes(url: str, table: str) -> list[tuple[str, str]]:
    return query(
        url,
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = %s::regclass ORDER BY 1",
        table,
    )


def test_primary_key_and_indexes_are_created_with_the_table(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    options = spec(
        "analytics.dim_customers",
        mode="merge",
        key=["order_id"],
        primary_key=["order_id"],
        indexes=[["customer_id"], {"columns": ["customer_id", "order_date"], "unique": True}],
    )
    write(destination(), options, orders([1, 2], ["2026-01-05", "2026-01-06"]), "l1")
    assert indexes(pg_db_url, "analytics.dim_customers") == [
        (
            "dim_customers_customer_id_idx",
            "CREATE INDEX dim_customers_customer_id_idx ON analytics.dim_customers USING btree (customer_id)",
        ),
        (
            "dim_customers_customer_id_order_date_key",
            "CREATE UNIQUE INDEX dim_customers_customer_id_order_date_key ON analytics.dim_customers "
            "USING btree (customer_id, order_date)",
        ),
        ("dim_customers_pkey", "CREATE UNIQUE INDEX dim_customers_pkey ON analytics.dim_customers USING btree (order_id)"),
    ]


def test_missing_primary_key_and_indexes_are_added_to_an_existing_table(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    dest = destination()
    partitioned = {"column": "order_date", "interval": "month"}
    write(dest, spec("analytics.fact_orders", mode="append", partition_by=partitioned), orders([1], ["2026-01-05"]), "l1")
    assert indexes(pg_db_url, "analytics.fact_orders") == []
    options = spec(
        "analytics.fact_orders",
        mode="append",
        partition_by=partitioned,
        primary_key=["order_id", "order_date"],
        indexes=[["customer_id"], ["region"]],
    )
    more = orders([2], ["2026-03-05"]).append_column("region", pa.array(["eu"]))  # a new column, then its index
    write(dest, options, more, "l2")
    names = [name for name, _ in indexes(pg_db_url, "analytics.fact_orders")]
    assert names == ["fact_orders_customer_id_idx", "fact_orders_pkey", "fact_orders_region_idx"]
    # Every partition, old and new, has the indexes (PostgreSQL cascades a partitioned index).
    assert len(indexes(pg_db_url, "analytics.fact_orders_p2026_01")) == 3
    assert len(indexes(pg_db_url, "analytics.fact_orders_p2026_03")) == 3
    write(dest, options, more.slice(0, 0), "l3")  # nothing new to add: no error, nothing changes
    assert [name for name, _ in indexes(pg_db_url, "analytics.fact_orders")] == names
    other = spec("analytics.fact_orders", mode="append", partition_by=partitioned, primary_key=["order_date", "order_id"])
    with pytest.raises(TerminalError, match=r"has primary key \(order_id, order_date\) but the destination declares"):
        write(dest, other, more, "l4")


def test_long_table_names_get_valid_partition_and_index_names(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    table = "fact_" + "x" * 55
    options = spec(table, mode="append", partition_by={"column": "order_date", "interval": "day"}, indexes=[["customer_id"]])
    dest = destination()
    write(dest, options, orders([1], ["2026-01-05"]), "l1")
    write(dest, options, orders([2], ["2026-01-05"]), "l2")  # finds the partition and the index it made
    assert query(pg_db_url, f"SELECT count(*) FROM {table}") == [(2,)]
    assert len(partitions(pg_db_url, table)) == 1
    assert len(indexes(pg_db_url, table)) == 1


# -- ANALYZE -------------------------------------------------------------------------------------------------


def analyze_count(url: str, table: str) -> int:
    rows = query(url, "SELECT analyze_count FROM pg_stat_user_tables WHERE relid = %s::regclass", table)
    return int(rows[0][0])


def test_analyze_runs_after_a_large_load_only(pg_db_url: str, destination: Callable[[], PostgresDestination]) -> None:
    dest = destination()
    write(dest, spec("metrics.small", mode="append", analyze_min_rows=10), orders(list(range(5)), ["2026-01-01"] * 5), "l1")
    assert analyze_count(pg_db_url, "metrics.small") == 0
    write(dest, spec("metrics.small", mode="append", analyze_min_rows=10), orders(list(range(20)), ["2026-01-01"] * 20), "l2")
    assert analyze_count(pg_db_url, "metrics.small") == 1
    off = spec("metrics.small", mode="append", analyze=False, analyze_min_rows=0)
    write(dest, off, orders(list(range(20)), ["2026-01-01"] * 20), "l3")
    assert analyze_count(pg_db_url, "metrics.small") == 1


def test_analyze_after_a_partitioned_load_covers_the_partitions_loaded(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    options = spec("analytics.fact_orders", mode="merge", key=["order_id", "order_date"], partition_by={"column": "order_date"})
    options = msgspec.structs.replace(options, analyze_min_rows=2)
    dest = destination()
    write(dest, options, orders([1, 2], ["2026-01-05", "2026-02-05"]), "l1")
    write(dest, options, orders([3, 4], ["2026-02-06", "2026-02-07"]), "l2")
    assert analyze_count(pg_db_url, "analytics.fact_orders_p2026_01") == 1
    assert analyze_count(pg_db_url, "analytics.fact_orders_p2026_02") == 2


def test_options_refuse_what_postgresql_would() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"primary_key \(id\) must include the partition column 'day'"):
        spec("t", mode="append", primary_key=["id"], partition_by={"column": "day"})
    with pytest.raises(msgspec.ValidationError, match=r"unique index \(id\) must include the partition column 'day'"):
        spec("t", mode="append", indexes=[{"columns": ["id"], "unique": True}], partition_by={"column": "day"})
    with pytest.raises(msgspec.ValidationError, match=r"Expected `str` of length >= 1"):
        spec("t", indexes=[[""]])
    with pytest.raises(msgspec.ValidationError, match=r"Invalid enum value 'week'"):
        spec("t", partition_by={"column": "day", "interval": "week"})


def test_loads_creating_the_same_partitions_at_once_all_succeed(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    options = spec("analytics.fact_orders", mode="append", partition_by={"column": "order_date", "interval": "day"})
    write(destination(), options, orders([0], ["2026-01-01"]), "l0")  # the table exists; its partitions do not
    dests = [destination() for _ in range(4)]
    start = threading.Barrier(len(dests))
    errors: list[BaseException] = []
    days = ["2026-03-01", "2026-03-02", "2026-03-03"]

    def load(i: int) -> None:
        try:
            start.wait()
            write(dests[i], options, orders([10 * i + 1, 10 * i + 2, 10 * i + 3], days), f"l{i + 1}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(dests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert query(pg_db_url, "SELECT count(*) FROM analytics.fact_orders") == [(13,)]
    assert len(partitions(pg_db_url, "analytics.fact_orders")) == 4


def validation_problems(tmp_path: Path, sql: str, destination: str) -> tuple[Path, list[str]]:
    """``sluice validate``'s problems for orders.csv (order_id, order_date, customer_id) and an SQL object 3001
    (``sql``) loading ``destination`` (the YAML under its line 8 key) over a PostgreSQL connection."""
    path = tmp_path / "sluice.yaml"
    path.write_text(
        "connections: {dw: 'postgresql://u@127.0.0.1/db'}\n"
        "objects:\n"
        "  - {id: 1001, name: orders, source: {type: csv, path: orders.csv}, lake: true}\n"
        "  - id: 3001\n"
        "    name: fact_orders\n"
        "    parents: [1001]\n"
        f"    sql: {sql}\n"
        f"    destination:\n{destination}",
        encoding="utf-8",
    )
    (tmp_path / "orders.csv").write_text("order_id,order_date,customer_id\n1,2026-01-01,2\n", encoding="utf-8")
    _, problems = parse_project(path, ahead=True)
    return path, [str(p) for p in problems]


def test_validate_checks_the_columns_an_sql_object_selects(tmp_path: Path) -> None:
    path, problems = validation_problems(
        tmp_path,
        "SELECT order_id, order_date, customer_id FROM orders",
        "      {connection: dw, table: analytics.fact_orders, mode: append, partition_by: {column: order_day},\n"
        "       indexes: [[customer_id]]}\n",
    )
    assert problems == [
        f"{path}:8: object 3001 (fact_orders): destination partition_by names column 'order_day', which the SQL does not "
        "select (it selects: order_id, order_date, customer_id). Did you mean 'order_date'? Fix the partition_by or the SQL"
    ]


def test_validate_refuses_a_table_name_postgresql_would_cut_short(tmp_path: Path) -> None:
    long = "t" * 70
    path, problems = validation_problems(
        tmp_path, "SELECT order_id FROM orders", f"      {{connection: dw, table: analytics.{long}, primary_key: [order_id]}}\n"
    )
    assert len(problems) == 1
    assert f"{path}:9:" in problems[0] and f"table name '{long}' is 70 bytes long" in problems[0]
    assert "at most 63 bytes" in problems[0]


def test_a_merge_failing_after_staging_leaves_the_table_and_its_partitions_as_they_were(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    options = spec(
        "analytics.fact_orders",
        mode="merge",
        key=["order_id", "order_date"],
        partition_by={"column": "order_date"},
        indexes=[{"columns": ["customer_id", "order_date"], "unique": True}],
    )
    dest = destination()
    write(dest, options, orders([1, 2], ["2026-01-05", "2026-01-06"]), "l1")
    before = query(pg_db_url, "SELECT * FROM analytics.fact_orders ORDER BY order_id")
    # Staged, its new partition created, the old row deleted: then the insert breaks the unique index.
    clash = orders([1, 4, 7], ["2026-01-05", "2026-07-01", "2026-07-01"], 5.0)  # customers 1, 1, 1 on 2026-07-01
    with pytest.raises(TerminalError, match=r"writing table 'analytics.fact_orders'.*violates unique constraint"):
        write(dest, options, clash, "l2")
    assert query(pg_db_url, "SELECT * FROM analytics.fact_orders ORDER BY order_id") == before
    assert [name for name, _ in partitions(pg_db_url, "analytics.fact_orders")] == ["fact_orders_p2026_01"]


def test_a_change_of_layout_changes_the_object_definition_and_nothing_else_does() -> None:
    from sluice.project.model import DestinationSpec, ObjectSpec

    def definition(destination: DestinationSpec) -> dict[str, Any]:
        return ObjectSpec(3001, "f", "application", (), Origin("sluice.yaml"), destination=destination).definition()

    plain = {"connection": "dw", "table": "analytics.f", "mode": "append"}
    base = definition(msgspec.convert(plain, DestinationSpec))
    assert definition(spec("analytics.f", mode="append", analyze_min_rows=5)) == base
    indexed = definition(spec("analytics.f", mode="append", indexes=[["customer_id"]]))
    assert indexed["destination"] == {**base["destination"], "indexes": (("customer_id",),)}


def test_partitions_made_by_hand_are_found_by_their_bounds(
    pg_db_url: str, destination: Callable[[], PostgresDestination]
) -> None:
    options = spec("analytics.fact_orders", mode="append", partition_by={"column": "order_date"}, analyze_min_rows=0)
    dest = destination()
    write(dest, options, orders([1], ["2026-06-01"]), "l1")
    query(
        pg_db_url,
        "CREATE TABLE analytics.legacy_q1 PARTITION OF analytics.fact_orders FOR VALUES FROM ('2026-01-01') TO ('2026-04-01')",
    )
    query(
        pg_db_url,
        "CREATE TABLE analytics.legacy_old PARTITION OF analytics.fact_orders FOR VALUES FROM (MINVALUE) TO ('2025-01-01')",
    )
    write(
        dest, options, batches(orders([2, 3], ["2026-02-10", "2026-03-31"]), orders([4, 5], ["2026-07-01", "1999-12-31"])), "l2"
    )
    routed = query(pg_db_url, "SELECT order_id, tableoid::regclass::text FROM analytics.fact_orders ORDER BY 1")
    assert routed == [
        (1, "analytics.fact_orders_p2026_06"),
        (2, "analytics.legacy_q1"),
        (3, "analytics.legacy_q1"),
        (4, "analytics.fact_orders_p2026_07"),
        (5, "analytics.legacy_old"),
    ]
    assert analyze_count(pg_db_url, "analytics.legacy_q1") == 1  # the partitions loaded, whatever their names


def test_a_partitioned_merge_leaves_the_other_partitions_alone(pg_db_url: str) -> None:
    options = spec("analytics.fact_orders", mode="merge", key=["order_id", "order_date"], partition_by={"column": "order_date"})
    url = pg_db_url + "?options=-c%20lock_timeout%3D2000"
    dest = open_destination(ConnectionSpec("dw", url, Origin("sluice.yaml")), root=Path("."))
    assert isinstance(dest, PostgresDestination)
    try:
        write(dest, options, orders([1, 2], ["2026-01-05", "2026-03-05"]), "l1")
        with psycopg.connect(pg_db_url) as holder:
            # Another session holds January: a merge of March rows does not need it (the DELETE prunes it).
            holder.execute("LOCK TABLE analytics.fact_orders_p2026_01 IN ACCESS EXCLUSIVE MODE")
            write(dest, options, orders([2, 3], ["2026-03-05", "2026-03-06"], 4.0), "l2")
    finally:
        dest.close()
    rows = query(pg_db_url, "SELECT order_id, amount FROM analytics.fact_orders ORDER BY 1")
    assert rows == [(1, 1.0), (2, 4.0), (3, 4.0)]


def test_adding_a_partition_does_not_wait_for_readers_of_the_table(pg_db_url: str) -> None:
    options = spec("analytics.fact_orders", mode="append", partition_by={"column": "order_date"})
    url = pg_db_url + "?options=-c%20lock_timeout%3D2000"
    dest = open_destination(ConnectionSpec("dw", url, Origin("sluice.yaml")), root=Path("."))
    assert isinstance(dest, PostgresDestination)
    try:
        write(dest, options, orders([1], ["2026-01-05"]), "l1")
        with psycopg.connect(pg_db_url) as reader:
            # A report reading the fact table in an open transaction: a load adding April attaches its partition
            # (SHARE UPDATE EXCLUSIVE on the table), which does not wait for the reader's ACCESS SHARE.
            assert reader.execute("SELECT count(*) FROM analytics.fact_orders").fetchall() == [(1,)]
            write(dest, options, orders([2], ["2026-04-01"]), "l2")
            assert reader.execute("SELECT count(*) FROM analytics.fact_orders").fetchall() == [(2,)]
    finally:
        dest.close()
    assert [name for name, _ in partitions(pg_db_url, "analytics.fact_orders")] == [
        "fact_orders_p2026_01",
        "fact_orders_p2026_04",
    ]


def test_warehouse_options_on_another_database_name_the_postgresql_destination(tmp_path: Path) -> None:
    path = tmp_path / "sluice.yaml"
    path.write_text(
        "connections: {lake: 'duckdb:///w.duckdb'}\n"
        "objects:\n"
        "  - id: 3001\n"
        "    name: fact_orders\n"
        "    sql: SELECT 1 AS order_id\n"
        "    destination: {connection: lake, table: f, primary_key: [order_id]}\n",
        encoding="utf-8",
    )
    _, problems = parse_project(path)
    assert [str(p) for p in problems] == [
        f"{path}:6: object 3001 (fact_orders): destination: option 'primary_key' is an option of postgresql destinations, "
        "but connection 'lake' is a duckdb one; remove it, or publish to a postgresql connection"
    ]


def test_loads_adding_the_same_index_at_once_all_succeed(pg_db_url: str, destination: Callable[[], PostgresDestination]) -> None:
    write(destination(), spec("analytics.fact_orders", mode="append"), orders([0], ["2026-01-01"]), "l0")
    options = spec("analytics.fact_orders", mode="append", primary_key=["order_id"], indexes=[["customer_id"]])
    dests = [destination() for _ in range(4)]
    start = threading.Barrier(len(dests))
    errors: list[BaseException] = []

    def load(i: int) -> None:
        try:
            start.wait()
            write(dests[i], options, orders([i + 1], ["2026-01-02"]), f"l{i + 1}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(i,)) for i in range(len(dests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert query(pg_db_url, "SELECT count(*) FROM analytics.fact_orders") == [(5,)]
    assert [name for name, _ in indexes(pg_db_url, "analytics.fact_orders")] == [
        "fact_orders_customer_id_idx",
        "fact_orders_pkey",
    ]
