from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sluice.connectors.base import SourceContext
from sluice.connectors.registry import open_source
from sluice.connectors.sqlite import SqliteSource
from sluice.errors import ConfigError, TerminalError, TransientError
from sluice.project.model import ConnectionSpec, Origin, SourceSpec


def make_db(path: Path, *statements: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        for statement in statements:
            con.execute(statement)
    con.close()


def reader(root: Path, url: str, **options: Any) -> pa.RecordBatchReader:
    context = SourceContext(root, {"local": ConnectionSpec("local", url, Origin("sluice.yaml", 3))})
    source = open_source(SourceSpec("sql", {"connection": "local", **options}), context)
    assert isinstance(source, SqliteSource)
    return source.read()


SHOP = (
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer VARCHAR(20), amount DECIMAL(10, 2), weight REAL,"
    " ordered DATE, shipped DATETIME, paid BOOLEAN, receipt BLOB, note)",
    "INSERT INTO orders VALUES (1, 'ada', 12.5, 1.25, '2024-01-02', '2024-01-02 10:11:12', 1, x'00ff', 'n')",
    "INSERT INTO orders VALUES (2, NULL, 3, NULL, NULL, NULL, 0, NULL, 7)",
)


def test_table_types_follow_declarations(tmp_path: Path) -> None:
    make_db(tmp_path / "data" / "shop.db", *SHOP)
    table = reader(tmp_path, "sqlite:///data/shop.db", table="orders").read_all()
    assert table.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("customer", pa.string()),
            ("amount", pa.float64()),
            ("weight", pa.float64()),
            ("ordered", pa.date32()),
            ("shipped", pa.timestamp("us")),
            ("paid", pa.bool_()),
            ("receipt", pa.binary()),
            ("note", pa.string()),  # undeclared, mixed text and integer: text
        ]
    )
    assert table.to_pylist()[0] == {
        "id": 1,
        "customer": "ada",
        "amount": 12.5,
        "weight": 1.25,
        "ordered": dt.date(2024, 1, 2),
        "shipped": dt.datetime(2024, 1, 2, 10, 11, 12),
        "paid": True,
        "receipt": b"\x00\xff",
        "note": "n",
    }
    assert table.column("note").to_pylist() == ["n", "7"]


def test_query_expressions_take_types_from_values(tmp_path: Path) -> None:
    make_db(tmp_path / "shop.db", *SHOP)
    query = "SELECT id, amount * 2 AS doubled, upper(customer) AS name, NULL AS blank FROM orders ORDER BY id;"
    table = reader(tmp_path, "sqlite:///shop.db", query=query).read_all()
    assert table.schema == pa.schema(
        [("id", pa.int64()), ("doubled", pa.float64()), ("name", pa.string()), ("blank", pa.string())]
    )
    assert table.column("doubled").to_pylist() == [25.0, 6.0]


def test_reads_in_chunks(tmp_path: Path) -> None:
    statements = ["CREATE TABLE n (i INTEGER, s TEXT)"]
    statements += [f"INSERT INTO n VALUES ({i}, 'v{i}')" for i in range(25)]
    make_db(tmp_path / "n.db", *statements)
    batches = list(reader(tmp_path, "sqlite:///n.db", table="n", batch_size=10))
    assert [batch.num_rows for batch in batches] == [10, 10, 5]
    assert pa.Table.from_batches(batches).column("i").to_pylist() == list(range(25))


def test_declared_type_that_does_not_fit_the_first_rows_falls_back_to_text(tmp_path: Path) -> None:
    make_db(tmp_path / "d.db", "CREATE TABLE d (day DATE)", "INSERT INTO d VALUES ('someday')")
    table = reader(tmp_path, "sqlite:///d.db", table="d").read_all()
    assert table.schema.field("day").type == pa.string()


def test_a_later_value_that_does_not_fit_suggests_a_cast(tmp_path: Path) -> None:
    make_db(tmp_path / "m.db", "CREATE TABLE m (v INTEGER)", "INSERT INTO m VALUES (1)", "INSERT INTO m VALUES ('text')")
    with pytest.raises(TerminalError, match=r"column 'v' was read as int64.*CAST\(v AS TEXT\)"):
        reader(tmp_path, "sqlite:///m.db", table="m", batch_size=1).read_all()


def test_empty_table_keeps_declared_types(tmp_path: Path) -> None:
    make_db(tmp_path / "e.db", "CREATE TABLE e (id INTEGER, name TEXT)")
    table = reader(tmp_path, "sqlite:///e.db", table="e").read_all()
    assert table.num_rows == 0
    assert table.schema == pa.schema([("id", pa.int64()), ("name", pa.string())])


def test_unknown_table_and_bad_sql_are_terminal_and_name_the_connection(tmp_path: Path) -> None:
    make_db(tmp_path / "shop.db", *SHOP)
    with pytest.raises(TerminalError, match=r"connection 'local', table 'nope'.*no such table: nope"):
        reader(tmp_path, "sqlite:///shop.db", table="nope")
    with pytest.raises(TerminalError, match=r"connection 'local', query 'SELEC id FROM orders'.*syntax error"):
        reader(tmp_path, "sqlite:///shop.db", query="SELEC id FROM orders")


def test_missing_database_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(TerminalError, match=r"database file .*missing\.db does not exist"):
        reader(tmp_path, "sqlite:///missing.db", table="t")
    assert not (tmp_path / "missing.db").exists()


def test_a_locked_database_is_transient(tmp_path: Path) -> None:
    make_db(tmp_path / "busy.db", "CREATE TABLE t (i INTEGER)")
    writer = sqlite3.connect(tmp_path / "busy.db", isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        with pytest.raises(TransientError, match=r"database is locked"):
            reader(tmp_path, "sqlite:///busy.db?timeout=0", table="t").read_all()
    finally:
        writer.close()


def test_table_and_query_together_are_refused(tmp_path: Path) -> None:
    make_db(tmp_path / "shop.db", *SHOP)
    with pytest.raises(ConfigError, match=r"either 'table' or 'query'"):
        reader(tmp_path, "sqlite:///shop.db", table="orders", query="SELECT 1")


def test_schema_qualified_and_odd_table_names_are_quoted(tmp_path: Path) -> None:
    make_db(tmp_path / "q.db", 'CREATE TABLE "odd ""name""" (i INTEGER)', 'INSERT INTO "odd ""name""" VALUES (1)')
    assert reader(tmp_path, "sqlite:///q.db", table='main.odd "name"').read_all().num_rows == 1


def test_unknown_connection_suggests_a_known_one(tmp_path: Path) -> None:
    context = SourceContext(tmp_path, {"local": ConnectionSpec("local", "sqlite:///x.db", Origin("sluice.yaml"))})
    with pytest.raises(TerminalError, match=r"unknown connection 'locl'. Did you mean 'local'"):
        open_source(SourceSpec("sql", {"connection": "locl", "table": "t"}), context)


def test_a_url_that_names_no_file_is_a_terminal_error(tmp_path: Path) -> None:
    with pytest.raises(TerminalError, match=r"sqlite source on connection 'local': 'sqlite:///:memory:' is an in-memory"):
        reader(tmp_path, "sqlite:///:memory:", table="t")
    with pytest.raises(TerminalError, match=r"'sqlite://x.db' does not say where the file is; use sqlite:///relative"):
        reader(tmp_path, "sqlite://x.db", table="t")


def test_sql_sources_have_no_fingerprint(tmp_path: Path) -> None:
    context = SourceContext(tmp_path, {"local": ConnectionSpec("local", "sqlite:///x.db", Origin("sluice.yaml"))})
    assert open_source(SourceSpec("sql", {"connection": "local", "table": "t"}), context).input_fingerprint() is None


def test_the_connection_closes_when_the_reader_is_dropped_unread(tmp_path: Path) -> None:
    make_db(tmp_path / "shop.db", *SHOP)
    stream = reader(tmp_path, "sqlite:///shop.db", table="orders")
    del stream
    writer = sqlite3.connect(tmp_path / "shop.db", isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")  # fails with "database is locked" while a reader holds the file
        writer.execute("COMMIT")
    finally:
        writer.close()
