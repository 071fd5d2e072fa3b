"""PostgreSQL column types -> change-event logical types and canonical values (documented in ``docs/cdc/postgresql.md``).

Capture reads every value as PostgreSQL's *text output* (``col::text`` in a snapshot, wal2json's value in
the stream, both from a session with ``TimeZone=UTC`` and ``DateStyle=ISO``) and turns it into the canonical
form of :mod:`sluice.cdc.events` with one converter per column, so a row reads the same in snapshot and in
stream. wal2json writes numbers as bare JSON numbers, kept as their exact text
(:class:`sluice.cdc.pg_wal2json.W2JColumn`), and booleans as JSON ``true``/``false``.

=================================  =====================  ==========================================
PostgreSQL type                     logical type           value
=================================  =====================  ==========================================
smallint / integer / bigint         int16 / int32 / int64  ``int``
numeric(p,s) / numeric(p)           decimal(p,s)           ``str``, exact
numeric                             decimal                ``str``, exact
real / double precision             float32 / float64      ``float``
text, varchar(n), char(n), name     string                 ``str`` (char(n) keeps its padding)
bytea                               bytes                  ``bytes``
boolean                             bool                   ``bool``
bit(n)                              bit(n)                 ``int`` (bits as an unsigned integer)
date                                date                   ``str`` ``YYYY-MM-DD``; ``±infinity`` -> ``None``
time(n)                             time(n)                ``str`` ``HH:MM:SS[.ffffff]``
timestamp(n)                        datetime(n)            ``str`` ``YYYY-MM-DD HH:MM:SS[.ffffff]``
timestamptz(n)                      timestamp(n)           ``int`` µs since the epoch, UTC
uuid                                uuid                   ``str``
json / jsonb                        json                   ``str``, the server's JSON text
enum                                enum (labels)          ``str``, the label
arrays, interval, timetz, money,    string                 ``str``, PostgreSQL's text form
ranges, geometry, others
=================================  =====================  ==========================================

Infinite dates and timestamps, and BC dates, have no canonical form: they become ``None`` and are counted
as invalid dates. wal2json 2.5 writes ``NaN`` and infinite numbers as JSON ``null``, so the snapshot turns
them into ``None`` too (counted the same way): snapshot and stream agree. Domains map as their base type.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sluice.cdc.events import Column, constant_default

Converter = Callable[[Any], Any]
"""Text form (``str``; ``bool`` for booleans in the stream) -> canonical value; ``None`` stays ``None``."""

_INTS = {"smallint": "int16", "integer": "int32", "bigint": "int64"}
_FIXED = {"int16", "int32", "int64", "float32", "float64", "bool", "date", "uuid"}
_FIXED_PREFIXES = ("time(", "datetime(", "timestamp(")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INF = float("inf")
_TYPMOD = re.compile(r"\((\d+)(?:,(\d+))?\)")


def logical_type(source_type: str, typtype: str = "b") -> tuple[str, int | None]:
    """The logical type and declared length of a column whose ``format_type()`` is ``source_type``.

    ``typtype`` is ``pg_type.typtype`` (``e`` for an enum). Domains must be passed as their base type.
    Returns e.g. ``("decimal(12,2)", None)``, ``("string", 64)``; an unknown type is ``("string", None)``.
    """
    text = source_type.strip()
    if typtype == "e":
        return "enum", None
    if text.endswith("]"):
        return "string", None
    match = _TYPMOD.search(text)
    base = _TYPMOD.sub("", text)
    first = int(match.group(1)) if match else None
    second = int(match.group(2)) if match and match.group(2) is not None else None
    if base in _INTS:
        return _INTS[base], None
    if base == "numeric":
        if first is None:
            return "decimal", None
        return f"decimal({first},{second or 0})", None
    if base == "real":
        return "float32", None
    if base == "double precision":
        return "float64", None
    if base == "boolean":
        return "bool", None
    if base == "bytea":
        return "bytes", None
    if base in ("character varying", "character", "text", "name", '"char"', "citext"):
        return "string", first
    if base == "bit":
        return f"bit({first or 1})", None
    if base == "date":
        return "date", None
    precision = 6 if first is None else first
    if base in ("time without time zone", "time"):
        return f"time({precision})", None
    if base in ("timestamp without time zone", "timestamp"):
        return f"datetime({precision})", None
    if base in ("timestamp with time zone", "timestamptz"):
        return f"timestamp({precision})", None
    if base == "uuid":
        return "uuid", None
    if base in ("json", "jsonb"):
        return "json", None
    return "string", None


def fixed_size(logical: str) -> bool:
    """True when values of ``logical`` are never TOASTed, so wal2json always sends them in an update."""
    return logical in _FIXED or logical.startswith(_FIXED_PREFIXES)


def _text(value: Any) -> Any:
    return value


def _int(value: Any) -> Any:
    return None if value is None else int(value)


def _float(value: Any) -> Any:
    if value is None:
        return None
    number = float(value)
    return None if number != number or number in (_INF, -_INF) else number


def _decimal(value: Any) -> Any:
    if value is None or isinstance(value, int):  # wal2json: an integral numeric decodes as int
        return None if value is None else str(value)
    return None if value == "NaN" or value.endswith("Infinity") else value


def _bool(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    return value in ("t", "true")


def _bytes(value: Any) -> Any:
    if value is None:
        return None
    # snapshot: bytea_output=hex gives \x0a0b; wal2json gives the hex digits alone
    return bytes.fromhex(value[2:] if value.startswith("\\x") else value)


def _bits(value: Any) -> Any:
    return None if value is None else int(value, 2) if value else 0


def _date(value: Any) -> Any:
    if value is None or value.endswith(("infinity", " BC")):
        return None
    return value


def timestamp_us(value: Any) -> Any:
    """``2024-01-02 03:04:05.123+00`` (any offset) -> µs since the epoch; ``±infinity`` -> None."""
    if value is None or value.endswith(("infinity", " BC")):
        return None
    moment = datetime.fromisoformat(value)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_datetime = _date


def converter(logical: str) -> Converter:
    """The function turning a column's text form into its canonical value, by logical type."""
    if logical.startswith("int"):
        return _int
    if logical.startswith("float"):
        return _float
    if logical.startswith("decimal"):
        return _decimal
    if logical == "bool":
        return _bool
    if logical == "bytes":
        return _bytes
    if logical.startswith("bit("):
        return _bits
    if logical == "date":
        return _date
    if logical.startswith("timestamp("):
        return timestamp_us
    if logical.startswith("datetime("):
        return _datetime
    return _text


def invalid_date(logical: str, text: Any) -> bool:
    """True when ``text`` had no canonical form (infinite or BC date/time, NaN or infinite number): it became ``None``."""
    return text is not None and converter(logical)(text) is None


def column(
    name: str,
    source_type: str,
    base_type: str,
    typtype: str,
    nullable: bool,
    labels: list[str] | None,
    default: str | None = None,
) -> Column:
    """The :class:`~sluice.cdc.events.Column` of a catalog column; ``base_type``: a domain's base type, else ``source_type``;
    ``default``: the default expression as ``pg_get_expr`` prints it (kept when it is a constant)."""
    logical, length = logical_type(base_type, typtype)
    return Column(
        name=name,
        type=logical,
        nullable=nullable,
        source_type=source_type,
        labels=labels if typtype == "e" else None,
        length=length,
        default=constant_default(logical, default),
    )
