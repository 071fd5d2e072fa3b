"""The SQL of ``sluice sync verify``: one canonical text per value, identical in MariaDB/MySQL and PostgreSQL.

:func:`canonical` turns a column into an SQL expression whose text is the same on both engines for the same
logical value (the logical types of :mod:`sluice.cdc.events`); :func:`row_text` joins a row's columns into one
text; :func:`chunk_hash` sums 60 bits of each row's MD5 into an order-independent checksum of a set of rows,
computed by the database (the idea of pt-table-checksum's and Debezium-free ``data-diff``'s per-chunk checksums;
the sum, not a chained hash, so the two engines need not sort rows the same way).

Canonical text per logical type (sessions run in UTC: :data:`SESSION_SQL`):

=====================  =======================================================================
logical type           canonical text
=====================  =======================================================================
int8..int64, uint64,   decimal digits (``-12``, ``18446744073709551615``); year ``0000`` is ``0``
year
bool                   ``1`` / ``0``
bit(n)                 the bits as an unsigned decimal integer (``bit(64)`` all ones: ``18446744073709551615``)
decimal(p,s)           exactly ``s`` decimals (``12.50``); ``decimal`` without scale: trailing zeros dropped
float64 / float32      ``<mantissa>e<exponent>``, mantissa rounded to 10 / 5 decimals (``-1.0000000000e308``);
                       ``0`` for zero and ``|x| < 1e-300``
string, enum, set      the text (UTF-8); uuid: lower case
bytes                  lower-case hex
date                   ``YYYY-MM-DD``; MySQL: a zero or invalid date (also of datetime and timestamp) is NULL,
                       as the sync writes it
time(n)                ``[-]HH:MM:SS.ffffff`` (hours may exceed 24; ``-838:59:59.999000``)
datetime(n)            ``YYYY-MM-DD HH:MM:SS.ffffff``: the wall-clock value as stored
timestamp(n)           ``YYYY-MM-DD HH:MM:SS.ffffff`` of the instant in UTC
json                   same engine: normalised text (``jsonb::text``, MariaDB ``JSON_NORMALIZE``);
                       across engines: the length of the text without whitespace (key order and
                       number spelling differ between the engines' normal forms: a weak check)
NULL                   ``n``; any other value is ``v`` + its text; columns joined by U+001F
=====================  =======================================================================

Errors: none here (pure functions building SQL text); the database reports an expression it cannot run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sluice.cdc.events import Column

Dialect = Literal["mysql", "postgresql"]

SESSION_SQL: dict[Dialect, tuple[str, ...]] = {
    "mysql": ("SET NAMES utf8mb4", "SET time_zone = '+00:00'"),
    "postgresql": ("SET TIME ZONE 'UTC'", "SET client_encoding = 'UTF8'"),
}
"""Statements run once per verify session: UTC so timestamps print as UTC instants, UTF-8 text."""

FLOAT_DECIMALS = {"float64": 10, "float32": 5}
"""Decimals of the mantissa of a float's canonical ``<mantissa>e<exponent>`` text."""
HASH_HEX_DIGITS = 15
"""Hex digits of each row's MD5 summed into the chunk checksum (60 bits: fits a signed 64-bit integer)."""

_INTEGER = re.compile(r"^u?int(8|16|32|64)$")
_TWO_64 = 2**64


@dataclass(frozen=True, slots=True)
class Engine:
    """One side's SQL flavour: ``dialect`` and, for MySQL, whether the server is MariaDB."""

    dialect: Dialect
    mariadb: bool = False


def quote(engine: Engine, name: str) -> str:
    """An identifier quoted for ``engine`` (backticks for MySQL, double quotes for PostgreSQL)."""
    if engine.dialect == "mysql":
        return "`" + name.replace("`", "``") + "`"
    return '"' + name.replace('"', '""') + '"'


def qualified(engine: Engine, namespace: str, name: str) -> str:
    """``namespace.name`` quoted."""
    return f"{quote(engine, namespace)}.{quote(engine, name)}"


def base_type(logical: str) -> tuple[str, list[int]]:
    """``"decimal(12,2)"`` -> ``("decimal", [12, 2])``; ``"int64"`` -> ``("int64", [])``."""
    match = re.fullmatch(r"\s*([a-z0-9_]+)\s*(?:\(([\d,\s]*)\))?\s*", logical.lower())
    if match is None:
        return logical.lower(), []
    arguments = [int(part) for part in (match.group(2) or "").split(",") if part.strip()]
    return match.group(1), arguments


def canonical(engine: Engine, column: str, logical: str, cross_engine: bool) -> str:
    """An SQL expression giving the canonical text of ``column`` (logical type ``logical``), NULL for NULL.

    ``cross_engine``: the other side is the other engine (changes how JSON is compared, see the module)."""
    col = quote(engine, column)
    kind, arguments = base_type(logical)
    my = engine.dialect == "mysql"
    if _INTEGER.match(kind):
        return f"CAST({col} AS CHAR)" if my else f"{col}::text"
    if kind == "year":  # MariaDB prints YEAR 0 as '0000'; PostgreSQL holds it in a smallint
        return f"CAST(CAST({col} AS UNSIGNED) AS CHAR)" if my else f"{col}::int::text"
    if kind in ("bool", "boolean"):
        return f"CAST(CAST({col} AS SIGNED) AS CHAR)" if my else f"{col}::int::text"
    if kind == "bit":
        if my:
            return f"CAST(CAST({col} AS UNSIGNED) AS CHAR)"
        # bit(64) with the top bit set is a negative bigint: add 2^64 to read it unsigned
        signed = f"{col}::bigint::numeric"
        return f"(CASE WHEN {signed} < 0 THEN {signed} + {_TWO_64} ELSE {signed} END)::text"
    if kind in ("decimal", "numeric"):
        if len(arguments) == 2:
            scale = arguments[1]
            return (
                f"CAST(CAST({col} AS DECIMAL(65,{scale})) AS CHAR)"
                if my
                else _pg_finite(col, "numeric", f"round({col}::numeric, {scale})::text")
            )
        if my:  # a LONGTEXT in MariaDB (docs/cdc/apply.md): the special values an apply was given are NULL too
            text = f"CAST({col} AS CHAR)"
            trimmed = f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {text}))"
            specials = f"{text} IN ('NaN', 'Infinity', '-Infinity')"
            return f"(CASE WHEN {specials} THEN NULL WHEN LOCATE('.', {text}) > 0 THEN {trimmed} ELSE {text} END)"
        return _pg_finite(col, "numeric", f"trim_scale({col}::numeric)::text")
    if kind in FLOAT_DECIMALS:
        text = _scientific(engine, col, FLOAT_DECIMALS[kind])
        return text if my else _pg_finite(col, "float8", text)
    if kind == "bytes":
        return f"LOWER(HEX({col}))" if my else f"encode({col}::bytea, 'hex')"
    if kind == "date":
        return _valid_date(col, f"DATE_FORMAT({col}, '%%Y-%%m-%%d')") if my else _pg_dated(col, f"to_char({col}, 'YYYY-MM-DD')")
    if kind == "time":
        return f"TIME_FORMAT({col}, '%%H:%%i:%%s.%%f')" if my else _pg_time(col)
    if kind in ("datetime", "timestamp"):
        if my:
            return _valid_date(col, f"DATE_FORMAT({col}, '%%Y-%%m-%%d %%H:%%i:%%s.%%f')")
        return _pg_dated(col, f"to_char({col}, 'YYYY-MM-DD HH24:MI:SS.US')")
    if kind == "uuid":
        return f"LOWER(CONVERT({col} USING utf8mb4))" if my else f"lower({col}::text)"
    if kind == "json":
        if cross_engine:
            if my:
                return f"CAST(CHAR_LENGTH(REGEXP_REPLACE(CONVERT({col} USING utf8mb4), '[[:space:]]', '')) AS CHAR)"
            return f"length(regexp_replace({col}::text, '\\s', '', 'g'))::text"
        if my:
            return f"JSON_NORMALIZE({col})" if engine.mariadb else f"CAST(CAST({col} AS JSON) AS CHAR)"
        return f"{col}::jsonb::text"
    # string, enum, set and anything else: the text itself
    return f"CONVERT({col} USING utf8mb4)" if my else f"{col}::text"


def _valid_date(col: str, text: str) -> str:
    """MySQL: ``text`` of a date, DATETIME or TIMESTAMP column, NULL for a zero or invalid date (a zero month or
    day, a day past the month's end): the sync writes those as NULL (:func:`sluice.cdc.mysql_types.valid_date`),
    so verify compares them as NULL too. ``LAST_DAY`` is NULL for a zero month."""
    return (
        f"(CASE WHEN LAST_DAY({col}) IS NULL OR DAYOFMONTH({col}) = 0 OR DAYOFMONTH({col}) > DAYOFMONTH(LAST_DAY({col}))"
        f" THEN NULL ELSE {text} END)"
    )


def _pg_finite(col: str, cast: str, text: str) -> str:
    """PostgreSQL: ``text`` of a number, NULL for ``NaN`` and ``±Infinity``, which the sync writes as NULL (wal2json
    gives them as JSON ``null``; docs/cdc/postgresql.md), so verify compares them as NULL too."""
    specials = ", ".join(f"'{value}'::{cast}" for value in ("NaN", "Infinity", "-Infinity"))
    return f"(CASE WHEN {col}::{cast} IN ({specials}) THEN NULL ELSE {text} END)"


def _pg_dated(col: str, text: str) -> str:
    """PostgreSQL: ``text`` of a date or timestamp, NULL for ``±infinity`` and BC values, which the sync writes as
    NULL (docs/cdc/postgresql.md), so verify compares them as NULL too."""
    return f"(CASE WHEN NOT isfinite({col}) OR extract(year from {col}) < 1 THEN NULL ELSE {text} END)"


def _scientific(engine: Engine, col: str, decimals: int) -> str:
    """``<mantissa with decimals places>e<exponent>`` of a float, ``0`` for zero and for ``|x| < 1e-300``.

    Both engines compute the exponent (``floor(log10|x|)``) and the mantissa (``x / 10^exponent``) in IEEE
    doubles with the C library's ``log10``/``pow``, then round the mantissa as a decimal, so no value can
    overflow (MariaDB's ``DECIMAL(65, s)`` cannot hold ``1e308``)."""
    if engine.dialect == "mysql":
        x = f"CAST({col} AS DOUBLE)"
        exponent = f"FLOOR(LOG10(ABS({x})))"
        mantissa = f"CAST(CAST({x} / POW(10, {exponent}) AS DECIMAL(20,{decimals})) AS CHAR)"
        sci = f"CONCAT({mantissa}, 'e', CAST({exponent} AS SIGNED))"
        return f"(CASE WHEN {x} IS NULL THEN NULL WHEN ABS({x}) < 1e-300 THEN '0' ELSE {sci} END)"
    x = f"{col}::float8"
    exponent = f"floor(log10(abs({x})))"
    mantissa = f"round(({x} / power(10::float8, {exponent}))::numeric, {decimals})::text"
    sci = f"{mantissa} || 'e' || {exponent}::int::text"
    return f"(CASE WHEN {x} IS NULL THEN NULL WHEN abs({x}) < 1e-300 THEN '0' ELSE {sci} END)"


def _pg_time(col: str) -> str:
    """``[-]HH:MM:SS.ffffff`` of an interval (or time) from its microseconds, as MariaDB's ``TIME_FORMAT`` prints it:
    one sign in front (``to_char`` signs each field of a negative interval), at least two hour digits."""
    micros = f"round(abs(extract(epoch from {col}::interval)) * 1000000)::bigint"
    hours = f"({micros} / 3600000000)"
    two = "lpad(mod({m} / {d}, 60)::text, 2, '0')"
    return (
        f"(CASE WHEN {col} IS NULL THEN NULL ELSE"
        f" (CASE WHEN extract(epoch from {col}::interval) < 0 THEN '-' ELSE '' END)"
        f" || (CASE WHEN {hours} < 10 THEN '0' ELSE '' END) || {hours}::text"
        f" || ':' || {two.format(m=micros, d=60000000)} || ':' || {two.format(m=micros, d=1000000)}"
        f" || '.' || lpad(mod({micros}, 1000000)::text, 6, '0') END)"
    )


def row_text(engine: Engine, columns: Sequence[Column], cross_engine: bool) -> str:
    """An SQL expression: the canonical texts of ``columns`` (in order), ``v``-prefixed, NULL as ``n``, joined by U+001F."""
    if engine.dialect == "mysql":
        parts = [f"COALESCE(CONCAT('v', {canonical(engine, c.name, c.type, cross_engine)}), 'n')" for c in columns]
        return f"CONCAT_WS(CHAR(31 USING utf8mb4), {', '.join(parts)})"
    parts = [f"COALESCE('v' || {canonical(engine, c.name, c.type, cross_engine)}, 'n')" for c in columns]
    return f"concat_ws(chr(31), {', '.join(parts)})"


def row_hash(engine: Engine, columns: Sequence[Column], cross_engine: bool) -> str:
    """An SQL expression: the hex MD5 of :func:`row_text`."""
    text = row_text(engine, columns, cross_engine)
    return f"MD5({text})" if engine.dialect == "mysql" else f"md5({text})"


def chunk_hash(engine: Engine, columns: Sequence[Column], cross_engine: bool) -> str:
    """An aggregate SQL expression: the sum of the first 60 bits of every row's MD5, as decimal text ('0' for no row)."""
    digest = row_hash(engine, columns, cross_engine)
    if engine.dialect == "mysql":
        part = f"CAST(CONV(SUBSTRING({digest}, 1, {HASH_HEX_DIGITS}), 16, 10) AS UNSIGNED)"
        return f"CAST(COALESCE(SUM({part}), 0) AS CHAR)"
    part = f"('x' || substr({digest}, 1, {HASH_HEX_DIGITS}))::bit({HASH_HEX_DIGITS * 4})::bigint"
    return f"COALESCE(sum({part}), 0)::text"


def key_expression(engine: Engine, column: Column) -> str:
    """A key column as it is ordered and compared: strings in binary (code point) order on both engines."""
    col = quote(engine, column.name)
    kind, _ = base_type(column.type)
    if kind in ("string", "enum", "set"):
        return f"{col} COLLATE utf8mb4_bin" if engine.dialect == "mysql" else f'{col} COLLATE "C"'
    return col


def key_tuple(engine: Engine, key: Sequence[Column]) -> str:
    """``(k1, k2)`` of :func:`key_expression` for row-value comparisons."""
    return "(" + ", ".join(key_expression(engine, column) for column in key) + ")"


def range_condition(engine: Engine, key: Sequence[Column], lower: bool, upper: bool) -> str:
    """``WHERE`` text for ``lower < key <= upper`` (each bound optional; placeholders ``%s`` in key order)."""
    marks = "(" + ", ".join("%s" for _ in key) + ")"
    conditions = []
    if lower:
        conditions.append(f"{key_tuple(engine, key)} > {marks}")
    if upper:
        conditions.append(f"{key_tuple(engine, key)} <= {marks}")
    return " AND ".join(conditions) or "1=1"


def order_by(engine: Engine, key: Sequence[Column]) -> str:
    """``k1, k2`` in :func:`key_expression` form."""
    return ", ".join(key_expression(engine, column) for column in key)
