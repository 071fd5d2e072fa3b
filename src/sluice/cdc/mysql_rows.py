"""Fast decoding of MySQL/MariaDB binlog row images: one Python function generated per TABLE_MAP event.

A ``TABLE_MAP_EVENT`` gives, for each column, its binlog type and metadata (length, precision, fractional
seconds...) and, with ``binlog_row_metadata=FULL``, its name, signedness, character set and ENUM/SET labels
(:class:`TableMap`, :func:`parse_table_map`). From it :func:`compile_rows` writes the source of a function
that walks a rows event's row images, reading each run of fixed-size columns with one precompiled
:class:`struct.Struct` when the row has no NULL, and builds each row as a dict literal, then compiles it
once: every value is produced in the canonical form of :mod:`sluice.cdc.mysql_types`.

The binary formats (packed integers, DECIMAL, DATETIME2/TIME2/TIMESTAMP2, optional metadata TLVs) are
those of MySQL's ``log_event.cc`` and ``my_time.cc``, as read in python-mysql-replication
(Apache-2.0, ``pymysqlreplication/row_event.py`` and ``column.py``), whose decoder this replaces: it builds
every value through a generic per-column dispatch, about four times slower (``bench/cdc_decode.py``).
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sluice.cdc.events import Column
from sluice.cdc.mysql_types import DAYS_IN_MONTH, INTEGER_TYPES, InvalidDates, codec

# Binlog column types (MySQL's enum_field_types).
DECIMAL, TINY, SHORT, LONG, FLOAT, DOUBLE, NULL, TIMESTAMP, LONGLONG, INT24 = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
DATE, TIME, DATETIME, YEAR, NEWDATE, VARCHAR, BIT, TIMESTAMP2, DATETIME2, TIME2 = 10, 11, 12, 13, 14, 15, 16, 17, 18, 19
JSON, NEWDECIMAL, ENUM, SET, BLOB, VAR_STRING, STRING, GEOMETRY = 245, 246, 247, 248, 252, 253, 254, 255
NUMERIC_TYPES = frozenset({TINY, SHORT, INT24, LONG, LONGLONG, NEWDECIMAL, FLOAT, DOUBLE, YEAR})
CHARACTER_TYPES = frozenset({STRING, VAR_STRING, VARCHAR, BLOB, GEOMETRY})
BINARY_CHARSET = 63
DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)
FRACTION_BYTES = (0, 1, 1, 2, 2, 3, 3)

RowsDecoder = Callable[[bytes, int, int], list[Any]]
"""``decode(buffer, start, end)``: the rows (dicts; for updates ``(before, after)`` pairs) of one rows event body."""


class DecodeError(ValueError):
    """A binlog event Sluice cannot decode (unsupported type or row image)."""


@dataclass(slots=True)
class TableMap:
    """A ``TABLE_MAP_EVENT``: table id, names, and per column its type, metadata, nullability and optional metadata."""

    table_id: int
    database: str
    table: str
    types: list[int]
    meta: list[int | tuple[int, int]]
    """Per column: length/size byte, (precision, scale) for DECIMAL, (real type, length) for CHAR/BINARY,
    (bits, bytes) for BIT, size for ENUM/SET."""
    names: list[str] = field(default_factory=list)
    unsigned: list[bool] = field(default_factory=list)
    charsets: list[int | None] = field(default_factory=list)
    """Collation id of each character or ENUM/SET column (``None`` for the others)."""
    labels: list[list[str] | None] = field(default_factory=list)
    primary_key: list[int] = field(default_factory=list)
    nullable: list[bool] = field(default_factory=list)
    """Per column: whether it takes NULL (the event's nullability bitmap)."""

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"


def packed_int(buf: bytes, p: int) -> tuple[int, int]:
    """A length-encoded integer at ``buf[p]`` and the offset after it."""
    first = buf[p]
    if first < 251:
        return first, p + 1
    if first == 252:
        return int.from_bytes(buf[p + 1 : p + 3], "little"), p + 3
    if first == 253:
        return int.from_bytes(buf[p + 1 : p + 4], "little"), p + 4
    return int.from_bytes(buf[p + 1 : p + 9], "little"), p + 9


def parse_table_map(body: bytes) -> TableMap:
    """A TABLE_MAP event's body (after the 19-byte header, checksum removed)."""
    table_id = int.from_bytes(body[0:6], "little")
    p = 8
    length = body[p]
    database = body[p + 1 : p + 1 + length].decode()
    p += length + 2
    length = body[p]
    table = body[p + 1 : p + 1 + length].decode()
    p += length + 2
    count, p = packed_int(body, p)
    types = list(body[p : p + count])
    p += count
    meta_length, p = packed_int(body, p)
    meta, end = _column_meta(types, body, p), p + meta_length
    width = (count + 7) // 8  # nullability bitmap (NULL bits in the row images say it per row)
    bits = int.from_bytes(body[end : end + width], "little")
    p = end + width
    tmap = TableMap(table_id, database, table, types, meta, nullable=[bool(bits >> i & 1) for i in range(count)])
    _optional_meta(tmap, body, p)
    return tmap


def _column_meta(types: list[int], body: bytes, p: int) -> list[int | tuple[int, int]]:
    meta: list[int | tuple[int, int]] = []
    for i, kind in enumerate(types):
        if kind == VARCHAR:
            meta.append(body[p] | body[p + 1] << 8)
            p += 2
        elif kind in (FLOAT, DOUBLE, TIMESTAMP2, DATETIME2, TIME2, BLOB, GEOMETRY, JSON):
            meta.append(body[p])
            p += 1
        elif kind in (STRING, VAR_STRING):
            byte0, byte1 = body[p], body[p + 1]
            p += 2
            if byte0 in (ENUM, SET):
                types[i] = byte0
                meta.append(byte1)
            else:
                max_length = (((byte0 << 4) & 0x300) ^ 0x300) + byte1  # lengths > 255 borrow two bits of the type
                meta.append((byte0 | 0x30, max_length))
        elif kind in (NEWDECIMAL, BIT):
            meta.append((body[p], body[p + 1]))
            p += 2
        else:
            meta.append(0)
    return meta


def _optional_meta(tmap: TableMap, body: bytes, p: int) -> None:
    count = len(tmap.types)
    numeric = [i for i, kind in enumerate(tmap.types) if kind in NUMERIC_TYPES]
    character = [i for i, kind in enumerate(tmap.types) if kind in CHARACTER_TYPES]
    enum_set = [i for i, kind in enumerate(tmap.types) if kind in (ENUM, SET)]
    tmap.unsigned = [False] * count
    tmap.charsets = [None] * count
    tmap.labels = [None] * count
    while p < len(body):
        kind = body[p]
        length, p = packed_int(body, p + 1)
        value, p = body[p : p + length], p + length
        if kind == 1:  # SIGNEDNESS: one bit per numeric column, most significant first, set when unsigned
            for n, i in enumerate(numeric):
                tmap.unsigned[i] = bool(value[n // 8] & (0x80 >> (n % 8)))
        elif kind in (2, 10):  # DEFAULT_CHARSET / ENUM_AND_SET_DEFAULT_CHARSET: default, then (index, charset) pairs
            columns = character if kind == 2 else enum_set
            ints = _ints(value)
            for i in columns:
                tmap.charsets[i] = ints[0]
            for n in range(1, len(ints) - 1, 2):
                tmap.charsets[columns[ints[n]]] = ints[n + 1]
        elif kind in (3, 11):  # COLUMN_CHARSET / ENUM_AND_SET_COLUMN_CHARSET: one per column
            columns = character if kind == 3 else enum_set
            for i, charset in zip(columns, _ints(value), strict=False):
                tmap.charsets[i] = charset
        elif kind == 4:  # COLUMN_NAME
            tmap.names = [name.decode() for name in _strings(value)]
        elif kind in (5, 6):  # SET_STR_VALUE / ENUM_STR_VALUE
            columns = [i for i in enum_set if tmap.types[i] == (SET if kind == 5 else ENUM)]
            q = 0
            for i in columns:
                labels, q = _label_list(value, q)
                tmap.labels[i] = labels
        elif kind == 8:  # SIMPLE_PRIMARY_KEY
            tmap.primary_key = _ints(value)
        elif kind == 9:  # PRIMARY_KEY_WITH_PREFIX: (index, prefix) pairs
            tmap.primary_key = _ints(value)[0::2]


def _ints(value: bytes) -> list[int]:
    out, p = [], 0
    while p < len(value):
        number, p = packed_int(value, p)
        out.append(number)
    return out


def _strings(value: bytes) -> list[bytes]:
    out, p = [], 0
    while p < len(value):
        length, p = packed_int(value, p)
        out.append(value[p : p + length])
        p += length
    return out


def _label_list(value: bytes, p: int) -> tuple[list[str], int]:
    count, p = packed_int(value, p)
    labels = []
    for _ in range(count):
        length, p = packed_int(value, p)
        labels.append(value[p : p + length].decode("utf-8", "replace"))
        p += length
    return labels, p


_INT_NAMES = {TINY: "tinyint", SHORT: "smallint", INT24: "mediumint", LONG: "int", LONGLONG: "bigint"}
_BLOB_SIZES = {1: "tiny", 2: "", 3: "medium", 4: "long"}
_FSP_TYPES = {
    DATETIME2: "datetime",
    TIMESTAMP2: "timestamp",
    TIME2: "time",
    DATETIME: "datetime",
    TIMESTAMP: "timestamp",
    TIME: "time",
}


def map_columns(tmap: TableMap, charsets: dict[int, str], maxlen: dict[str, int]) -> list[Column]:
    """The table's columns as ``tmap`` gives them (``binlog_row_metadata=FULL``): the schema the table had when its
    rows were written, which the catalog may no longer show (a column renamed since).

    Exact for what the event carries: names, integer width and signedness, DECIMAL precision and scale, fractional
    seconds, BIT width, ENUM/SET labels, CHAR/VARCHAR lengths (in bytes: characters are the bytes over the largest
    character of the column's character set, ``charsets``: collation id -> character set, ``maxlen``: character set
    -> bytes), TEXT/BLOB sizes, nullability. Not carried: defaults, and what MariaDB stores as another type (JSON
    is LONGTEXT, UUID and INET6 are BINARY(16), INET4 BINARY(4), spatial types are GEOMETRY): those read as
    ``string`` / ``bytes``. Raises :class:`DecodeError` for a binlog type Sluice does not read."""
    names = tmap.names or [f"col{i}" for i in range(len(tmap.types))]
    return [_map_column(tmap, i, name, charsets, maxlen) for i, name in enumerate(names)]


def _map_column(tmap: TableMap, i: int, name: str, charsets: dict[int, str], maxlen: dict[str, int]) -> Column:
    kind, meta = tmap.types[i], tmap.meta[i]
    nullable = tmap.nullable[i] if tmap.nullable else True
    unsigned = bool(tmap.unsigned and tmap.unsigned[i])
    charset = tmap.charsets[i] if tmap.charsets else None
    binary = charset == BINARY_CHARSET
    width = maxlen.get(charsets.get(charset, ""), 1) if charset is not None else 1
    length: int | None = None
    labels: list[str] | None = None
    if kind in _INT_NAMES:
        source = _INT_NAMES[kind] + (" unsigned" if unsigned else "")
        logical = INTEGER_TYPES[_INT_NAMES[kind]][1 if unsigned else 0]
    elif kind in (FLOAT, DOUBLE):
        logical, source = ("float32", "float") if kind == FLOAT else ("float64", "double")
    elif kind == NEWDECIMAL and isinstance(meta, tuple):
        logical = source = f"decimal({meta[0]},{meta[1]})"
    elif kind == YEAR:
        logical, source = "year", "year(4)"
    elif kind in (DATE, NEWDATE):
        logical = source = "date"
    elif kind in _FSP_TYPES:
        fsp = meta if isinstance(meta, int) and kind in (DATETIME2, TIMESTAMP2, TIME2) else 0
        logical = f"{_FSP_TYPES[kind]}({fsp})"
        source = f"{_FSP_TYPES[kind]}({fsp})" if fsp else _FSP_TYPES[kind]
    elif kind == BIT and isinstance(meta, tuple):
        bits = meta[1] * 8 + meta[0]
        logical, source = "bool" if bits == 1 else f"bit({bits})", f"bit({bits})"
    elif kind in (ENUM, SET):
        labels = tmap.labels[i] if tmap.labels else None
        logical = "enum" if kind == ENUM else "set"
        source = logical + "(" + ",".join("'" + label.replace("'", "''") + "'" for label in labels or []) + ")"
    elif kind == VARCHAR and isinstance(meta, int):
        length = meta if binary else meta // width
        logical, source = ("bytes", f"varbinary({length})") if binary else ("string", f"varchar({length})")
    elif kind in (STRING, VAR_STRING) and isinstance(meta, tuple):
        length = meta[1] if binary else meta[1] // width
        logical, source = ("bytes", f"binary({length})") if binary else ("string", f"char({length})")
    elif kind == BLOB and isinstance(meta, int):
        size = _BLOB_SIZES.get(meta, "long")
        logical, source = ("bytes", f"{size}blob") if binary or charset is None else ("string", f"{size}text")
    elif kind == GEOMETRY:
        logical, source = "bytes", "geometry"
    elif kind == JSON:
        logical = source = "json"
    else:
        raise DecodeError(f"{tmap.qualified}: column {name} has binlog type {kind} that Sluice cannot read")
    return Column(name=name, type=logical, nullable=nullable, source_type=source, labels=labels, length=length)


# --- value converters (closed over by the generated code) ------------------------------------------------


def decimal_converter(precision: int, scale: int) -> tuple[int, Callable[[bytes], str]]:
    """``(size in bytes, bytes -> text)`` of a binlog DECIMAL(precision, scale) (MySQL's ``decimal2bin`` layout)."""
    integer = precision - scale
    fields: list[tuple[int, int]] = []  # (bytes, digits), most significant first
    if integer % 9:
        fields.append((DIG2BYTES[integer % 9], integer % 9))
    fields += [(4, 9)] * (integer // 9)
    int_fields = len(fields)
    fields += [(4, 9)] * (scale // 9)
    if scale % 9:
        fields.append((DIG2BYTES[scale % 9], scale % 9))
    size = sum(width for width, _ in fields)
    top = 1 << (size * 8 - 1)
    every = (1 << (size * 8)) - 1
    shift = size * 8
    int_terms: list[tuple[str, int]] = []
    frac_terms: list[tuple[str, int]] = []
    for n, (width, digits) in enumerate(fields):
        shift -= width * 8
        term = f"((m >> {shift}) & {(1 << (width * 8)) - 1})"
        (int_terms if n < int_fields else frac_terms).append((term, digits))
    int_expr = _digits_expr(int_terms) or "0"
    frac_expr = _digits_expr(frac_terms)
    tail = f' + "." + f"{{{frac_expr}:0{scale}d}}"' if scale else ""
    source = (
        "def convert(raw):\n"
        "    n = from_bytes(raw, 'big')\n"
        f"    if n & {top}:\n"
        f"        m = n ^ {top}\n"
        f"        return str({int_expr}){tail}\n"
        f"    m = n ^ {top ^ every}\n"
        f'    return "-" + str({int_expr}){tail}\n'
    )
    namespace: dict[str, Any] = {"from_bytes": int.from_bytes}
    exec(compile(source, f"<decimal({precision},{scale})>", "exec"), namespace)  # noqa: S102 - generated from integers only
    return size, namespace["convert"]


def _digits_expr(terms: list[tuple[str, int]]) -> str:
    expr = ""
    for term, digits in terms:
        expr = f"({expr}) * {10**digits} + {term}" if expr else term
    return expr


def _fraction_us(fsp: int) -> tuple[int, int]:
    """(bytes, multiplier to microseconds) of the fraction of a TIME2/DATETIME2/TIMESTAMP2 with ``fsp`` digits."""
    width = FRACTION_BYTES[fsp]
    return width, (10000, 100, 1)[width - 1] if width else 0


def datetime2_converter(fsp: int, invalid: InvalidDates) -> tuple[int, Callable[[bytes], str | None]]:
    """DATETIME2: 5 bytes (sign, year*13+month, day, hour, minute, second) then the fraction, big-endian.

    The date and time-of-day texts are cached (a binlog holds few distinct days), so a value costs two dict
    look-ups and a concatenation."""
    width, scale = _fraction_us(fsp)
    bits = width * 8
    fraction_mask = (1 << bits) - 1
    dates: dict[int, str | None] = {}
    times: dict[int, str] = {}

    def convert(raw: bytes) -> str | None:
        v = int.from_bytes(raw, "big")
        fraction = v & fraction_mask
        v = (v >> bits) - 0x8000000000
        ymd = v >> 17
        head = dates.get(ymd, "")
        if head == "":
            head = dates[ymd] = _date_text(ymd >> 5, ymd & 31, " ")
            if len(dates) > 100_000:
                dates.clear()
        if head is None:
            invalid.count += 1
            return None
        hms = v & 0x1FFFF
        clock = times.get(hms)
        if clock is None:
            clock = times[hms] = f"{hms >> 12:02d}:{(hms >> 6) & 63:02d}:{hms & 63:02d}"
        if fsp:
            return head + clock + "." + f"{fraction * scale:06d}"[:fsp]
        return head + clock

    return 5 + width, convert


def _date_text(year_month: int, day: int, tail: str) -> str | None:
    year, month = divmod(year_month, 13)
    if not (month and day and day <= DAYS_IN_MONTH[month]) or (month == 2 and day == 29 and not _leap(year)):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}{tail}"


def timestamp2_converter(fsp: int, invalid: InvalidDates) -> tuple[int, Callable[[bytes], int | None]]:
    """TIMESTAMP2: 4 bytes of seconds since the epoch (UTC) then the fraction, big-endian. 0 is the zero TIMESTAMP."""
    width, scale = _fraction_us(fsp)

    def convert(raw: bytes) -> int | None:
        seconds = int.from_bytes(raw[:4], "big")
        fraction = int.from_bytes(raw[4:], "big") * scale if width else 0
        if not seconds and not fraction:
            invalid.count += 1
            return None
        return seconds * 1_000_000 + fraction

    return 4 + width, convert


def time2_converter(fsp: int) -> tuple[int, Callable[[bytes], str]]:
    """TIME2: 3 bytes of sign/hours/minutes/seconds then the fraction (MySQL's ``my_time_packed_from_binary``)."""
    width = FRACTION_BYTES[fsp]

    def convert(raw: bytes) -> str:
        if width == 3:
            packed = int.from_bytes(raw, "big") - 0x800000000000
        else:
            intpart = int.from_bytes(raw[:3], "big") - 0x800000
            if width == 0:
                packed = intpart << 24
            else:
                fraction = int.from_bytes(raw[3:], "big")
                if intpart < 0 and fraction:
                    intpart += 1
                    fraction -= 0x100 if width == 1 else 0x10000
                packed = (intpart << 24) + fraction * (10000 if width == 1 else 100)
        sign = ""
        if packed < 0:
            sign, packed = "-", -packed
        hms = packed >> 24
        text = f"{sign}{(hms >> 12) & 0x3FF:02d}:{(hms >> 6) & 63:02d}:{hms & 63:02d}"
        if fsp:
            text += "." + f"{packed & 0xFFFFFF:06d}"[:fsp]
        return text

    return 3 + width, convert


def date_converter(invalid: InvalidDates) -> Callable[[bytes], str | None]:
    """DATE: 3 bytes little-endian, day | month << 5 | year << 9."""
    days = DAYS_IN_MONTH

    def convert(raw: bytes) -> str | None:
        v = int.from_bytes(raw, "little")
        year, month, day = v >> 9, (v >> 5) & 15, v & 31
        if not (month and day and month <= 12 and day <= days[month]) or (month == 2 and day == 29 and not _leap(year)):
            invalid.count += 1
            return None
        return f"{year:04d}-{month:02d}-{day:02d}"

    return convert


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def set_converter(labels: list[str]) -> Callable[[bytes], str]:
    """SET: a little-endian bit mask over the labels."""

    def convert(raw: bytes) -> str:
        mask = int.from_bytes(raw, "little")
        return ",".join(label for bit, label in enumerate(labels) if mask >> bit & 1)

    return convert


def _uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


BINARY_TEXT: dict[str, Callable[[bytes], str]] = {
    "uuid": _uuid_text,
    "inet4": functools.partial(socket.inet_ntop, socket.AF_INET),
    "inet6": functools.partial(socket.inet_ntop, socket.AF_INET6),
}
"""MariaDB's text of a UUID (lower-case hex in 8-4-4-4-12 groups, the bytes in the binlog's order), INET4 (dotted
quad) and INET6 (RFC 5952 form by ``inet_ntop``, an IPv4-mapped address as ``::ffff:a.b.c.d``), from the bytes the
binlog carries for them."""


def binary_text(column: Column) -> str | None:
    """``uuid``, ``inet4`` or ``inet6`` when ``column`` (from the catalog) is one of the MariaDB types the binlog
    carries as BINARY; else None."""
    if column.type == "uuid":
        return "uuid"
    kind = column.source_type.lower()
    return kind if kind in ("inet4", "inet6") else None


# --- code generation ------------------------------------------------------------------------------------

INT_FORMATS = {TINY: ("b", "B"), SHORT: ("h", "H"), LONG: ("i", "I"), LONGLONG: ("q", "Q")}


@dataclass(slots=True)
class _Plan:
    """How one column is read: a fixed-size struct code and a conversion, or variable-length code."""

    fmt: str = ""
    size: int = 0
    convert: str = "{x}"
    var: list[str] = field(default_factory=list)
    """Lines reading the value into ``{v}`` from ``buf`` at ``p`` (advancing ``p``)."""


def compile_rows(
    tmap: TableMap,
    collations: dict[int, str],
    invalid: InvalidDates,
    update: bool,
    binary_as: Mapping[int, str] | None = None,
) -> RowsDecoder:
    """The decoder of the row images of ``tmap``'s rows events (write/delete: dicts; update: (before, after) pairs).

    ``invalid`` counts the zero or invalid dates turned into None, of the after images only for an update.
    ``binary_as``: column index -> ``uuid``, ``inet4`` or ``inet6``, the MariaDB types the binlog carries as
    BINARY(16) / BINARY(4) (the catalog says which, :func:`binary_text`): their bytes become MariaDB's own text of
    the value, as a snapshot reads it.

    Raises :class:`DecodeError` for a type it cannot read (MySQL's binary JSON, old MariaDB temporal formats)."""
    namespace: dict[str, Any] = {"from_bytes": int.from_bytes}
    plans = [_plan(tmap, i, collations, invalid, namespace) for i in range(len(tmap.types))]
    for i, kind in (binary_as or {}).items():
        if i < len(plans):
            namespace[f"_t{i}"] = BINARY_TEXT[kind]
            plan = plans[i]
            if plan.var:
                plan.var.append(f"{{v}} = _t{i}({{v}})")
            else:
                plan.convert = f"_t{i}(" + plan.convert + ")"
    names = tmap.names or [f"col{i}" for i in range(len(tmap.types))]
    body = _row_lines(plans, names, namespace)
    lines = ["def decode(buf, p, end):", "    out = []", "    append = out.append", "    while p < end:"]
    if update:
        # Only the after image is written: zero dates of the before image are not counted (``invalid`` set back).
        namespace["_invalid"] = invalid
        lines += ["        counted = _invalid.count"]
        lines += ["        " + line.replace("row =", "before =") for line in body]
        lines += ["        _invalid.count = counted"]
        lines += ["        " + line for line in body]
        lines += ["        append((before, row))"]
    else:
        lines += ["        " + line for line in body] + ["        append(row)"]
    lines.append("    return out")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<rows {tmap.qualified}>", "exec"), namespace)  # noqa: S102 - generated from the table map
    decoder: RowsDecoder = namespace["decode"]
    return decoder


def _row_lines(plans: list[_Plan], names: list[str], namespace: dict[str, Any]) -> list[str]:
    count = len(plans)
    null_bytes = (count + 7) // 8
    lines = [f"nulls = from_bytes(buf[p:p + {null_bytes}], 'little')", f"p += {null_bytes}", "if not nulls:"]
    # Fast path: runs of fixed-size columns read by one struct each.
    i = 0
    while i < count:
        if plans[i].var:
            lines += ["    " + line.format(v=f"v{i}") for line in plans[i].var]
            i += 1
            continue
        j = i
        while j < count and not plans[j].var:
            j += 1
        fmt = "<" + "".join(plan.fmt for plan in plans[i:j])
        unpack = f"_s{i}"
        namespace[unpack] = struct.Struct(fmt).unpack_from
        targets = ", ".join(f"v{k}" for k in range(i, j))
        lines.append(f"    {targets}, = {unpack}(buf, p)")
        lines.append(f"    p += {sum(plan.size for plan in plans[i:j])}")
        for k in range(i, j):
            if plans[k].convert != "{x}":
                lines.append(f"    v{k} = " + plans[k].convert.format(x=f"v{k}"))
        i = j
    lines.append("else:")
    for i, plan in enumerate(plans):
        lines.append(f"    if nulls & {1 << i}:")
        lines.append(f"        v{i} = None")
        lines.append("    else:")
        if plan.var:
            lines += ["        " + line.format(v=f"v{i}") for line in plan.var]
        else:
            unpack = f"_f{i}"
            namespace[unpack] = struct.Struct("<" + plan.fmt).unpack_from
            lines.append(f"        v{i}, = {unpack}(buf, p)")
            lines.append(f"        p += {plan.size}")
            if plan.convert != "{x}":
                lines.append(f"        v{i} = " + plan.convert.format(x=f"v{i}"))
    lines.append("row = {" + ", ".join(f"{name!r}: v{i}" for i, name in enumerate(names)) + "}")
    return lines


def _plan(tmap: TableMap, i: int, collations: dict[int, str], invalid: InvalidDates, namespace: dict[str, Any]) -> _Plan:
    kind, meta = tmap.types[i], tmap.meta[i]
    unsigned = tmap.unsigned[i] if tmap.unsigned else False
    name = f"_c{i}"
    if kind in INT_FORMATS:
        fmt = INT_FORMATS[kind][1 if unsigned else 0]
        return _Plan(fmt, struct.calcsize("<" + fmt))
    if kind == INT24:
        return _Plan("3s", 3, f"from_bytes({{x}}, 'little', signed={not unsigned})")
    if kind == FLOAT:
        return _Plan("f", 4)
    if kind == DOUBLE:
        return _Plan("d", 8)
    if kind == YEAR:
        return _Plan("B", 1, "({x} and {x} + 1900)")
    if kind == NEWDECIMAL:
        assert isinstance(meta, tuple)
        size, namespace[name] = decimal_converter(*meta)
        return _Plan(f"{size}s", size, f"{name}({{x}})")
    if kind in (DATE, NEWDATE):
        namespace[name] = date_converter(invalid)
        return _Plan("3s", 3, f"{name}({{x}})")
    if kind == DATETIME2:
        assert isinstance(meta, int)
        size, namespace[name] = datetime2_converter(meta, invalid)
        return _Plan(f"{size}s", size, f"{name}({{x}})")
    if kind == TIMESTAMP2:
        assert isinstance(meta, int)
        size, namespace[name] = timestamp2_converter(meta, invalid)
        return _Plan(f"{size}s", size, f"{name}({{x}})")
    if kind == TIME2:
        assert isinstance(meta, int)
        size, namespace[name] = time2_converter(meta)
        return _Plan(f"{size}s", size, f"{name}({{x}})")
    if kind == TIMESTAMP:
        namespace[name] = _old_timestamp(invalid)
        return _Plan("I", 4, f"{name}({{x}})")
    if kind == BIT:
        assert isinstance(meta, tuple)
        bits = meta[1] * 8 + meta[0]
        size = (bits + 7) // 8
        test = "from_bytes({x}, 'big') != 0" if bits == 1 else "from_bytes({x}, 'big')"
        return _Plan(f"{size}s", size, test)
    if kind == ENUM:
        assert isinstance(meta, int)
        namespace[name] = ["", *(tmap.labels[i] or [])]
        return _Plan("B" if meta == 1 else "H", meta, f"{name}[{{x}}]")
    if kind == SET:
        assert isinstance(meta, int)
        namespace[name] = set_converter(tmap.labels[i] or [])
        return _Plan(f"{meta}s", meta, f"{name}({{x}})")
    if kind == NULL:
        return _Plan("0s", 0, "None")
    charset = tmap.charsets[i] if tmap.charsets else None
    encoding = codec(collations.get(charset, "binary")) if charset is not None else None
    decode = f".decode({encoding!r})" if encoding else ""
    if kind == VARCHAR:
        assert isinstance(meta, int)
        length = "n = buf[p]" if meta < 256 else "n = buf[p] | buf[p + 1] << 8"
        return _Plan(var=[length, f"p += {1 if meta < 256 else 2}", f"{{v}} = buf[p:p + n]{decode}", "p += n"])
    if kind in (STRING, VAR_STRING):
        assert isinstance(meta, tuple)
        max_length = meta[1]
        length = "n = buf[p]" if max_length < 256 else "n = buf[p] | buf[p + 1] << 8"
        pad = f".ljust({max_length}, b'\\0')" if not encoding else ""
        return _Plan(var=[length, f"p += {1 if max_length < 256 else 2}", f"{{v}} = buf[p:p + n]{decode}{pad}", "p += n"])
    if kind in (BLOB, GEOMETRY):
        assert isinstance(meta, int)
        if kind == GEOMETRY:
            decode = ""
        return _Plan(
            var=[f"n = from_bytes(buf[p:p + {meta}], 'little')", f"p += {meta}", f"{{v}} = buf[p:p + n]{decode}", "p += n"]
        )
    raise DecodeError(
        f"{tmap.qualified}: column {tmap.names[i] if tmap.names else i} has binlog type {kind} that Sluice cannot decode"
        + (" (MySQL's binary JSON: capture it from MariaDB, or declare it as LONGTEXT)" if kind == JSON else "")
    )


def _old_timestamp(invalid: InvalidDates) -> Callable[[int], int | None]:
    def convert(seconds: int) -> int | None:
        if not seconds:
            invalid.count += 1
            return None
        return seconds * 1_000_000

    return convert
