"""Pure parts of apply: net effect per key, type maps, widening, masking, value comparison (no server)."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal

import pytest

from cdc.apply_cases import event, row
from sluice.cdc.apply_common import (
    cannot_alter,
    mask_values,
    mysql_type,
    net_effect,
    parse_type,
    pg_type,
    same_value,
    time_delta,
    widens,
)
from sluice.cdc.base import TableRef
from sluice.cdc.events import Column, TableSchema


def test_last_image_wins_and_insert_then_delete_is_delete() -> None:
    (segment,) = net_effect(
        [event("c", [1], row(1)), event("u", [1], row(1, "b"), row(1)), event("c", [2], row(2)), event("d", [2], None, row(2))],
        ["id"],
    )
    assert {k: u.row["name"] for k, u in segment.upserts.items()} == {(1,): "b1"}
    assert list(segment.deletes) == [(2,)]


def test_delete_then_insert_is_upsert() -> None:
    (segment,) = net_effect([event("d", [1], None, row(1)), event("c", [1], row(1, "again"))], ["id"])
    assert list(segment.upserts) == [(1,)] and not segment.deletes


def test_key_change_deletes_old_key_and_upserts_new() -> None:
    (segment,) = net_effect([event("c", [1], row(1)), event("u", [5], row(5), row(1))], ["id"])
    assert list(segment.upserts) == [(5,)] and list(segment.deletes) == [(1,)]
    (segment,) = net_effect([event("u", [5], row(5), row(1)), event("u", [1], row(1), row(5))], ["id"])
    assert list(segment.upserts) == [(1,)] and list(segment.deletes) == [(5,)]


def test_truncate_splits_segments() -> None:
    segments = net_effect([event("c", [1], row(1)), event("t", []), event("c", [2], row(2)), event("t", [])], ["id"])
    assert [(s.truncate, list(s.upserts)) for s in segments] == [(False, [(1,)]), (True, [(2,)]), (True, [])]


def test_unchanged_columns_filled_from_earlier_image_or_kept() -> None:
    (segment,) = net_effect([event("u", [1], {"id": 1, "qty": 2}, {"id": 1}, unchanged=["name"])], ["id"])
    assert segment.upserts[(1,)].keep == frozenset({"name"})
    (segment,) = net_effect(
        [event("c", [1], row(1, "big")), event("u", [1], {"id": 1, "qty": 2}, {"id": 1}, unchanged=["name"])], ["id"]
    )
    upsert = segment.upserts[(1,)]
    assert upsert.keep == frozenset() and upsert.row == {"id": 1, "name": "big1", "qty": 2}


def test_composite_keys() -> None:
    before = {"a": 1, "b": "x", "v": 0}
    (segment,) = net_effect([event("u", [1, "y"], {"a": 1, "b": "y", "v": 1}, before)], ["a", "b"])
    assert list(segment.upserts) == [(1, "y")] and list(segment.deletes) == [(1, "x")]


def test_parse_type() -> None:
    assert parse_type("decimal(12,2)") == ("decimal", (12, 2))
    assert parse_type("timestamp(3)") == ("timestamp", (3,))
    assert parse_type("uint64") == ("uint64", ())
    with pytest.raises(ValueError):
        parse_type("no such(")


@pytest.mark.parametrize(
    ("logical", "pg", "mysql"),
    [
        ("uint64", "numeric(20,0)", "BIGINT UNSIGNED"),
        ("decimal(65,30)", "numeric(65,30)", "DECIMAL(65,30)"),
        ("datetime(3)", "timestamp(3) without time zone", "DATETIME(3)"),
        ("timestamp(6)", "timestamp(6) with time zone", "DATETIME(6)"),
        ("json", "jsonb", "JSON"),
        ("bytes", "bytea", "LONGBLOB"),
        ("time(6)", "interval", "TIME(6)"),
        ("year", "smallint", "YEAR"),
        ("bit(5)", "bit(5)", "BIT(5)"),
        ("enum", "text", "LONGTEXT"),
    ],
)
def test_type_maps(logical: str, pg: str, mysql: str) -> None:
    column = Column("c", logical)
    assert pg_type(column) == pg and mysql_type(column) == mysql


def test_key_columns_get_indexable_mysql_types() -> None:
    assert mysql_type(Column("c", "string"), key=True) == "VARCHAR(768)"
    assert mysql_type(Column("c", "string"), masked=True) == "CHAR(64)"


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        (Column("c", "int32"), Column("c", "int64"), True),
        (Column("c", "int64"), Column("c", "int32"), False),
        (Column("c", "uint32"), Column("c", "int64"), True),
        (Column("c", "int32"), Column("c", "uint64"), False),
        (Column("c", "decimal(10,2)"), Column("c", "decimal(12,2)"), True),
        (Column("c", "decimal(10,2)"), Column("c", "decimal(10,3)"), False),
        (Column("c", "string", length=10), Column("c", "string", length=20), True),
        (Column("c", "string", length=20), Column("c", "string", length=10), False),
        (Column("c", "string", length=20), Column("c", "string"), True),
        (Column("c", "float32"), Column("c", "float64"), True),
        (Column("c", "enum", labels=["a"]), Column("c", "enum", labels=["a", "b"]), True),
        (Column("c", "enum", labels=["a", "b"]), Column("c", "enum", labels=["b"]), False),
        (Column("c", "string"), Column("c", "int64"), False),
    ],
)
def test_widens(old: Column, new: Column, ok: bool) -> None:
    assert widens(old, new) is ok


def test_mask_values_is_sha256_of_text() -> None:
    assert mask_values(["a", 12, None, b"\x01", True]) == [
        hashlib.sha256(b"a").hexdigest(),
        hashlib.sha256(b"12").hexdigest(),
        None,
        hashlib.sha256(b"01").hexdigest(),
        hashlib.sha256(b"true").hexdigest(),
    ]


def test_same_value() -> None:
    assert same_value("decimal(5,2)", "1.50", Decimal("1.5"))
    assert not same_value("decimal(5,2)", "1.51", Decimal("1.5"))
    assert same_value("timestamp(6)", 1_000_001, dt.datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=dt.UTC))
    assert same_value("time(0)", "-838:59:59", -dt.timedelta(hours=838, minutes=59, seconds=59))
    assert same_value("bit(4)", 5, "0101") and same_value("bit(4)", 5, b"\x05")
    assert same_value("json", '{"a": 1}', {"a": 1})
    assert not same_value("string", "a", None) and same_value("string", None, None)
    assert time_delta("123:45:06.500000") == dt.timedelta(hours=123, minutes=45, seconds=6, microseconds=500000)


def test_cannot_alter_gives_the_whole_resync_command() -> None:
    table = TableRef(TableSchema("usertest_src", "orders_2024", [Column("id", "int64")], ["id"]), "public", "orders_2024")
    message = str(cannot_alter(table, "qty", "bigint", "smallint"))
    assert "`sluice sync resync PATH usertest_src.orders_2024`" in message
