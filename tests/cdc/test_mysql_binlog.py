"""Binlog value formats (MySQL's documented encodings) and the generated row decoder, without a server."""

from __future__ import annotations

from sluice.cdc.mysql_rows import (
    LONG,
    NEWDECIMAL,
    TIMESTAMP2,
    VARCHAR,
    TableMap,
    compile_rows,
    date_converter,
    decimal_converter,
    packed_int,
    time2_converter,
)
from sluice.cdc.mysql_types import InvalidDates


def test_decimal_matches_mysqls_documented_example() -> None:
    # decimal.c: 1234567890.1234 as DECIMAL(14,4) is 81 0D FB 38 D2 04 D2; negated, every byte inverted.
    size, convert = decimal_converter(14, 4)
    assert size == 7
    assert convert(bytes.fromhex("810DFB38D204D2")) == "1234567890.1234"
    assert convert(bytes.fromhex("7EF204C72DFB2D")) == "-1234567890.1234"
    size, convert = decimal_converter(5, 0)
    assert convert(bytes([0x80, 0x00, 0x00])) == "0"


def test_time2_negative_with_fraction() -> None:
    size, convert = time2_converter(2)
    assert size == 4
    # -00:00:00.01: intpart -1 with fraction 0xFF (MySQL stores negative fractions borrowed from the seconds)
    assert convert((0x800000 - 1).to_bytes(3, "big") + bytes([0xFF])) == "-00:00:00.01"
    size, convert = time2_converter(0)
    assert convert((0x800000 + (838 << 12 | 59 << 6 | 59)).to_bytes(3, "big")) == "838:59:59"


def test_zero_date_is_none_and_counted() -> None:
    invalid = InvalidDates()
    convert = date_converter(invalid)
    assert convert(bytes(3)) is None and invalid.count == 1
    assert convert((2024 << 9 | 2 << 5 | 29).to_bytes(3, "little")) == "2024-02-29"


def test_generated_decoder_reads_nulls_and_values() -> None:
    tmap = TableMap(
        1,
        "db",
        "t",
        [LONG, VARCHAR, NEWDECIMAL, TIMESTAMP2],
        [0, 20, (5, 2), 0],
        ["id", "s", "d", "ts"],
        [False, False, False, False],
        [None, 45, None, None],
        [None] * 4,
    )
    decode = compile_rows(tmap, {45: "utf8mb4"}, InvalidDates(), update=False)
    row1 = (
        bytes([0])
        + (7).to_bytes(4, "little")
        + bytes([2])
        + "é".encode()
        + bytes([0x80, 0x01, 0x02])
        + (86400).to_bytes(4, "big")
    )
    row2 = bytes([0b1110]) + (8).to_bytes(4, "little")
    rows = decode(row1 + row2, 0, len(row1) + len(row2))
    assert rows == [{"id": 7, "s": "é", "d": "1.02", "ts": 86_400_000_000}, {"id": 8, "s": None, "d": None, "ts": None}]


def test_packed_int() -> None:
    assert packed_int(bytes([250]), 0) == (250, 1)
    assert packed_int(bytes([252, 1, 2]), 0) == (0x201, 3)
