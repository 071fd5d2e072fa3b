"""MySQL / MariaDB source over PyMySQL: an unbuffered cursor read in chunks, typed from the result metadata.

PyMySQL is asked for raw text (no per-value conversion to Python objects); each chunk is turned into
Arrow strings and cast column by column in C++, from the type the server reports for the column:

| MySQL                                | Arrow                                        |
|--------------------------------------|----------------------------------------------|
| TINYINT(1) / BOOLEAN, BIT(1)         | bool                                         |
| TINYINT .. BIGINT                    | int8 .. int64 (unsigned: next wider; BIGINT UNSIGNED: uint64) |
| FLOAT, DOUBLE                        | float32, float64                             |
| DECIMAL(p, s)                        | decimal128(p, s) (decimal256 above 38 digits) |
| DATE, DATETIME                       | date32, timestamp[us] (zero dates become NULL) |
| TIMESTAMP                            | timestamp[us, tz=UTC] (the session runs in UTC) |
| TIME                                 | duration[us] (TIME spans -838..838 hours)    |
| YEAR                                 | int16                                        |
| CHAR, VARCHAR, TEXT, ENUM, SET, JSON | string                                       |
| BINARY, VARBINARY, BLOB, GEOMETRY    | binary                                       |
| BIT(n)                               | int64                                        |
| NULL (a bare ``SELECT NULL``)        | null                                         |
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.compute as pc
import pymysql
import pymysql.converters
import pymysql.cursors
from pymysql.constants import FIELD_TYPE

from sluice.connectors.batching import stream, transpose
from sluice.connectors.sql import SqlSource
from sluice.errors import TerminalError

UNSIGNED_FLAG = 32
BINARY_CHARSET = 63
TRANSIENT_CODES = frozenset({1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2055})  # too many connections, shutdown, lock, gone
TERMINAL_CONNECT_CODES = frozenset({1044, 1045, 1049, 1698})  # access denied, unknown database
# Send values as Python would, but read every value back as text: no per-value Python conversion.
ENCODERS: dict[Any, Any] = {key: value for key, value in pymysql.converters.conversions.items() if not isinstance(key, int)}

Convert = Callable[[list[Any]], pa.Array]
INTEGERS = {
    FIELD_TYPE.TINY: (pa.int8(), pa.int16()),
    FIELD_TYPE.SHORT: (pa.int16(), pa.int32()),
    FIELD_TYPE.INT24: (pa.int32(), pa.int32()),
    FIELD_TYPE.LONG: (pa.int32(), pa.int64()),
    FIELD_TYPE.LONGLONG: (pa.int64(), pa.uint64()),
}
TEXT_TYPES = frozenset(
    {
        FIELD_TYPE.VARCHAR,
        FIELD_TYPE.VAR_STRING,
        FIELD_TYPE.STRING,
        FIELD_TYPE.ENUM,
        FIELD_TYPE.SET,
        FIELD_TYPE.TINY_BLOB,
        FIELD_TYPE.MEDIUM_BLOB,
        FIELD_TYPE.LONG_BLOB,
        FIELD_TYPE.BLOB,
    }
)


def connect_arguments(url: str) -> dict[str, Any]:
    """PyMySQL keyword arguments for a ``mysql://user:password@host:port/database?charset=...`` URL.

    >>> connect_arguments("mysql://app:s%40cret@db:3307/shop")["password"]
    's@cret'
    """
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    arguments: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "database": unquote(parts.path.lstrip("/")) or None,
        "charset": query.get("charset", "utf8mb4"),
        "connect_timeout": float(query.get("connect_timeout", 10)),
    }
    if "unix_socket" in query:
        arguments["unix_socket"] = query["unix_socket"]
    return arguments


def _text(values: list[Any]) -> pa.Array:
    return pa.array(values, pa.string())


def _cast(target: pa.DataType) -> Convert:
    return lambda values: _text(values).cast(target)


def _zero_dates_as_null(target: pa.DataType) -> Convert:
    def convert(values: list[Any]) -> pa.Array:
        text = _text(values)
        zero = pc.fill_null(pc.starts_with(text, "0000-00-00"), False)
        values_or_null = pc.if_else(zero, pa.scalar(None, pa.string()), text)
        if pa.types.is_timestamp(target) and target.tz is not None:  # the text is UTC (the session time zone)
            return values_or_null.cast(pa.timestamp(target.unit)).cast(target)
        return values_or_null.cast(target)

    return convert


def _boolean(values: list[Any]) -> pa.Array:
    return pc.not_equal(_text(values).cast(pa.int64()), 0)


def _bits(values: list[Any]) -> list[int | None]:
    return [None if value is None else int.from_bytes(value, "big") for value in values]


def _time_us(value: str) -> int:
    negative = value.startswith("-")
    hours, minutes, seconds = value.lstrip("-").split(":")
    whole, _, fraction = seconds.partition(".")
    total = ((int(hours) * 60 + int(minutes)) * 60 + int(whole)) * 1_000_000 + int(fraction.ljust(6, "0")[:6] or 0)
    return -total if negative else total


def _as_text(values: list[Any]) -> pa.Array:
    return pa.array([value.decode("utf-8", "replace") if isinstance(value, bytes) else value for value in values], pa.string())


def column_type(field: Any) -> tuple[pa.DataType, Convert]:
    """The Arrow type of a result column and how to build it from the column's raw values."""
    code, length, flags, scale, binary = (
        field.type_code,
        field.length,
        field.flags,
        field.scale,
        field.charsetnr == BINARY_CHARSET,
    )
    unsigned = bool(flags & UNSIGNED_FLAG)
    if code == FIELD_TYPE.TINY and length == 1:
        return pa.bool_(), _boolean
    if code in INTEGERS:
        type_ = INTEGERS[code][1 if unsigned else 0]
        return type_, _cast(type_)
    if code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        precision = max(1, length - (1 if scale > 0 else 0) - (0 if unsigned else 1), scale)
        type_ = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(min(precision, 76), scale)
        return type_, _cast(type_)
    simple: dict[int, pa.DataType] = {
        FIELD_TYPE.FLOAT: pa.float32(),
        FIELD_TYPE.DOUBLE: pa.float64(),
        FIELD_TYPE.YEAR: pa.int16(),
    }
    if code in simple:
        return simple[code], _cast(simple[code])
    dates: dict[int, pa.DataType] = {
        FIELD_TYPE.DATE: pa.date32(),
        FIELD_TYPE.NEWDATE: pa.date32(),
        FIELD_TYPE.DATETIME: pa.timestamp("us"),
        FIELD_TYPE.TIMESTAMP: pa.timestamp("us", tz="UTC"),
    }
    if code in dates:
        return dates[code], _zero_dates_as_null(dates[code])
    if code == FIELD_TYPE.TIME:
        return pa.duration("us"), lambda values: pa.array([None if v is None else _time_us(v) for v in values], pa.duration("us"))
    if code == FIELD_TYPE.BIT:
        if length == 1:
            return pa.bool_(), lambda values: pa.array([None if v is None else bool(v) for v in _bits(values)], pa.bool_())
        return pa.int64(), lambda values: pa.array(_bits(values), pa.int64())
    if code == FIELD_TYPE.NULL:
        return pa.null(), lambda values: pa.nulls(len(values))
    if code == FIELD_TYPE.GEOMETRY or (code in TEXT_TYPES and binary):
        return pa.binary(), lambda values: pa.array(values, pa.binary())
    return pa.string(), _as_text  # text types, JSON, and anything newer than this table


class MysqlSource(SqlSource):
    """``{type: sql, connection: shop, table: orders}`` over a ``mysql://`` or ``mariadb://`` connection."""

    scheme = "mysql"
    identifier_quote = "`"

    def read(self) -> pa.RecordBatchReader:
        query, size = self.query, self.batch_rows
        try:
            con = pymysql.connect(
                **connect_arguments(self.connection.url),
                conv=ENCODERS,
                cursorclass=pymysql.cursors.SSCursor,
                init_command="SET time_zone = '+00:00'",
            )
        except pymysql.MySQLError as exc:
            if _code(exc) in TERMINAL_CONNECT_CODES:
                message = f"mysql {self.describe()}: cannot connect: {error_message(exc)}; fix the connection URL"
                raise TerminalError(message) from exc
            raise self.unreachable(error_message(exc)) from exc
        cursor = con.cursor()
        try:
            cursor.execute(query)
            first = cursor.fetchmany(size)
            result = getattr(cursor, "_result", None)  # PyMySQL keeps the column metadata on the result
            fields = result.fields if result is not None else None
        except pymysql.MySQLError as exc:
            _close(con, cursor)
            raise self.error(exc) from exc
        if not fields:
            _close(con, cursor)
            raise TerminalError(f"mysql {self.describe()}: the statement returns no rows; use a SELECT")
        plans = [column_type(field) for field in fields]
        schema = pa.schema([(field.name, type_) for field, (type_, _) in zip(fields, plans, strict=True)])

        def batches() -> Iterator[pa.RecordBatch]:
            rows = first
            while rows:
                yield self.batch(schema, plans, rows)
                rows = cursor.fetchmany(size)

        return stream(schema, batches(), on_error=self.translate, on_close=lambda: _close(con, cursor))

    def batch(self, schema: pa.Schema, plans: list[tuple[pa.DataType, Convert]], rows: Any) -> pa.RecordBatch:
        arrays = []
        for field, (_, convert), values in zip(schema, plans, transpose(rows, len(schema)), strict=True):
            try:
                arrays.append(convert(values))
            except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
                raise TerminalError(f"mysql {self.describe()}: cannot read column {field.name!r} as {field.type}: {exc}") from exc
        return pa.RecordBatch.from_arrays(arrays, schema=schema)

    def error(self, exc: pymysql.MySQLError) -> Exception:
        if _code(exc) in TRANSIENT_CODES:
            return self.busy(error_message(exc))
        return self.rejected(error_message(exc))

    def translate(self, exc: Exception) -> Exception | None:
        return self.error(exc) if isinstance(exc, pymysql.MySQLError) else None


def _code(exc: BaseException) -> int | None:
    code = exc.args[0] if exc.args else None
    return code if isinstance(code, int) else None


def error_message(exc: BaseException) -> str:
    """A PyMySQL error in words: ``Table 'shop.x' doesn't exist (MySQL error 1146)`` rather than its tuple."""
    code = _code(exc)
    return f"{exc.args[1]} (MySQL error {code})" if code is not None and len(exc.args) > 1 else str(exc)


def _close(con: pymysql.connections.Connection[Any], cursor: pymysql.cursors.SSCursor) -> None:
    """Close without reading the rest of an unread result (closing the unbuffered cursor would drain it)."""
    result = getattr(cursor, "_result", None)
    if result is not None:
        result.unbuffered_active = False  # else its __del__ tries to drain the closed connection
    with contextlib.suppress(pymysql.MySQLError):
        con.close()
