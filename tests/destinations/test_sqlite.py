"""SQLite-specific destination behaviour; the shared semantics are in test_contract.py."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from sluice.destinations.sqlite import SQLiteDestination
from sluice.errors import TerminalError, TransientError
from sluice.project.model import ConnectionSpec, Origin


def destination(url: str, root: Path, timeout_s: float = 30.0) -> SQLiteDestination:
    return SQLiteDestination(ConnectionSpec("out", url, Origin("sluice.yaml")), root, timeout_s=timeout_s)


def test_relative_path_is_under_the_root_and_absolute_path_is_kept(tmp_path: Path) -> None:
    assert destination("sqlite:///data/out.db", tmp_path).path == tmp_path / "data" / "out.db"
    assert destination(f"sqlite:///{tmp_path}/abs.db", Path("/elsewhere")).path == tmp_path / "abs.db"
    assert destination("sqlite://", tmp_path).path is None
    assert destination("sqlite:///:memory:", tmp_path).path is None


def test_declared_types_and_stored_values(tmp_path: Path) -> None:
    at = dt.datetime(2024, 5, 1, 12, 0, 0, 250000)
    table = pa.table(
        {
            "id": pa.array([1], pa.int64()),
            "amount": pa.array([1.5], pa.float64()),
            "name": ["x"],
            "ok": [True],
            "at": pa.array([at], pa.timestamp("us")),
            "at_paris": pa.array([at.replace(tzinfo=dt.UTC)], pa.timestamp("us", tz="Europe/Paris")),
            "day": pa.array([dt.date(2024, 5, 1)], pa.date32()),
            "price": pa.array([Decimal("12345678901234.50")], pa.decimal128(20, 2)),
            "raw": pa.array([b"\x00\x01"], pa.binary()),
            "tags": pa.array([[1, 2]], pa.list_(pa.int64())),
        }
    )
    destination("sqlite:///out.db", tmp_path).write("facts", table.to_reader(), "append", [], "l1")
    with sqlite3.connect(tmp_path / "out.db") as conn:
        declared = [(row[1], row[2]) for row in conn.execute("PRAGMA table_info(facts)")]
        values = conn.execute("SELECT * FROM facts").fetchall()
    assert declared == [
        ("id", "INTEGER"),
        ("amount", "REAL"),
        ("name", "TEXT"),
        ("ok", "INTEGER"),
        ("at", "TIMESTAMP"),
        ("at_paris", "TIMESTAMP"),
        ("day", "DATE"),
        ("price", "TEXT"),
        ("raw", "BLOB"),
        ("tags", "TEXT"),
    ]
    assert values == [
        (
            1,
            1.5,
            "x",
            1,
            "2024-05-01 12:00:00.250000",
            "2024-05-01 12:00:00.250000+00:00",
            "2024-05-01",
            "12345678901234.50",
            b"\x00\x01",
            "[1, 2]",
        )
    ]


def test_schema_qualified_names_other_than_main_are_refused(tmp_path: Path) -> None:
    dest = destination("sqlite:///out.db", tmp_path)
    with pytest.raises(
        TerminalError, match=r"SQLite connection 'out' has no schemas; use a plain table name such as 'analytics_users'"
    ):
        dest.write("analytics.users", pa.table({"a": [1]}).to_reader(), "append", [], "l1")
    assert dest.write("main.users", pa.table({"a": [1]}).to_reader(), "append", [], "l1") == 1


def test_a_locked_database_is_transient(tmp_path: Path) -> None:
    dest = destination("sqlite:///out.db", tmp_path, timeout_s=0.05)
    dest.write("t", pa.table({"a": [1]}).to_reader(), "append", [], "l1")
    holder = sqlite3.connect(tmp_path / "out.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TransientError, match=r"SQLite connection 'out'.*locked"):
            dest.write("t", pa.table({"a": [2]}).to_reader(), "append", [], "l2")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert dest.write("t", pa.table({"a": [2]}).to_reader(), "append", [], "l2") == 1


def test_memory_database_lives_as_long_as_the_destination() -> None:
    dest = destination("sqlite://", Path("."))
    dest.write("t", pa.table({"id": [1, 2]}).to_reader(), "append", [], "l1")
    dest.write("t", pa.table({"id": [2, 3]}).to_reader(), "merge", ["id"], "l2")
    with dest.transaction():
        assert dest.query("SELECT id FROM t ORDER BY id") == [(1,), (2,), (3,)]
    dest.close()
