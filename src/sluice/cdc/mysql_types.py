"""MySQL/MariaDB column types -> change-event logical types and canonical values (documented in ``docs/cdc/mysql.md``).

One map serves the snapshot (text protocol, session ``time_zone = '+00:00'``) and the binlog decoder
(:mod:`sluice.cdc.mysql_rows`), so a row reads the same in both:

=============================  ===================  ==========================================================
MySQL / MariaDB                logical type          canonical value
=============================  ===================  ==========================================================
TINYINT..BIGINT                int8..int64           ``int``
  unsigned                     int16, int32, int32,  ``int`` (the next wider signed type; BIGINT UNSIGNED:
                               int64, uint64         uint64, exact up to 2**64-1)
DECIMAL(p,s)                   decimal(p,s)          ``str`` exactly as MySQL shows it (``-12.50``)
FLOAT / DOUBLE                 float32 / float64     ``float`` (a FLOAT is its exact single-precision value)
CHAR, VARCHAR, TEXT            string                ``str``
BINARY, VARBINARY, BLOB        bytes                 ``bytes`` (BINARY(n) padded to n bytes with NUL)
ENUM / SET                     enum / set            ``str``: the label, the labels joined by ``,``
JSON (MariaDB: LONGTEXT        json                  ``str`` (JSON text)
with a json_valid check)
BIT(1)                         bool                  ``bool``
BIT(n), n > 1                  bit(n)                ``int`` (the bits as an unsigned integer)
YEAR                           year                  ``int`` (0 for YEAR 0000)
DATE                           date                  ``str`` ``YYYY-MM-DD``
TIME(n)                        time(n)               ``str`` ``[-]HH:MM:SS[.f]``, n fraction digits, hours may
                                                     exceed 24 (-838..838)
DATETIME(n)                    datetime(n)           ``str`` ``YYYY-MM-DD HH:MM:SS[.f]``, n fraction digits:
                                                     wall-clock time, no zone
TIMESTAMP(n)                   timestamp(n)          ``int`` microseconds since 1970-01-01 UTC (an instant)
GEOMETRY and spatial types     bytes                 ``bytes`` (MySQL's internal SRID + WKB)
UUID (MariaDB 10.7+)           uuid                  ``str``
INET4 / INET6                  string                ``str``
=============================  ===================  ==========================================================

TINYINT(1) (``BOOLEAN``) stays ``int8``: MySQL stores any value from -128 to 127 in it. A zero or invalid
date (``0000-00-00``, ``2024-00-10``, ``2024-02-31`` under ``ALLOW_INVALID_DATES``) becomes ``None`` and is
counted; so is a zero TIMESTAMP.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sluice.cdc.events import Column, TableSchema, constant_default

INTEGER_TYPES: dict[str, tuple[str, str]] = {
    "tinyint": ("int8", "int16"),
    "smallint": ("int16", "int32"),
    "mediumint": ("int32", "int32"),
    "int": ("int32", "int64"),
    "integer": ("int32", "int64"),
    "bigint": ("int64", "uint64"),
}
TEXT_TYPES = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "inet4", "inet6"})
BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
SPATIAL_TYPES = frozenset(
    {"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring", "multipolygon", "geometrycollection"}
)
EPOCH = datetime(1970, 1, 1)  # naive: TIMESTAMP text is read in a '+00:00' session
ONE_US = timedelta(microseconds=1)
DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

Convert = Callable[[Any], Any]


class InvalidDates:
    """A counter of zero/invalid dates turned into ``None`` (shared by the converters of one reader)."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


def valid_date(year: int, month: int, day: int) -> bool:
    """False for a zero date part or a day past the month's end (``2023-02-29`` included)."""
    if month == 0 or day == 0 or month > 12 or day > DAYS_IN_MONTH[month]:
        return False
    return not (month == 2 and day == 29 and not (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)))


def logical_type(data_type: str, column_type: str, precision: int | None, scale: int | None, fsp: int | None) -> str:
    """The logical type of a column from ``information_schema.COLUMNS`` (``DATA_TYPE``, ``COLUMN_TYPE``...).

    >>> logical_type("bigint", "bigint(20) unsigned", 20, 0, None)
    'uint64'
    >>> logical_type("decimal", "decimal(12,2)", 12, 2, None)
    'decimal(12,2)'
    """
    data_type = data_type.lower()
    unsigned = "unsigned" in column_type.lower()
    if data_type in INTEGER_TYPES:
        return INTEGER_TYPES[data_type][1 if unsigned else 0]
    if data_type in ("decimal", "numeric", "dec", "fixed"):
        return f"decimal({precision or 10},{scale or 0})"
    if data_type == "float":
        return "float32"
    if data_type in ("double", "real", "double precision"):
        return "float64"
    if data_type in TEXT_TYPES:
        return "string"
    if data_type in BINARY_TYPES or data_type in SPATIAL_TYPES:
        return "bytes"
    if data_type in ("enum", "set", "json", "date", "year", "uuid"):
        return data_type
    if data_type == "bit":
        bits = precision or 1
        return "bool" if bits == 1 else f"bit({bits})"
    if data_type in ("time", "datetime", "timestamp"):
        return f"{data_type}({fsp or 0})"
    raise ValueError(f"unknown MySQL type {column_type!r}")


def enum_labels(column_type: str) -> list[str]:
    """The labels of ``enum('a','b')`` / ``set('x','y')`` in declaration order (quotes doubled inside)."""
    inner = column_type[column_type.index("(") + 1 : column_type.rindex(")")]
    return [match.replace("''", "'") for match in re.findall(r"'((?:[^']|'')*)'", inner)]


def column_from_info(row: dict[str, Any], json_columns: frozenset[str]) -> Column:
    """A :class:`Column` from one ``information_schema.COLUMNS`` row (keys upper-case, as the server names them)."""
    name = row["COLUMN_NAME"]
    data_type = str(row["DATA_TYPE"]).lower()
    column_type = str(row["COLUMN_TYPE"])
    if data_type in ("longtext", "json") and name in json_columns:
        data_type = "json"
    logical = logical_type(data_type, column_type, row["NUMERIC_PRECISION"], row["NUMERIC_SCALE"], row["DATETIME_PRECISION"])
    labels = enum_labels(column_type) if data_type in ("enum", "set") else None
    length = row["CHARACTER_MAXIMUM_LENGTH"] if data_type in ("char", "varchar", "binary", "varbinary") else None
    return Column(
        name=name,
        type=logical,
        nullable=row["IS_NULLABLE"] == "YES",
        source_type=column_type,
        labels=labels,
        length=int(length) if length is not None else None,
        default=mysql_default(logical, row.get("COLUMN_DEFAULT")),
    )


def mysql_default(logical: str, column_default: Any) -> str | int | float | bool | None:
    """The canonical constant default of ``information_schema.COLUMNS.COLUMN_DEFAULT`` (MariaDB 10.2.7+ quotes
    string literals and writes ``NULL`` for a NULL default; an expression such as ``current_timestamp()`` gives None)."""
    if column_default is None:
        return None
    text = column_default.decode() if isinstance(column_default, bytes | bytearray) else str(column_default)
    return constant_default(logical, text)


def select_expression(column: Column) -> str:
    """What the snapshot selects for ``column``: FLOAT read as DOUBLE (the text form of a FLOAT keeps 6 digits only)."""
    quoted = quote(column.name)
    return f"CAST({quoted} AS DOUBLE)" if column.type == "float32" else quoted


def quote(name: str) -> str:
    """A MySQL identifier in backquotes."""
    return "`" + name.replace("`", "``") + "`"


def snapshot_converter(column: Column, invalid: InvalidDates) -> Convert | None:
    """The function turning the text protocol's value into the canonical one (``None``: already canonical).

    The text protocol gives ``str`` for character columns and ``bytes`` for binary ones and for numbers and
    temporal values (their result character set is binary)."""
    kind = column.type
    if kind.startswith(("int", "uint")) or kind == "year":
        return int
    if kind.startswith("float"):
        return float
    if kind == "bool":
        return _bit_bool
    if kind.startswith("bit("):
        return _bit_int
    if kind == "date" or kind.startswith("datetime("):
        return _date_checker(invalid)
    if kind.startswith("timestamp("):
        return _timestamp_reader(invalid)
    if kind.startswith(("decimal(", "time(")) or kind in ("uuid", "string", "json", "enum", "set"):
        return _text
    if kind == "bytes" and column.source_type.lower().startswith("binary(") and column.length:
        width = column.length
        return lambda value: value.ljust(width, b"\0")
    return None


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bit_bool(value: bytes) -> bool:
    return value.strip(b"\0") != b""


def _bit_int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _date_checker(invalid: InvalidDates) -> Convert:
    """DATE and DATETIME text: kept as is, ``None`` (counted) for a zero or invalid date."""

    def convert(value: str | bytes) -> str | None:
        text = value.decode() if isinstance(value, bytes) else value
        if valid_date(int(text[:4]), int(text[5:7]), int(text[8:10])):
            return text
        invalid.count += 1
        return None

    return convert


def _timestamp_reader(invalid: InvalidDates) -> Convert:
    """TIMESTAMP text read in a UTC session -> microseconds since the epoch; the zero TIMESTAMP -> ``None`` (counted)."""

    def convert(value: str | bytes) -> int | None:
        text = value.decode() if isinstance(value, bytes) else value
        if text.startswith("0000-00-00"):
            invalid.count += 1
            return None
        return (datetime.fromisoformat(text) - EPOCH) // ONE_US

    return convert


ColumnConvert = Callable[[Sequence[Any]], Sequence[Any]]
"""Turns one column's values of a chunk (as the text protocol gives them) into canonical values, in order."""


def snapshot_column(column: Column, invalid: InvalidDates) -> tuple[str, ColumnConvert | None]:
    """What the bulk snapshot selects for ``column`` and the conversion of a whole column of values (``None``:
    already canonical), so a chunk is converted column by column without a Python call per value where the
    server can do the work (session in UTC):

    * TIMESTAMP: ``UNIX_TIMESTAMP(c) * 1000000`` as a BIGINT, the canonical microseconds (0 only for the zero
      TIMESTAMP, since 1970-01-01 00:00:00 UTC is out of TIMESTAMP's range: it becomes ``None``, counted);
    * DECIMAL, TIME, DATE, DATETIME, UUID: ``CAST(c AS CHAR)``, MySQL's own text of the value (a zero or invalid
      date becomes ``None``, counted);
    * FLOAT: read as DOUBLE (:func:`select_expression`); integers, floats and bits are parsed per column.

    Values equal :func:`snapshot_converter`'s and the binlog decoder's (``tests/cdc/test_mysql_capture.py``)."""
    kind = column.type
    quoted = quote(column.name)
    if kind.startswith("timestamp("):
        return f"CAST(UNIX_TIMESTAMP({quoted}) * 1000000 AS SIGNED)", _timestamp_column(invalid)
    if kind == "date" or kind.startswith("datetime("):
        return f"CAST({quoted} AS CHAR)", _date_column(invalid)
    if kind.startswith(("decimal(", "time(")) or kind == "uuid":
        return f"CAST({quoted} AS CHAR)", _text_column
    if kind in ("string", "json", "enum", "set"):
        return quoted, _text_column
    convert = snapshot_converter(column, invalid)
    return select_expression(column), None if convert is None else _each(convert)


def _each(convert: Convert) -> ColumnConvert:
    def column(values: Sequence[Any]) -> Sequence[Any]:
        if None in values:
            return [None if value is None else convert(value) for value in values]
        return list(map(convert, values))  # no NULL: one C loop

    return column


def _text_column(values: Sequence[Any]) -> Sequence[Any]:
    """``str`` values; bytes (a binary result character set, the same for the whole column) decoded."""
    for value in values:
        if value is not None:
            if isinstance(value, bytes):
                return [None if v is None else v.decode() for v in values]
            break
    return values


def _timestamp_column(invalid: InvalidDates) -> ColumnConvert:
    to_int = _each(int)

    def column(values: Sequence[Any]) -> Sequence[Any]:
        out = to_int(values)
        zeros = out.count(0)
        if zeros:
            invalid.count += zeros
            return [None if value == 0 else value for value in out]
        return out

    return column


def _date_column(invalid: InvalidDates) -> ColumnConvert:
    def column(values: Sequence[Any]) -> Sequence[Any]:
        values = _text_column(values)
        # Only a day past the 28th, a zero day or a month outside 1..12 can be invalid: the full check for those alone.
        suspects = [
            i
            for i, t in enumerate(values)
            if t is not None and (t[8:10] > "28" or t[8:10] == "00" or t[5:7] == "00" or t[5:7] > "12")
        ]
        if not suspects:
            return values
        out = list(values)
        for i in suspects:
            t = out[i]
            if not valid_date(int(t[:4]), int(t[5:7]), int(t[8:10])):
                out[i] = None
                invalid.count += 1
        return out

    return column


def key_parameter(column: Column, value: Any) -> Any:
    """A canonical key value as a query parameter of the snapshot's ``WHERE key > ...`` (session in UTC)."""
    if column.type.startswith("timestamp(") and isinstance(value, int):
        return (EPOCH + value * ONE_US).replace(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def key_columns(schema: TableSchema) -> list[Column]:
    """The key's columns of ``schema`` in key order."""
    by_name = {column.name: column for column in schema.columns}
    return [by_name[name] for name in schema.key]


CHARSET_CODECS: dict[str, str | None] = {
    "utf8mb4": "utf-8",
    "utf8mb3": "utf-8",
    "utf8": "utf-8",
    "latin1": "cp1252",
    "ascii": "ascii",
    "binary": None,
    "ucs2": "utf-16-be",
    "utf16": "utf-16-be",
    "utf16le": "utf-16-le",
    "utf32": "utf-32-be",
    "cp1250": "cp1250",
    "cp1251": "cp1251",
    "cp1256": "cp1256",
    "cp1257": "cp1257",
    "cp850": "cp850",
    "cp852": "cp852",
    "cp866": "cp866",
    "latin2": "iso8859-2",
    "latin5": "iso8859-9",
    "latin7": "iso8859-13",
    "greek": "iso8859-7",
    "hebrew": "iso8859-8",
    "koi8r": "koi8-r",
    "koi8u": "koi8-u",
    "sjis": "shift_jis",
    "cp932": "cp932",
    "ujis": "euc-jp",
    "eucjpms": "euc-jp",
    "euckr": "euc-kr",
    "gbk": "gbk",
    "gb2312": "gb2312",
    "big5": "big5",
    "tis620": "tis-620",
}
"""MySQL character set -> Python codec (``None``: binary, values stay ``bytes``)."""


def codec(charset: str) -> str | None:
    """The Python codec of a MySQL character set. Raises :class:`ValueError` for one Sluice cannot decode."""
    try:
        return CHARSET_CODECS[charset.lower()]
    except KeyError:
        raise ValueError(f"character set {charset} is not supported by Sluice's binlog decoder") from None
