"""DuckDB-specific destination behaviour; the shared semantics are in test_contract.py."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from sluice.destinations.duckdb import DuckDBDestination
from sluice.errors import TransientError
from sluice.project.model import ConnectionSpec, Origin


def destination(url: str, root: Path) -> DuckDBDestination:
    return DuckDBDestination(ConnectionSpec("lake", url, Origin("sluice.yaml")), root)


def test_relative_path_is_under_the_root_and_absolute_path_is_kept(tmp_path: Path) -> None:
    assert destination("duckdb:///out/w.duckdb", tmp_path).path == tmp_path / "out" / "w.duckdb"
    assert destination(f"duckdb:///{tmp_path}/abs.duckdb", Path("/elsewhere")).path == tmp_path / "abs.duckdb"
    destination("duckdb:///out/w.duckdb", tmp_path).write("t", pa.table({"a": [1]}).to_reader(), "append", [], "l1")
    assert (tmp_path / "out" / "w.duckdb").exists()


def test_schema_qualified_table_and_column_types(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "amount": pa.array([1.5], pa.float64()),
            "name": ["x"],
            "ok": [True],
            "at": pa.array([dt.datetime(2024, 1, 1)], pa.timestamp("us")),
            "at_utc": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
            "day": pa.array([dt.date(2024, 1, 1)], pa.date32()),
            "price": pa.array([Decimal("1.25")], pa.decimal128(10, 2)),
        }
    )
    destination("duckdb:///w.duckdb", tmp_path).write("analytics.facts", table.to_reader(), "append", [], "l1")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as conn:
        types = conn.sql(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'analytics'"
        ).fetchall()
    assert types == [
        ("id", "BIGINT"),
        ("amount", "DOUBLE"),
        ("name", "VARCHAR"),
        ("ok", "BOOLEAN"),
        ("at", "TIMESTAMP"),
        ("at_utc", "TIMESTAMP WITH TIME ZONE"),
        ("day", "DATE"),
        ("price", "DECIMAL(10,2)"),
    ]


def test_memory_database_lives_as_long_as_the_destination() -> None:
    dest = destination("duckdb://", Path("."))
    assert dest.path is None
    dest.write("t", pa.table({"id": [1, 2]}).to_reader(), "append", [], "l1")
    dest.write("t", pa.table({"id": [2, 3]}).to_reader(), "merge", ["id"], "l2")
    with dest.transaction():
        assert dest.query("SELECT id FROM t ORDER BY id") == [(1,), (2,), (3,)]
    dest.close()


@pytest.fixture
def locked_file(tmp_path: Path) -> Iterator[Path]:
    """A DuckDB file held open by another process until the test ends."""
    path = tmp_path / "locked.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    assert holder.stdout.readline().strip() == "ready"
    yield path
    holder.stdin.close()
    holder.wait(timeout=30)
    holder.stdout.close()


def test_a_file_locked_by_another_process_is_transient(locked_file: Path) -> None:
    dest = destination(f"duckdb:///{locked_file}", Path("."))
    with pytest.raises(TransientError, match=r"DuckDB connection 'lake'.*try again"):
        dest.write("t", pa.table({"a": [1]}).to_reader(), "append", [], "l1")


def test_the_file_is_released_between_writes(tmp_path: Path) -> None:
    dest = destination("duckdb:///w.duckdb", tmp_path)
    dest.write("t", pa.table({"a": [1]}).to_reader(), "append", [], "l1")
    probe = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print(c.sql('SELECT count(*) FROM t').fetchall()[0][0])"
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "w.duckdb")], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "1"


def test_threads_of_one_process_write_the_same_file(tmp_path: Path) -> None:
    import threading

    errors: list[BaseException] = []

    def load(index: int) -> None:
        dest = destination("duckdb:///shared.duckdb", tmp_path)
        try:
            for round_ in range(5):
                table = pa.table({"id": list(range(100)), "round": [round_] * 100})
                dest.write(f"t{index}", table.to_reader(), "append", [], f"run:{index}:{round_}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            dest.close()

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with duckdb.connect(str(tmp_path / "shared.duckdb"), read_only=True) as conn:
        for index in range(4):
            assert conn.sql(f"select count(*) from t{index}").fetchall() == [(500,)]
