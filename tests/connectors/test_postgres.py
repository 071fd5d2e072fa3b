from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from sluice.connectors.base import SourceContext
from sluice.connectors.postgres import PostgresSource, numeric_type
from sluice.connectors.registry import open_source
from sluice.errors import TerminalError, TransientError
from sluice.project.model import ConnectionSpec, Origin, SourceSpec

pytestmark = pytest.mark.postgres


def reader(url: str, **options: Any) -> pa.RecordBatchReader:
    context = SourceContext(Path("."), {"wh": ConnectionSpec("wh", url, Origin("sluice.yaml"))})
    source = open_source(SourceSpec("sql", {"connection": "wh", **options}), context)
    assert isinstance(source, PostgresSource)
    return source.read()


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as con:
        for statement in statements:
            con.execute(statement)


def test_types_arrive_as_arrow_types(pg_db_url: str) -> None:
    execute(
        pg_db_url,
        "CREATE SCHEMA shop",
        """CREATE TABLE shop.orders (id int4, big int8, price numeric(10, 2), ratio numeric, note text,
           at timestamptz, local timestamp, day date, paid bool, raw bytea, doc jsonb, wait interval, tags int4[])""",
        """INSERT INTO shop.orders VALUES (1, 9000000000, 12.34, 0.5, 'hé', '2024-01-02 03:04:05+00', '2024-01-02 03:04:05',
           '2024-01-02', true, '\\x00ff', '{"a": 1}', '1 mon 2 days 00:00:03', '{1,2}')""",
        "INSERT INTO shop.orders (id) VALUES (2)",
    )
    table = reader(pg_db_url, table="shop.orders").read_all().sort_by("id")
    types = {field.name: field.type for field in table.schema}
    assert types["id"] == pa.int32()
    assert types["big"] == pa.int64()
    assert types["price"] == pa.decimal128(10, 2)
    assert types["ratio"] == pa.float64()
    assert types["note"] == pa.string()
    assert types["at"] == pa.timestamp("us", tz="UTC")
    assert types["local"] == pa.timestamp("us")
    assert types["day"] == pa.date32()
    assert types["paid"] == pa.bool_()
    assert types["raw"] == pa.binary()
    assert types["wait"] == pa.duration("us")
    assert types["tags"] == pa.list_(pa.int32())
    first, second = table.to_pylist()
    assert first["price"] == Decimal("12.34")
    assert first["ratio"] == 0.5
    assert first["note"] == "hé"
    assert first["local"] == dt.datetime(2024, 1, 2, 3, 4, 5)
    assert first["wait"] == dt.timedelta(days=32, seconds=3)
    assert first["raw"] == b"\x00\xff"
    assert first["tags"] == [1, 2]
    assert second["price"] is None and second["wait"] is None


def test_query_results_stream_completely(pg_db_url: str) -> None:
    query = "SELECT g AS n, g::numeric * 2 AS doubled FROM generate_series(1, 100000) AS g"
    batches = list(reader(pg_db_url, query=query))
    table = pa.Table.from_batches(batches)
    assert table.num_rows == 100_000
    assert table.schema.field("doubled").type == pa.float64()
    assert sum(table.column("n").to_pylist()) == 100_000 * 100_001 // 2


def test_unknown_table_and_bad_sql_are_terminal(pg_db_url: str) -> None:
    with pytest.raises(TerminalError, match=r"connection 'wh', table 'nope'.*relation \"nope\" does not exist"):
        reader(pg_db_url, table="nope")
    with pytest.raises(TerminalError, match=r"connection 'wh', query 'SELEC 1'.*syntax error"):
        reader(pg_db_url, query="SELEC 1")


def test_unreachable_server_is_transient() -> None:
    with pytest.raises(TransientError, match=r"connection 'wh', table 't': cannot connect"):
        reader("postgresql://postgres@127.0.0.1:1/postgres", table="t")


def test_unknown_database_is_terminal(pg_db_url: str) -> None:
    url = pg_db_url.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(TerminalError, match=r"no_such_database.*does not exist"):
        reader(url, table="t")


@pytest.mark.parametrize("batches_read", [0, 1])
def test_a_dropped_reader_releases_its_connection(pg_db_url: str, batches_read: int) -> None:
    def backends() -> int:
        with psycopg.connect(pg_db_url) as con:
            row = con.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()").fetchone()
            assert row is not None
            return int(row[0]) - 1

    stream = reader(pg_db_url, query="SELECT g FROM generate_series(1, 300000) AS g")
    assert backends() == 1
    for _ in range(batches_read):
        stream.read_next_batch()
    del stream
    assert reader(pg_db_url, query="SELECT 1 AS one").read_all().to_pylist() == [{"one": 1}]


def test_numeric_type() -> None:
    assert numeric_type(-1) == pa.float64()
    assert numeric_type(((12 << 16) | 3) + 4) == pa.decimal128(12, 3)
