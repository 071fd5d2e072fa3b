from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sluice.errors import TerminalError
from sluice.transforms.sql import quote_identifier, quote_literal, run_sql


def parquet(path: Path, table: pa.Table) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return str(path)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, str]:
    users = pa.table({"user_id": [1, 2, 3], "country": ["FR", "FR", "DE"]})
    orders = pa.table({"order_id": [10, 11, 12, 13], "user_id": [1, 1, 2, 3], "amount": [5.0, 7.5, 1.0, 2.0]})
    return {
        "users": parquet(tmp_path / "raw" / "users.parquet", users),
        "orders": parquet(tmp_path / "raw" / "orders.parquet", orders),
    }


def test_joins_parents_by_name(inputs: dict[str, str]) -> None:
    sql = """
        SELECT u.country, count(*) AS orders, sum(o.amount) AS total
        FROM orders o JOIN users u USING (user_id)
        GROUP BY u.country ORDER BY u.country
    """
    table = run_sql(sql, inputs, object_label="object 3001 'by_country'").read_all()
    assert table.schema == pa.schema([("country", pa.string()), ("orders", pa.int64()), ("total", pa.float64())])
    assert table.to_pylist() == [{"country": "DE", "orders": 1, "total": 2.0}, {"country": "FR", "orders": 3, "total": 13.5}]


def test_result_streams_in_batches(tmp_path: Path) -> None:
    path = parquet(tmp_path / "n.parquet", pa.table({"n": pa.array(range(200_000), pa.int64())}))
    batches = list(run_sql("SELECT n * 2 AS doubled FROM numbers", {"numbers": path}, object_label="obj"))
    assert len(batches) > 1
    assert sum(batch.num_rows for batch in batches) == 200_000


def test_odd_names_and_paths_are_quoted(tmp_path: Path) -> None:
    path = parquet(tmp_path / "it's here" / "x.parquet", pa.table({"a": [1]}))
    table = run_sql('SELECT a FROM "my ""odd"" table"', {'my "odd" table': path}, object_label="obj").read_all()
    assert table.to_pylist() == [{"a": 1}]
    assert quote_identifier('a"b') == '"a""b"'
    assert quote_literal("it's") == "'it''s'"


def test_unknown_table_lists_the_inputs_and_suggests_one(inputs: dict[str, str]) -> None:
    with pytest.raises(TerminalError) as caught:
        run_sql("SELECT * FROM user", inputs, object_label="object 3001 'by_country'")
    message = str(caught.value)
    assert message.startswith("object 3001 'by_country': SQL failed: Catalog Error: Table with name user does not exist!")
    assert "Did you mean 'users'?" in message
    assert "Available input tables: users, orders" in message
    assert "pg_" not in message  # DuckDB's own suggestion of a system table is dropped


def test_parser_and_binder_errors_quote_duckdb(inputs: dict[str, str]) -> None:
    with pytest.raises(TerminalError, match=r"obj: SQL failed: Parser Error: syntax error at or near \"SELEC\""):
        run_sql("SELEC 1", inputs, object_label="obj")
    with pytest.raises(TerminalError, match=r"obj: SQL failed: Binder Error: .*\"nope\""):
        run_sql("SELECT nope FROM users", inputs, object_label="obj")


def test_errors_while_streaming_are_terminal_too(tmp_path: Path) -> None:
    path = parquet(tmp_path / "t.parquet", pa.table({"v": ["1", "2", "x"]}))
    with pytest.raises(TerminalError, match=r"obj: SQL failed: Conversion Error"):
        run_sql("SELECT CAST(v AS INTEGER) AS v FROM t", {"t": path}, object_label="obj").read_all()


def test_no_parents(tmp_path: Path) -> None:
    assert run_sql("SELECT 42 AS answer", {}, object_label="obj").read_all().to_pylist() == [{"answer": 42}]
    with pytest.raises(TerminalError, match=r"Available input tables: none \(the object has no parents\)"):
        run_sql("SELECT * FROM users", {}, object_label="obj")
