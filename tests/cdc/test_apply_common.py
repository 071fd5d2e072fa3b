"""Pure parts of apply: net effect per key, type maps, widening, masking, value comparison (no server)."""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any

import pytest

from cdc.apply_cases import event, row
from sluice.cdc.apply_common import (
    cannot_alter,
    describe,
    mask_values,
    mysql_type,
    net_effect,
    parse_type,
    pg_type,
    same_value,
    target_narrows,
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


def _my(name: str, logical: str, source_type: str, **extra: Any) -> Column:
    return Column(name, logical, source_type=source_type, **extra)


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
        # strings and binaries: the length is in Column.length, not in the logical type
        (_my("c", "string", "varchar(50)", length=50), _my("c", "string", "varchar(20)", length=20), False),
        (_my("c", "string", "varchar(20)", length=20), _my("c", "string", "varchar(50)", length=50), True),
        (_my("c", "string", "character varying(50)", length=50), _my("c", "string", "character varying(20)", length=20), False),
        (_my("c", "string", "character varying(20)", length=20), _my("c", "string", "text"), True),
        (_my("c", "string", "text"), _my("c", "string", "character varying(200)", length=200), False),
        (_my("c", "string", "char(10)", length=10), _my("c", "string", "char(5)", length=5), False),
        (_my("c", "string", "char(10)", length=10), _my("c", "string", "varchar(10)", length=10), True),
        (_my("c", "string", "varchar(10)", length=10), _my("c", "string", "char(10)", length=10), False),
        (_my("c", "string", "character(10)", length=10), _my("c", "string", "character(20)", length=20), False),
        (_my("c", "string", "character(10)", length=10), _my("c", "string", "text"), False),
        (_my("c", "string", "character varying(10)", length=10), _my("c", "string", "character(10)", length=10), False),
        (_my("c", "bytes", "varbinary(50)", length=50), _my("c", "bytes", "varbinary(20)", length=20), False),
        (_my("c", "bytes", "binary(16)", length=16), _my("c", "bytes", "binary(8)", length=8), False),
        (_my("c", "bytes", "binary(16)", length=16), _my("c", "bytes", "varbinary(32)", length=32), True),
        (_my("c", "bytes", "varbinary(16)", length=16), _my("c", "bytes", "binary(16)", length=16), False),
        (_my("c", "bytes", "varbinary(16)", length=16), _my("c", "bytes", "blob"), True),
        (_my("c", "string", "text"), _my("c", "string", "tinytext"), False),
        (_my("c", "string", "tinytext"), _my("c", "string", "mediumtext"), True),
        (_my("c", "string", "varchar(300)", length=300), _my("c", "string", "tinytext"), False),
        (_my("c", "string", "varchar(300)", length=300), _my("c", "string", "text"), True),
        (_my("c", "bytes", "longblob"), _my("c", "bytes", "blob"), False),
        (_my("c", "string", "mediumtext"), _my("c", "string", "text"), False),
        (_my("c", "string", "character varying(20000)", length=20000), _my("c", "string", "text"), True),
        (_my("c", "string", "text"), _my("c", "string", "character varying(20000)", length=20000), False),
        # ENUM/SET labels: added at the end only
        (_my("c", "enum", "enum('a','b')", labels=["a", "b"]), _my("c", "enum", "enum('b')", labels=["b"]), False),
        (_my("c", "set", "set('a','b')", labels=["a", "b"]), _my("c", "set", "set('a')", labels=["a"]), False),
        (_my("c", "set", "set('a','b')", labels=["a", "b"]), _my("c", "set", "set('b','a')", labels=["b", "a"]), False),
        (_my("c", "set", "set('a')", labels=["a"]), _my("c", "set", "set('a','b')", labels=["a", "b"]), True),
        # integers: the source's own range (MEDIUMINT, UNSIGNED) decides, not the logical type alone
        (_my("c", "int32", "int(11)"), _my("c", "int32", "mediumint(9)"), False),
        (_my("c", "int32", "mediumint(9)"), _my("c", "int32", "int(11)"), True),
        (_my("c", "int32", "mediumint(8) unsigned"), _my("c", "int32", "mediumint(9)"), False),
        (_my("c", "int32", "smallint(5) unsigned"), _my("c", "int32", "mediumint(9)"), True),
        (_my("c", "int32", "int(11)"), _my("c", "int64", "int(10) unsigned"), False),
        (_my("c", "int64", "int(10) unsigned"), _my("c", "int64", "bigint(20)"), True),
        (_my("c", "int64", "int(10) unsigned"), _my("c", "int32", "int(11)"), False),
        (_my("c", "int32", "int(11)"), _my("c", "int32", "int(10)"), True),  # display width only
        (_my("c", "int16", "smallint"), _my("c", "int32", "integer"), True),
        # precision, scale, fractional seconds, bits
        (Column("c", "decimal(12,2)"), Column("c", "decimal(10,2)"), False),
        (Column("c", "decimal"), Column("c", "decimal(12,2)"), False),
        (Column("c", "decimal(12,2)"), Column("c", "decimal"), True),
        (Column("c", "datetime(6)"), Column("c", "datetime(3)"), False),
        (Column("c", "datetime(0)"), Column("c", "datetime(3)"), True),
        (Column("c", "timestamp(6)"), Column("c", "timestamp(0)"), False),
        (Column("c", "time(3)"), Column("c", "time(0)"), False),
        (Column("c", "bit(8)"), Column("c", "bit(4)"), False),
        (Column("c", "bit(4)"), Column("c", "bit(8)"), True),
        (Column("c", "float64"), Column("c", "float32"), False),
        (Column("c", "datetime(6)"), Column("c", "timestamp(6)"), False),
    ],
)
def test_widens(old: Column, new: Column, ok: bool) -> None:
    """Every attribute of the column model counts; an unchanged column always widens."""
    assert widens(old, new) is ok
    assert widens(old, old) and widens(new, new)


@pytest.mark.parametrize(
    ("present", "wanted", "narrows"),
    [
        ("character varying(40)", "varchar(20)", True),  # PostgreSQL format_type vs pg_type
        ("character varying(20)", "varchar(40)", False),
        ("text", "varchar(20)", True),
        ("character varying(20)", "text", False),
        ("numeric(12,2)", "numeric(12,1)", True),
        ("integer", "smallint", True),
        ("smallint", "bigint", False),
        ("timestamp(6) without time zone", "timestamp(3) without time zone", True),
        ("timestamp without time zone", "timestamp(6) without time zone", False),
        ("double precision", "real", True),
        ("bit(8)", "bit(4)", True),
        ("varchar(40)", "VARCHAR(20)", True),  # MariaDB COLUMN_TYPE vs mysql_type
        ("varchar(40)", "LONGTEXT", False),
        ("longtext", "VARCHAR(100)", True),
        ("varbinary(16)", "VARBINARY(8)", True),
        ("int(10) unsigned", "INT", True),
        ("int(11)", "BIGINT", False),
        ("enum('a','b')", "ENUM('b')", True),
        ("enum('a','b')", "ENUM('a','b','c')", False),
        ("datetime(6)", "DATETIME(3)", True),
        ("datetime", "DATETIME(3)", False),
        ("decimal(10,2)", "DECIMAL(8,2)", True),
        ("character varying(200)", "bigint", False),  # another kind: left to the target
        ("decimal(10,2)", "LONGTEXT", False),
    ],
)
def test_target_narrows_reads_both_catalog_spellings(present: str, wanted: str, narrows: bool) -> None:
    assert target_narrows(present, wanted) is narrows


def test_describe_names_the_source_type_else_the_logical_one() -> None:
    assert describe(_my("c", "string", "varchar(50)", length=50)) == "varchar(50)"
    assert describe(Column("c", "string", length=20)) == "string(20)"
    assert describe(Column("c", "enum", labels=["a", "b"])) == "enum('a','b')"
    assert describe(Column("c", "int64")) == "int64"


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
