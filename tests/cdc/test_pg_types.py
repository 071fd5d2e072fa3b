"""The PostgreSQL type map and value converters (no server)."""

from __future__ import annotations

import pytest

from sluice.cdc import pg_types
from sluice.cdc.events import Column, TableSchema
from sluice.cdc.pg_catalog import describe_change
from sluice.cdc.pg_wal2json import add_tables_option, lsn_int, lsn_text


@pytest.mark.parametrize(
    ("source_type", "typtype", "expected"),
    [
        ("smallint", "b", ("int16", None)),
        ("integer", "b", ("int32", None)),
        ("bigint", "b", ("int64", None)),
        ("numeric(12,2)", "b", ("decimal(12,2)", None)),
        ("numeric(7)", "b", ("decimal(7,0)", None)),
        ("numeric", "b", ("decimal", None)),
        ("real", "b", ("float32", None)),
        ("double precision", "b", ("float64", None)),
        ("character varying(64)", "b", ("string", 64)),
        ("character(3)", "b", ("string", 3)),
        ("text", "b", ("string", None)),
        ("bytea", "b", ("bytes", None)),
        ("boolean", "b", ("bool", None)),
        ("bit(4)", "b", ("bit(4)", None)),
        ("date", "b", ("date", None)),
        ("time without time zone", "b", ("time(6)", None)),
        ("time(3) without time zone", "b", ("time(3)", None)),
        ("timestamp(3) without time zone", "b", ("datetime(3)", None)),
        ("timestamp without time zone", "b", ("datetime(6)", None)),
        ("timestamp with time zone", "b", ("timestamp(6)", None)),
        ("timestamp(0) with time zone", "b", ("timestamp(0)", None)),
        ("uuid", "b", ("uuid", None)),
        ("jsonb", "b", ("json", None)),
        ("json", "b", ("json", None)),
        ("app.mood", "e", ("enum", None)),
        ("integer[]", "b", ("string", None)),
        ("interval", "b", ("string", None)),
        ("time with time zone", "b", ("string", None)),
    ],
)
def test_logical_type(source_type: str, typtype: str, expected: tuple[str, int | None]) -> None:
    assert pg_types.logical_type(source_type, typtype) == expected


def test_converters_give_canonical_values() -> None:
    assert pg_types.converter("int64")("9223372036854775807") == 2**63 - 1
    assert pg_types.converter("decimal(12,2)")("12.50") == "12.50"
    assert pg_types.converter("float64")("NaN") is None and pg_types.converter("float64")("-Infinity") is None
    assert pg_types.converter("decimal")("NaN") is None and pg_types.invalid_date("float64", "Infinity")
    assert pg_types.converter("float32")("1.5") == 1.5
    assert pg_types.converter("bool")("t") is True and pg_types.converter("bool")(False) is False
    assert pg_types.converter("bytes")("\\x00ff") == b"\x00\xff" == pg_types.converter("bytes")("00ff")
    assert pg_types.converter("bit(4)")("1010") == 10
    assert pg_types.converter("timestamp(6)")("1970-01-01 00:00:01.5+00") == 1_500_000
    assert pg_types.converter("timestamp(6)")("2024-01-02 06:34:05.123456+05:30") == 1704157445123456
    assert pg_types.converter("timestamp(3)")("infinity") is None
    assert pg_types.converter("datetime(3)")("2024-01-02 03:04:05.123") == "2024-01-02 03:04:05.123"
    assert pg_types.converter("date")("-infinity") is None
    assert pg_types.converter("date")("0044-03-15 BC") is None
    assert pg_types.invalid_date("date", "infinity") and not pg_types.invalid_date("date", "2024-01-01")
    assert pg_types.converter("string")(None) is None


def test_fixed_size_types_are_never_toasted() -> None:
    assert pg_types.fixed_size("int32") and pg_types.fixed_size("timestamp(3)")
    assert not pg_types.fixed_size("string") and not pg_types.fixed_size("json") and not pg_types.fixed_size("decimal")


def test_lsn_text_round_trip_and_add_tables_escaping() -> None:
    assert lsn_int("16/B374D848") == (0x16 << 32) | 0xB374D848
    assert lsn_text(lsn_int("16/B374D848")) == "16/B374D848"
    assert add_tables_option(["app.*", "we,ird.t.x"]) == "app.*,we\\,ird.t\\.x"


def _schema(*columns: tuple[str, str]) -> TableSchema:
    return TableSchema("app", "t", [Column(n, pg_types.logical_type(t)[0], source_type=t) for n, t in columns], ["id"])


def test_describe_change_names_the_kind() -> None:
    old = _schema(("id", "integer"), ("a", "text"))
    assert describe_change(old, _schema(("id", "integer"), ("a", "text"), ("b", "date"))) == ("add_column", {})
    assert describe_change(old, _schema(("id", "integer"))) == ("drop_column", {})
    assert describe_change(old, _schema(("id", "bigint"), ("a", "text"))) == ("alter_column", {})
    assert describe_change(old, _schema(("id", "integer"), ("b", "text"))) == ("rename_column", {"a": "b"})
    assert describe_change(old, _schema(("id", "bigint"), ("b", "date"))) == ("other", {})
