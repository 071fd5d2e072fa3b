from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from sluice.connectors.base import SourceContext
from sluice.connectors.duckdb_source import DuckdbSource
from sluice.connectors.registry import open_source
from sluice.errors import TerminalError, TransientError
from sluice.project.model import ConnectionSpec, Origin, SourceSpec


def reader(root: Path, url: str, **options: Any) -> pa.RecordBatchReader:
    context = SourceContext(root, {"wh": ConnectionSpec("wh", url, Origin("sluice.yaml"))})
    source = open_source(SourceSpec("sql", {"connection": "wh", **options}), context)
    assert isinstance(source, DuckdbSource)
    return source.read()


def make_db(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE sales (id INTEGER, amount DECIMAL(8, 2), day DATE)")
    con.execute("INSERT INTO sales SELECT range, range * 1.5, DATE '2024-01-01' + range::INTEGER FROM range(10)")
    con.close()


def test_reads_a_table_with_duckdb_types(tmp_path: Path) -> None:
    make_db(tmp_path / "wh.duckdb")
    table = reader(tmp_path, "duckdb:///wh.duckdb", table="sales").read_all()
    assert table.schema == pa.schema([("id", pa.int32()), ("amount", pa.decimal128(8, 2)), ("day", pa.date32())])
    assert table.num_rows == 10


def test_query_streams_in_batches(tmp_path: Path) -> None:
    make_db(tmp_path / "wh.duckdb")
    batches = list(reader(tmp_path, "duckdb:///wh.duckdb", query="SELECT id FROM sales ORDER BY id", batch_size=4))
    assert pa.Table.from_batches(batches).column("id").to_pylist() == list(range(10))


def test_errors(tmp_path: Path) -> None:
    make_db(tmp_path / "wh.duckdb")
    with pytest.raises(TerminalError, match=r"connection 'wh', table 'nope'.*nope does not exist"):
        reader(tmp_path, "duckdb:///wh.duckdb", table="nope")
    with pytest.raises(TerminalError, match=r"database file .*other\.duckdb does not exist"):
        reader(tmp_path, "duckdb:///other.duckdb", table="sales")


def test_a_database_another_process_holds_is_transient(tmp_path: Path) -> None:
    make_db(tmp_path / "wh.duckdb")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "wh.duckdb")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(TransientError, match=r"connection 'wh', table 'sales'.*lock"):
            reader(tmp_path, "duckdb:///wh.duckdb", table="sales")
    finally:
        holder.communicate("done\n", timeout=60)


HOLD_LOCK = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
con.close()
"""
