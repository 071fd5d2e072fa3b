from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pymysql
import pytest

from sluice.connectors.base import SourceContext
from sluice.connectors.mysql import MysqlSource, connect_arguments
from sluice.connectors.registry import open_source
from sluice.errors import TerminalError, TransientError
from sluice.project.model import ConnectionSpec, Origin, SourceSpec

pytestmark = pytest.mark.mysql


def reader(url: str, **options: Any) -> pa.RecordBatchReader:
    context = SourceContext(Path("."), {"shop": ConnectionSpec("shop", url, Origin("sluice.yaml"))})
    source = open_source(SourceSpec("sql", {"connection": "shop", **options}), context)
    assert isinstance(source, MysqlSource)
    return source.read()


def execute(url: str, *statements: str) -> None:
    con = pymysql.connect(**connect_arguments(url), autocommit=True)
    try:
        with con.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
    finally:
        con.close()


TYPES = """CREATE TABLE kinds (
  id INT PRIMARY KEY, ti TINYINT, flag TINYINT(1), tu TINYINT UNSIGNED, si SMALLINT, mi MEDIUMINT, iu INT UNSIGNED,
  bi BIGINT, bu BIGINT UNSIGNED, f FLOAT, d DOUBLE, price DECIMAL(10, 2), whole DECIMAL(5, 0) UNSIGNED, wide DECIMAL(50, 20),
  day DATE, at DATETIME(6), stamp TIMESTAMP NULL, span TIME(6), yr YEAR, name VARCHAR(20), code CHAR(3), body TEXT,
  raw BLOB, vb VARBINARY(4), color ENUM('red', 'blue'), opts SET('x', 'y'), bit1 BIT(1), bits BIT(8), ok BOOLEAN)"""
ROW = """INSERT INTO kinds VALUES (1, -1, 1, 200, -300, 70000, 4000000000, -9000000000, 18446744073709551615,
  1.5, 2.25, 12345678.91, 99999, 1.5, '2024-01-02', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05', '-01:02:03.5',
  2024, 'héllo', 'abc', 'long', x'0001', x'ff', 'blue', 'x,y', b'1', b'10000001', FALSE)"""


def test_column_types_map_to_arrow(mysql_db_url: str) -> None:
    execute(mysql_db_url, TYPES, ROW, "INSERT INTO kinds (id) VALUES (2)")
    table = reader(mysql_db_url, table="kinds").read_all().sort_by("id")
    expected = {
        "id": pa.int32(),
        "ti": pa.int8(),
        "flag": pa.bool_(),
        "tu": pa.int16(),
        "si": pa.int16(),
        "mi": pa.int32(),
        "iu": pa.int64(),
        "bi": pa.int64(),
        "bu": pa.uint64(),
        "f": pa.float32(),
        "d": pa.float64(),
        "price": pa.decimal128(10, 2),
        "whole": pa.decimal128(5, 0),
        "wide": pa.decimal256(50, 20),
        "day": pa.date32(),
        "at": pa.timestamp("us"),
        "stamp": pa.timestamp("us", tz="UTC"),
        "span": pa.duration("us"),
        "yr": pa.int16(),
        "name": pa.string(),
        "code": pa.string(),
        "body": pa.string(),
        "raw": pa.binary(),
        "vb": pa.binary(),
        "color": pa.string(),
        "opts": pa.string(),
        "bit1": pa.bool_(),
        "bits": pa.int64(),
        "ok": pa.bool_(),
    }
    assert {field.name: field.type for field in table.schema} == expected
    first, second = table.to_pylist()
    assert first["flag"] is True and first["ok"] is False
    assert first["bu"] == 18446744073709551615
    assert first["price"] == Decimal("12345678.91")
    assert first["wide"] == Decimal("1.5")
    assert first["at"] == dt.datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert first["stamp"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert first["span"] == -dt.timedelta(hours=1, minutes=2, seconds=3, microseconds=500000)
    assert first["name"] == "héllo"
    assert first["raw"] == b"\x00\x01"
    assert first["opts"] == "x,y"
    assert first["bits"] == 0b10000001
    assert all(value is None for key, value in second.items() if key != "id")


def test_expressions_and_null_columns(mysql_db_url: str) -> None:
    query = "SELECT 1 + 1 AS two, NULL AS nothing, CAST(1.25 AS DECIMAL(4, 2)) AS d, SUM(1) AS total, NOW() AS now"
    table = reader(mysql_db_url, query=query).read_all()
    assert table.schema.field("two").type == pa.int32()
    assert table.schema.field("nothing").type == pa.null()
    assert table.schema.field("d").type == pa.decimal128(4, 2)
    assert pa.types.is_decimal(table.schema.field("total").type)
    assert table.schema.field("now").type == pa.timestamp("us")
    assert table.to_pylist()[0]["d"] == Decimal("1.25")


def test_zero_dates_become_null(mysql_db_url: str) -> None:
    execute(
        mysql_db_url,
        "SET SESSION sql_mode = ''",  # lets MariaDB store zero dates, as old databases hold them
        "CREATE TABLE z (day DATE, at DATETIME)",
        "INSERT INTO z VALUES ('0000-00-00', '0000-00-00 00:00:00'), ('2024-05-06', '2024-05-06 07:08:09')",
    )
    table = reader(mysql_db_url, table="z").read_all()
    assert table.to_pylist() == [
        {"day": None, "at": None},
        {"day": dt.date(2024, 5, 6), "at": dt.datetime(2024, 5, 6, 7, 8, 9)},
    ]


def test_reads_in_chunks_with_an_unbuffered_cursor(mysql_db_url: str) -> None:
    values = ", ".join(f"({i}, 'name-{i}')" for i in range(2500))
    execute(mysql_db_url, "CREATE TABLE people (id INT, name VARCHAR(20))", f"INSERT INTO people VALUES {values}")
    batches = list(reader(mysql_db_url, query="SELECT * FROM people ORDER BY id", batch_size=1000))
    assert [batch.num_rows for batch in batches] == [1000, 1000, 500]
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(2500))


@pytest.mark.parametrize("batches_read", [0, 1])
def test_a_dropped_reader_releases_its_connection(mysql_db_url: str, batches_read: int) -> None:
    values = ", ".join(f"({i})" for i in range(3000))
    execute(mysql_db_url, "CREATE TABLE n (i INT)", f"INSERT INTO n VALUES {values}")
    stream = reader(mysql_db_url, table="n", batch_size=100)
    for _ in range(batches_read):
        stream.read_next_batch()
    del stream
    assert reader(mysql_db_url, query="SELECT COUNT(*) AS c FROM n").read_all().to_pylist() == [{"c": 3000}]


def test_unknown_table_and_bad_sql_are_terminal(mysql_db_url: str) -> None:
    with pytest.raises(TerminalError, match=r"connection 'shop', table 'nope'.*nope' doesn't exist \(MySQL error 1146\)"):
        reader(mysql_db_url, table="nope")
    with pytest.raises(TerminalError, match=r"connection 'shop', query 'SELEC 1'.*MySQL error 1064"):
        reader(mysql_db_url, query="SELEC 1")


def test_connection_problems(mysql_db_url: str) -> None:
    with pytest.raises(TransientError, match=r"cannot connect"):
        reader("mysql://sluice:sluice@127.0.0.1:1/sluice", table="t")
    wrong_password = mysql_db_url.replace(":sluice@", ":wrong@")
    assert wrong_password != mysql_db_url
    with pytest.raises(TerminalError, match=r"Access denied"):
        reader(wrong_password, table="t")


def test_connect_arguments_from_url() -> None:
    arguments = connect_arguments("mariadb://app:p%40ss@db.local:3307/shop?charset=latin1&unix_socket=/run/m.sock")
    assert arguments["host"] == "db.local"
    assert arguments["port"] == 3307
    assert arguments["user"] == "app"
    assert arguments["password"] == "p@ss"
    assert arguments["database"] == "shop"
    assert arguments["charset"] == "latin1"
    assert arguments["unix_socket"] == "/run/m.sock"
